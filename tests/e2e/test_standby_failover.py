"""Hot standby end to end (docs/cluster.md): real `tradingd run --role active|standby`
processes on one Redis and one Postgres (embedded servers this module starts), each with its own
data dir.

- kill -9 the active, a few times over (TRADINGD_STANDBY_KILLS, default 3): the standby takes
  over within the lease + recovery time (measured and printed, never asserted as a time), no
  acknowledged signal is lost, nothing is bought or sold twice, and a stop whose price is
  crossed right after the takeover fires at once;
- SIGSTOP the active past its lease: the standby takes over; on SIGCONT the old active acts no
  more (the requests it was sent while paused are refused, Redis and Postgres are unchanged by
  it) and exits with the step-down code."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tradingd.adapters.cluster.role import STEPPED_DOWN_EXIT
from tradingd.adapters.feeds.synthetic import demo_mint

from tests.e2e import cluster_nodes
from tests.e2e.cluster_nodes import START_TIMEOUT_S, Node, Nodes, embedded_servers, wait_standby
from tests.e2e.conftest import REPO
from tests.polling import poll_until

KILLS = int(os.environ.get("TRADINGD_STANDBY_KILLS", "3"))
LEASE_MS = int(os.environ.get("TRADINGD_STANDBY_LEASE_MS", "1000"))
AGENT = "sby"
DEPOSIT = 1_000_000_000_000  # 1,000,000 USDC
BUY = 100_000_000  # 100 USDC a buy
CONFIG = f"""
[cluster]
lease_ms = {LEASE_MS}

[http]  # the storm and the checks run under one key
rate_limit_per_s = 100000
rate_limit_burst = 100000

[[agents]]
id = "{AGENT}"
name = "standby"
venue = "paper"
quote = "USDC"
paper_deposit = {DEPOSIT}

