"""Hot-standby takeover: how long after the active process is killed does its standby trade?

Two `tradingd run` processes share one Redis and one PostgreSQL (embedded servers started here,
or REDIS_URL / DATABASE_URL when set) and one namespace: one `--role active`, one `--role
standby`, each with its own data dir and control port. Set-up, untimed: --agents paper agents
with a stop-loss far below the price (-50 %), --signals buy signals giving agents x signals open
positions, drained to Postgres. Then, --kills times:

- t0: `kill -9` the active process;
- `ready`: the standby's `GET /health/ready` answers 200 (it took the lease, recovered from
  Postgres and the newer Redis state, and opened intake);
- `intake`: a buy signal for another token is accepted (202) by it;
- checked: Redis holds every open position, none twice, and the signal bought once;
- the killed process is started again as `--role standby` (untimed), so the roles alternate.

The daemon's own figures come from its `/health` `cluster` block: `takeover_seconds` (lease
taken -> intake open, the recovery) — the rest of `ready` is the lease running out (at most
`lease_ms` after the last renewal) and the standby's poll.

    .venv/bin/python benchmarks/cluster.py [--json PATH] [--kills N] [--agents N]
        [--signals N] [--lease-ms MS] [--backlog]

`--throughput` measures agent shards instead: for 1 (a plain process), 2 and 3 shards
(`--shard-counts`), one `tradingd run --shards N --shard i` per shard on the same store,
`--tp-agents` paper agents created round-robin over the shards (each shard owns the agents
created through it), then `--senders` clients post buy and sell signals for one token, round-robin
over the shards, for `--tp-seconds`: every signal reaches every agent (each shard trades its
own), and its `202` comes once every shard applied it. Reported: signals/s end to end, agent
trades/s, the 202's p50/p99, and the CPU seconds each process used.

    .venv/bin/python benchmarks/cluster.py --throughput [--json PATH] [--shard-counts 1,2,3]
        [--tp-agents N] [--senders N] [--tp-seconds S]

Times are milliseconds. The JSON records the load average and the code measured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from _stats import add_json_arg, percentiles, run_loop, write_json
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.store.embedded import EmbeddedServers

REPO = Path(__file__).resolve().parents[1]
SOL = "So11111111111111111111111111111111111111112"
TOKEN = demo_mint("cluster-T")
PROBE_TOKEN = demo_mint("cluster-probe-U")
WAIT_S = 120.0  # bound of every wait for a process or the store
POLL_S = 0.005  # how often the takeover is polled
SETUP_CONCURRENCY = 8
DRAINED_BELOW = 100  # stream entries left when the write-behind counts as drained
CONFIG = """
[http]
rate_limit_per_s = 1000000.0
rate_limit_burst = 1000000
[engine]
max_price_age_ms = 86400000
[feeds.synthetic]
enabled = false
[cluster]
lease_ms = {lease_ms}
"""


def agent_spec(i: int, signals: int) -> dict[str, Any]:
    return {
        "name": f"standby{i}",
        "config": {
            "signals": {"token_filter": "allow", "tokens": [TOKEN]},
            "sizing": {"mode": "fixed", "amount": "10000000"},  # 0.01 SOL a buy
            "limits": {"max_open_positions": signals, "max_positions_per_token": signals},
            "stop_loss": {"enabled": True, "mode": "fixed", "default_pct": -50.0},
        },
    }


PROBE_AGENT = {
    "name": "probe",
    "config": {
        "signals": {"token_filter": "allow", "tokens": [PROBE_TOKEN]},
        "sizing": {"mode": "fixed", "amount": "1000000"},
        "limits": {"max_open_positions": 1000, "max_positions_per_token": 1000},
        "stop_loss": {"enabled": False},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """One `tradingd run --role ROLE` with its own data dir and port."""

    def __init__(self, name: str, tmp: Path, env: dict[str, str], lease_ms: int) -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "bench.toml").write_text(CONFIG.format(lease_ms=lease_ms))
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, role: str) -> None:
        cmd = [sys.executable, "-m", "tradingd.adapters.app.cli", "run", "--role", role]
        cmd += ["--config", str(self.dir / "bench.toml"), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.dir / "data")]
        with open(self.dir / "tradingd.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def health(self) -> dict[str, Any] | None:
        request = urllib.request.Request(
            self.base + "/health",
            headers={"Authorization": f"Bearer {self.env['TRADINGD_ADMIN_KEY']}"},
        )
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(request, timeout=2) as r:
                doc: dict[str, Any] = json.loads(r.read())
                return doc
        return None

    def wait_role(self, role: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            doc = self.health()
            if doc is not None and (doc.get("cluster") or {}).get("role") == role:
                return doc
            time.sleep(0.02)
        raise SystemExit(f"{self.name} never became {role}: {self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        return (self.dir / "tradingd.log").read_text(errors="replace")[-2000:]


class Api:
    def __init__(self, http: aiohttp.ClientSession, admin: str) -> None:
        self.http, self.admin = http, admin
        self.feed = self.signals = ""

    async def call(self, base: str, method: str, path: str, key: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.request(method, base + path, json=body, headers=headers) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path} -> {r.status}: {text[:500]}")
            return json.loads(text)


async def set_up(api: Api, base: str, args: argparse.Namespace) -> None:
    # API keys live in each process's data dir (docs/cluster.md): the admin key both are given
    # (TRADINGD_ADMIN_KEY) is the one every process knows, so it sends signals and prices too.
    api.feed = api.signals = api.admin
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def add(spec: dict[str, Any]) -> None:
        async with gate:
            agent = await api.call(base, "POST", "/v1/agents", api.admin, spec)
            deposit = {"asset": "SOL", "amount": "1000000000000"}
            await api.call(base, "POST", f"/v1/agents/{agent['id']}/deposits", api.admin, deposit)

    started = time.monotonic()
    await asyncio.gather(
        add(PROBE_AGENT), *(add(agent_spec(i, args.signals)) for i in range(args.agents))
    )
    ticks = {
        "ticks": [
            {"token": t, "price_usd": p}
            for t, p in ((SOL, 150.0), (TOKEN, 1.0), (PROBE_TOKEN, 1.0))
        ]
    }
    await api.call(base, "POST", "/v1/prices", api.feed, ticks)
    for _ in range(args.signals):
        doc = await api.call(base, "POST", "/v1/signals", api.signals, {"token": TOKEN})
        if doc["agents_matched"] != args.agents:
            raise SystemExit(f"a buy matched {doc['agents_matched']} agents, not {args.agents}")
    print(
        f"set-up: {args.agents} agents, {args.agents * args.signals} positions in "
        f"{time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )


async def open_positions(r: aioredis.Redis, ns: str) -> tuple[int, int]:
    """(open positions of T, open positions of the probe token) in the Redis read model."""
    counts = {TOKEN: 0, PROBE_TOKEN: 0}
    async for _, raw in r.hscan_iter(f"{{{ns}}}:positions", count=2000):
        doc = json.loads(raw)  # the position's last PositionOpened/Changed entry
        token = doc.get("position", doc).get("token")
        if token in counts:
            counts[token] += 1
    return counts[TOKEN], counts[PROBE_TOKEN]


async def drained(r: aioredis.Redis, ns: str) -> None:
    """Wait until the write-behind has moved the stream into Postgres (the writer trims what it
    committed), so each takeover recovers from the steady state, not a set-up backlog."""
    deadline = time.monotonic() + WAIT_S
    while await r.xlen(f"{{{ns}}}:events") > DRAINED_BELOW:
        if time.monotonic() > deadline:
            raise SystemExit("the write-behind did not drain")
        await asyncio.sleep(0.1)


async def one_takeover(
    api: Api, active: Process, standby: Process, r: aioredis.Redis, ns: str, n: int
) -> dict[str, Any]:
    t0 = time.monotonic()
    active.kill()
    ready = intake = None
    deadline = t0 + WAIT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            async with api.http.get(standby.base + "/health/ready") as resp:
                if resp.status == 200:
                    ready = (time.monotonic() - t0) * 1000
                    break
        await asyncio.sleep(POLL_S)
    if ready is None:
        raise SystemExit(f"takeover {n}: the standby never became ready: {standby.log_tail()}")
    body = {"token": PROBE_TOKEN, "id": f"probe-{n}-{secrets.token_hex(4)}"}
    doc = await api.call(standby.base, "POST", "/v1/signals", api.signals, body)
    intake = (time.monotonic() - t0) * 1000
    if doc["agents_matched"] != 1:
        raise SystemExit(f"takeover {n}: the probe signal matched {doc['agents_matched']} agents")
    health = standby.health() or {}
    cluster = health.get("cluster") or {}
    return {
        "ready_ms": ready,
        "intake_ms": intake,
        "recovery_ms": (cluster.get("takeover_seconds") or 0.0) * 1000,
        "fencing_token": cluster.get("fencing_token"),
    }


async def measure(
    args: argparse.Namespace, procs: list[Process], admin: str, ns: str, redis_url: str
) -> dict[str, Any]:
    r = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    results: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=timeout) as http:
        api = Api(http, admin)
        active, standby = procs
        await set_up(api, active.base, args)
        positions = args.agents * args.signals
        for n in range(args.kills):
            if not args.backlog:
                await drained(r, ns)
            result = await one_takeover(api, active, standby, r, ns, n)
            held, probes = await open_positions(r, ns)
            if held != positions or probes != n + 1:
                raise SystemExit(
                    f"takeover {n}: Redis holds {held} open positions of T (expected "
                    f"{positions}) and {probes} of the probe token (expected {n + 1})"
                )
            results.append(result)
            print(
                f"takeover {n + 1}: ready {result['ready_ms']:.0f} ms, intake "
                f"{result['intake_ms']:.0f} ms (recovery {result['recovery_ms']:.0f} ms, "
                f"token {result['fencing_token']})",
                file=sys.stderr,
            )
            active.start("standby")  # the killed one comes back as the standby
            await asyncio.to_thread(active.wait_role, "standby")
            active, standby = standby, active
    await r.aclose()
    summary = {
        key: percentiles([x[key] for x in results])
        for key in ("ready_ms", "intake_ms", "recovery_ms")
    }
    return {"takeovers": results, "summary": summary}


@contextlib.contextmanager
def shared_store(tmp: Path) -> Iterator[tuple[str, str]]:
    """(redis url, postgres url) every process shares: REDIS_URL / DATABASE_URL when both are
    set, else embedded servers under `tmp`, stopped at the end."""
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    if redis_url and database_url:
        yield redis_url, database_url
        return
    servers = EmbeddedServers(tmp / "store")
    try:
        yield servers.start()
    finally:
        servers.stop()


def process_env(admin: str, ns: str, urls: tuple[str, str], log_level: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRADINGD_STORE"}
    return env | {
        "TRADINGD_ADMIN_KEY": admin,
        "TRADINGD_LOG_LEVEL": log_level,
        "TRADINGD_STORE_NAMESPACE": ns,
        "REDIS_URL": urls[0],
        "DATABASE_URL": urls[1],
    }


@contextlib.contextmanager
def kept_on_failure(prefix: str) -> Iterator[Path]:
    """A temp dir for the run, removed after a success, kept (and named) after a failure."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    except BaseException:
        print(f"logs kept in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def code_version() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument("--kills", type=int, default=20, help="takeovers measured (default 20)")
    parser.add_argument("--agents", type=int, default=1000, help="paper agents (default 1000)")
    parser.add_argument("--signals", type=int, default=10, help="buys per agent (default 10)")
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="kill without waiting for the write-behind: the standby also replays the backlog",
    )
    parser.add_argument("--lease-ms", type=int, default=1000, help="[cluster] lease_ms (1000)")
    parser.add_argument("--throughput", action="store_true", help="measure agent shards")
    parser.add_argument("--shard-counts", default="1,2,3", help="shard counts (default 1,2,3)")
    parser.add_argument("--tp-agents", type=int, default=300, help="agents (default 300)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--tp-seconds", type=float, default=20.0, help="load per count (20 s)")
    args = parser.parse_args()
    if args.throughput:
        return throughput_main(args)
    admin = "tdk_bench_" + secrets.token_urlsafe(16)
    ns = f"bench_cluster_{os.getpid()}"
    with kept_on_failure("tradingd-cluster-") as tmp, shared_store(tmp) as urls:
        env = process_env(admin, ns, urls, "info")
        procs = [Process(name, tmp, env, args.lease_ms) for name in ("a", "b")]
        try:
            procs[0].start("active")
            procs[0].wait_role("active")
            procs[1].start("standby")
            procs[1].wait_role("standby")
            figures = run_loop(measure(args, procs, admin, ns, urls[0]))
        finally:
            for p in procs:
                p.stop()
    figures |= {
        "agents": args.agents,
        "positions": args.agents * args.signals,
        "lease_ms": args.lease_ms,
        "load_avg": os.getloadavg(),
        "code": code_version(),
    }
    s = figures["summary"]
    print(
        f"takeover over {args.kills} kills, lease {args.lease_ms} ms, {args.agents} agents, "
        f"{args.agents * args.signals} positions:"
    )
    for key in ("ready_ms", "intake_ms", "recovery_ms"):
        print(
            f"  {key:12s} p50 {s[key]['p50']:8.0f}  p99 {s[key]['p99']:8.0f}  "
            f"max {s[key]['max']:8.0f}"
        )
    write_json(args.json, figures)
    return 0


