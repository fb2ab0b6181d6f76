"""The real `tradingd run` process on the embedded store: state survives a graceful restart and a
kill -9; a second daemon on the same data dir refuses to start; shutdown stops the servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from tradingd.adapters.store.embedded import EmbeddedServers

from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
SOL = "So11111111111111111111111111111111111111112"
TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]
EMBEDDED = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory
CONFIG = {
    "stop_loss": {"mode": "trailing", "trail_pct": 30},
    "take_profit": {"enabled": True, "levels": [{"gain_pct": 20, "sell_pct": 25}]},
    "dca": {
        "enabled": True,
        "levels": [{"drop_pct": -10, "buy_pct": 50}],
        "max_count": 2,
        "cooldown_s": 0,
    },
}


class Api:
    def __init__(self, d: Any) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return self.session.request(method, self.base + path, json=body, timeout=10)

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.call(method, path, body)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def prices(self, prices: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.ok(
            "POST",
            "/v1/prices",
            {"ticks": [{"token": t, "price_usd": p, "ts": now} for t, p in prices.items()]},
        )

    def until(self, path: str, predicate: Any, timeout: float = 10) -> Any:
        """GET `path` until its document satisfies `predicate`; returns that document."""
        return poll_until(
            lambda: self.ok("GET", path), predicate, timeout_s=timeout, interval_s=0.02, what=path
        )


def build_state(api: Api) -> tuple[str, str]:
    alpha = api.ok(
        "POST", "/v1/agents", {"name": "alpha", "venue": "paper", "quote": "SOL", "config": CONFIG}
    )["id"]
    beta = api.ok("POST", "/v1/agents", {"name": "beta", "venue": "paper", "quote": "SOL"})["id"]
    api.ok("POST", f"/v1/agents/{alpha}/deposits", {"asset": "SOL", "amount": "50000000000"})
    api.prices({SOL: 150.0, TOKENS[0]: 1.0, TOKENS[1]: 2.0, TOKENS[2]: 3.0})
    for i, token in enumerate(TOKENS):
        api.ok(
            "POST", "/v1/signals", {"id": f"prov-{i}", "token": token, "type": "t", "strength": 3}
        )
    positions = f"/v1/agents/{alpha}/positions?status=open"
    api.until(positions, lambda d: len(d["items"]) == 3)
    api.prices({TOKENS[0]: 1.3})  # take-profit level 1 sells a quarter
    api.until(f"/v1/agents/{alpha}/trades", lambda d: len(d["items"]) == 4)
    api.prices({TOKENS[1]: 1.75})  # DCA level 1
    api.until(positions, lambda d: any(p["dca_count"] == 1 for p in d["items"]))
    third = next(p for p in api.ok("GET", positions)["items"] if p["token"] == TOKENS[2])
    api.ok("POST", f"/v1/agents/{alpha}/positions/{third['id']}/close", {"pct": 100})
    api.until(f"/v1/agents/{alpha}/positions?status=closed", lambda d: len(d["items"]) == 1)
    api.ok("POST", f"/v1/agents/{beta}/pause")
    api.until(f"/v1/agents/{alpha}/trades", lambda d: len(d["items"]) >= 6)
    return alpha, beta


def read_state(api: Api, agents: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for aid in agents:
        out[aid] = {
            "agent": api.ok("GET", f"/v1/agents/{aid}"),
            "balances": api.ok("GET", f"/v1/agents/{aid}/balances"),
            "open": api.ok("GET", f"/v1/agents/{aid}/positions?status=open"),
            "closed": api.ok("GET", f"/v1/agents/{aid}/positions?status=closed"),
            "trades": api.ok("GET", f"/v1/agents/{aid}/trades"),
        }
    signals = api.ok("GET", "/v1/signals?limit=1000")["items"]
    out["signals"] = sorted(signals, key=lambda s: s.get("id") or s.get("signal_id"))
    return out


def test_state_survives_a_graceful_restart_and_a_kill_9(daemon_starter, tmp_path):
    data = tmp_path / "data"
    d = daemon_starter(data, env=EMBEDDED)
    try:
        api = Api(d)
        agents = build_state(api)
        time.sleep(0.2)  # let write-through settle; the signal route does not await it yet
        before = read_state(api, agents)
        open_positions = before[agents[0]]["open"]["items"]
        assert {p["dca_count"] for p in open_positions} == {0, 1}
        assert any(p["next_take_profit_usd"] is None or p["amount"] for p in open_positions)
        assert d.stop() == 0

        d = daemon_starter(data, env=EMBEDDED, admin_key=d.admin_key)
        api = Api(d)
        assert read_state(api, agents) == before
        again = api.call(
            "POST", "/v1/signals", {"id": "prov-0", "token": TOKENS[0], "type": "t", "strength": 3}
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True
        d.stop(signal.SIGKILL)

        d = daemon_starter(data, env=EMBEDDED, admin_key=d.admin_key)
        assert read_state(Api(d), agents) == before
        assert d.stop() == 0
        assert EmbeddedServers(data).redis._running_pid() is None  # graceful stop stops the servers
    finally:
        d.stop(signal.SIGKILL)
        EmbeddedServers(data).stop()


def test_a_second_daemon_on_the_same_data_dir_refuses_to_start(daemon_starter, tmp_path):
    data = tmp_path / "data"
    d = daemon_starter(data, env=EMBEDDED)
    try:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "tradingd.adapters.app.cli",
                "run",
                "--no-demo",
                "--port",
                "0",
                "--data-dir",
                str(data),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "TRADINGD_LOG_LEVEL": "error"},
        )
        assert res.returncode != 0
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("tradingd: data dir") and "in use by another tradingd" in last
        assert requests.get(d.base_url + "/health/ready", timeout=5).status_code == 200
    finally:
        d.stop()
        EmbeddedServers(data).stop()


def test_an_embedded_redis_killed_under_the_daemon_is_started_again_and_nothing_is_lost(
    daemon_starter, tmp_path
):
    """The daemon owns its embedded servers: a Redis killed (an out-of-memory kill, an operator)
    is started again within seconds, the spill is replayed and buys resume. Before, it stayed
    down, and buys paused, until the daemon was restarted (a tester's finding)."""
    data = tmp_path / "data"
    d = daemon_starter(data, env=EMBEDDED)
    try:
        api = Api(d)
        agents = build_state(api)
        redis = EmbeddedServers(data).redis
        pid = redis._running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        api.ok("POST", f"/v1/agents/{agents[1]}/deposits", {"asset": "SOL", "amount": "7"})
        api.until(
            "/health",
            lambda h: h["components"]["redis"]["status"] == "ok",
            timeout=30,
        )
        assert redis._running_pid() not in (None, pid)
        before = read_state(api, agents)
        assert d.stop() == 0
        d = daemon_starter(data, env=EMBEDDED, admin_key=d.admin_key)
        assert read_state(Api(d), agents) == before
        balances = Api(d).ok("GET", f"/v1/agents/{agents[1]}/balances")
        assert any(b["asset"] == "SOL" and b["total"] == "7" for b in balances)
        assert d.stop() == 0
    finally:
        d.stop(signal.SIGKILL)
        EmbeddedServers(data).stop()


def test_an_embedded_postgres_killed_under_the_daemon_is_started_again_and_drained(
    daemon_starter, tmp_path
):
    """As a killed Redis: the stream keeps what Postgres missed, drained once it is back."""
    data = tmp_path / "data"
    d = daemon_starter(data, env=EMBEDDED)
    try:
        api = Api(d)
        agents = build_state(api)
        pid = EmbeddedServers(data).postgres.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        api.ok("POST", f"/v1/agents/{agents[1]}/deposits", {"asset": "SOL", "amount": "7"})
        poll_until(
            lambda: EmbeddedServers(data).postgres.pid,
            lambda now: now not in (None, pid),
            timeout_s=30,
            what="postgres started again",
        )
        api.until(
            "/health",
            lambda h: (
                h["components"]["postgres"]["status"] == "ok"
                and h["write_behind_lag"]["entries"] == 0
            ),
            timeout=60,
        )
        before = read_state(api, agents)
        assert d.stop() == 0
        d = daemon_starter(data, env=EMBEDDED, admin_key=d.admin_key)
        assert read_state(Api(d), agents) == before
        assert d.stop() == 0
    finally:
        d.stop(signal.SIGKILL)
        EmbeddedServers(data).stop()