[agents.config]
sizing = {{ mode = "fixed", amount = {BUY} }}
stop_loss = {{ mode = "fixed", default_pct = -10 }}
limits = {{ max_open_positions = 100000, max_positions_per_token = 1000 }}
execution = {{ slippage_bps = 0, fee_bps = 0 }}
"""


class Pair(Nodes):
    def start(self, role: str, name: str) -> Node:
        return self.launch(name, CONFIG, ["--role", role], request_timeout_s=5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from embedded_servers(tmp_path_factory, "standby-servers")


@pytest.fixture
def pair(servers: tuple[str, str], tmp_path: Path) -> Iterator[Pair]:
    redis_url, database_url = servers
    p = Pair(
        redis_url,
        database_url,
        f"sby_{uuid.uuid4().hex[:10]}",
        "tdk_e2e_" + secrets.token_urlsafe(24),
        tmp_path,
        [],
    )
    yield p
    p.stop_all()


def wait_ready(node: Node, timeout: float = START_TIMEOUT_S) -> None:
    cluster_nodes.wait_ready(
        node, "the node ready (holding the lease, intake open)", timeout, interval_s=0.02
    )


def _pages(node: Node, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded: 1,000 pages of 1,000
        sep = "&" if "?" in path else "?"
        page = node.get(path + f"{sep}limit=1000" + (f"&cursor={cursor}" if cursor else ""))
        body = page.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError(f"{path}: more than 1,000 pages")


def positions(node: Node, status: str = "") -> list[dict[str, Any]]:
    query = f"?status={status}" if status else ""
    return _pages(node, f"/v1/agents/{AGENT}/positions{query}")


def trades(node: Node) -> list[dict[str, Any]]:
    return _pages(node, f"/v1/agents/{AGENT}/trades")


def tick(node: Node, token: str, price: float) -> requests.Response:
    now = int(time.time() * 1000)
    return node.post(
        "/v1/prices", {"ticks": [{"token": token, "price_usd": price, "ts": now, "decimals": 6}]}
    )


def buy(node: Node, sid: str, token: str) -> requests.Response:
    return node.post("/v1/signals", {"id": sid, "token": token, "side": "buy"})


def open_position(node: Node, sid: str) -> dict[str, Any]:
    return poll_until(
        lambda: [p for p in positions(node, "open") if p["signal_id"] == sid],
        lambda found: len(found) == 1 and found[0]["status"] == "open",
        timeout_s=10,
        interval_s=0.02,
        what=f"the position of {sid} open",
    )[0]


def check_book(node: Node, acked: list[str]) -> None:
    """Every acknowledged signal bought exactly once; every position sold at most once;
    the balance is the deposit plus the recorded trades, exactly."""
    every = positions(node)
    by_signal: dict[str, int] = {}
    for p in every:
        if p["signal_id"]:
            by_signal[p["signal_id"]] = by_signal.get(p["signal_id"], 0) + 1
    assert by_signal == dict.fromkeys(acked, 1), by_signal
    check_trades(node, every)


def check_trades(node: Node, every: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """No order filled twice; each of `every` (the positions) bought once and sold at most once;
    the balance is the deposit plus the recorded trades, exactly. Returns the trades."""
    done = trades(node)
    assert len({t["venue_ref"] for t in done}) == len(done), "an order filled twice"
    for p in every:
        mine = [t for t in done if t["position_id"] == p["id"]]
        assert sum(t["side"] == "buy" for t in mine) == 1, mine
        assert sum(t["side"] == "sell" for t in mine) <= 1, mine
    delta = sum(int(t["quote_amount"]) * (1 if t["side"] == "sell" else -1) for t in done)
    usdc = [b for b in node.get(f"/v1/agents/{AGENT}/balances").json() if b["asset"] == "USDC"]
    assert int(usdc[0]["total"]) == DEPOSIT + delta
    return done


def test_kill_the_active_standby_takes_over(pair: Pair) -> None:
    active = pair.start("active", "a")
    wait_ready(active)
    standby = pair.start("standby", "b")
    wait_standby(standby)
    # a standby serves health and metrics, and refuses work with one clear code
    ready = standby.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "standby"
    refused = buy(standby, "never", demo_mint("SBYNEVER"))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "standby"
    metrics = standby.get("/metrics").text
    assert 'tradingd_cluster_role{role="standby"} 1.0' in metrics
    # its book is empty until it takes over: reads are refused, not answered wrongly
    for path in ("/v1/agents", f"/v1/agents/{AGENT}/balances", "/v1/positions/pos_x"):
        read = standby.get(path)
        assert read.status_code == 503 and read.json()["error"]["code"] == "standby", path
    held = active.health()["cluster"]
    assert held["role"] == "active" and held["lease"]["held"] and held["fencing_token"] >= 1

    acked: list[str] = []
    takeovers: list[float] = []
    for i in range(KILLS):
        token = demo_mint(f"SBY{i}")
        sid = f"sig-{i}"
        assert tick(active, token, 1.0).status_code == 202
        r = buy(active, sid, token)
        assert r.status_code == 202, r.text
        signal_id = r.json()["signal_id"]
        acked.append(signal_id)
        open_position(active, signal_id)
        token_before = active.health()["cluster"]["fencing_token"]

        started = time.monotonic()
        active.proc.kill()  # kill -9
        active.proc.wait(timeout=10)
        wait_ready(standby)
        takeovers.append(time.monotonic() - started)
        took = standby.health()["cluster"]
        assert took["role"] == "active" and took["fencing_token"] > token_before
        # the price crosses the stop (-10 %) right after the takeover: the stop fires
        assert tick(standby, token, 0.8).status_code == 202
        poll_until(
            lambda node=standby: positions(node),
            lambda found, sid=signal_id: (
                [(p["status"], p["exit_reason"]) for p in found if p["signal_id"] == sid]
                == [("closed", "stop_loss")]
            ),
            timeout_s=10,
            interval_s=0.02,
            what=f"the stop of {sid} fired on the new active",
        )
        # the acknowledged signal sent again is a duplicate there: nothing bought twice
        again = buy(standby, sid, token)
        assert again.status_code == 200 and again.json()["duplicate"], again.text
        assert again.json()["signal_id"] == signal_id
        check_book(standby, acked)
        # systemd would restart the killed one: as the new standby, on its own data dir
        killed_dir = active.data_dir.name
        active, standby = standby, pair.start("standby", killed_dir)
        wait_standby(standby)

    stopped = [p for p in positions(active) if p["exit_reason"]]
    assert len(stopped) == KILLS and all("stop" in p["exit_reason"] for p in stopped), stopped
    assert "tradingd_cluster_takeovers_total 1.0" in active.get("/metrics").text
    logged = [
        line["takeover_seconds"]
        for node in pair.nodes
        for line in node.logs()
        if line.get("msg") == "cluster: active, intake open" and "takeover_seconds" in line
    ]
    print(
        f"\ntakeover (kill -9 -> new active ready, lease_ms={LEASE_MS}): "
        + ", ".join(f"{t:.2f}s" for t in takeovers)
        + f"; lease taken -> intake open (logged): {', '.join(f'{t:.3f}s' for t in logged)}"
    )


async def _store_state(redis_url: str, database_url: str, ns: str) -> dict[str, Any]:
    import asyncpg
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        out: dict[str, Any] = {"stream": await r.xlen(f"{{{ns}}}:events")}
        for name in ("meta", "agents", "balances", "positions", "orders", "entries"):
            out[name] = await r.hgetall(f"{{{ns}}}:{name}")
    finally:
        await r.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        for table in ("events", "positions", "trades", "balances", "signals"):
            rows = await conn.fetch(f'SELECT * FROM "{ns}".{table}')
            out[f"pg_{table}"] = sorted(repr(sorted(dict(row).items())) for row in rows)
    finally:
        await conn.close()
    return out


def store_state(pair: Pair) -> dict[str, Any]:
    return asyncio.run(_store_state(pair.redis_url, pair.database_url, pair.namespace))


def test_paused_active_is_fenced_and_steps_down(pair: Pair) -> None:
    old = pair.start("active", "a")
    wait_ready(old)
    new = pair.start("standby", "b")
    wait_standby(new)
    token = demo_mint("SBYPAUSE")
    assert tick(old, token, 1.0).status_code == 202
    r = buy(old, "sig-pause", token)
    assert r.status_code == 202, r.text
    signal_id = r.json()["signal_id"]
    open_position(old, signal_id)

    old.proc.send_signal(signal.SIGSTOP)
    try:
        wait_ready(new)  # the lease lapsed: the standby took over
        assert positions(new, "open")[0]["signal_id"] == signal_id
        # the new active's writer has put everything in Postgres and trimmed the stream
        poll_until(
            lambda: store_state(pair),
            lambda st: st["stream"] == 0 and len(st["pg_positions"]) == 1,
            timeout_s=15,
            interval_s=0.1,
            what="the new active's writer drained",
        )
        before = store_state(pair)
        # work sent to the paused process: it sees it when it wakes, and must refuse it
        answers: list[object] = []

        def send(fn: Any) -> None:
            try:
                answers.append(fn().status_code)
            except requests.RequestException as exc:
                answers.append(repr(exc))

        senders = [
            threading.Thread(target=send, args=(lambda: tick(old, token, 0.5),)),
            threading.Thread(target=send, args=(lambda: buy(old, "sig-stale", token),)),
        ]
        for t in senders:
            t.start()
        time.sleep(0.3)  # let the requests reach the paused process's socket (not a check)
    finally:
        old.proc.send_signal(signal.SIGCONT)
    assert old.proc.wait(timeout=20) == STEPPED_DOWN_EXIT
    for t in senders:
        t.join(timeout=10)
    assert all(a != 202 for a in answers), answers  # nothing acknowledged by the stale one
    lost = [line for line in old.logs() if line.get("msg") == "cluster: lease lost, stepping down"]
    assert lost, old.tail()
    print(f"\nrequests sent to the paused active: {answers}; it stepped down: {lost[0]['reason']}")
    # nothing of the old active reached Redis or Postgres
    assert store_state(pair) == before
    assert [p["status"] for p in positions(new)] == ["open"]
    assert new.health()["cluster"]["role"] == "active"


STORM_KILLS = int(os.environ.get("TRADINGD_STANDBY_STORM_KILLS", "20"))
STORM_CLIENTS = 3


class Storm:
    """Clients sending signals (client ids repeat) and ticks to whichever node is active; they
    follow the active across takeovers. Records what was acknowledged."""

    def __init__(self, pair: Pair, tokens: list[str], seed: int) -> None:
        self.pair = pair
        self.tokens = tokens
        self.target: Node | None = None
        self.acked: dict[str, str] = {}  # client id -> signal id, from 202 and 200 answers
        self.conflicts: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rng = random.Random(seed)
        self.threads = [
            threading.Thread(target=self.client, args=(self.rng.random(),), daemon=True)
            for _ in range(STORM_CLIENTS)
        ]

    def client(self, seed: float) -> None:
        rng = random.Random(seed)
        prices = dict.fromkeys(self.tokens, 1.0)
        for _ in range(1_000_000):  # bounded; ends with `stop`
            if self.stop.is_set():
                return
            node = self.target
            if node is None:
                time.sleep(0.01)
                continue
            try:
                if rng.random() < 0.5:
                    cid = f"storm-{rng.randrange(5000)}"  # repeats too
                    r = buy(node, cid, rng.choice(self.tokens))
                    if r.status_code in (200, 202):
                        sid = r.json()["signal_id"]
                        with self.lock:
                            first = self.acked.setdefault(cid, sid)
                            if first != sid:
                                self.conflicts.append((cid, first, sid))
                else:
                    token = rng.choice(self.tokens)
                    prices[token] = max(0.3, min(3.0, prices[token] * rng.uniform(0.95, 1.052)))
                    tick(node, token, prices[token])
            except requests.RequestException:
                time.sleep(0.01)  # killed: the next node comes with `target`


@pytest.mark.slow
def test_kill_storm(pair: Pair) -> None:
    """The issue's storm: signals and ticks from several clients while the active is killed
    at random points STORM_KILLS times. Every acknowledged signal is known to the last active
    under the same id, a client id never maps to two signals, no order filled twice, no
    position bought or sold twice, and the balance is the deposit plus the recorded trades."""
    active = pair.start("active", "a")
    wait_ready(active)
    standby = pair.start("standby", "b")
    wait_standby(standby)
    tokens = [demo_mint(f"STORM{i}") for i in range(4)]
    storm = Storm(pair, tokens, seed=18)
    storm.target = active
    for t in storm.threads:
        t.start()
    takeovers: list[float] = []
    try:
        for _ in range(STORM_KILLS):
            time.sleep(storm.rng.uniform(0.2, 1.2))  # a random point in the storm
            started = time.monotonic()
            active.proc.kill()
            active.proc.wait(timeout=10)
            storm.target = None
            wait_ready(standby)
            takeovers.append(time.monotonic() - started)
            storm.target = standby
            active, standby = standby, pair.start("standby", active.data_dir.name)
            wait_standby(standby)
    finally:
        storm.stop.set()
        for t in storm.threads:
            t.join(timeout=15)
    assert not storm.conflicts, storm.conflicts[:5]
    assert len(storm.acked) > STORM_KILLS  # the storm did run
    for cid, sid in sorted(storm.acked.items()):
        known = active.get(f"/v1/signals/{sid}")
        assert known.status_code == 200, (cid, sid, known.text)
    every = positions(active)
    per_signal: dict[str, int] = {}
    for p in every:
        per_signal[p["signal_id"]] = per_signal.get(p["signal_id"], 0) + 1
    assert all(n == 1 for n in per_signal.values()), per_signal
    # (a position may come from a signal whose 202 the kill cut off: durable, not acknowledged)
    done = check_trades(active, every)
    ordered = sorted(takeovers)
    print(
        f"\nstorm: {len(storm.acked)} signals acknowledged, {len(every)} positions, "
        f"{len(done)} trades; takeover over {len(takeovers)} kills (lease_ms={LEASE_MS}): "
        f"p50 {ordered[len(ordered) // 2]:.2f}s, max {ordered[-1]:.2f}s"
    )


def test_clean_stop_hands_over_without_waiting(pair: Pair) -> None:
    """SIGTERM: the active drains, then releases the lease; the standby takes it at its next
    poll instead of after lease_ms (shown by the log line, not by timing)."""
    active = pair.start("active", "a")
    wait_ready(active)
    standby = pair.start("standby", "b")
    wait_standby(standby)
    active.proc.send_signal(signal.SIGTERM)
    assert active.proc.wait(timeout=30) == 0
    assert any(line.get("msg") == "cluster: lease released" for line in active.logs())
    wait_ready(standby)
    assert standby.health()["cluster"]["fencing_token"] == 2


def test_a_role_needs_the_external_store(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_")},
        "TRADINGD_STORE": "memory",
    }
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    for store_env in ({"TRADINGD_STORE": "memory"}, {"TRADINGD_STORE": ""}):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tradingd.adapters.app.cli",
                "run",
                "--no-demo",
                "--data-dir",
                str(tmp_path / "d"),
                "--role",
                "standby",
            ],
            cwd=REPO,
            env={**env, **store_env},
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert b"needs the external store" in done.stderr
        assert b"REDIS_URL and DATABASE_URL" in done.stderr
