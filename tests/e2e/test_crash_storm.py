"""Crash storm: 20 times start the real daemon on one data dir, storm it with signals, ticks and
closes from several clients, kill -9 it after a random delay, and start it again. Afterwards:
every acknowledged signal traded at most once per agent, no position sold twice, every fill
recorded once, balances equal deposits plus recorded trade deltas, and once the writer has
drained, Postgres holds exactly what the daemon shows."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.embedded import EmbeddedServers
from tradingd.adapters.store.recovery import StateBook
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.core import Engine
from tradingd.engine.snapshot import restore

from tests.polling import poll_until

ITERATIONS = 20
CLIENTS = 3
SOL = "So11111111111111111111111111111111111111112"
TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]
EMBEDDED = {"TRADINGD_STORE": ""}
DEPOSIT = 1000 * 10**9
AGENT_CONFIG = {
    "sizing": {"amount": "100000000"},
    "limits": {"max_open_positions": 100_000, "max_positions_per_token": 1000},
    "stop_loss": {"mode": "trailing", "trail_pct": 2},
    "take_profit": {"enabled": True, "levels": [{"gain_pct": 3, "sell_pct": 50}]},
}

pytestmark = pytest.mark.slow


class Storm:
    """Clients hammering one daemon until it dies; records the signals it acknowledged."""

    def __init__(
        self, base_url: str, key: str, agents: list[str], seed: int, acked: set[str]
    ) -> None:
        self.base = base_url
        self.key = key
        self.agents = agents
        self.rng = random.Random(seed)
        self.acked = acked
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def client(self, n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        rng = random.Random(self.rng.random())
        prices = {t: 1.0 for t in TOKENS}
        while not self.stop.is_set():
            try:
                action = rng.random()
                if action < 0.45:
                    sid = f"storm-{rng.randrange(400)}"  # ids repeat across clients and restarts
                    r = session.post(
                        self.base + "/v1/signals",
                        json={"id": sid, "token": rng.choice(TOKENS)},
                        timeout=5,
                    )
                    if r.status_code == 202:
                        with self.lock:
                            self.acked.add(sid)
                elif action < 0.85:
                    for t in TOKENS:
                        prices[t] = max(0.2, min(5.0, prices[t] * (1 + rng.uniform(-0.03, 0.032))))
                    now = int(time.time() * 1000)
                    ticks = [{"token": t, "price_usd": p, "ts": now} for t, p in prices.items()]
                    session.post(
                        self.base + "/v1/prices",
                        json={"ticks": [{"token": SOL, "price_usd": 150.0, "ts": now}, *ticks]},
                        timeout=5,
                    )
                else:
                    agent = rng.choice(self.agents)
                    items = session.get(
                        self.base + f"/v1/agents/{agent}/positions?status=open", timeout=5
                    ).json()["items"]
                    if items:
                        p = rng.choice(items)
                        session.post(
                            self.base + f"/v1/agents/{agent}/positions/{p['id']}/close",
                            json={"pct": 100},
                            timeout=5,
                        )
            except (requests.RequestException, ValueError, KeyError):
                return  # the daemon was killed


def api(d: Any) -> requests.Session:
    return d.admin_session()


def wait_settled(d: Any, agents: list[str], timeout: float = 20) -> None:
    """No order in flight (nothing reserved, nothing closing) and the writer drained."""
    s = api(d)

    def progress() -> tuple[int, set[str], int]:
        health = s.get(d.base_url + "/health", timeout=5).json()
        reserved = {
            b["reserved"]
            for a in agents
            for b in s.get(d.base_url + f"/v1/agents/{a}/balances", timeout=5).json()
        }
        closing = [
            p
            for a in agents
            for p in s.get(d.base_url + f"/v1/agents/{a}/positions?status=open", timeout=5).json()[
                "items"
            ]
            if p["status"] != "open"
        ]
        return health["write_behind_lag"]["entries"], reserved, len(closing)

    poll_until(
        progress,
        lambda got: got[0] == 0 and got[1] <= {"0"} and got[2] == 0,
        timeout_s=timeout,
        interval_s=0.1,
        what="daemon settled (writer lag, reserved amounts, positions closing)",
    )


def shown_state(d: Any, agents: list[str]) -> dict[str, Any]:
    s = api(d)
    out: dict[str, Any] = {}
    for a in agents:
        balances = s.get(d.base_url + f"/v1/agents/{a}/balances", timeout=5).json()
        positions = s.get(
            d.base_url + f"/v1/agents/{a}/positions?status=open&limit=1000", timeout=5
        ).json()["items"]
        trades, cursor = [], None
        while True:
            page = s.get(
                d.base_url
                + f"/v1/agents/{a}/trades?limit=1000"
                + (f"&cursor={cursor}" if cursor else ""),
                timeout=5,
            ).json()
            trades += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        out[a] = {
            "balances": {b["asset"]: (int(b["total"]), int(b["reserved"])) for b in balances},
            "open": {p["id"]: int(p["amount"]) for p in positions},
            "trades": sorted(t["id"] for t in trades),
        }
    return out


async def postgres_engine(data: Path) -> Engine:
    """An Engine restored from Postgres alone (what the writer has committed)."""
    servers = EmbeddedServers(data)
    _, url = servers.start()
    conn = await pg.connect(url, "tradingd")
    try:
        book = StateBook()
        limits = pg.RecoveryLimits.of_engine()
        book.load_rows(await pg.load_rows(conn, limits))
        engine = Engine(wall_clock_ms)
        restore(engine, book.snapshot([], 0, limits))
        return engine
    finally:
        await conn.close()


def check_invariants(engine: Engine, deposits: dict[str, int]) -> None:
    for aid, agent in engine.agents.items():
        trades = engine.trades.get(aid, [])
        assert len({t.venue_ref for t in trades}) == len(trades), "an order filled twice"
        bal = engine.ledger.balance(aid, agent.quote)
        delta = sum(t.quote_amount if t.side == "sell" else -t.quote_amount for t in trades)
        assert bal.total == deposits[aid] + delta, "balance != deposits + recorded trade deltas"
        per_signal: dict[str, int] = {}
        for p in engine.agent_positions.get(aid, {}).values():
            if p.signal_id:
                per_signal[p.signal_id] = per_signal.get(p.signal_id, 0) + 1
            bought = sum(t.amount for t in trades if t.position_id == p.id and t.side == "buy")
            sold = sum(t.amount for t in trades if t.position_id == p.id and t.side == "sell")
            assert sold <= bought and p.amount == bought - sold, f"position {p.id} sold twice"
        assert all(n == 1 for n in per_signal.values()), (
            "an acknowledged signal traded twice for one agent"
        )


def test_crash_storm_loses_nothing_and_does_nothing_twice(daemon_starter, tmp_path):
    data = tmp_path / "data"
    rng = random.Random(11)
    d = daemon_starter(data, env=EMBEDDED)
    key = d.admin_key
    try:
        s = api(d)
        agents = []
        for name in ("storm-a", "storm-b"):
            r = s.post(
                d.base_url + "/v1/agents",
                json={"name": name, "venue": "paper", "quote": "SOL", "config": AGENT_CONFIG},
            )
            agents.append(r.json()["id"])
            s.post(
                d.base_url + f"/v1/agents/{agents[-1]}/deposits",
                json={"asset": "SOL", "amount": str(DEPOSIT)},
            )
        assert d.stop() == 0  # agents and deposits are durable before the storm

        acked: set[str] = set()
        for i in range(ITERATIONS):
            d = daemon_starter(data, env=EMBEDDED, admin_key=key)
            storm = Storm(d.base_url, key, agents, seed=i, acked=acked)
            with ThreadPoolExecutor(CLIENTS) as pool:
                for n in range(CLIENTS):
                    pool.submit(storm.client, n)
                time.sleep(rng.uniform(0.2, 0.8))
                d.stop(signal.SIGKILL)
                storm.stop.set()
        assert acked

        d = daemon_starter(data, env=EMBEDDED, admin_key=key)
        wait_settled(d, agents)
        shown = shown_state(d, agents)
        assert d.stop() == 0
        engine = asyncio.run(postgres_engine(data))
        check_invariants(engine, dict.fromkeys(agents, DEPOSIT))
        in_pg = {
            a: {
                "balances": {b.asset: (b.total, b.reserved) for b in engine.ledger.balances(a)},
                "open": {
                    p.id: p.amount
                    for p in engine.agent_positions[a].values()
                    if p.status != "closed"
                },
                "trades": sorted(t.id for t in engine.trades[a]),
            }
            for a in agents
        }
        assert msgspec.to_builtins(in_pg) == msgspec.to_builtins(shown)
    finally:
        d.stop(signal.SIGKILL)
        EmbeddedServers(data).stop()
