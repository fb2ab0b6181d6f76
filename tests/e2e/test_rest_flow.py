"""The paper trading flow over HTTP against the real `tradingd run` process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]

SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


class Client:
    def __init__(self, d: Any, key: str | None = None) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key or d.admin_key}"

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return self.session.request(method, self.base + path, json=body, timeout=10)

    def ok(self, method: str, path: str, body: object = None) -> dict:
        resp = self.call(method, path, body)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def until(self, path: str, predicate, tries: int = 200) -> dict:
        """GET `path` until its document satisfies `predicate`; returns that document."""
        return poll_until(
            lambda: self.ok("GET", path), predicate, tries=tries, interval_s=0.02, what=path
        )


def test_paper_position_opens_on_a_signal_and_the_trailing_stop_closes_it(daemon):
    api = Client(daemon)
    agent = api.ok(
        "POST",
        "/v1/agents",
        {
            "name": "e2e",
            "venue": "paper",
            "quote": "SOL",
            "config": {"stop_loss": {"mode": "trailing", "trail_pct": 10, "default_pct": -30}},
        },
    )
    balance = api.ok(
        "POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": "5000000000"}
    )
    assert balance["total"] == "5000000000"
    api.ok(
        "POST",
        "/v1/prices",
        {"ticks": [{"token": SOL, "price_usd": 150.0}, {"token": TOKEN, "price_usd": 1.0}]},
    )
    resp = api.call(
        "POST", "/v1/signals", {"id": "e2e-1", "token": TOKEN, "symbol": "BONK", "strength": 4}
    )
    assert resp.status_code == 202
    signal_id = resp.json()["signal_id"]
    positions = f"/v1/agents/{agent['id']}/positions?status=open"
    opened = api.until(positions, lambda d: d["items"] and d["items"][0]["status"] == "open")
    position_id = opened["items"][0]["id"]

    again = api.call("POST", "/v1/signals", {"id": "e2e-1", "token": TOKEN})
    assert again.status_code == 200 and again.json()["signal_id"] == signal_id

    api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 2.0}]})
    api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 1.7}]})
    closed = api.until(f"/v1/positions/{position_id}", lambda p: p["status"] == "closed")
    assert closed["exit_reason"] == "stop_loss"

    trades = api.ok("GET", f"/v1/agents/{agent['id']}/trades")["items"]
    assert [t["side"] for t in trades] == ["buy", "sell"]
    record = api.ok("GET", f"/v1/signals/{signal_id}")
    assert record["executions"][0]["status"] == "filled"
    perf = api.ok("GET", f"/v1/agents/{agent['id']}/performance")
    assert perf["trades"] == 1 and perf["wins"] == 1
    assert daemon.stop() == 0


def test_a_key_made_by_the_cli_works_against_the_running_daemon(daemon):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradingd.adapters.app.cli",
            "keys",
            "create",
            "--name",
            "feeder",
            "--scopes",
            "feed",
            "--data-dir",
            str(daemon.data_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    raw = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("key: "))
    feeder = Client(daemon, raw)
    resp = poll_until(  # the daemon re-reads the key file at most once a second
        lambda: feeder.call("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 1.0}]}),
        lambda r: r.status_code != 401,
        tries=100,
        interval_s=0.05,
        what="the new feed key accepted",
    )
    assert resp.status_code == 202
    assert feeder.call("GET", "/v1/agents").status_code == 403
    assert raw not in daemon.log_path.read_text()


def test_errors_share_one_shape_on_the_wire(daemon):
    api = Client(daemon)
    for method, path, body, status in [
        ("GET", "/v1/nowhere", None, 404),
        ("DELETE", "/health", None, 405),
        ("POST", "/v1/signals", {"token": "bad"}, 422),
        ("GET", "/v1/agents/none", None, 404),
    ]:
        resp = api.call(method, path, body)
        assert resp.status_code == status
        assert resp.headers["Content-Type"].startswith("application/json")
        assert set(resp.json()["error"]) == {"code", "message", "details"}
    resp = requests.get(daemon.base_url + "/v1/agents", timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
