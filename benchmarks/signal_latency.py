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
        [--agents 1,10,100] [--stores memory,persistent] [--baseline CHECKOUT] [--bystanders N]

--baseline runs a second memory daemon from another checkout (`git worktree add /tmp/base
<commit>`), its rounds interleaved with ours: a change's effect measured in one run, as a ratio.
--bystanders N first gives each daemon N more agents that trade another token only, so every
signal also passes N agents that skip it (a desk of agents on different tokens).

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
BASELINE = "memory@base"  # the --baseline checkout's daemon
BYSTANDER_TOKEN = demo_mint("bench-bystander")
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
    data_dir: Path,
    admin_key: str,
    log_level: str,
    store: str = "memory",
    code: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`store` "memory", or "persistent": the embedded Redis and Postgres under `data_dir`
    (REDIS_URL / DATABASE_URL when set). At log level info the port is read back from the log
    (`--port 0`); quieter levels do not log it, so a free port is picked here. `code`: another
    checkout whose `tradingd` the daemon runs instead of this one (`--baseline`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "bench.toml"
    config.write_text(CONFIG)
    log_path = data_dir / "tradingd.log"
    env = {k: v for k, v in os.environ.items() if k != "TRADINGD_STORE"}
    env |= {"TRADINGD_ADMIN_KEY": admin_key, "TRADINGD_LOG_LEVEL": log_level}
    if store == "memory":
        env["TRADINGD_STORE"] = "memory"
    if code is not None:
        shim = str(import_shim(code, data_dir / "shim"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (shim, env.get("PYTHONPATH")) if p)
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
        proc = subprocess.Popen(
            cmd, cwd=code or REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60  # the embedded servers' first start takes a while
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


def check_checkout(checkout: Path) -> None:
    """Exit with a message unless `checkout` is a tradingd checkout (before any daemon starts)."""
    if not checkout.is_dir():
        raise SystemExit(f"--baseline {checkout}: no such directory")
    for part in ("engine", "adapters"):
        if not (checkout / part / "__init__.py").is_file():
            raise SystemExit(f"--baseline {checkout}: not a tradingd checkout (no {part}/)")


def import_shim(checkout: Path, shim: Path) -> Path:
    """A directory that, first on PYTHONPATH, makes `tradingd.engine` and `tradingd.adapters`
    the checkout's folders (the editable install's finder comes after the path entries)."""
    check_checkout(checkout)
    for part in ("engine", "adapters"):
        link = shim / "tradingd" / part
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(checkout.resolve() / part)
    return shim


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
    http: aiohttp.ClientSession,
    base: str,
    watch: TradeWatch,
    token: str,
    k: int,
    acks: list[float] | None = None,
) -> tuple[int, int] | None:
    """(first, last) trade latency in ns of one buy signal, then an untimed sell to flatten;
    the 202 (acknowledged: durable in Redis with the persistent store) time goes to `acks`."""
    bought = watch.expect(token, "buy", k)
    started = time.perf_counter_ns()
    async with http.post(base + "/v1/signals", json={"token": token, "strength": 5}) as resp:
        assert resp.status == 202, await resp.text()
    if acks is not None:
        acks.append((time.perf_counter_ns() - started) / 1000)
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
        "ack_202": {p + "_us": percentiles(out["ack"])[p] for p in ("p50", "p99", "p999")},
        "p50_us_first_tenth": percentiles(samples[:tenth])["p50"],
        "p50_us_last_tenth": percentiles(samples[-tenth:])["p50"],
    }


class Target:
    """One daemon under test: its URL, its agents and the WebSocket that reads its trades."""

    def __init__(self, store: str, base: str) -> None:
        self.store = store
        self.base = base
        self.agents: list[str] = []
        self.watch = TradeWatch()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, http: aiohttp.ClientSession, tokens: list[str]) -> None:
        ticks = [{"token": SOL, "price_usd": 150.0}] + [
            {"token": t, "price_usd": 1.0} for t in tokens
        ]
        async with http.post(self.base + "/v1/prices", json={"ticks": ticks}) as resp:
            assert resp.status == 202, await resp.text()
        self.ws = await http.ws_connect(self.base + "/v1/ws", max_msg_size=0)
        await self.ws.send_json({"op": "subscribe", "channels": ["trades"]})
        self.reader = asyncio.create_task(self.watch.run(self.ws))

    async def add_bystanders(self, http: aiohttp.ClientSession, n: int) -> None:
        """`n` agents (no money) whose filter allows only BYSTANDER_TOKEN: each skips every
        signal measured."""
        config = {"signals": {"token_filter": "allow", "tokens": [BYSTANDER_TOKEN]}}
        for i in range(n):
            body = {"name": f"bystander{i}", "config": config}
            async with http.post(self.base + "/v1/agents", json=body) as resp:
                assert resp.status == 201, await resp.text()

    async def grow(self, http: aiohttp.ClientSession, k: int) -> None:
        while len(self.agents) < k:
            async with http.post(
                self.base + "/v1/agents",
                json={"name": f"bench{len(self.agents)}", "config": AGENT_CONFIG},
            ) as resp:
                agent_id = (await resp.json())["id"]
            async with http.post(
                self.base + f"/v1/agents/{agent_id}/deposits",
                json={"asset": "SOL", "amount": "1000000000000"},
            ) as resp:
                assert resp.status == 200
            self.agents.append(agent_id)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


