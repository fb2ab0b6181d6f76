"""Real Redis and Postgres for the store tests: the embedded servers (one pair per session), or
REDIS_URL / DATABASE_URL when set. Each test gets its own namespace (Redis key prefix and
Postgres schema), dropped afterwards, so tests never see each other's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.store.embedded import EmbeddedServers


@dataclass
class StoreServers:
    redis_url: str
    database_url: str


@pytest.fixture(scope="session")
def store_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServers]:
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    servers = None
    if not (redis_url and database_url):
        servers = EmbeddedServers(Path(tmp_path_factory.mktemp("store-servers")))
        r, d = servers.start()
        redis_url, database_url = redis_url or r, database_url or d
    yield StoreServers(redis_url, database_url)
    if servers is not None:
        servers.stop()


@pytest.fixture
async def namespace(store_servers: StoreServers) -> AsyncIterator[str]:
    import asyncpg
    import redis.asyncio as aioredis

    ns = f"t_{uuid.uuid4().hex[:12]}"
    yield ns
    r = aioredis.Redis.from_url(store_servers.redis_url)
    keys = [k async for k in r.scan_iter(match=f"{ns}:*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()
    conn = await asyncpg.connect(store_servers.database_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
    await conn.close()


# -- an engine + runtime + store, wired the way the daemon wires them ----------------------------

from adapters.runtime import Runtime, wall_clock_ms  # noqa: E402
from adapters.settings import Settings  # noqa: E402
from adapters.store import open_store  # noqa: E402
from adapters.venues.paper import PaperVenue  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.snapshot import EngineSnapshot, capture  # noqa: E402


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
