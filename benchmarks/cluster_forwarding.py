"""Agent shards: what forwarding a request to the agent's owner shard costs, and how fast a feed's
leadership moves when its leader dies.

Three shards (`tradingd run --shards 3 --shard i`) on one Redis and one Postgres (embedded, or
REDIS_URL / DATABASE_URL). One agent on shard 0. The same requests are sent alternately to shard
0 directly (the floor: the owner answering) and to shard 1 (checked there, forwarded to shard 0,
the answer relayed): `GET /v1/agents/{id}` and a write, `POST .../pause` then `.../resume`
(acknowledged once durable on the owner). Latencies are one client's round trips, one request at
a time; the ratio forwarded / direct is measured in the same run.

With `--feed-kills N` the shards run the synthetic feed and its leader is killed N times
(SIGKILL, then restarted): the time until another shard's /health shows it leading.

    python benchmarks/cluster_forwarding.py [--requests 2000] [--feed-kills 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from _stats import add_json_arg, percentiles, run_loop, write_json
from cluster import (
    ShardProcess,
    code_version,
    kept_on_failure,
    process_env,
    shared_store,
)

SHARDS = 3
LEASE_MS = 1000
FEED_OFF = "[feeds.synthetic]\nenabled = false\n"
FEED_ON = "[feeds.synthetic]\nenabled = true\ninterval_ms = 100\n"


async def forwarding(procs: list[ShardProcess], admin: str, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        owner, other = procs[0].base, procs[1].base
        async with http.post(owner + "/v1/agents", json={"name": "fw", "venue": "paper"}) as r:
            agent = (await r.json())["id"]
        timings: dict[str, list[float]] = {k: [] for k in ("read", "read_fw", "write", "write_fw")}

        async def timed(key: str, method: str, url: str) -> None:
            started = time.perf_counter()
            async with http.request(method, url, json={} if method == "POST" else None) as r:
                await r.read()
                assert r.status == 200, (url, r.status)
            timings[key].append((time.perf_counter() - started) * 1000)

        for i in range(n):  # interleaved: both see the same machine
            await timed("read", "GET", f"{owner}/v1/agents/{agent}")
            await timed("read_fw", "GET", f"{other}/v1/agents/{agent}")
            action = "pause" if i % 2 == 0 else "resume"
            await timed("write", "POST", f"{owner}/v1/agents/{agent}/{action}")
            await timed("write_fw", "POST", f"{other}/v1/agents/{agent}/{action}")
    out: dict[str, Any] = {k: percentiles(v) for k, v in timings.items()}
    for kind in ("read", "write"):
        out[f"{kind}_ratio_p50"] = out[f"{kind}_fw"]["p50"] / out[kind]["p50"]
        out[f"{kind}_ratio_p99"] = out[f"{kind}_fw"]["p99"] / out[kind]["p99"]
    return out


def feed_leader(procs: list[ShardProcess]) -> int | None:
    """The index of the process leading the synthetic feed, if exactly one does."""
    leading = []
    for i, p in enumerate(procs):
        if p.proc is None or p.proc.poll() is not None:
            continue
        doc = p.health() or {}
        state = ((doc.get("components") or {}).get("feeds") or {}).get("synthetic") or {}
        if state and state.get("status") != "follower":
            leading.append(i)
    return leading[0] if len(leading) == 1 else None


def feed_takeovers(procs: list[ShardProcess], kills: int) -> dict[str, Any]:
    took: list[float] = []
    for _ in range(kills):
        deadline = time.monotonic() + 60
        leader = feed_leader(procs)
        while leader is None and time.monotonic() < deadline:
            time.sleep(0.02)
            leader = feed_leader(procs)
        assert leader is not None, "no feed leader"
        procs[leader].kill()
        killed = time.monotonic()
        new = None
        while new is None and time.monotonic() < deadline:
            time.sleep(0.01)
            new = feed_leader(procs)
        assert new is not None and new != leader, "no new feed leader"
        took.append((time.monotonic() - killed) * 1000)
        print(f"  feed leader {leader} killed: shard {new} leads after {took[-1]:.0f} ms")
        procs[leader].start_shard(SHARDS, leader)
        procs[leader].wait_ready()
    return percentiles(took)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument("--requests", type=int, default=2000, help="of each kind (2000)")
    parser.add_argument("--feed-kills", type=int, default=0, help="feed leader kills (0)")
    args = parser.parse_args()
    admin = "tdk_bench_" + secrets.token_urlsafe(16)
    with kept_on_failure("tradingd-forwarding-") as tmp, shared_store(tmp) as urls:
        env = process_env(admin, f"bench_fw_{os.getpid()}", urls, "warning")
        procs = [ShardProcess(f"s{i}", tmp, env, LEASE_MS) for i in range(SHARDS)]
        if args.feed_kills:
            for p in procs:
                config = p.dir / "bench.toml"
                config.write_text(config.read_text().replace(FEED_OFF, FEED_ON))
        try:
            for i, p in enumerate(procs):
                p.start_shard(SHARDS, i)
            for p in procs:
                p.wait_ready()
            figures = run_loop(forwarding(procs, admin, args.requests))
            if args.feed_kills:
                figures["feed_takeover_ms"] = feed_takeovers(procs, args.feed_kills)
        finally:
            for p in procs:
                p.stop()
    for kind in ("read", "write"):
        d, f = figures[kind], figures[f"{kind}_fw"]
        print(
            f"{kind:5s} direct p50 {d['p50']:.2f} p99 {d['p99']:.2f} p99.9 {d['p999']:.2f} ms | "
            f"forwarded p50 {f['p50']:.2f} p99 {f['p99']:.2f} p99.9 {f['p999']:.2f} ms | "
            f"ratio p50 {figures[f'{kind}_ratio_p50']:.2f} p99 {figures[f'{kind}_ratio_p99']:.2f}"
        )
    if "feed_takeover_ms" in figures:
        t = figures["feed_takeover_ms"]
        print(f"feed takeover (lease {LEASE_MS} ms): p50 {t['p50']:.0f} ms, max {t['max']:.0f} ms")
    write_json(
        args.json,
        figures | {"requests": args.requests, "load_avg": os.getloadavg(), "code": code_version()},
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