async def floor_round(http: aiohttp.ClientSession, url: str, body: bytes) -> float:
    started = time.perf_counter_ns()
    async with http.post(url, data=body) as resp:
        await resp.read()
    return (time.perf_counter_ns() - started) / 1000


async def interleaved(
    http: aiohttp.ClientSession,
    targets: list[Target],
    floor_url: str,
    token: str,
    k: int,
    rounds: int,
    deadline: float,
) -> tuple[list[float], dict[str, dict[str, list[float]]]]:
    """Sequential rounds, one floor POST and one signal round per daemon each time, in a
    rotating order: every series sees the same machine at the same moments, so their ratios
    are measured in one run even on a noisy box."""
    body = json.dumps({"token": SOL, "strength": 5}).encode()
    floor_samples: list[float] = []
    out: dict[str, dict[str, list[float]]] = {t.store: defaultdict(list) for t in targets}
    for i in range(rounds):
        if time.monotonic() > deadline:
            break
        steps: list[Target | None] = [None, *targets]
        shift = i % len(steps)
        for step in steps[shift:] + steps[:shift]:
            if step is None:
                floor_samples.append(await floor_round(http, floor_url, body))
                continue
            result = await one_round(http, step.base, step.watch, token, k, out[step.store]["ack"])
            if result is None:
                out[step.store]["timeouts"].append(1)
                continue
            out[step.store]["first"].append(result[0] / 1000)
            out[step.store]["last"].append(result[1] / 1000)
    return floor_samples, out


