"""Store errors: what the daemon reports as a one-line reason when persistence cannot start."""

from __future__ import annotations

from tradingd.engine.errors import Unavailable


class StoreError(Unavailable):
    """Persistence failed in a way the operator must act on."""

    code = "store_unavailable"


class StoreUnavailable(StoreError):
    """A store server cannot be started or reached."""


class DataDirLocked(StoreError):
    """Another tradingd holds the data dir."""
