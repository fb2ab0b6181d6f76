"""API keys shared by a cluster's processes through Redis (adapters/cluster/shared_keys.py), on
the real Redis: each process has its own data dir (keys.json) and its own mirror."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from store_harness import StoreServers
from tradingd.adapters.cluster.shared_keys import SharedKeys
from tradingd.adapters.http.auth import KeyStore, keys_path

from tests.polling import poll_until_async


class Process:
    """One process's keys: its data dir's KeyStore and its mirror."""

    def __init__(self, root: Path, name: str, redis_url: str, namespace: str) -> None:
        self.dir = root / name
        self.keys = KeyStore(keys_path(self.dir))
        self.shared = SharedKeys(redis_url, namespace, self.keys)

    def cli(self) -> KeyStore:
        """`tradingd keys ...` on this data dir: another KeyStore on the same file."""
        return KeyStore(keys_path(self.dir))


@pytest.fixture
async def pair(store_servers: StoreServers, namespace: str, tmp_path: Path):
    a = Process(tmp_path, "a", store_servers.redis_url, namespace)
    b = Process(tmp_path, "b", store_servers.redis_url, namespace)
    yield a, b
    await a.shared.close()
    await b.shared.close()


async def sync(*processes: Process) -> None:
    for p in processes:
        await p.shared.sync_once()


async def test_a_key_created_on_one_process_authenticates_on_the_other(pair) -> None:
    a, b = pair
    key, raw = a.keys.create("provider", frozenset({"signals"}))
    assert b.keys.authenticate(raw) is None
    await sync(a, b)
    assert b.keys.authenticate(raw) == key
    assert [k.id for k in b.keys.list()] == [key.id]


async def test_a_revocation_reaches_every_process_and_the_key_never_comes_back(pair) -> None:
    a, b = pair
    key, raw = a.keys.create("provider", frozenset({"read"}))
    await sync(a, b)
    b.keys.revoke(key.id)
    await sync(a)  # a still holds it live and publishes first: Redis keeps it live for now
    await sync(b, a)
    assert a.keys.authenticate(raw) is None and b.keys.authenticate(raw) is None
    await sync(a, b, a, b)  # and it stays revoked whatever the order
    assert a.keys.authenticate(raw) is None and b.keys.authenticate(raw) is None
    assert a.keys.list() == [] and b.keys.list() == []


async def test_a_key_revoked_with_the_cli_while_the_process_was_down_stays_revoked(pair) -> None:
    a, b = pair
    key, raw = a.keys.create("provider", frozenset({"read"}))
    await sync(a, b)
    b.cli().revoke(key.id)  # b's data dir edited offline: its keys.json keeps the revocation
    restarted = Process(b.dir.parent, "b", a.shared.redis_url, a.shared.hash[1:].split("}")[0])
    try:
        await sync(restarted, a)
        assert a.keys.authenticate(raw) is None
        assert restarted.keys.authenticate(raw) is None
    finally:
        await restarted.shared.close()


async def test_a_stale_live_copy_never_replaces_a_revocation_in_redis(
    pair, store_servers: StoreServers
) -> None:
    a, b = pair
    key, _ = a.keys.create("provider", frozenset({"read"}))
    a.keys.revoke(key.id)
    await sync(a)
    r = aioredis.Redis.from_url(store_servers.redis_url)
    try:
        live = msgspec.json.encode(msgspec.structs.replace(key, revoked_at=None))
        assert await a.shared._publish(keys=[a.shared.hash], args=[key.id, live, "0"]) == 0
        held = msgspec.json.decode(await r.hget(a.shared.hash, key.id))
        assert held["revoked_at"] is not None
    finally:
        await r.aclose()


async def test_the_mirror_runs_on_its_own_and_survives_an_unreadable_record(
    pair, store_servers: StoreServers
) -> None:
    a, b = pair
    r = aioredis.Redis.from_url(store_servers.redis_url)
    await r.hset(a.shared.hash, "key_garbage", b"{not json")
    await r.aclose()
    tasks = [asyncio.create_task(p.shared.run()) for p in (a, b)]
    try:
        key, raw = a.keys.create("provider", frozenset({"read"}))
        a.shared.poke()
        await poll_until_async(lambda: b.keys.authenticate(raw), timeout_s=10, what="b knows it")
        assert b.keys.authenticate(raw) == key and a.shared.ok and b.shared.ok
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_a_key_file_written_before_revocations_were_kept_still_loads(tmp_path: Path) -> None:
    path = keys_path(tmp_path)
    path.write_text(
        '{"version":1,"keys":[{"id":"key_1","name":"old","scopes":["read"],'
        '"created_at":1,"hash":"' + "ab" * 32 + '"}]}'
    )
    store = KeyStore(path)
    assert [k.id for k in store.list()] == ["key_1"]
    store.revoke("key_1")
    assert store.list() == [] and "revoked_at" in path.read_text()
    with pytest.raises(Exception, match="unknown key"):
        store.revoke("key_1")


async def test_a_revocation_holds_while_the_key_file_cannot_be_written(pair) -> None:
    """A tester's finding: a corrupt keys.json killed the mirror for good and the revoked key
    kept working there. Now the revocation holds in memory, /health says down, and once the
    file is good again the sync carries on."""
    a, b = pair
    key, raw = a.keys.create("provider", frozenset({"read"}))
    await sync(a, b)
    good = keys_path(a.dir).read_bytes()
    keys_path(a.dir).write_text("{ corrupt")
    b.keys.revoke(key.id)
    await sync(b)
    task = asyncio.create_task(a.shared.run())
    try:
        await poll_until_async(lambda: not a.shared.ok, timeout_s=10, what="a's sync fails")
        assert a.shared.components["api_keys"]["status"] == "down"
        assert a.keys.authenticate(raw) is None  # revoked here all the same
        keys_path(a.dir).write_bytes(good)
        await poll_until_async(lambda: a.shared.ok, timeout_s=10, what="a's sync recovers")
        assert a.keys.authenticate(raw) is None
        assert "revoked_at" in keys_path(a.dir).read_text()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_records_that_are_not_keys_are_never_taken(pair, store_servers: StoreServers) -> None:
    a, _ = pair
    good, _raw = a.keys.create("provider", frozenset({"read"}))
    r = aioredis.Redis.from_url(store_servers.redis_url)
    try:
        bad = {
            "key_other": msgspec.structs.replace(good, id="key_x"),  # filed under another id
            "key_hash": msgspec.structs.replace(good, id="key_hash", hash="zz"),
            "key_scope": msgspec.structs.replace(good, id="key_scope", scopes=frozenset({"root"})),
        }
        for field, key in bad.items():
            await r.hset(a.shared.hash, field, msgspec.json.encode(key))
    finally:
        await r.aclose()
    await sync(a)
    assert {k.id for k in a.keys.records()} == {good.id}
    # garbage filed under a real key's id is replaced by the real record, not a stuck sync
    r = aioredis.Redis.from_url(store_servers.redis_url)
    try:
        await r.hset(a.shared.hash, good.id, b"{garbage")
        await sync(a)
        assert msgspec.json.decode(await r.hget(a.shared.hash, good.id))["id"] == good.id
    finally:
        await r.aclose()


async def test_a_start_waits_for_the_recorded_shard_count_and_never_skips_it() -> None:
    """A tester's finding: with Redis not answering at its start a single process skipped the
    check and re-created agents that had moved to the shards."""
    from tradingd.adapters.cluster.shards import ShardCountUnknown, check_recorded_count

    with pytest.raises(ShardCountUnknown, match="start it again when Redis answers"):
        await check_recorded_count("redis://127.0.0.1:1/0", "nowhere", 1, wait_s=1.0)
