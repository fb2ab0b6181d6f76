"""Responsiveness probe for benchmarks/exit_cascade.py, run as its own process so its client does
not share the benchmark's event loop: on a fixed schedule it sends `GET /health/live` and a
`POST /v1/signals` for the probe token (alternately buy and sell, so the probe agent stays flat),
every HEALTH_MS and SIGNAL_MS (0: none), until stdin says `quiet` (signals stop, health goes on) and then
`stop`. Then it writes every sample as JSON to the path given and exits.

    python benchmarks/_cascade_probe.py BASE_URL TOKEN HEALTH_MS SIGNAL_MS OUT_PATH  ($PROBE_KEY)

A request is sent when its time comes, whether or not earlier ones answered (open loop), and its
latency is measured from its scheduled time: a stalled daemon shows as the full stall, not as one
slow request followed by a quiet gap (no coordinated omission). Samples are
[kind, scheduled wall ns, latency ns, HTTP status, send delay ns] (status 0: transport error or
timeout; send delay: how late this process started the request, its own CPU starvation)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time

import aiohttp
from _stats import run_loop

MAX_OUTSTANDING = 2000  # bound: a stalled daemon must not make the probe open sockets forever
REQUEST_TIMEOUT_S = 30.0
MAX_RUN_S = 600.0


async def probe(
    base: str, token: str, health_ms: float, signal_ms: float, out_path: str, key: str
) -> None:
    samples: list[list[object]] = []
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    quiet, stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def command() -> None:
        line = sys.stdin.readline().strip()
        if line == "quiet":
            quiet.set()
        else:  # "stop" or end of input
            quiet.set()
            stop.set()
            loop.remove_reader(sys.stdin.fileno())

    loop.add_reader(sys.stdin.fileno(), command)
    outstanding: set[asyncio.Task[None]] = set()
    side = ["buy"]

    async def one(kind: str, scheduled: int) -> None:
        status = 0
        started = time.time_ns()  # late vs scheduled: this process, not the daemon, was slow
        try:
            if kind == "health":
                async with http.get(base + "/health/live") as resp:
                    await resp.read()
                    status = resp.status
            else:
                body = {"token": token, "side": side[0], "strength": 5}
                side[0] = "sell" if side[0] == "buy" else "buy"
                async with http.post(base + "/v1/signals", json=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        samples.append([kind, scheduled, time.time_ns() - scheduled, status, started - scheduled])

    async def schedule(kind: str, interval_ms: float, until: asyncio.Event) -> None:
        interval_ns = int(interval_ms * 1_000_000)
        scheduled = time.time_ns()
        deadline = time.monotonic() + MAX_RUN_S
        while not until.is_set() and time.monotonic() < deadline:
            scheduled += interval_ns
            wait = (scheduled - time.time_ns()) / 1e9
            if wait > 0:
                with contextlib.suppress(TimeoutError):  # woken early by `until`
                    await asyncio.wait_for(until.wait(), wait)
                if until.is_set():
                    break
            if len(outstanding) >= MAX_OUTSTANDING:
                samples.append([kind, scheduled, -1, -1])  # not sent: too many outstanding
                continue
            task = asyncio.create_task(one(kind, scheduled))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        print("ready", flush=True)
        schedules = [schedule("health", health_ms, stop)]
        if signal_ms > 0:  # 0: no signals
            schedules.append(schedule("signal", signal_ms, quiet))
        await asyncio.gather(*schedules)
        if outstanding:
            await asyncio.wait(outstanding, timeout=REQUEST_TIMEOUT_S)
    with open(out_path, "w") as f:
        json.dump(samples, f)


def main() -> int:
    base, token, health_ms, signal_ms, out_path = sys.argv[1:6]
    key = os.environ["PROBE_KEY"]
    run_loop(probe(base, token, float(health_ms), float(signal_ms), out_path, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
