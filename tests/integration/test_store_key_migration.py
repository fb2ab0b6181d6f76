"""Keys renamed to their hash-tagged names (`<ns>:events` -> `{<ns>}:events`, key_migration.py):
a daemon upgraded in place finds what the old version left in Redis under the old names — the
stream with entries not yet in Postgres and the write-behind's group, the hashes, the lease with
its TTL — and recovers exactly the state it had; a key under both names is left alone."""

from __future__ import annotations

import redis.asyncio as aioredis
from store_harness import StoreNode, state_of
from test_store_recovery import build_activity
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.key_migration import (
    TOMBSTONE,
    legacy_lease,
    legacy_names,
    rename_legacy_keys,
)
from tradingd.adapters.store.stream_codec import Keys


async def as_old_version_left_it(r: aioredis.Redis, namespace: str) -> list[str]:
    """Every key of the namespace renamed back to its name before hash tags."""
    moved = []
    for old, new in legacy_names(namespace).items():
        if await r.exists(new):
            await r.rename(new, old)
            moved.append(old)
    return moved


async def test_an_upgraded_store_recovers_what_the_old_key_names_hold(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await node.store.pause_writer()  # what the old version wrote is only in Redis
    await build_activity(node)
    before = state_of(node)
    await node.crash()
    r = aioredis.Redis.from_url(store_servers.redis_url)
    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
        moved = await as_old_version_left_it(r, namespace)
        assert f"{namespace}:events" in moved and f"{namespace}:positions" in moved

        again = await StoreNode(tmp_path, store_servers, namespace).start()
        assert state_of(again) == before
        assert await r.exists(*moved) == 0
        assert await r.get(f"{namespace}:lease") == TOMBSTONE.encode()
        await r.delete(f"{namespace}:lease")
        assert await again.store.writer.drain(10)  # the old group's entries reach Postgres
        assert await conn.fetchval("SELECT count(*) FROM events") > 0
        await again.stop()
    finally:
        await conn.close()
        await r.aclose()


async def test_the_lease_keeps_its_holder_and_ttl_and_both_names_are_left_alone(
    store_servers, namespace
):
    r = aioredis.Redis.from_url(store_servers.redis_url)
    keys = Keys(namespace)
    try:
        await r.set(f"{namespace}:lease", "7:old-host", px=60_000)
        await r.set(f"{namespace}:fence", 7)
        await r.hset(f"{namespace}:agents", "a", "x")
        await r.hset(keys.hash("agents"), "b", "y")  # already under the new name too
        renamed = await rename_legacy_keys(r, legacy_names(namespace), legacy_lease(namespace))
        assert sorted(renamed) == [f"{namespace}:fence", f"{namespace}:lease"]
        assert await r.get(keys.lease) == b"7:old-host"
        assert 50_000 < await r.pttl(keys.lease) <= 60_000
        # An old-version process (a tester's rolling upgrade: the old standby took the freed old
        # name, two actives) finds the old name held for good: no free lease, no renewal.
        assert await r.get(f"{namespace}:lease") == TOMBSTONE.encode()
        assert await r.pttl(f"{namespace}:lease") == -1
        assert not await r.set(f"{namespace}:lease", "8:old-standby", nx=True, px=1000)
        assert await r.hgetall(keys.hash("agents")) == {b"b": b"y"}
        assert await r.hgetall(f"{namespace}:agents") == {b"a": b"x"}  # left for the operator
        assert await rename_legacy_keys(r, legacy_names(namespace)) == []  # idempotent
    finally:
        await r.delete(f"{namespace}:agents", f"{namespace}:lease")
        await r.aclose()
