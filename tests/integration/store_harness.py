"""An engine + runtime + store wired the way the daemon wires them, for the store tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.runtime import Runtime, wall_clock_ms
from adapters.settings import Settings
from adapters.store import open_store
from adapters.venues.paper import PaperVenue
from engine.core import Engine
from engine.snapshot import EngineSnapshot, capture

TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]


@dataclass
class StoreServers:
    redis_url: str
    database_url: str


class StoreNode:
    """What the daemon holds that the store touches: settings, engine, runtime, data dir,
    components, cleanups. `crash()` drops it like kill -9 would (nothing flushed)."""

    def __init__(
        self,
        data_dir: Path,
        servers: StoreServers,
        namespace: str,
        venue: object | None = None,
        redis_url: str | None = None,
        database_url: str | None = None,
    ) -> None:
        self.settings = Settings()
        self.settings.store.kind = "external"
        self.settings.store.redis_url = redis_url or servers.redis_url
        self.settings.store.database_url = database_url or servers.database_url
        self.data_dir = data_dir
        self.namespace = namespace
        self.engine = Engine(wall_clock_ms)
        self.runtime = Runtime(
            self.engine, {"paper": venue or PaperVenue(self.engine.price_usd, wall_clock_ms)}
        )
        self.components: dict[str, dict[str, object]] = {}
        self.cleanups: list = []
        self.store: object = None

    async def start(self) -> StoreNode:
        self.store = await open_store(self, namespace=self.namespace)
        return self

    async def stop(self) -> None:
        await self.runtime.wait_orders(5)
        for cleanup in reversed(self.cleanups):
            await cleanup()

    async def crash(self) -> None:
        for task in list(self.runtime.in_flight.values()):
            task.cancel()
        store = self.store
        store.servers = None  # type: ignore[attr-defined]  # kill -9 leaves the servers up
        await store._abort()  # type: ignore[attr-defined]


def normalized(snap: EngineSnapshot) -> dict[str, object]:
    """A snapshot as comparable plain data: orderings that carry no meaning removed."""
    import msgspec

    b = msgspec.to_builtins
    return {
        "agents": sorted(b(snap.agents), key=lambda a: a["id"]),
        "balances": {k: sorted(b(v), key=lambda x: x["asset"]) for k, v in snap.balances.items()},
        "positions": sorted(b(snap.positions), key=lambda p: p["id"]),
        "orders": sorted(b(snap.orders), key=lambda o: o["id"]),
        "trades": {k: b(v) for k, v in snap.trades.items() if v},
        "signals": sorted(
            (
                {**b(s), "executions": sorted(b(s.executions), key=lambda x: x["agent_id"])}
                for s in snap.signals
            ),
            key=lambda s: s["signal"]["id"],
        ),
        "halted_buys": snap.halted_buys,
    }


def state_of(node: StoreNode) -> dict[str, object]:
    return normalized(capture(node.engine))
