"""Exit cascade: one pushed tick falls through 10,000 stops at once, on the real daemon with the
persistent store. Does everything get decided, sold and made durable in time, and does the daemon
stay responsive meanwhile?

One `tradingd run` process (paper venue, no synthetic feed; embedded Redis + Postgres from its
data dir, or REDIS_URL / DATABASE_URL when set). Set-up, untimed: 1,000 paper agents over REST,
each allowing only token T, stop-loss on (mode fixed) with its own `default_pct` between -1% and
-10% (the stops sit on many levels just below the price p0); 10 buy signals on T at p0 give
10,000 open positions; the write-behind drains. Then, per cascade (default 3), timed: ONE tick
for T at 0.85 x p0 (`POST /v1/prices`, a `feed` key), below every stop. State is rebuilt between
cascades (price back to p0, 10 buy signals, drain).

Measured per cascade, from the wall clock just before the tick is sent (t0):
- `post_rtt`: the POST round trip. The handler applies the tick synchronously (every exit is
  decided, the paper venue fills every sell in-process) and the 202 waits until the write-through
  has made all of it durable in Redis, so it is an upper bound of everything below.
- `decided`: the last ExitTriggered entry written (entry ids are the wall ms at which the store
  encoded the event, right after the transition); `engine_decided` the daemon's own
  tick->exit-decision metric (perf_counter, no HTTP) for this tick.
- `submitted`: the last sell OrderSubmitted entry; `filled` the last sell OrderFilled entry.
- `durable`: when a redis-py client in this process, blocked on XREAD, first sees the stream's
  last id at or past the cascade's last fill.
- `pg_drained`: when the stream holds nothing up to the tick's last entry (the writer commits,
  then acknowledges and trims), i.e. all of it is in Postgres.
A probe process (_cascade_probe.py) meanwhile sends `GET /health/live` and a `POST /v1/signals`
for another token U (its own agent, `signals` key), each every --probe-ms, latency measured from
the scheduled send time; `rest` is the second before the tick, `cascade` from t0 to durable,
`drain` from durable to pg_drained. Every cascade is checked: 10,000 sells of T in Postgres, no
position of T left open; otherwise the run fails.

    .venv/bin/python benchmarks/exit_cascade.py [--json PATH] [--cascades N] [--profile PATH]

--profile PATH attaches `py-spy record --nonblocking` (raw collapsed stacks, or
--profile-format) to the daemon from just before the first cascade's tick to AFTER_S past its
last close; read it with benchmarks/_profile_top.py. Sampling costs the machine CPU: a profiled
run's figures are not the benchmark's. Times are milliseconds; the JSON records the load average
(other work on the machine moves every figure) and the code measured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from _stats import add_json_arg, percentiles, run_loop, write_json
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.records import SEQ_BITS, parse_stream_id, stream_id

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SOL = "So11111111111111111111111111111111111111112"
TOKEN = demo_mint("cascade-T")
PROBE_TOKEN = demo_mint("cascade-probe-U")
P0, CRASH = 1.0, 0.85
AGENTS, SIGNALS = 1000, 10
POSITIONS = AGENTS * SIGNALS
SETUP_CONCURRENCY = 8
PROBE_WARMUP_S = 0.5  # the probe's first connections are not the floor
AFTER_S = 0.5  # signal probes go on this long after the cascade is durable
WAIT_S = 120.0  # bound of every wait for the daemon, the writer or a process
CONFIG = """
[http]
rate_limit_per_s = 1000000.0
rate_limit_burst = 1000000
[engine]
max_price_age_ms = 86400000
[feeds.synthetic]
enabled = false
"""
TARGETS = {"decided": 100.0, "submitted": 100.0, "durable": 250.0, "other_p99": 50.0}


def stop_pct(i: int) -> float:
    """Agent i's default stop: -1% .. -10% in 1,000 steps, so the trigger index has many levels."""
    return round(-1.0 - 9.0 * i / (AGENTS - 1), 3)


def cascade_agent(i: int) -> dict[str, Any]:
    return {
        "name": f"cascade{i}",
        "config": {
            "signals": {"token_filter": "allow", "tokens": [TOKEN]},
            "sizing": {"mode": "fixed", "amount": "10000000"},  # 0.01 SOL a buy
            "limits": {"max_open_positions": SIGNALS, "max_positions_per_token": SIGNALS},
            "stop_loss": {"enabled": True, "mode": "fixed", "default_pct": stop_pct(i)},
        },
    }


