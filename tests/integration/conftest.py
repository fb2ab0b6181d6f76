"""Real Redis and Postgres for the store tests: the embedded servers (one pair per session), or
REDIS_URL / DATABASE_URL when set. Each test gets its own namespace (Redis key prefix and
Postgres schema), dropped afterwards, so tests never see each other's data."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_harness import StoreServers
from tradingd.adapters.store.embedded import EmbeddedServers

from tests.fakes.notify_servers import FakeTelegram


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
    keys = [k async for k in r.scan_iter(match=f"{{{ns}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()
    conn = await asyncpg.connect(store_servers.database_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
    await conn.close()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API on 127.0.0.1 (tests/fakes/notify_servers.py)."""
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.close()
