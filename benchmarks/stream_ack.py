"""Write-behind acknowledgement: what acknowledging one batch of stream entries costs the
engine's event loop. tradingd sends one script call with the ids as msgpack runs
(stream_codec.ACK_SCRIPT: XACK, then XTRIM below the first unacknowledged entry, in Redis); the
replaced way is `XACK <every id>` + `XPENDING` in a pipeline, then `XTRIM`, each id formatted
and packed by redis-py in Python.

    .venv/bin/python benchmarks/stream_ack.py [--json PATH] [--entries 5000] [--rounds 10]

Each round builds a fresh stream of `--entries` entries delivered to a consumer group (the
write-behind's default batch is 5,000), then acknowledges it one way, then the other (the order
alternates). Per way: the calling process's CPU time (the part that holds the event loop) and
the wall time of the call, ms, p50 [min-max]; the stream must be empty afterwards either way.
Uses the embedded Redis in a temporary dir, or REDIS_URL."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402
from _redis_server import bench_redis_url  # noqa: E402
from _stats import add_json_arg, run_loop, write_json  # noqa: E402
from tradingd.adapters.store.records import SEQ_BITS, Entry, parse_stream_id, stream_id  # noqa: E402
from tradingd.adapters.store.stream_codec import ACK_SCRIPT, ack_args  # noqa: E402

GROUP = "pg-writer"
MS = 1_764_000_000_000


async def pipelined_ack(r: aioredis.Redis, stream: str, batch: list[Entry]) -> None:
    """The replaced way (writer.py before the script)."""
    pipe = r.pipeline(transaction=False)
    pipe.xack(stream, GROUP, *[e.stream_id for e in batch])
    pipe.xpending(stream, GROUP)
    _, pending = await pipe.execute()
    first = max(e.id for e in batch) + 1
    if pending and pending.get("pending"):
        first = min(first, parse_stream_id(pending["min"]))
    await r.xtrim(stream, minid=stream_id(first), approximate=False)


async def pending_stream(r: aioredis.Redis, stream: str, ms: int, n: int) -> list[Entry]:
    ids = [ms << SEQ_BITS | i for i in range(n)]
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.xadd(stream, {"e": b"{}"}, id=stream_id(i))
    await pipe.execute()
    await r.xgroup_create(stream, GROUP, id="0")
    await r.xreadgroup(GROUP, "c", {stream: ">"}, count=n)
    return [Entry(i, "OrderFilled", "k", "a", b"{}") for i in ids]


async def measure(redis_url: str, entries: int, rounds: int) -> dict[str, Any]:
    r = aioredis.Redis.from_url(redis_url)
    script = r.register_script(ACK_SCRIPT)
    samples: dict[str, list[tuple[float, float]]] = {"script": [], "pipelined": []}
    try:
        for k in range(rounds):
            ways = ("script", "pipelined") if k % 2 else ("pipelined", "script")
            for j, way in enumerate(ways):
                stream = f"{{tradingd-bench-ack}}:{k}:{way}"
                await r.delete(stream)
                batch = await pending_stream(r, stream, MS + 2 * k + j, entries)
                cpu, wall = time.process_time(), time.perf_counter()
                if way == "script":
                    await script(keys=[stream], args=ack_args(GROUP, batch))
                else:
                    await pipelined_ack(r, stream, batch)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                if await r.xlen(stream) != 0:
                    raise SystemExit(f"{way}: the stream was not emptied")
                await r.delete(stream)
                samples[way].append((cpu * 1e3, wall * 1e3))
    finally:
        await r.aclose()
    out: dict[str, Any] = {"entries": entries, "rounds": rounds}
    for way, v in samples.items():
        cpu, wall = [x[0] for x in v], [x[1] for x in v]
        out[way] = {
            "cpu_ms_p50": statistics.median(cpu),
            "cpu_ms_range": [min(cpu), max(cpu)],
            "wall_ms_p50": statistics.median(wall),
            "wall_ms_range": [min(wall), max(wall)],
        }
        print(
            f"{way:>9}: loop CPU p50 {statistics.median(cpu):6.2f} ms [{min(cpu):.2f}-{max(cpu):.2f}]"
            f"  wall p50 {statistics.median(wall):6.2f} ms [{min(wall):.2f}-{max(wall):.2f}]"
        )
    out["cpu_ratio_pipelined_over_script"] = (
        out["pipelined"]["cpu_ms_p50"] / out["script"]["cpu_ms_p50"]
    )
    print(f"loop CPU: pipelined / script = {out['cpu_ratio_pipelined_over_script']:.1f}x")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument("--entries", type=int, default=5000, help="entries a batch (default 5000)")
    parser.add_argument("--rounds", type=int, default=10, help="batches per way (default 10)")
    args = parser.parse_args()
    with bench_redis_url() as redis_url:
        figures = run_loop(measure(redis_url, args.entries, args.rounds))
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
