"""Notifications from the real `tradingd run` process: channels configured in the TOML with
their secrets from the environment (`env:VAR`), a fake Telegram and a webhook sink on 127.0.0.1
(in a thread of this process). An agent's buy, its stop-out and the account breaker it trips
(`[breakers] consecutive_stop_outs = 1`) reach Telegram as messages and the webhook as signed
JSON; /health shows the channels; after SIGTERM the log holds neither secret."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.fakes.notify_servers import FakeTelegram, Seen, WebhookSink
from tests.polling import poll_until

SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
WAIT_S = 20.0


class Fakes:
    """The fake Telegram and webhook sink on their own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.telegram = FakeTelegram()
        self.sink = WebhookSink()
        self._run(self.telegram.start())
        self._run(self.sink.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def texts(self) -> list[str]:
        async def read() -> list[str]:
            return self.telegram.texts

        return self._run(read())  # type: ignore[no-any-return]

    def hooks(self) -> list[Seen]:
        async def read() -> list[Seen]:
            return list(self.sink.seen)

        return self._run(read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._run(self.telegram.close())
        self._run(self.sink.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    yield f
    f.stop()


def config(fakes: Fakes) -> str:
    return f"""
[breakers]
consecutive_stop_outs = 1

[[notify.channels]]
name = "ops"
kind = "telegram"
api_url = "{fakes.telegram.url}"
bot_token = "env:E2E_TG_TOKEN"
chat_id = -100777
events = ["fills", "exits", "breakers"]
backoff_initial_ms = 50

[[notify.channels]]
name = "audit"
kind = "webhook"
url = "{fakes.sink.url}/hook"
secret = "env:E2E_HOOK_SECRET"
"""


def call(d: DaemonProcess, method: str, path: str, body: object = None) -> Any:
    resp = requests.request(method, d.base_url + path, json=body, headers=d.headers, timeout=10)
    assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
    return resp.json() if resp.content else None


def test_trades_and_a_breaker_trip_reach_telegram_and_the_webhook(
    tmp_path: Path, fakes: Fakes
) -> None:
    env = {
        "E2E_TG_TOKEN": fakes.telegram.token,
        "E2E_HOOK_SECRET": fakes.sink.secret,
        "TRADINGD_LOG_LEVEL": "debug",
    }
    d = start_daemon(tmp_path / "d", env=env, config_text=config(fakes))
    try:
        agent = call(d, "POST", "/v1/agents", {"name": "alpha", "config": {
            "sizing": {"mode": "fixed", "amount": "100000000"},
            "stop_loss": {"mode": "fixed", "default_pct": -10}}})  # fmt: skip
        call(
            d,
            "POST",
            f"/v1/agents/{agent['id']}/deposits",
            {"asset": "SOL", "amount": "10000000000"},
        )  # noqa: E501
        ticks = [{"token": SOL, "price_usd": 150.0}, {"token": TOKEN, "price_usd": 1.0}]
        call(d, "POST", "/v1/prices", {"ticks": ticks})
        call(d, "POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK"})
        poll_until(lambda: "\n".join(fakes.texts()), lambda t: "BUY BONK" in t,
                   timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the buy on Telegram")  # fmt: skip
        call(d, "POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 0.8}]})
        joined = poll_until(
            lambda: "\n".join(fakes.texts()),
            lambda t: "BREAKER breaker_tripped" in t and "CLOSED BONK (stop_loss)" in t,
            timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the stop-out and the trip",
        )  # fmt: skip
        assert "<b>BUY BONK · alpha</b>" in joined and "<b>SELL BONK · alpha</b>" in joined
        assert "consecutive_stop_outs" in joined
        hooks = poll_until(
            fakes.hooks, lambda hs: {"fills", "exits", "breakers"} <= {h.body["kind"] for h in hs},
            timeout_s=WAIT_S, tries=10_000, interval_s=0.05, what="the webhook's events",
        )  # fmt: skip
        assert all(fakes.sink.verifies(h) and h.status == 200 for h in hooks)
        fill = next(h.body for h in hooks if h.body["kind"] == "fills")
        assert fill["event"]["event"] == "OrderFilled"
        assert fill["event"]["trade"]["quote_amount"] == 100000000  # atomic, as an integer
        health = call(d, "GET", "/health")["components"]["notifications"]
        assert health["ops"]["sent"] >= 1 and health["ops"]["failed"] == 0
        assert health["audit"]["kind"] == "webhook"
    finally:
        assert d.stop() == 0
    logged = d.log_path.read_text()
    assert "notifications on" in logged
    assert fakes.telegram.token not in logged
    assert fakes.sink.secret not in logged
