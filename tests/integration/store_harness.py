"""An engine + runtime + store wired the way the daemon wires them, for the store tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.app.settings import Settings
from tradingd.adapters.store import open_store
from tradingd.adapters.store.persistent import PersistentStore
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.core import Engine
from tradingd.engine.events import Event
from tradingd.engine.model import Tick
from tradingd.engine.ports import HealthRegistry
from tradingd.engine.snapshot import EngineSnapshot, capture

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
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = Settings()
        self.settings.store.kind = "external"
        self.settings.store.redis_url = redis_url or servers.redis_url
        self.settings.store.database_url = database_url or servers.database_url
        self.data_dir = data_dir
        self.namespace = namespace
        self.engine = Engine(clock)
        self.runtime = Runtime(
            self.engine, {"paper": venue or PaperVenue(self.engine.price_usd, clock)}, clock
        )
        self.components: HealthRegistry = {}
        self.cleanups: list = []
        self.store: PersistentStore | None = None  # the tests reach into its writer

    async def start(self) -> StoreNode:
        opened = await open_store(
            self.settings.store,
            self.engine,
            self.data_dir,
            self.components,
            self.publish,
            namespace=self.namespace,
        )
        store = opened.store
        assert isinstance(store, PersistentStore)
        self.store = store
        # as Daemon.open_store: the store first, closed last, then the orders resumed
        self.runtime.event_subscribers.insert(0, store.on_events)
        self.runtime.tick_subscribers.append(store.on_ticks)
        self.cleanups.append(store.close)
        self.runtime.resume_orders(opened.orders_in_flight)
        return self

    def tick(self, token: str, price: float) -> None:
        """One price for `token`, now (6 decimals, as the test tokens have)."""
        self.runtime.push_ticks([Tick(token, price, self.engine.clock(), decimals=6)])

    async def settle(self) -> None:
        """Orders in flight filled, and what they changed written through to Redis."""
        await self.runtime.wait_orders(5)
        assert self.store is not None
        await self.store.flushed()

    def publish(self, events: list[Event]) -> None:
        for sub in list(self.runtime.event_subscribers):
            sub(events)

    async def stop(self) -> None:
        await self.runtime.wait_orders(5)
        for cleanup in reversed(self.cleanups):
            await cleanup()

    async def crash(self) -> None:
        for task in list(self.runtime.in_flight.values()):
            task.cancel()
        store = self.store
        assert store is not None
        store.servers = None  # kill -9 leaves the servers up
        await store._abort()


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
        "entries": sorted(b(snap.entries), key=lambda e: e["id"]),
    }


def state_of(node: StoreNode) -> dict[str, object]:
    return normalized(capture(node.engine))


def check_invariants(engine: Engine, deposits: dict[str, int]) -> None:
    """Money and idempotency invariants that must hold after any crash or outage."""
    for aid, agent in engine.agents.items():
        trades = engine.trades.get(aid, [])
        assert len({t.id for t in trades}) == len(trades), "a fill recorded twice"
        assert len({t.venue_ref for t in trades}) == len(trades), "an order filled twice"
        bal = engine.ledger.balance(aid, agent.quote)
        delta = sum(t.quote_amount if t.side == "sell" else -t.quote_amount for t in trades)
        assert bal.total == deposits.get(aid, 0) + delta, "balance != deposits + trade deltas"
        reserved = sum(
            o.amount_in for o in engine.orders.values() if o.agent_id == aid and o.side == "buy"
        ) + sum(e.amount for e in engine.entries.values() if e.agent_id == aid)
        assert bal.reserved == reserved, "reservation != resting buys + buys in flight"
        per_signal: dict[str, int] = {}
        for p in engine.agent_positions.get(aid, {}).values():
            if p.signal_id is not None:
                per_signal[p.signal_id] = per_signal.get(p.signal_id, 0) + 1
            bought = sum(t.amount for t in trades if t.position_id == p.id and t.side == "buy")
            sold = sum(t.amount for t in trades if t.position_id == p.id and t.side == "sell")
            assert sold <= bought and p.amount == bought - sold, f"position {p.id} sold twice"
        assert all(n == 1 for n in per_signal.values()), "a signal traded twice for one agent"


async def postgres_snapshot(database_url: str, namespace: str) -> EngineSnapshot:
    """The state a recovery from Postgres alone would start from (Redis lost)."""
    from tradingd.adapters.store import postgres as pg
    from tradingd.adapters.store.recovery import StateBook

    conn = await pg.connect(database_url, namespace)
    try:
        book = StateBook()
        limits = pg.RecoveryLimits.of_engine()
        book.load_rows(await pg.load_rows(conn, limits))
        return book.snapshot([], 0, limits)
    finally:
        await conn.close()


async def postgres_state(database_url: str, namespace: str) -> dict[str, object]:
    return normalized(await postgres_snapshot(database_url, namespace))
