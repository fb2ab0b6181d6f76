"""Signal-to-trade latency through the real daemon: from sending `POST /v1/signals` until the
WebSocket `trade` messages for it have arrived, with K = 1, 10, 100 paper agents all eligible.

One `tradingd run` process (memory store, paper venue, no feeds) is started on 127.0.0.1. For
each K, agents are added over REST until there are K; then, timed:
- sequential: one buy signal at a time, waiting for all K buy trades (a sell signal then closes
  the K positions, untimed, so every round starts from the same state);
- concurrent: 16 senders, each with its own token, doing the same at once.
The floor is a bare aiohttp server (its own uvloop process, an empty POST handler) measured
with the same client: the round trip no HTTP service on this machine can beat.

    .venv/bin/python benchmarks/signal_latency.py [--json PATH] [--rounds N] [--budget-s S]

Figures are microseconds. `p*_us` are for the LAST of the K trades of a signal (the signal is
fully executed); `first_trade` gives the first. Each phase is bounded by --rounds and
--budget-s, so the run ends in about two minutes at most."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from _stats import add_json_arg, percentiles, write_json
from tradingd.adapters.feeds.synthetic import demo_mint

REPO = Path(__file__).resolve().parents[1]
SOL = "So11111111111111111111111111111111111111112"
SENDERS = 16
WAIT_S = 10.0
CONFIG = """
[http]
rate_limit_per_s = 1000000.0
rate_limit_burst = 1000000
max_ticks_per_push = 1000
[ws]
queue_size = 1000000
[engine]
max_price_age_ms = 86400000
[feeds.synthetic]
enabled = false
"""
AGENT_CONFIG = {
    "sizing": {"mode": "fixed", "amount": "10000000"},  # 0.01 SOL a buy
    "limits": {"max_open_positions": 100, "max_positions_per_token": 1},
    "stop_loss": {"enabled": False},
}
FLOOR_SERVER = """
import asyncio, sys, uvloop
from aiohttp import web

async def handler(request):
    await request.read()
    return web.Response(status=202, body=b'{"ok":true}', content_type="application/json")

async def main():
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

uvloop.run(main())
"""


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(
    data_dir: Path, admin_key: str, log_level: str
) -> tuple[subprocess.Popen[bytes], str]:
    """At log level info the port is read back from the log (`--port 0`); quieter levels do
    not log it, so a free port is picked here."""
    config = data_dir / "bench.toml"
    config.write_text(CONFIG)
    log_path = data_dir / "tradingd.log"
    env = {
        **os.environ,
        "TRADINGD_STORE": "memory",
        "TRADINGD_ADMIN_KEY": admin_key,
        "TRADINGD_LOG_LEVEL": log_level,
    }
    port = 0 if log_level in ("debug", "info") else free_port()
    cmd = [
        sys.executable,
        "-m",
        "tradingd.adapters.app.cli",
        "run",
        "--config",
        str(config),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(data_dir),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                    return proc, f"http://127.0.0.1:{port}"
            except OSError:
                pass
        for line in log_path.read_text(errors="replace").splitlines():
            if '"control port open"' in line:
                return proc, f"http://127.0.0.1:{json.loads(line)['port']}"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"tradingd did not start: {log_path.read_text()[-2000:]}")


def start_floor_server() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measuring ------------------------------------------------------------------------------


class TradeWatch:
    """Reads `trade` messages off the WebSocket and wakes whoever waits for a token's trades."""

    def __init__(self) -> None:
        self.waiters: dict[tuple[str, str], tuple[int, asyncio.Future[list[int]], list[int]]] = {}

    def expect(self, token: str, side: str, count: int) -> asyncio.Future[list[int]]:
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.waiters[(token, side)] = (count, fut, [])
        return fut

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.perf_counter_ns()
            doc = json.loads(msg.data)
            if doc.get("type") != "trade":
                continue
            key = (doc["data"]["token"], doc["data"]["side"])
            entry = self.waiters.get(key)
            if entry is None:
                continue
            count, fut, arrivals = entry
            arrivals.append(now)
            if len(arrivals) == count and not fut.done():
                del self.waiters[key]
                fut.set_result(arrivals)


async def one_round(
    http: aiohttp.ClientSession, base: str, watch: TradeWatch, token: str, k: int
) -> tuple[int, int] | None:
    """(first, last) trade latency in ns of one buy signal, then an untimed sell to flatten."""
    bought = watch.expect(token, "buy", k)
    started = time.perf_counter_ns()
    async with http.post(base + "/v1/signals", json={"token": token, "strength": 5}) as resp:
        assert resp.status == 202, await resp.text()
    try:
        arrivals = await asyncio.wait_for(bought, WAIT_S)
    except TimeoutError:
        watch.waiters.pop((token, "buy"), None)
        return None
    sold = watch.expect(token, "sell", k)
    async with http.post(base + "/v1/signals", json={"token": token, "side": "sell"}) as resp:
        assert resp.status == 202, await resp.text()
    await asyncio.wait_for(sold, WAIT_S)
    return arrivals[0] - started, arrivals[-1] - started


async def sender_loop(
    http: aiohttp.ClientSession,
    base: str,
    watch: TradeWatch,
    token: str,
    k: int,
    rounds: int,
    deadline: float,
    out: dict[str, list[float]],
) -> None:
    for _ in range(rounds):
        if time.monotonic() > deadline:
            return
        result = await one_round(http, base, watch, token, k)
        if result is None:
            out["timeouts"].append(1)
            continue
        out["first"].append(result[0] / 1000)
        out["last"].append(result[1] / 1000)


