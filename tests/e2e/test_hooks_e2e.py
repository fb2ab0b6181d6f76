"""A provider given a hook URL trades on paper through the real `tradingd run` process: a key
and a hook made with the CLI in the daemon's data dir, TradingView-shaped bodies POSTed with no
Authorization header (as application/json and as text/plain), the position opened and closed
by them; the hook id appears nowhere in the daemon's log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
SOL = "So11111111111111111111111111111111111111112"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
CONFIG = f"""
[feeds.synthetic]
enabled = false

[tokens.{BONK}]
symbol = "BONK"
decimals = 5

[[agents]]
id = "hooked"
name = "follows the TradingView hook"
paper_deposit = "5000000000"
"""


def cli(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", *args, "--data-dir", str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def field(out: str, name: str) -> str:
    return out.split(f"{name}: ", 1)[1].split()[0]


def test_a_tradingview_hook_trades_on_paper_and_its_id_is_never_logged(daemon_factory):
    d = daemon_factory(config_text=CONFIG)
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {d.admin_key}"
    key_id = field(cli(d.data_dir, "keys", "create", "--name", "tv", "--scopes", "signals"), "id")
    created = cli(
        d.data_dir, "hooks", "create", "--name", "tv alerts", "--key-id", key_id, "--source", "tv"
    )
    record_id, path = field(created, "id"), field(created, "path")
    secret = path.rsplit("/", 1)[1]
    poll_until(
        lambda: admin.get(d.base_url + "/v1/hooks", timeout=10).json(),
        lambda doc: [h["id"] for h in doc.get("items", [])] == [record_id],
        tries=200,
        interval_s=0.05,
        what="the daemon sees the CLI's hook",
    )
    ticks = [{"token": SOL, "price_usd": 150.0}, {"token": BONK, "price_usd": 0.00002}]
    assert admin.post(d.base_url + "/v1/prices", json={"ticks": ticks}, timeout=10).ok

    buy = {"action": "buy", "ticker": "BONKUSDT", "id": "tv-e2e-1", "close": 0.00002, "source": "x"}
    resp = requests.post(d.base_url + path, json=buy, timeout=10)  # no Authorization header
    assert resp.status_code == 202, resp.text
    signal = admin.get(f"{d.base_url}/v1/signals/{resp.json()['signal_id']}", timeout=10).json()
    assert (signal["token"], signal["source"], signal["side"]) == (BONK, "tv", "buy")
    positions = d.base_url + "/v1/agents/hooked/positions?status=open"
    opened = poll_until(
        lambda: admin.get(positions, timeout=10).json(),
        lambda doc: bool(doc["items"]),
        tries=200,
        interval_s=0.05,
        what="the hook's buy opens a position",
    )
    position_id = opened["items"][0]["id"]

    again = requests.post(d.base_url + path, json=buy, timeout=10)
    assert again.status_code == 200 and again.json()["signal_id"] == resp.json()["signal_id"]
    refused = requests.post(d.base_url + path, json={"action": "{{strategy.order.action}}"})
    assert refused.status_code == 422

    sell = json.dumps({"action": "sell", "token": BONK}).encode()
    resp = requests.post(
        d.base_url + path, data=sell, headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert resp.status_code == 202, resp.text
    closed = poll_until(
        lambda: admin.get(f"{d.base_url}/v1/positions/{position_id}", timeout=10).json(),
        lambda p: p["status"] == "closed",
        tries=200,
        interval_s=0.05,
        what="the hook's sell closes the position",
    )
    assert closed["exit_reason"] == "signal"

    listed = cli(d.data_dir, "hooks", "list")
    assert record_id in listed and secret not in listed
    cli(d.data_dir, "hooks", "revoke", record_id)
    gone = poll_until(
        lambda: requests.post(d.base_url + path, json=buy, timeout=10).status_code,
        lambda status: status == 404,
        tries=200,
        interval_s=0.05,
        what="the revoked hook answers 404",
    )
    assert gone == 404
    assert d.stop() == 0
    log = d.log_path.read_text()
    assert '"hook signal"' in log and record_id in log
    assert secret[len("tdh_") :] not in log
