"""Notifications through the real Daemon and Runtime (memory store, paper venue, the control
port in-process): a breaker alert raised on the daemon's alert path reaches a fake Telegram; a
hanging channel changes nothing about trading (fills happen, its drops are counted and shown in
/health and /metrics); fills and closes reach a Discord webhook with their amounts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from tradingd.adapters.app.settings import Settings, TokenSettings
from tradingd.adapters.notify.config import NotifySettings
from tradingd.engine import events as ev

from tests.fakes.notify_servers import BlackHole, FakeDiscord, FakeTelegram
from tests.integration.http_harness import SOL, TOKEN, Api, serve
from tests.polling import poll_until_async

TRAILING = {"stop_loss": {"mode": "fixed", "default_pct": -10}}


@asynccontextmanager
async def notify_daemon(
    data_dir: Path, *channels: dict[str, Any], tokens: dict[str, Any] | None = None
) -> AsyncIterator[Api]:
    """The in-process control port (http_harness.serve) with `channels` as `[notify]` (and
    `tokens` as `[tokens]`), their senders started as the daemon starts them."""

    def configure(settings: Settings) -> None:
        notify = {"channels": list(channels), "drain_s": 1.0}
        settings.notify = msgspec.convert(notify, NotifySettings)
        if tokens:
            settings.tokens = msgspec.convert(tokens, dict[str, TokenSettings])

    async with serve(data_dir, configure=configure) as api:
        api.daemon.start_notifications()
        yield api


async def test_a_breaker_alert_reaches_the_fake_telegram(tmp_path: Path) -> None:
    telegram = FakeTelegram()
    await telegram.start()
    try:
        channel = {"name": "ops", "kind": "telegram", "api_url": telegram.url,
                   "bot_token": telegram.token, "chat_id": 42, "events": ["breakers"]}  # fmt: skip
        async with notify_daemon(tmp_path, channel) as api:
            # The daemon's alert path (the store's outages use it); breakers emit the same event.
            api.daemon.publish(
                [ev.Alert(ts=api.daemon.engine.clock(), code="breaker_tripped",
                          message="account breaker tripped: buys halted",
                          details={"rule": "day_drawdown", "drawdown_pct": 12.5})]
            )  # fmt: skip
            api.daemon.publish([ev.Alert(ts=1, code="price_divergence", message="not asked")])
            await poll_until_async(lambda: telegram.delivered, what="the breaker message")
            text = telegram.delivered[0].body["text"]
            assert text.startswith("<b>BREAKER breaker_tripped</b>\naccount breaker tripped")
            assert "not asked" not in text
            health = await api.ok("GET", "/health")
            assert health["components"]["notifications"]["ops"]["sent"] == 1
            assert telegram.token not in str(health)
    finally:
        await telegram.close()


async def test_a_hanging_channel_does_not_stop_fills_and_its_drops_are_counted(
    tmp_path: Path,
) -> None:
    hole = BlackHole()
    url = await hole.start()
    try:
        channel = {"name": "hang", "kind": "discord", "url": url + "/api/webhooks/1/t",
                   "timeout_s": 30, "max_retries": 0, "queue_max": 2, "events": ["fills"]}  # fmt: skip
        async with notify_daemon(tmp_path, channel) as api:
            config = {**TRAILING, "limits": {"max_positions_per_token": 10}}
            agents = [await api.agent(config) for _ in range(3)]
            await api.prices((SOL, 150.0), (TOKEN, 1.0))
            for _ in range(3):
                await api.ok("POST", "/v1/signals", {"token": TOKEN})
                await api.settle()
            for agent_id in agents:  # every signal filled for every agent
                doc = await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=open")
                assert len(doc["items"]) == 3
            sender = api.daemon.notifier.senders["hang"]  # type: ignore[union-attr]
            # 9 fills: one request hangs with the first ones, the queue keeps the last 2
            await poll_until_async(lambda: hole.accepted, what="the hanging request")
            assert sender.stats.sent == 0 and len(sender.queue) == 2
            dropped = sender.stats.dropped
            assert dropped >= 9 - 2 - 3  # at most one signal's fills went out in the request
            health = await api.ok("GET", "/health")
            assert health["components"]["notifications"]["hang"]["dropped"] == dropped
            assert health["status"] == "ok"  # a dead channel is not the daemon's health
            status, metrics = await api.call("GET", "/metrics")
            assert f'tradingd_notify_dropped_total{{channel="hang"}} {dropped}.0' in metrics
            assert 'tradingd_notify_queue_depth{channel="hang"} 2.0' in metrics
        # the stop drained for drain_s, then dropped the rest: every fill is accounted for
        assert sender.stats.dropped + sender.stats.failed == 9 and sender.stats.sent == 0
    finally:
        await hole.close()


async def test_fills_and_a_close_reach_discord_with_their_amounts(tmp_path: Path) -> None:
    discord = FakeDiscord()
    await discord.start()
    try:
        channel = {"name": "trades", "kind": "discord", "url": discord.url + discord.webhook_path,
                   "events": ["fills", "exits"]}  # fmt: skip
        async with notify_daemon(tmp_path, channel) as api:
            await api.agent(TRAILING)
            await api.prices((SOL, 150.0), (TOKEN, 1.0))
            await api.ok("POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK"})
            await api.settle()
            await api.prices((TOKEN, 0.5))
            await api.settle()

            def joined() -> str:
                return "\n\n".join(discord.contents)

            await poll_until_async(lambda: "CLOSED" in joined(), what="the close message")
            text = joined()
            assert "**BUY BONK · t**" in text and "**SELL BONK · t**" in text
            assert "**CLOSED BONK (stop\\_loss) · t**" in text
            assert "realized PnL \\-" in text
    finally:
        await discord.close()


async def test_a_token_is_named_by_its_tokens_table_symbol_when_the_signal_gives_none(
    tmp_path: Path,
) -> None:
    discord = FakeDiscord()
    await discord.start()
    try:
        channel = {"name": "trades", "kind": "discord", "url": discord.url + discord.webhook_path,
                   "events": ["fills"]}  # fmt: skip
        tokens = {TOKEN: {"symbol": "BONK", "decimals": 5}}
        async with notify_daemon(tmp_path, channel, tokens=tokens) as api:
            await api.agent(TRAILING)
            await api.prices((SOL, 150.0), (TOKEN, 1.0))
            await api.ok("POST", "/v1/signals", {"token": TOKEN})  # no symbol
            await api.settle()
            await poll_until_async(lambda: discord.contents, what="the fill message")
            assert "**BUY BONK · t**" in "\n".join(discord.contents)
    finally:
        await discord.close()