# -- agent shards: throughput ------------------------------------------------------------------


TP_AGENT = {
    "config": {
        "signals": {"token_filter": "allow", "tokens": [TOKEN]},
        "sizing": {"mode": "fixed", "amount": "1000000"},  # 0.001 SOL a buy
        "limits": {"max_open_positions": 1000, "max_positions_per_token": 1000},
        "stop_loss": {"enabled": False},
    },
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ShardProcess(Process):
    def start_shard(self, shards: int, shard: int) -> None:
        cmd = [sys.executable, "-m", "tradingd.adapters.app.cli", "run"]
        if shards > 1:
            cmd += ["--shards", str(shards), "--shard", str(shard)]
        cmd += ["--config", str(self.dir / "bench.toml"), "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.dir / "data")]
        with open(self.dir / "tradingd.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.base + "/health/ready", timeout=2):
                    return
            time.sleep(0.05)
        raise SystemExit(f"{self.name} never became ready: {self.log_tail()}")


async def load(procs: list[ShardProcess], admin: str, args: argparse.Namespace) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    connector = aiohttp.TCPConnector(limit=args.senders * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        api = Api(http, admin)
        bases = [p.base for p in procs]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def add(i: int) -> None:
            async with gate:
                base = bases[i % len(bases)]
                spec = {"name": f"tp{i}", **TP_AGENT}
                agent = await api.call(base, "POST", "/v1/agents", admin, spec)
                deposit = {"asset": "SOL", "amount": "1000000000000"}
                await api.call(base, "POST", f"/v1/agents/{agent['id']}/deposits", admin, deposit)

        await asyncio.gather(*(add(i) for i in range(args.tp_agents)))
        ticks = {"ticks": [{"token": SOL, "price_usd": 150.0}, {"token": TOKEN, "price_usd": 1.0}]}
        await api.call(bases[0], "POST", "/v1/prices", admin, ticks)
        await asyncio.sleep(0.5)  # the ticks reach every shard through the stream
        latencies: list[float] = []
        matched: list[int] = []
        deadline = time.monotonic() + args.tp_seconds
        cpu0 = [cpu_seconds(p.proc.pid) for p in procs if p.proc is not None]

        async def sender(k: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                side = "buy" if n % 2 == 0 else "sell"
                body = {"token": TOKEN, "side": side}
                started = time.perf_counter()
                doc = await api.call(
                    bases[(k + n) % len(bases)], "POST", "/v1/signals", admin, body
                )
                latencies.append((time.perf_counter() - started) * 1000)
                matched.append(int(doc.get("agents_matched") or 0))
                n += 1

        started = time.monotonic()
        await asyncio.gather(*(sender(k) for k in range(args.senders)))
        elapsed = time.monotonic() - started
        cpu = [cpu_seconds(p.proc.pid) - c for p, c in zip(procs, cpu0, strict=True) if p.proc]
    return {
        "signals": len(latencies),
        "signals_per_s": len(latencies) / elapsed,
        "agents_matched_per_s": sum(matched) / elapsed,
        "ack_ms": percentiles(latencies),
        "cpu_s_per_process": cpu,
        "seconds": elapsed,
    }


def throughput_main(args: argparse.Namespace) -> int:
    admin = "tdk_bench_" + secrets.token_urlsafe(16)
    counts = [int(x) for x in args.shard_counts.split(",") if x.strip()]
    results: dict[str, Any] = {}
    with kept_on_failure("tradingd-shards-") as tmp, shared_store(tmp) as urls:
        for count in counts:
            env = process_env(admin, f"bench_shards{count}_{os.getpid()}", urls, "warning")
            procs = [ShardProcess(f"n{count}s{i}", tmp, env, 3000) for i in range(count)]
            try:
                for i, p in enumerate(procs):
                    p.start_shard(count, i)
                for p in procs:
                    p.wait_ready()
                out = run_loop(load(procs, admin, args))
            finally:
                for p in procs:
                    p.stop()
            results[str(count)] = out
            print(
                f"{count} shard(s): {out['signals_per_s']:.1f} signals/s, "
                f"{out['agents_matched_per_s']:.0f} agent trades/s, 202 p50 "
                f"{out['ack_ms']['p50']:.1f} ms p99 {out['ack_ms']['p99']:.1f} ms, CPU s "
                f"{[round(c, 1) for c in out['cpu_s_per_process']]} in {out['seconds']:.0f} s"
            )
    write_json(
        args.json,
        {
            "throughput": results,
            "agents": args.tp_agents,
            "senders": args.senders,
            "load_avg": os.getloadavg(),
            "code": code_version(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
