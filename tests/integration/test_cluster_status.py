"""`tradingd cluster status` against the real Redis, run as the operator runs it (a subprocess):
each shard's lease holder, time left and fencing counter, the write-behind backlog, each shard's
lag and pending entries on the intake streams, and the exit code monitoring relies on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis
from store_harness import StoreServers
from tradingd.adapters.cluster.lease import Lease


def status(
    redis_url: str, namespace: str, tmp_path: Path, shards: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The CLI with REDIS_URL alone (a tester's: it refused to run without DATABASE_URL)."""
    config = tmp_path / "cluster.toml"
    config.write_text(f"[cluster]\nshards = {shards}\n")
    env = {k: v for k, v in os.environ.items() if k != "TRADINGD_STORE"}
    env = {k: v for k, v in env.items() if k != "DATABASE_URL"}  # only Redis is read
    env |= {"REDIS_URL": redis_url, "TRADINGD_STORE_NAMESPACE": namespace}
    cmd = [sys.executable, "-m", "tradingd.adapters.app.cli", "cluster", "status"]
    return subprocess.run(
        [*cmd, "--config", str(config), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_single_process_without_a_lease_is_fine(
    store_servers: StoreServers, namespace: str, tmp_path: Path
) -> None:
    done = status(store_servers.redis_url, namespace, tmp_path, 1)
    assert done.returncode == 0, done.stderr
    assert "no lease in use" in done.stdout


async def test_shards_leases_and_intake_lag(
    store_servers: StoreServers, namespace: str, tmp_path: Path
) -> None:
    r = aioredis.Redis.from_url(store_servers.redis_url)
    s0, s1 = f"{namespace}_s0", f"{namespace}_s1"
    try:
        lease = Lease(r, s0, "host-1-abc", 30_000)
        assert await lease.try_acquire()
        await r.set(f"{{{s1}}}:fence", 3)  # shard 1 had a lease once; nobody holds it now
        await r.hset(f"{{{namespace}}}:shards", mapping={"0": "http://127.0.0.1:8081"})
        stream = f"{{{namespace}}}:intake:signals"
        for i in range(3):  # ids G-S and the stream's S counter, as the intake appends them
            await r.xadd(stream, {"d": f"{i}"}, id=f"{2 * i + 1}-{i + 1}")
        await r.set(f"{stream}:seq", 3)
        await r.xgroup_create(stream, "s0", id="0")
        await r.xgroup_create(stream, "s1", id="0")
        read = await r.xreadgroup("s0", "s0", {stream: ">"}, count=2)
        await r.xack(stream, "s0", read[0][1][0][0])

        done = status(store_servers.redis_url, namespace, tmp_path, 2, "--json")
        assert done.returncode == 1, done.stderr  # shard 1 has no active process
        doc = json.loads(done.stdout)
        first, second = doc["shards"]
        assert first["lease"]["holder"] == f"{lease.token}:host-1-abc"
        assert 0 < first["lease"]["expires_in_ms"] <= 30_000
        assert first["fencing_counter"] == lease.token
        assert first["url"] == "http://127.0.0.1:8081"
        assert second["lease"] == {"holder": None, "expires_in_ms": None}
        assert second["fencing_counter"] == 3 and second["url"] is None
        groups = doc["intake"]["signals"]["groups"]
        assert doc["intake"]["signals"]["length"] == 3
        assert groups["s0"]["pending"] == 1 and groups["s0"]["lag"] == 1
        assert groups["s1"]["pending"] == 0 and groups["s1"]["lag"] == 3
        assert doc["intake"]["ticks"] == {"length": 0, "groups": {}}

        text = status(store_servers.redis_url, namespace, tmp_path, 2)
        assert text.returncode == 1
        assert "NONE" in text.stdout and "host-1-abc" in text.stdout

        await lease.release()
        await r.delete(f"{{{s1}}}:fence")
        freed = status(store_servers.redis_url, namespace, tmp_path, 2, "--json")
        # shard 0 had a lease and has none now: nothing trades for it
        assert freed.returncode == 1
        assert json.loads(freed.stdout)["shards"][0]["lease"]["holder"] is None
    finally:
        for ns in (s0, s1):
            keys = [k async for k in r.scan_iter(match=f"{{{ns}*")]
            if keys:
                await r.delete(*keys)
        await r.aclose()


def test_redis_unreachable_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    done = status(f"redis://127.0.0.1:{port}/0", "t_unreachable", tmp_path, 1, "--timeout", "1")
    assert done.returncode == 2
    assert "cannot read redis" in done.stderr


async def test_the_shard_count_comes_from_redis_when_not_given(
    store_servers: StoreServers, namespace: str, tmp_path: Path
) -> None:
    """Shards started with `--shards 3` on the command line and a config without it: the
    count is the shards that registered their control URL (a tester's finding: it reported one
    process and exit 0); `--shards` says it outright."""
    r = aioredis.Redis.from_url(store_servers.redis_url)
    try:
        urls = {str(i): f"http://127.0.0.1:{8080 + i}" for i in range(3)}
        await r.hset(f"{{{namespace}}}:shards", mapping=urls)
        found = status(store_servers.redis_url, namespace, tmp_path, 1, "--json")
        doc = json.loads(found.stdout)
        assert doc["shards_from"] == "registered in redis"
        assert [s["namespace"] for s in doc["shards"]] == [f"{namespace}_s{i}" for i in range(3)]
        assert "intake" in doc
        given = status(store_servers.redis_url, namespace, tmp_path, 1, "--json", "--shards", "2")
        assert json.loads(given.stdout)["shards_from"] == "given"
        assert len(json.loads(given.stdout)["shards"]) == 2
        bad = status(store_servers.redis_url, namespace, tmp_path, 1, "--shards", "65")
        assert bad.returncode == 2
    finally:
        await r.aclose()
