"""A flood of distinct mints against the real `tradingd run` process (embedded Redis and
Postgres): N ticks, each for a new token, pushed in batches of 500 with one key. Measures the
daemon's RSS and the Redis append-only file before and after, the accepted / rejected counts,
`/health/live` latency right after, and how many prices the daemon holds. The price book is
bounded by `[prices] max_tokens` (default 20,000): RSS and the AOF must stop growing with N.

    .venv/bin/python benchmarks/price_flood.py [--json PATH] [--tokens 400000] [--source DIR]

Bounded: start-up 60 s, each push 30 s, the whole flood stops after 300 s."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import base58
from _stats import add_json_arg, percentiles, write_json
from slowloris import rss_mib, start_daemon

REPO = Path(__file__).resolve().parents[1]
BATCH = 500  # ticks per push: about 56 KiB, under the default 64 KiB body limit
PUSH_TIMEOUT_S = 30.0
FLOOD_BUDGET_S = 300.0


def aof_mib(data_dir: Path) -> float:
    total = sum(p.stat().st_size for p in data_dir.rglob("*.aof*") if p.is_file())
    return total / 2**20


def mint(i: int) -> str:
    return base58.b58encode(hashlib.sha256(b"flood-%d" % i).digest()).decode()


async def flood(port: int, key: str, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = f"http://127.0.0.1:{port}/v1/prices"
    accepted = rejected = pushed = 0
    reasons: dict[str, int] = {}
    push_ms: list[float] = []
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=PUSH_TIMEOUT_S)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        for start in range(0, n, BATCH):
            if time.monotonic() - started > FLOOD_BUDGET_S:
                break
            now = int(time.time() * 1000)
            ticks = [
                {"token": mint(i), "price_usd": 1.0, "ts": now, "decimals": 6}
                for i in range(start, min(n, start + BATCH))
            ]
            t0 = time.perf_counter()
            async with http.post(url, data=json.dumps({"ticks": ticks})) as resp:
                doc = await resp.json()
                if resp.status != 202:
                    raise RuntimeError(f"push answered {resp.status}: {doc}")
            push_ms.append((time.perf_counter() - t0) * 1000)
            pushed += len(ticks)
            accepted += doc.get("accepted", 0)
            rejected += doc.get("rejected", 0)
            for reason, count in doc.get("reasons", {}).items():
                reasons[reason] = reasons.get(reason, 0) + count
        live_ms = []
        for _ in range(20):
            t0 = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{port}/health/live") as resp:
                await resp.read()
            live_ms.append((time.perf_counter() - t0) * 1000)
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            metrics = await resp.text()
    return {
        "pushed": pushed,
        "accepted": accepted,
        "rejected": rejected,
        "reasons": reasons,
        "seconds": round(time.monotonic() - started, 1),
        "push_ms": percentiles(push_ms),
        "health_live_ms": percentiles(live_ms),
        "metrics_bytes": len(metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--source", type=Path, default=REPO, help="checkout to run the daemon from")
    add_json_arg(parser)
    args = parser.parse_args()
    key = "tdk_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="price-flood-") as tmp:
        data_dir = Path(tmp) / "var"
        proc, port, _ = start_daemon(
            args.source, data_dir, key, embedded_store=True, start_timeout_s=60
        )
        try:
            time.sleep(1.0)
            before = {"rss_mib": rss_mib(proc.pid), "aof_mib": aof_mib(data_dir)}
            result = asyncio.run(flood(port, key, args.tokens))
            time.sleep(1.5)  # last prices are written through within 100 ms; AOF fsync each 1 s
            after = {"rss_mib": rss_mib(proc.pid), "aof_mib": aof_mib(data_dir)}
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    out = {"tokens": args.tokens, "before": before, "after": after, **result}
    print(
        f"{result['pushed']} distinct mints in {result['seconds']} s: accepted "
        f"{result['accepted']}, rejected {result['rejected']} {result['reasons']}\n"
        f"RSS {before['rss_mib']:.0f} -> {after['rss_mib']:.0f} MiB; Redis AOF "
        f"{before['aof_mib']:.1f} -> {after['aof_mib']:.1f} MiB\n"
        f"push of {BATCH} ticks p50 {result['push_ms']['p50']:.1f} ms p99 "
        f"{result['push_ms']['p99']:.1f} ms; /health/live after p50 "
        f"{result['health_live_ms']['p50']:.1f} ms"
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