async def measure(
    args: argparse.Namespace, daemons: dict[str, str], key: str, floor_url: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    tokens = [demo_mint(f"bench-{i}") for i in range(SENDERS)]
    connector = aiohttp.TCPConnector(limit=64)
    body = json.dumps({"token": SOL, "strength": 5}).encode()
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        for _ in range(200):  # warm the connection pool and both loops
            await floor_round(http, floor_url, body)
        targets = [Target(store, base) for store, base in daemons.items()]
        for t in targets:
            await t.open(http, tokens)
            await t.add_bystanders(http, args.bystanders)
        result: dict[str, Any] = {t.store: {} for t in targets}
        floors: dict[str, Any] = {}
        for k in sorted(int(x) for x in args.agents.split(",")):
            for t in targets:
                await t.grow(http, k)
                for _ in range(20):  # warm-up rounds, not counted
                    await one_round(http, t.base, t.watch, tokens[0], k)
            deadline = time.monotonic() + args.budget_s * len(targets)
            floor_samples, seq = await interleaved(
                http, targets, floor_url, tokens[0], k, args.rounds, deadline
            )
            floor_stats = percentiles(floor_samples)
            floors[str(k)] = {f"{p}_us": floor_stats[p] for p in ("p50", "p99", "p999")}
            for t in targets:
                r = summary(seq[t.store])
                if args.senders:
                    conc: dict[str, list[float]] = defaultdict(list)
                    stop_at = time.monotonic() + args.budget_s
                    per_sender = max(1, args.rounds // SENDERS)
                    await asyncio.gather(
                        *(
                            sender_loop(http, t.base, t.watch, tok, k, per_sender, stop_at, conc)
                            for tok in tokens
                        )
                    )
                    r["concurrent_16"] = summary(conc)
                result[t.store][str(k)] = r
                print_k(t.store, k, r, floors[str(k)])
        for t in targets:
            await t.close()
    return {"floor": floors, "stores": result, "bystanders": args.bystanders}


def print_k(store: str, k: int, r: dict[str, Any], floor_k: dict[str, float]) -> None:
    print(
        f"{store:>10} K={k:>3} sequential  p50 {r['p50_us']:8.0f} us  p99 {r['p99_us']:8.0f} us  "
        f"p999 {r['p999_us']:8.0f} us  (n={r['count']}, first trade p50 "
        f"{r['first_trade']['p50_us']:.0f} us; p50 first/last tenth "
        f"{r['p50_us_first_tenth']:.0f}/{r['p50_us_last_tenth']:.0f} us; same-run floor p50 "
        f"{floor_k['p50_us']:.0f} p99 {floor_k['p99_us']:.0f} us)",
        flush=True,
    )
    c = r.get("concurrent_16")
    if c:
        print(
            f"{store:>10} K={k:>3} 16 senders  p50 {c['p50_us']:8.0f} us  p99 {c['p99_us']:8.0f} "
            f"us  p999 {c['p999_us']:8.0f} us  (n={c['count']}, timeouts {c['timeouts']})",
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
        "--stores",
        default="memory,persistent",
        help="daemons measured side by side (default memory,persistent)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. `git worktree add /tmp/base HEAD~1`) run as a memory "
        "daemon `memory@base`, its rounds interleaved with the others and its p50/p99 compared "
        "with the memory daemon's (default none)",
    )
    parser.add_argument(
        "--bystanders",
        type=int,
        default=0,
        help="agents added first that trade another token, so each signal skips them (default 0)",
    )
    parser.add_argument(
        "--senders",
        action="store_true",
        help="also time 16 concurrent senders per K and store (default off)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the daemon's TRADINGD_LOG_LEVEL (default info, as deployed)",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        check_checkout(args.baseline)
    key = "tdk_bench_" + secrets.token_urlsafe(16)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="tradingd-bench-") as tmp:
        procs: list[subprocess.Popen[bytes]] = []
        daemons: dict[str, str] = {}
        try:
            for store in stores:
                proc, base = start_daemon(Path(tmp) / store, key, args.log_level, store)
                procs.append(proc)
                daemons[store] = base
            if args.baseline is not None:
                proc, base = start_daemon(
                    Path(tmp) / "base", key, args.log_level, "memory", args.baseline
                )
                procs.append(proc)
                daemons[BASELINE] = base
            floor_proc, floor_url = start_floor_server()
            procs.append(floor_proc)
            figures = run(measure(args, daemons, key, floor_url))
        finally:
            for proc in reversed(procs):
                stop(proc)
    report(figures)
    figures["log_level"] = args.log_level
    write_json(args.json, figures)
    return 0


def report(figures: dict[str, Any]) -> None:
    """The issue's targets, each from figures of one run."""
    floor, stores = figures["floor"], figures["stores"]
    memory, persistent = stores.get("memory", {}), stores.get("persistent", {})
    ratios: dict[str, Any] = {}
    if "1" in memory:
        limit = 2 * floor["1"]["p99_us"]
        ratios["memory_k1_p99_over_floor_p99"] = memory["1"]["p99_us"] / floor["1"]["p99_us"]
        print(
            f"target 1 agent p99 <= 2x floor p99: {memory['1']['p99_us']:.0f} <= {limit:.0f} us"
            f" -> {memory['1']['p99_us'] <= limit}"
        )
    for k in sorted(set(memory) & set(persistent), key=int):
        ratio = persistent[k]["p99_us"] / memory[k]["p99_us"]
        ratios[f"persistent_over_memory_p99_k{k}"] = ratio
        print(f"K={k}: persistent/memory p99 {ratio:.2f} (target <= 1.2 -> {ratio <= 1.2})")
    base = stores.get(BASELINE, {})
    for k in sorted(set(memory) & set(base), key=int):
        for p in ("p50", "p99"):
            ratio = memory[k][f"{p}_us"] / base[k][f"{p}_us"]
            ratios[f"memory_over_baseline_{p}_k{k}"] = ratio
            print(f"K={k}: memory / baseline {p} {ratio:.3f}")
    for store, by_k in stores.items():
        if "100" in by_k:
            p99 = by_k["100"]["p99_us"]
            print(f"target 100 agents p99 <= 10 ms ({store}): {p99:.0f} us -> {p99 <= 10_000}")
    figures["ratios"] = ratios


if __name__ == "__main__":
    sys.exit(main())
