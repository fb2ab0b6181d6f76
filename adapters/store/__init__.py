"""Persistence for tradingd: Redis write-through, Postgres write-behind, recovery, outages.

`open_store(daemon)` is the one entry point the daemon calls before it creates agents; it returns
a store with `flushed()`, `write_behind_lag()`, `components` and `close()`. See
docs/persistence.md for the design and which source wins at recovery."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tradingd.adapters.store.errors import DataDirLocked, StoreError, StoreUnavailable
from tradingd.engine import events as ev
from tradingd.engine.model import Tick

__all__ = ["DataDirLocked", "MemoryStore", "StoreError", "StoreUnavailable", "open_store"]
log = logging.getLogger("tradingd.store")


class MemoryStore:
    """TRADINGD_STORE=memory: nothing persists (benchmarks, backtests)."""

    kind = "memory"
    dead_letters = 0  # entries Postgres refused (none without Postgres)
    history = None  # no system of record: history that left memory is gone

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def on_events(self, events: list[ev.Event]) -> None:
        return None

    def on_ticks(self, ticks: list[Tick]) -> None:
        return None

    async def flushed(self, timeout: float | None = None) -> None:
        return None

    def write_behind_lag(self) -> dict[str, float]:
        return {"entries": 0, "seconds": 0.0}

    @property
    def buys_paused(self) -> bool:
        return False

    async def close(self) -> None:
        return None


def namespace_from_env() -> str:
    """Redis key prefix and Postgres schema; tests give each daemon its own."""
    return os.environ.get("TRADINGD_STORE_NAMESPACE", "tradingd")


async def open_store(daemon: Any, *, namespace: str | None = None, lock: bool = True) -> Any:
    """Open the configured store, restore the daemon's engine from it, subscribe it to the
    runtime and resume in-flight orders. Raises StoreError with a one-line reason."""
    settings = daemon.settings.store
    if settings.kind == "memory":
        return MemoryStore()
    from tradingd.adapters.store.persistent import PersistentStore

    runtime = daemon.runtime

    def publish(events: list[Any]) -> None:
        for sub in list(runtime.event_subscribers):
            try:
                sub(events)
            except Exception:
                log.exception("alert subscriber failed")

    store = PersistentStore(
        daemon.engine,
        Path(daemon.data_dir),
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        namespace=namespace or namespace_from_env(),
        pause_buys_without_redis=settings.pause_buys_without_redis,
        history_read_timeout=settings.history_read_timeout_s,
        publish=publish,
        lock=lock,
    )
    store.components = daemon.components
    daemon.components["redis"] = {"status": "starting"}
    daemon.components["postgres"] = {"status": "starting"}
    snapshot = await store.open()
    runtime.event_subscribers.insert(0, store.on_events)
    runtime.tick_subscribers.append(store.on_ticks)
    daemon.cleanups.append(store.close)
    runtime.resume_orders(snapshot.orders)
    return store
