"""Pyth Hermes price feed: SSE stream + /latest snapshot (../shared/contracts/pyth-hermes.md)."""

from .feed import PythFeed

__all__ = ["PythFeed"]