async def floor(http: aiohttp.ClientSession, url: str, rounds: int) -> list[float]:
    body = json.dumps({"token": SOL, "strength": 5}).encode()
    for _ in range(200):  # warm the connection pool and both loops
        async with http.post(url, data=body) as resp:
            await resp.read()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        async with http.post(url, data=body) as resp:
            await resp.read()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def summary(out: dict[str, list[float]]) -> dict[str, Any]:
    """Percentiles, plus the median of the first and last tenth of the rounds: every round
    leaves K closed positions behind, so a drift shows per-signal cost growing with them."""
    samples = out["last"]
    last, first = percentiles(samples), percentiles(out["first"])
    tenth = max(1, len(samples) // 10)
    return {
        "p50_us": last["p50"],
        "p99_us": last["p99"],
        "p999_us": last["p999"],
        "count": last["count"],
        "timeouts": len(out["timeouts"]),
        "first_trade": {"p50_us": first["p50"], "p99_us": first["p99"]},
        "p50_us_first_tenth": percentiles(samples[:tenth])["p50"],
        "p50_us_last_tenth": percentiles(samples[-tenth:])["p50"],
    }


async def measure(args: argparse.Namespace, base: str, key: str, floor_url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    tokens = [demo_mint(f"bench-{i}") for i in range(SENDERS)]
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        floor_samples = await floor(http, floor_url, args.rounds)
        ticks = [{"token": SOL, "price_usd": 150.0}] + [
            {"token": t, "price_usd": 1.0} for t in tokens
        ]
        async with http.post(base + "/v1/prices", json={"ticks": ticks}) as resp:
            assert resp.status == 202, await resp.text()
        watch = TradeWatch()
        ws = await http.ws_connect(base + "/v1/ws", max_msg_size=0)
        await ws.send_json({"op": "subscribe", "channels": ["trades"]})
        reader = asyncio.create_task(watch.run(ws))
        agents: list[str] = []
        result: dict[str, Any] = {}
        for k in sorted(int(x) for x in args.agents.split(",")):
            while len(agents) < k:
                async with http.post(
                    base + "/v1/agents",
                    json={"name": f"bench{len(agents)}", "config": AGENT_CONFIG},
                ) as resp:
                    agent_id = (await resp.json())["id"]
                async with http.post(
                    base + f"/v1/agents/{agent_id}/deposits",
                    json={"asset": "SOL", "amount": "1000000000000"},
                ) as resp:
                    assert resp.status == 200
                agents.append(agent_id)
            for _ in range(20):  # warm-up rounds, not counted
                await one_round(http, base, watch, tokens[0], k)
            seq: dict[str, list[float]] = defaultdict(list)
            await sender_loop(
                http, base, watch, tokens[0], k, args.rounds, time.monotonic() + args.budget_s, seq
            )
            conc: dict[str, list[float]] = defaultdict(list)
            deadline = time.monotonic() + args.budget_s
            per_sender = max(1, args.rounds // SENDERS)
            await asyncio.gather(
                *(sender_loop(http, base, watch, t, k, per_sender, deadline, conc) for t in tokens)
            )
            result[str(k)] = {**summary(seq), "concurrent_16": summary(conc)}
            print_k(k, result[str(k)])
        reader.cancel()
        await ws.close()
    floor_stats = percentiles(floor_samples)
    return {
        "floor_rtt_us_p50": floor_stats["p50"],
        "floor_rtt_us_p99": floor_stats["p99"],
        "floor_rtt_us_p999": floor_stats["p999"],
        "agents": result,
    }


def print_k(k: int, r: dict[str, Any]) -> None:
    c = r["concurrent_16"]
    print(
        f"K={k:>3} sequential  p50 {r['p50_us']:8.0f} us  p99 {r['p99_us']:8.0f} us  "
        f"p999 {r['p999_us']:8.0f} us  (n={r['count']}, first trade p50 "
        f"{r['first_trade']['p50_us']:.0f} us; p50 first/last tenth "
        f"{r['p50_us_first_tenth']:.0f}/{r['p50_us_last_tenth']:.0f} us)",
        flush=True,
    )
    print(
        f"K={k:>3} 16 senders  p50 {c['p50_us']:8.0f} us  p99 {c['p99_us']:8.0f} us  "
        f"p999 {c['p999_us']:8.0f} us  (n={c['count']}, timeouts {c['timeouts']})",
        flush=True,
    )


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument("--rounds", type=int, default=1000, help="signals per phase (default 1000)")
    parser.add_argument("--budget-s", type=float, default=15.0, help="time cap per phase")
    parser.add_argument("--agents", default="1,10,100", help="agent counts K (default 1,10,100)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the daemon's TRADINGD_LOG_LEVEL (default info, as deployed)",
    )
    args = parser.parse_args()
    key = "tdk_bench_" + secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="tradingd-bench-") as tmp:
        daemon, base = start_daemon(Path(tmp), key, args.log_level)
        floor_proc, floor_url = start_floor_server()
        try:
            figures = run(measure(args, base, key, floor_url))
        finally:
            stop(floor_proc)
            stop(daemon)
    print(
        f"floor (bare aiohttp POST) p50 {figures['floor_rtt_us_p50']:.0f} us  "
        f"p99 {figures['floor_rtt_us_p99']:.0f} us"
    )
    one, hundred = figures["agents"].get("1"), figures["agents"].get("100")
    if one:
        limit = 2 * figures["floor_rtt_us_p99"]
        print(
            f"target 1 agent p99 <= 2x floor p99: {one['p99_us']:.0f} <= {limit:.0f} us -> "
            f"{one['p99_us'] <= limit}"
        )
    if hundred:
        print(
            f"target 100 agents p99 <= 10 ms: {hundred['p99_us']:.0f} us -> "
            f"{hundred['p99_us'] <= 10_000}"
        )
    figures["log_level"] = args.log_level
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
