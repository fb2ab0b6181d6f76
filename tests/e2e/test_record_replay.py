"""A recording replays to the daemon's decisions: the real `tradingd record --out FILE` (and `run`
with `[feeds.record]`) takes ticks and signals over HTTP, its exits fire, it stops on SIGTERM,
and `tradingd replay FILES --config <the same> --json` reports the same positions, exit
reasons, fills and PnL as the daemon's REST API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tradingd.adapters.feeds.synthetic import demo_mint

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
OTHER = demo_mint("E2ERECORD")
AGENT = "rec"
CONFIG = f"""
[[agents]]
id = "{AGENT}"
name = "recorded"
venue = "paper"
quote = "USDC"
paper_deposit = 1000000000

[agents.config]
stop_loss = {{ mode = "fixed", default_pct = -10 }}
take_profit = {{ enabled = true, levels = [{{ gain_pct = 20, sell_pct = 50 }}] }}
limits = {{ max_positions_per_token = 5 }}
execution = {{ slippage_bps = 50, fee_bps = 25 }}
"""


def start(data_dir: Path, command: list[str], config_text: str = CONFIG) -> DaemonProcess:
    """`tradingd <command> --config <data_dir>/tradingd.toml` on a free port with the memory
    store, JSON logs and a random admin key; returns once ready."""
    return start_daemon(
        data_dir,
        command=command[0],
        args=tuple(command[1:]),
        config_text=config_text,
        env={"TRADINGD_LOG_FORMAT": "json"},
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    daemons: list[DaemonProcess] = []
    yield daemons
    for d in daemons:
        d.stop()


class Api:
    def __init__(self, d: DaemonProcess) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.session.request(method, self.base + path, json=body, timeout=10)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def prices(self, *ticks: dict[str, Any]) -> None:
        doc = self.ok("POST", "/v1/prices", {"ticks": list(ticks)})
        assert doc["accepted"] == len(ticks), doc

    def positions(self, status: str) -> list[dict[str, Any]]:
        return self.ok("GET", f"/v1/agents/{AGENT}/positions?status={status}&limit=100")["items"]


def drive(api: Api) -> None:
    """Ticks and signals that open four positions and close them by take-profit then
    stop-loss, stop-loss, and a sell signal; a duplicate signal and a refused one on the way."""
    now = int(time.time() * 1000)
    api.prices(
        {"token": TOKEN, "price_usd": 1.0, "decimals": 5, "ts": now - 250, "liquidity_usd": 2e6},
        {"token": OTHER, "price_usd": 2.0, "decimals": 6},
    )
    api.ok("POST", "/v1/signals", {"id": "e2e-1", "token": TOKEN, "strength": 3, "symbol": "BONK"})
    api.ok("POST", "/v1/signals", {"id": "e2e-1", "token": TOKEN, "strength": 3})  # duplicate
    api.ok("POST", "/v1/signals", {"id": "e2e-2", "token": OTHER, "strength": 4, "type": "b"})
    refused = api.session.post(
        api.base + "/v1/signals", json={"token": OTHER, "decimals": 9}, timeout=10
    )
    assert refused.status_code == 422, refused.text  # decimals conflict: recorded, refused
    api.prices({"token": TOKEN, "price_usd": 1.1}, {"token": OTHER, "price_usd": 2.1})
    api.prices({"token": TOKEN, "price_usd": 1.3})  # take-profit: half sold
    api.prices({"token": TOKEN, "price_usd": 1.2}, {"token": OTHER, "price_usd": 1.7})  # stop
    api.prices({"token": TOKEN, "price_usd": 0.9})  # the rest: stop-loss
    api.ok("POST", "/v1/signals", {"id": "e2e-3", "token": TOKEN, "strength": 2})
    api.prices({"token": TOKEN, "price_usd": 0.95})
    api.ok("POST", "/v1/signals", {"id": "e2e-4", "token": TOKEN, "side": "sell"})
    poll_until(
        lambda: api.positions("open"),
        lambda items: items == [],
        tries=200,
        interval_s=0.02,
        what="every position closed",
    )


def replay(files: list[Path], config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", *map(str, files)]
        + ["--config", str(config), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


Fill = tuple[str, str, str, str, float, str, str]


def fills(trades: list[dict[str, Any]]) -> list[Fill]:
    return [
        (
            t["side"],
            t["token"],
            t["amount"],
            t["quote_amount"],
            t["price_usd"],
            t["fee"],
            t["reason"],
        )
        for t in trades
    ]


def exits_by_position(trades: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(token, reasons of its sells) per position, in the order positions were opened."""
    out: dict[str, tuple[str, list[str]]] = {}
    for t in trades:
        token, sells = out.setdefault(t["position_id"], (t["token"], []))
        if t["side"] == "sell":
            sells.append(t["reason"])
    return list(out.values())


