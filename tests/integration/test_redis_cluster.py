"""The store, the hot standby's lease and the shards' intake run unchanged on Redis Cluster
(three primaries from tests/integration/redis_cluster.py, or `REDIS_CLUSTER_URL`): every key one
command or script touches carries its namespace's hash tag, so each lands in one slot. The same
scenarios as on one Redis: state recovered after a crash with the write-behind paused (from the
cluster's stream and hashes alone), drained to Postgres; one lease holder, fencing tokens that
grow; the intake appends, applies, and dedupes a client id."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis_cluster import LocalRedisCluster
from store_harness import StoreNode, StoreServers, state_of
from test_cluster_intake import Node, buy, started, until
from test_store_recovery import build_activity
from tradingd.adapters.cluster.lease import Lease
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.redis import client, is_cluster_url
from tradingd.adapters.store.stream_codec import Keys


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    local = LocalRedisCluster(Path(tmp_path_factory.mktemp("redis-cluster")))
    try:
        yield local.start()
    finally:
        local.stop()


@pytest.fixture
def on_cluster(store_servers: StoreServers, cluster_url: str) -> StoreServers:
    return StoreServers(cluster_url, store_servers.database_url)


def test_the_url_says_cluster() -> None:
    assert is_cluster_url("redis://10.0.0.5:7000/0?cluster=true")
    assert not is_cluster_url("redis://10.0.0.5:6379/0")
    assert isinstance(client("redis://127.0.0.1:7000/0?cluster=yes"), RedisCluster)


async def test_the_store_recovers_from_the_cluster_and_drains_to_postgres(
    tmp_path, on_cluster, namespace
):
    node = await StoreNode(tmp_path, on_cluster, namespace).start()
    await node.store.pause_writer()  # the state is only in the cluster
    await build_activity(node)
    before = state_of(node)
    await node.crash()
    again = await StoreNode(tmp_path, on_cluster, namespace).start()
    try:
        assert state_of(again) == before
        assert await again.store.writer.drain(10)
        conn = await pg.connect(on_cluster.database_url, namespace)
        try:
            assert await conn.fetchval("SELECT count(*) FROM events") > 0
        finally:
            await conn.close()
    finally:
        await again.stop()
        r = client(on_cluster.redis_url)
        await r.delete(*(Keys(namespace).hash(n) for n in Keys(namespace).every_name()))
        await r.aclose()


async def test_one_lease_holder_and_growing_fencing_tokens(cluster_url, namespace):
    r = client(cluster_url)
    try:
        a, b = Lease(r, namespace, "a", 2000), Lease(r, namespace, "b", 2000)
        assert await a.try_acquire() and not await b.try_acquire()
        assert await a.renew() and await a.release()
        assert await b.try_acquire() and b.token == a.token + 1
        assert not await a.renew()
        await b.release()
    finally:
        await r.delete(Keys(namespace).lease, Keys(namespace).fence)
        await r.aclose()


async def test_the_intake_appends_applies_and_dedupes_on_the_cluster(on_cluster, namespace):
    node = Node()
    async with started(node, on_cluster, namespace) as intake:
        first = await intake.publish_signal(buy("sig_c1", client_id="c-1"))
        again = await intake.publish_signal(buy("sig_c2", client_id="c-1"))
        assert not first.duplicate and again.duplicate and again.signal_id == "sig_c1"
        await until(node.positions, lambda ps: len(ps) == 1, "the signal applied")
        results = await intake.results("sig_c1", wait=True)
        assert results.answered == [0] and results.agents_matched == 1
    r = client(on_cluster.redis_url)
    keys = [k async for k in r.scan_iter(match=f"{{{namespace}}}*")]
    if keys:
        for k in keys:
            await r.delete(k)
    await r.aclose()
