"""Redis write-through: what one flush costs the engine's event loop, the script tradingd uses
(one EVALSHA carrying the batch as one msgpack argument, stream_codec.WRITE_SCRIPT) against the
MULTI/EXEC pipeline it replaced (one XADD per entry plus HSET/HDEL per hash, packed and parsed
by redis-py), and against the floor: one PING round trip with the same client.

    .venv/bin/python benchmarks/write_through.py [--json PATH] [--rounds N]

Batches are real entries from a paper run (benchmarks/write_behind.py's event mix), at the sizes
of one flush after a 1-agent signal (10 entries), a 100-agent signal (500) and the exit cascade
(10,000 positions: 30,000 entries). For each size and way: wall time per flush (call to reply,
µs, p50/p99/p99.9) and the CPU time the calling process spent (µs, mean): the part that holds
the event loop. Both ways write the same keys; the hashes must come out identical or the
benchmark fails. Uses the embedded Redis in a temporary dir, or REDIS_URL."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _redis_server import bench_redis_url  # noqa: E402
from _stats import add_json_arg, percentiles, run_loop, write_json  # noqa: E402
from tradingd.adapters.store.records import Entry, EntryIds  # noqa: E402
from tradingd.adapters.store.redis import client  # noqa: E402
from tradingd.adapters.store.stream_codec import (  # noqa: E402
    HASH_WRITES,
    WRITE_SCRIPT,
    Keys,
    write_args,
    write_keys,
)
from write_behind import entries_of, event_mix  # noqa: E402

SIZES = (10, 500, 30_000)
WAYS = ("script", "multi_exec")


def queue_multi_exec(pipe: Any, entries: list[Entry], keys: Keys, seq: int) -> None:
    """The replaced way (tradingd before this benchmark), kept here as the baseline."""
    for e in entries:
        pipe.xadd(
            keys.stream, {"t": e.type, "k": e.key, "a": e.agent, "e": e.payload}, id=e.stream_id
        )
    ops: dict[str, dict[str, bytes | None]] = {}
    for e in entries:
        target = HASH_WRITES.get(e.type)
        if target is not None:
            name, write = target
            ops.setdefault(keys.hash(name), {})[e.key] = e.payload if write else None
    for key, fields in ops.items():
        sets = {f: v for f, v in fields.items() if v is not None}
        dels = [f for f, v in fields.items() if v is None]
        if sets:
            pipe.hset(key, mapping=sets)
        if dels:
            pipe.hdel(key, *dels)
    pipe.hset(keys.meta, mapping={"last_id": entries[-1].id, "seq": seq})


async def flush(r: Any, script: Any, way: str, entries: list[Entry], keys: Keys) -> None:
    if way == "script":
        await script(keys=write_keys(keys), args=write_args(entries, 7))
    else:
        pipe = r.pipeline(transaction=True)
        queue_multi_exec(pipe, entries, keys, 7)
        await pipe.execute()


async def hashes(r: Any, keys: Keys) -> dict[str, dict[bytes, bytes]]:
    names = sorted({name for name, _ in HASH_WRITES.values()} | {"meta"})
    return {name: await r.hgetall(keys.hash(name)) for name in names}


async def measure(redis_url: str, rounds: int, budget_s: float) -> dict[str, Any]:
    r = client(redis_url, timeout=30)
    script = r.register_script(WRITE_SCRIPT)
    mix = await event_mix(200)
    ids = EntryIds()
    out: dict[str, Any] = {}
    ping_samples = []
    for _ in range(rounds * 2):
        started = time.perf_counter_ns()
        await r.ping()
        ping_samples.append((time.perf_counter_ns() - started) / 1000)
    out["floor_ping_us"] = percentiles(ping_samples)
    for size in SIZES:
        n = max(5, min(rounds, int(300_000 / size)))  # bounded work per size
        per_way: dict[str, list[float]] = {w: [] for w in WAYS}
        cpu: dict[str, float] = dict.fromkeys(WAYS, 0.0)
        finals: dict[str, Any] = {}
        keys = {w: Keys(f"bench_wt_{w}_{size}_{os.getpid()}") for w in WAYS}
        deadline = time.monotonic() + budget_s
        for i in range(n):
            if time.monotonic() > deadline and i >= 5:
                break
            batch = entries_of(mix, size, ids)
            # the ways alternate round by round (order rotating): both see the same machine
            for way in WAYS if i % 2 == 0 else WAYS[::-1]:
                cpu_started = time.process_time_ns()
                started = time.perf_counter_ns()
                await flush(r, script, way, batch, keys[way])
                per_way[way].append((time.perf_counter_ns() - started) / 1000)
                cpu[way] += (time.process_time_ns() - cpu_started) / 1000
        for way in WAYS:
            finals[way] = await hashes(r, keys[way])
            await r.delete(keys[way].stream, *write_keys(keys[way])[1:])
        # The same entries in the same order give the same hashes whichever way wrote them.
        a, b = (
            {k: {f: v for f, v in h.items() if f != b"last_id"} for k, h in finals[w].items()}
            for w in WAYS
        )
        if a != b:
            raise SystemExit(f"size {size}: the two ways left different hashes")
        row: dict[str, Any] = {}
        for way in WAYS:
            samples = per_way[way]
            row[way] = {
                **{f"{p}_us": percentiles(samples)[p] for p in ("p50", "p99", "p999")},
                "cpu_us_mean": cpu[way] / len(samples),
                "count": len(samples),
            }
        row["p50_speedup"] = row["multi_exec"]["p50_us"] / row["script"]["p50_us"]
        row["cpu_ratio"] = row["multi_exec"]["cpu_us_mean"] / row["script"]["cpu_us_mean"]
        out[str(size)] = row
        print(
            f"{size:>6} entries  script p50 {row['script']['p50_us']:9.0f} us  p99 "
            f"{row['script']['p99_us']:9.0f} us  cpu {row['script']['cpu_us_mean']:9.0f} us | "
            f"multi/exec p50 {row['multi_exec']['p50_us']:9.0f} us  p99 "
            f"{row['multi_exec']['p99_us']:9.0f} us  cpu {row['multi_exec']['cpu_us_mean']:9.0f}"
            f" us | p50 x{row['p50_speedup']:.1f}, cpu x{row['cpu_ratio']:.1f}",
            flush=True,
        )
    await r.aclose()
    print(
        f"floor: PING p50 {out['floor_ping_us']['p50']:.0f} us p99 {out['floor_ping_us']['p99']:.0f} us"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument("--rounds", type=int, default=400, help="flushes per size and way")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time cap per size and way")
    args = parser.parse_args()
    with bench_redis_url() as redis_url:
        figures = run_loop(measure(redis_url, args.rounds, args.budget_s))
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