PROBE_AGENT = {
    "name": "probe",
    "config": {
        "signals": {"token_filter": "allow", "tokens": [PROBE_TOKEN]},
        "sizing": {"mode": "fixed", "amount": "10000000"},
        # at most 1 open: Redis' open positions then tell when T's are all closed
        "limits": {"max_open_positions": 1, "max_positions_per_token": 1},
        "stop_loss": {"enabled": False},
    },
}


# -- processes ------------------------------------------------------------------------------


def start_daemon(
    data_dir: Path,
    admin_key: str,
    log_level: str,
    engine: list[str] = [],  # noqa: B006
) -> tuple[subprocess.Popen, str]:
    """`engine`: extra `[engine]` settings, "key=value" (TOML values), for experiments."""
    config = data_dir / "bench.toml"
    extra = "".join(f"{kv}\n" for kv in engine)
    config.write_text(CONFIG.replace("[engine]\n", "[engine]\n" + extra))
    log_path = data_dir / "tradingd.log"
    env = {**os.environ, "TRADINGD_ADMIN_KEY": admin_key, "TRADINGD_LOG_LEVEL": log_level}
    env.pop("TRADINGD_STORE", None)  # the persistent store is the point
    if env.get("REDIS_URL") or env.get("DATABASE_URL"):
        env["TRADINGD_STORE_NAMESPACE"] = f"bench_cascade_{os.getpid()}"  # shared servers
    # Below info the daemon does not log its port: pick a free one then.
    port = 0 if log_level in ("debug", "info") else free_port()
    cmd = [sys.executable, "-m", "tradingd.adapters.app.cli", "run", "--config", str(config)]
    cmd += ["--port", str(port), "--host", "127.0.0.1", "--data-dir", str(data_dir / "data")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    port_re = re.compile(r'"control port open".*?"port": ?(\d+)')
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        m = port_re.search(log_path.read_text(errors="replace")) if not port else None
        if m or port:
            base = f"http://127.0.0.1:{m.group(1) if m else port}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(base + "/health/ready", timeout=1):
                    return proc, base
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"tradingd did not start: {log_path.read_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def store_urls(data_dir: Path) -> tuple[str, str, str]:
    """(redis url, postgres url, namespace) the daemon uses: the env's, else its embedded ones."""
    ns = "tradingd"
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    if redis_url or database_url:
        ns = f"bench_cascade_{os.getpid()}"
    if not redis_url:
        redis_url = (data_dir / "data" / "redis" / "endpoint").read_text().strip()
    if not database_url:
        lines = (data_dir / "data" / "postgres" / "postmaster.pid").read_text().splitlines()
        port, sockdir = int(lines[3]), lines[4].strip()
        database_url = (
            f"postgresql://postgres@/tradingd?host={sockdir}&port={port}"
            if sockdir
            else f"postgresql://postgres@127.0.0.1:{port}/tradingd"
        )
    return redis_url, database_url, ns


def stop_embedded(data_dir: Path) -> None:
    """The daemon stops its servers on SIGTERM; if it died instead, they are still up."""
    from tradingd.adapters.store.embedded import EmbeddedServers

    with contextlib.suppress(Exception):
        EmbeddedServers(data_dir / "data").stop()


# -- REST -----------------------------------------------------------------------------------


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, admin: str) -> None:
        self.http, self.base, self.admin = http, base, admin
        self.feed = self.signals = ""

    async def call(self, method: str, path: str, key: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            text = await r.text()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path} -> {r.status}: {text[:500]}")
            return json.loads(text) if r.content_type == "application/json" else text

    async def key(self, name: str, scope: str) -> str:
        doc = await self.call("POST", "/v1/keys", self.admin, {"name": name, "scopes": [scope]})
        return str(doc["key"])

    async def agent(self, spec: dict[str, Any]) -> str:
        agent_id = (await self.call("POST", "/v1/agents", self.admin, spec))["id"]
        deposit = {"asset": "SOL", "amount": "1000000000000"}  # 1,000 SOL
        await self.call("POST", f"/v1/agents/{agent_id}/deposits", self.admin, deposit)
        return str(agent_id)

    async def ticks(self, *ticks: tuple[str, float]) -> dict[str, Any]:
        body = {"ticks": [{"token": t, "price_usd": p} for t, p in ticks]}
        doc: dict[str, Any] = await self.call("POST", "/v1/prices", self.feed, body)
        return doc

    async def crash_tick(self) -> tuple[int, dict[str, Any]]:
        """The cascade's tick: (status, body), whatever the status."""
        body = {"ticks": [{"token": TOKEN, "price_usd": P0 * CRASH}]}
        headers = {"Authorization": f"Bearer {self.feed}"}
        async with self.http.post(self.base + "/v1/prices", json=body, headers=headers) as r:
            return r.status, await r.json()

    async def buy(self, token: str) -> int:
        body = {"token": token, "strength": 5}
        return int((await self.call("POST", "/v1/signals", self.signals, body))["agents_matched"])

    async def tick_to_exit_metric(self) -> tuple[float, float]:
        """(sum, count) of tradingd_tick_to_exit_decision_seconds."""
        text = await self.call("GET", "/metrics", self.admin)
        got = dict(
            re.findall(r"^tradingd_tick_to_exit_decision_seconds_(sum|count) (\S+)$", text, re.M)
        )
        return float(got.get("sum", 0)), float(got.get("count", 0))


