"""DexScreener price feed: polling of `/tokens/v1` (../shared/contracts/dexscreener.md)."""

from .feed import DexScreenerFeed

__all__ = ["DexScreenerFeed"]
