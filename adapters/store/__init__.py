"""Persistence for tradingd: Redis write-through, Postgres write-behind, recovery, outages.

`open_store(...)` is the one entry point the daemon calls before it creates agents; it returns
a `Store` (engine/ports.py) and the orders to resume, and the daemon subscribes it. See
docs/persistence.md for the design and which source wins at recovery."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tradingd.adapters.store.errors import DataDirLocked, StoreError, StoreUnavailable
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.model import Order, Tick
from tradingd.engine.ports import ComponentHealth, HealthRegistry, Store

if TYPE_CHECKING:
    from tradingd.adapters.app.settings import StoreSettings

__all__ = [
    "DataDirLocked",
    "MemoryStore",
    "OpenedStore",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]


class MemoryStore:
    """TRADINGD_STORE=memory: nothing persists (benchmarks, backtests)."""

    kind = "memory"
    dead_letters = 0  # entries Postgres refused (none without Postgres)
    history = None  # no system of record: history that left memory is gone

    def __init__(self) -> None:
        self.components: dict[str, ComponentHealth] = {}

    @property
    def pending_writes(self) -> int:
        return 0

    def on_events(self, events: list[ev.Event]) -> None:
        return None

    def on_ticks(self, ticks: list[Tick]) -> None:
        return None

    async def flushed(self, timeout: float | None = None) -> None:
        return None

    async def flushed_with_prices(self, timeout: float | None = None) -> None:
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


class OpenedStore(NamedTuple):
    """A store just opened, the engine restored from it, and the orders that were in flight at
    the last stop (to carry to their venues again once the store is subscribed)."""

    store: Store
    orders_in_flight: list[Order]


async def open_store(
    settings: StoreSettings,
    engine: Engine,
    data_dir: Path,
    health: HealthRegistry,
    publish: Callable[[list[ev.Event]], None],
    *,
    namespace: str | None = None,
    lock: bool = True,
    fence: Any = None,
) -> OpenedStore:
    """Open the store `settings` describe and restore `engine` from it. The store reports the
    health of its servers ("redis", "postgres") in `health` and sends its alerts (store
    degraded / recovered events) through `publish`. Subscribing it to the runtime is the
    caller's (the daemon's) job. Raises StoreError with a one-line reason."""
    if settings.kind == "memory":
        return OpenedStore(MemoryStore(), [])
    from tradingd.adapters.store.persistent import PersistentStore

    store = PersistentStore(
        engine,
        data_dir,
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        namespace=namespace or namespace_from_env(),
        pause_buys_without_redis=settings.pause_buys_without_redis,
        history_read_timeout=settings.history_read_timeout_s,
        publish=publish,
        lock=lock,
        fence=fence,  # hot standby: adapters/cluster/role.py
    )
    store.components = health
    health["redis"] = {"status": "starting"}
    health["postgres"] = {"status": "starting"}
    snapshot = await store.open()
    return OpenedStore(store, list(snapshot.orders))