async def build_positions(api: Api, store: Store) -> None:
    """Price T at p0, 10 buy signals (1,000 agents each), then wait for Postgres to have it."""
    await api.ticks((SOL, 150.0), (TOKEN, P0), (PROBE_TOKEN, 1.0))
    for _ in range(SIGNALS):
        matched = await api.buy(TOKEN)
        if matched != AGENTS:
            raise SystemExit(f"a buy signal matched {matched} agents, expected {AGENTS}")
    await store.wait_drained(await store.last_id())
    open_ = await store.positions(TOKEN, "open")
    if open_ != POSITIONS:
        raise SystemExit(f"{open_} open positions of T in Postgres after set-up, not {POSITIONS}")


# -- the store, seen from outside -------------------------------------------------------------


class Store:
    def __init__(self, redis_url: str, database_url: str, ns: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=30)
        self.stream = f"{{{ns}}}:events"
        self.positions_hash = f"{{{ns}}}:positions"
        self.database_url, self.ns = database_url, ns
        self.pg: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.pg = await pg.connect(self.database_url, self.ns)

    async def close(self) -> None:
        await self.redis.aclose()
        if self.pg is not None:
            await self.pg.close()

    async def last_id(self) -> int:
        info = await self.redis.xinfo_stream(self.stream)
        return parse_stream_id(info["last-generated-id"])

    async def input_bytes(self) -> int:
        """Bytes Redis has read from all its clients (the write-through's load, with the
        writer's reads, the probe's and this client's small share)."""
        return int((await self.redis.info("stats"))["total_net_input_bytes"])

    async def cpu_s(self) -> float:
        """CPU seconds the Redis server has used (user + system)."""
        cpu = await self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    async def open_positions(self) -> int:
        """Open positions of every agent in Redis (the hash drops a position when it closes)."""
        return int(await self.redis.hlen(self.positions_hash))

    async def watch(self, start: int, seen: list[tuple[int, int]], done: asyncio.Event) -> None:
        """Append (wall ns, stream's last id) each time the stream grows (XREAD wakes on it);
        set `done` once Redis holds no open position of T (the probe agent holds at most 1)."""
        last = start
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            await self.redis.xread({self.stream: stream_id(last)}, count=1, block=1000)
            now = time.time_ns()
            newest = await self.last_id()
            if newest > last:
                seen.append((now, newest))
                last = newest
            if not done.is_set() and await self.open_positions() <= 1:
                done.set()

    async def wait_drained(self, upto: int) -> int:
        """Poll until the stream holds no entry <= `upto` (committed to Postgres, acknowledged
        and trimmed); returns the wall ns it was seen."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            first = await self.redis.xrange(self.stream, count=1)
            if not first or parse_stream_id(first[0][0]) > upto:
                return time.time_ns()
            await asyncio.sleep(0.005)
        raise SystemExit(f"the write-behind did not drain within {WAIT_S} s")

    async def positions(self, token: str, status: str) -> int:
        assert self.pg is not None
        q = "SELECT count(*) FROM positions WHERE token = $1 AND status = $2"
        return int(await self.pg.fetchval(q, token, status))

    async def events_between(self, after: int, upto: int) -> int:
        """Engine events (store records not counted) Postgres holds in (after, upto]."""
        assert self.pg is not None
        q = "SELECT count(*) FROM events WHERE id > $1 AND id <= $2"
        return int(await self.pg.fetchval(q, after, upto))

    async def cascade_events(self, after: int, upto: int) -> dict[str, dict[str, int]]:
        """Per event type of T's cascade in (after, upto]: count, first and last entry id."""
        assert self.pg is not None
        rows = await self.pg.fetch(
            """SELECT type, count(*) AS n, min(id) AS first, max(id) AS last FROM events
               WHERE id > $1 AND id <= $2 AND (
                 (type = 'ExitTriggered' AND payload->>'token' = $3)
                 OR (type = 'OrderSubmitted' AND payload->'order'->>'token' = $3
                     AND payload->'order'->>'side' = 'sell')
                 OR (type = 'OrderFilled' AND payload->'trade'->>'token' = $3
                     AND payload->'trade'->>'side' = 'sell')
                 OR (type = 'PositionClosed' AND payload->'position'->>'token' = $3))
               GROUP BY type""",
            after,
            upto,
            TOKEN,
        )
        return {r["type"]: {"n": r["n"], "first": r["first"], "last": r["last"]} for r in rows}