@dataclass
class Decisions:
    """What the daemon's REST API reports after the run."""

    trades: list[dict[str, Any]]
    closed: list[dict[str, Any]]
    performance: dict[str, Any]


def run_and_stop(d: DaemonProcess) -> Decisions:
    """Drive the daemon, read its REST reports and the recorder's health, stop it (SIGTERM)."""
    api = Api(d)
    drive(api)
    decisions = Decisions(
        trades=api.ok("GET", f"/v1/agents/{AGENT}/trades?limit=1000")["items"],
        closed=api.positions("closed"),
        performance=api.ok("GET", f"/v1/agents/{AGENT}/performance"),
    )
    record = api.ok("GET", "/health")["components"]["feeds"]["record"]
    assert record["status"] == "ok" and record["dropped"] == 0, record
    assert record["records"] > 0
    assert d.stop() == 0
    return decisions


def assert_replay_matches(d: DaemonProcess, daemon: Decisions, files: list[Path]) -> None:
    report = replay(files, d.data_dir / "tradingd.toml")
    (agent,) = report["agents"]
    assert fills(agent["trades"]) == fills(daemon.trades)
    assert exits_by_position(agent["trades"]) == exits_by_position(daemon.trades)
    perf = daemon.performance
    assert agent["realized_pnl"] == perf["realized_pnl"]
    assert (agent["round_trips"], agent["wins"], agent["losses"]) == (
        perf["trades"],
        perf["wins"],
        perf["losses"],
    )
    assert agent["open_positions"] == []


def test_tradingd_record_replays_to_the_daemons_decisions(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    out = tmp_path / "recordings" / "market.jsonl"
    d = start(tmp_path / "var", ["record", "--out", str(out)])
    started.append(d)
    daemon = run_and_stop(d)

    assert [p["exit_reason"] for p in daemon.closed] == ["stop_loss", "stop_loss", "signal"]
    sells = [t["reason"] for t in daemon.trades if t["side"] == "sell"]
    assert sells == ["take_profit", "stop_loss", "stop_loss", "signal"]
    files = sorted(out.parent.glob("market-*.jsonl"))
    assert len(files) == 1 and files[0].read_bytes().endswith(b"\n")
    kinds = [json.loads(line)["kind"] for line in files[0].read_text().splitlines()]
    assert kinds.count("signal") == 6  # the duplicate and the refused one too
    assert_replay_matches(d, daemon, files)


def test_run_with_feeds_record_in_the_config_records_under_the_data_dir(
    tmp_path: Path, started: list[DaemonProcess]
) -> None:
    config = CONFIG + '\n[feeds.record]\nenabled = true\npath = "rec/ticks.jsonl"\n'
    d = start(tmp_path / "var", ["run"], config)
    started.append(d)
    daemon = run_and_stop(d)
    files = sorted((d.data_dir / "rec").glob("ticks-*.jsonl"))
    assert len(files) == 1
    assert_replay_matches(d, daemon, files)