# -- one cascade ------------------------------------------------------------------------------


def start_probe(base: str, key: str, args: argparse.Namespace, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(HERE / "_cascade_probe.py"), base, PROBE_TOKEN]
    proc = subprocess.Popen(
        [*cmd, str(args.health_ms), str(args.signal_ms), str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PROBE_KEY": key},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise SystemExit("the probe process did not start")
    return proc


def tell_probe(proc: subprocess.Popen, command: str) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(command.encode() + b"\n")
        proc.stdin.flush()


def stop_probe(proc: subprocess.Popen, out: Path) -> list[list[Any]]:
    tell_probe(proc, "stop")
    try:
        proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit("the probe process did not stop") from None
    return json.loads(out.read_text())


def start_profiler(pid: int, path: str, fmt: str, idle: bool = False) -> subprocess.Popen:
    spy = REPO / ".venv" / "bin" / "py-spy"
    # --nonblocking: the daemon is not paused per sample (a paused daemon misses Redis timeouts)
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
    cmd += ["--format", fmt, "-o", path] + (["--idle"] if idle else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # attached (py-spy prints nothing to wait on)
    return proc


def probe_windows(
    samples: list[list[Any]], t0: int, durable: int, drained: int, rest_s: float
) -> dict[str, dict[str, Any]]:
    windows = {
        "rest": (t0 - int(rest_s * 1e9), t0),
        "cascade": (t0, durable),
        "drain": (durable, drained),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (lo, hi) in windows.items():
        for kind in ("health", "signal"):
            chosen = [s for s in samples if s[0] == kind and lo <= s[1] < hi]
            lat = [s[2] / 1e6 for s in chosen if s[3] > 0]
            stats = percentiles(lat)
            out[f"{name}_{kind}"] = {
                "n": len(chosen),
                "errors": sum(1 for s in chosen if s[3] <= 0 or s[3] >= 400),
                "statuses": dict(Counter(str(s[3]) for s in chosen)),
                "send_delay_p99": percentiles([s[4] / 1e6 for s in chosen if s[4] >= 0])["p99"],
                "p50": stats["p50"],
                "p99": stats["p99"],
                "max": stats["max"],
            }
    return out


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stalls(samples: list[list[Any]], t0: int, over_ms: float = 50.0) -> list[list[float]]:
    """When the daemon did not answer health probes: [from, to] ms after the tick, merged from
    every probe slower than `over_ms` (sent at `from`, answered at `to`)."""
    spans = sorted(
        ((s[1] - t0) / 1e6, (s[1] + s[2] - t0) / 1e6)
        for s in samples
        if s[0] == "health" and s[3] > 0 and s[2] / 1e6 > over_ms
    )
    merged: list[list[float]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [[round(lo, 1), round(hi, 1)] for lo, hi in merged]


async def one_cascade(
    api: Api, store: Store, daemon_pid: int, args: argparse.Namespace, n: int, tmp: Path
) -> dict[str, Any]:
    probe_out = tmp / f"probe{n}.json"
    metric_before = await api.tick_to_exit_metric()
    probe = start_probe(api.base, api.signals, args, probe_out)
    profiler = None
    watcher: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(PROBE_WARMUP_S + args.rest_s)  # the rest window: the last rest_s
        if args.profile and n == 0:  # from just before the tick to AFTER_S past the last close
            profiler = start_profiler(
                daemon_pid, args.profile, args.profile_format, args.profile_idle
            )
        before = await store.last_id()
        redis_in = await store.input_bytes()
        redis_cpu, daemon_cpu = await store.cpu_s(), process_cpu_s(daemon_pid)
        seen: list[tuple[int, int]] = []
        closed = asyncio.Event()
        if await store.open_positions() < POSITIONS:
            raise SystemExit("Redis holds fewer open positions than were built")
        watcher = asyncio.create_task(store.watch(before, seen, closed))
        await asyncio.sleep(0.05)  # the watcher is blocked in XREAD
        t0 = time.time_ns()
        status, doc = await api.crash_tick()
        t_resp = time.time_ns()
        if status == 202 and doc.get("accepted") != 1:
            raise SystemExit(f"the cascade tick was not applied: {doc}")
        # The 202 may come before the cascade is over (sliced exits), or a 503 after the
        # handler's flush timeout: the end is when Redis holds no open position of T. Then
        # AFTER_S more, so the last flush is in before `upto` is read (the counts below check).
        try:
            await asyncio.wait_for(closed.wait(), WAIT_S)
        except TimeoutError:
            raise SystemExit(f"positions of T still open in Redis after {WAIT_S} s") from None
        await asyncio.sleep(AFTER_S)
        upto = await store.last_id()
        redis_in = await store.input_bytes() - redis_in
        t_end = time.time_ns()
        redis_cpu = await store.cpu_s() - redis_cpu
        daemon_cpu = process_cpu_s(daemon_pid) - daemon_cpu
        tell_probe(probe, "quiet")  # signals stop (each adds rows to drain); health goes on
        t_quiet = time.time_ns()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=WAIT_S)
            profiler = None
        t_drained = await store.wait_drained(upto)
        await asyncio.sleep(0.2)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=WAIT_S)
        samples = stop_probe(probe, probe_out)
        if args.keep_probes:
            shutil.copy(probe_out, Path(args.keep_probes) / f"probe{n}.json")
    metric_after = await api.tick_to_exit_metric()
    evs = await store.cascade_events(before, upto)
    evs_total = await store.events_between(before, upto)
    result = summarize(
        n, t0, t_resp, t_drained, seen, evs, metric_before, metric_after, samples, args
    )
    result["post_status"] = status
    result["health_stalls_ms"] = stalls(samples, t0)
    result["t0_wall_ns"] = t0
    result["redis_input_mb"] = redis_in / 1e6
    # From just before the tick to AFTER_S past the last close: how much of that wall time the
    # daemon's process and the Redis server spent on a CPU (2 cores, shared).
    result["cpu_window_s"] = (t_end - t0) / 1e9
    result["daemon_cpu_s"] = daemon_cpu
    result["redis_cpu_s"] = redis_cpu
    result["stream_entries"] = evs_total
    result["probe_signals_before_quiet"] = sum(
        1 for x in samples if x[0] == "signal" and t0 <= x[1] < t_quiet
    )
    return result


def summarize(
    n: int,
    t0: int,
    t_resp: int,
    t_drained: int,
    seen: list[tuple[int, int]],
    evs: dict[str, dict[str, int]],
    metric_before: tuple[float, float],
    metric_after: tuple[float, float],
    samples: list[list[Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    for kind in ("ExitTriggered", "OrderSubmitted", "OrderFilled", "PositionClosed"):
        got = evs.get(kind, {}).get("n", 0)
        if got != POSITIONS:
            raise SystemExit(f"cascade {n}: {got} {kind} events of T, expected {POSITIONS}: {evs}")
    t0_ms = t0 / 1e6

    def at(entry_id: int) -> float:
        return (entry_id >> SEQ_BITS) - t0_ms

    last_fill = evs["OrderFilled"]["last"]
    durable_ns = next((t for t, last in seen if last >= last_fill), None)
    if durable_ns is None:
        raise SystemExit(f"cascade {n}: the watcher never saw the last fill in Redis")
    d_sum = metric_after[0] - metric_before[0]
    d_count = metric_after[1] - metric_before[1]
    return {
        "post_rtt": (t_resp - t0) / 1e6,
        "first_decided": at(evs["ExitTriggered"]["first"]),
        "decided": at(evs["ExitTriggered"]["last"]),
        "engine_decided": d_sum * 1000 if d_count else None,
        "engine_decided_observations": d_count,
        "submitted": at(evs["OrderSubmitted"]["last"]),
        "filled": at(evs["OrderFilled"]["last"]),
        "durable": (durable_ns - t0) / 1e6,
        "pg_drained": (t_drained - t0) / 1e6,
        "sells": evs["OrderFilled"]["n"],
        "probes": probe_windows(samples, t0, durable_ns, t_drained, args.rest_s),
    }


# -- the run ----------------------------------------------------------------------------------


STAGES = ("post_rtt", "decided", "engine_decided", "submitted", "filled", "durable", "pg_drained")


def aggregate(cascades: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage in STAGES:
        vals = [c[stage] for c in cascades if c[stage] is not None]
        s = percentiles(vals)
        out[stage] = {"p50": s["p50"], "p99": s["p99"], "max": s["max"], "n": s["count"]}
    for name in cascades[0]["probes"]:
        p99s = [c["probes"][name]["p99"] for c in cascades]
        maxes = [c["probes"][name]["max"] for c in cascades]
        out[name] = {
            "p50": percentiles([c["probes"][name]["p50"] for c in cascades])["p50"],
            "p99_worst": max(p99s),
            "max": max(maxes),
            "n": sum(c["probes"][name]["n"] for c in cascades),
            "errors": sum(c["probes"][name]["errors"] for c in cascades),
            "send_delay_p99_worst": max(c["probes"][name]["send_delay_p99"] for c in cascades),
        }
    return out


def targets(agg: dict[str, Any]) -> dict[str, Any]:
    probed = (agg["cascade_health"]["p99_worst"], agg["cascade_signal"]["p99_worst"])
    other = max((v for v in probed if v == v), default=math.nan)  # NaN: no such probe
    return {
        "decided_p99_ms": agg["decided"]["p99"],
        "decided_ok": agg["decided"]["p99"] <= TARGETS["decided"],
        "submitted_p99_ms": agg["submitted"]["p99"],
        "submitted_ok": agg["submitted"]["p99"] <= TARGETS["submitted"],
        "durable_p99_ms": agg["durable"]["p99"],
        "durable_ok": agg["durable"]["p99"] <= TARGETS["durable"],
        "other_requests_p99_ms": other,
        "other_requests_ok": other <= TARGETS["other_p99"],
    }


def print_table(cascades: list[dict[str, Any]], agg: dict[str, Any], tg: dict[str, Any]) -> None:
    print(f"{'ms from tick':<22}" + "".join(f"{f'#{i + 1}':>10}" for i in range(len(cascades))))
    for stage in STAGES:
        row = "".join(
            f"{c[stage]:>10.1f}" if c[stage] is not None else f"{'-':>10}" for c in cascades
        )
        print(f"{stage:<22}{row}   p50 {agg[stage]['p50']:.1f}  p99 {agg[stage]['p99']:.1f}")
    statuses = "".join(f"{c['post_status']:>10}" for c in cascades)
    print(f"{'POST status':<22}{statuses}")
    head = ("p50", "p99 worst", "max", "n", "errors", "own delay p99")
    print(f"\n{'probe (ms)':<22}" + "".join(f"{h:>14}" for h in head))
    for name in cascades[0]["probes"]:
        a = agg[name]
        cells = (a["p50"], a["p99_worst"], a["max"], a["n"], a["errors"], a["send_delay_p99_worst"])
        print(
            f"{name:<22}"
            + "".join(f"{c:>12.2f}" if isinstance(c, float) else f"{c:>12}" for c in cells)
        )
    print(
        f"\ntargets: decided p99 {tg['decided_p99_ms']:.1f} <= 100 ms: {tg['decided_ok']}; "
        f"submitted p99 {tg['submitted_p99_ms']:.1f} <= 100 ms: {tg['submitted_ok']}; "
        f"durable p99 {tg['durable_p99_ms']:.1f} <= 250 ms: {tg['durable_ok']}; "
        f"other requests p99 {tg['other_requests_p99_ms']:.1f} <= 50 ms: {tg['other_requests_ok']}"
    )


async def measure(
    args: argparse.Namespace, base: str, admin: str, daemon_pid: int, tmp: Path
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=SETUP_CONCURRENCY * 2)
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    store = Store(*store_urls(tmp))
    await store.open()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        api = Api(http, base, admin)
        api.feed = await api.key("cascade-feed", "feed")
        api.signals = await api.key("cascade-signals", "signals")
        started = time.monotonic()
        await api.agent(PROBE_AGENT)
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def add(i: int) -> str:
            async with gate:
                return await api.agent(cascade_agent(i))

        await asyncio.gather(*(add(i) for i in range(AGENTS)))
        print(f"set-up: {AGENTS} agents in {time.monotonic() - started:.1f} s", file=sys.stderr)
        cascades: list[dict[str, Any]] = []
        for n in range(args.cascades):
            started = time.monotonic()
            await build_positions(api, store)
            print(
                f"{POSITIONS} positions built and drained in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
            result = await one_cascade(api, store, daemon_pid, args, n, tmp)
            closed = await store.positions(TOKEN, "closed")
            if closed != POSITIONS * (n + 1) or await store.positions(TOKEN, "open"):
                raise SystemExit(f"cascade {n}: {closed} closed positions of T in Postgres")
            cascades.append(result)
            print(
                f"cascade {n + 1}: post {result['post_rtt']:.0f} ms, durable "
                f"{result['durable']:.0f} ms, pg {result['pg_drained']:.0f} ms",
                file=sys.stderr,
            )
    await store.close()
    agg = aggregate(cascades)
    return {"cascades": cascades, "summary": agg, "targets": targets(agg)}


def code_version() -> dict[str, Any]:
    """The commit measured, and whether engine/ or adapters/ differed from it (shared tree)."""

    def git(*a: str) -> str:
        res = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return res.stdout.rstrip("\n")  # porcelain lines start with a space: no strip()

    import tradingd.engine

    used = str(Path(next(iter(tradingd.engine.__path__))).parent)
    dirty = git("status", "--porcelain", "--", "engine", "adapters").splitlines()
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": [line[3:] for line in dirty],
        "code_dir": used,  # another dir: PYTHONPATH pointed the daemon at other code
    }


def main() -> int:
    global AGENTS, POSITIONS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    add_json_arg(parser)
    parser.add_argument("--cascades", type=int, default=3, help="cascades per run (default 3)")
    parser.add_argument(
        "--health-ms",
        type=float,
        default=2.0,
        help="GET /health/live every this many ms (default 2)",
    )
    parser.add_argument(
        "--signal-ms",
        type=float,
        default=50.0,
        help="a probe signal every this many ms (0: none; default 50)",
    )
    parser.add_argument(
        "--rest-s", type=float, default=1.0, help="probe floor window before a tick"
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra [engine] setting for the daemon (experiments), e.g. cascade_slice=512",
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="sample idle threads too (a speedscope timeline then shows the gaps)",
    )
    parser.add_argument("--keep-probes", metavar="DIR", help="copy each cascade's probe samples")
    parser.add_argument("--keep-log", metavar="PATH", help="copy the daemon's log here")
    parser.add_argument("--profile", metavar="PATH", help="py-spy the daemon in the first cascade")
    parser.add_argument(
        "--profile-format", default="raw", choices=("raw", "speedscope", "flamegraph")
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the daemon's TRADINGD_LOG_LEVEL (default info, as deployed)",
    )
    parser.add_argument(
        "--agents", type=int, default=1000, help="cascade agents (default 1000; less: smoke test)"
    )
    args = parser.parse_args()
    AGENTS, POSITIONS = args.agents, args.agents * SIGNALS
    load_before = os.getloadavg()
    admin = "tdk_bench_" + secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="tradingd-cascade-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # the embedded Postgres (not root) must traverse it
        try:
            daemon, base = start_daemon(tmp, admin, args.log_level, args.engine)
        except BaseException:
            stop_embedded(tmp)  # they outlive a daemon that died starting
            raise
        try:
            figures = run_loop(measure(args, base, admin, daemon.pid, tmp))
        finally:
            stop_process(daemon)
            stop_embedded(tmp)
            if args.keep_log:
                shutil.copy(tmp / "tradingd.log", args.keep_log)
    print_table(figures["cascades"], figures["summary"], figures["targets"])
    figures["config"] = {
        "agents": AGENTS,
        "positions": POSITIONS,
        "p0": P0,
        "crash_price": P0 * CRASH,
        "health_ms": args.health_ms,
        "signal_ms": args.signal_ms,
        "log_level": args.log_level,
        "store": "external" if os.environ.get("REDIS_URL") else "embedded",
        "code": code_version(),
        "engine_settings": args.engine,
        "loadavg_1m_before_after": [load_before[0], os.getloadavg()[0]],
    }
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
