"""The notifier's channels against fake Telegram, Discord and webhook servers on 127.0.0.1
speaking their wire formats: messages arrive in each service's shape, a 429's retry_after is
waited, a 500-ing channel is retried up to max_retries and then counted failed, a hanging or
down channel fails by its timeout and drops its oldest notices, the webhook's signature
verifies, a stop drains within its bound, and no secret reaches a log record."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from tradingd.adapters.notify.config import NotifySettings
from tradingd.adapters.notify.notifier import Notifier
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine import events as ev

from tests.fakes.notify_servers import BlackHole, FakeDiscord, FakeTelegram, WebhookSink
from tests.polling import poll_until_async
from tests.unit.harness import Clock, Harness

FAST = {"backoff_initial_ms": 10, "backoff_max_ms": 50, "timeout_s": 2.0}


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    fake = WebhookSink()
    await fake.start()
    yield fake
    await fake.close()


def tg(fake: FakeTelegram, **kw: Any) -> dict[str, Any]:
    return {"name": "tg", "kind": "telegram", "api_url": fake.url, "bot_token": fake.token,
            "chat_id": -100123, **FAST, **kw}  # fmt: skip


def dc(fake: FakeDiscord, **kw: Any) -> dict[str, Any]:
    return {"name": "dc", "kind": "discord", "url": fake.url + fake.webhook_path, **FAST, **kw}


def wh(fake: WebhookSink, **kw: Any) -> dict[str, Any]:
    return {"name": "wh", "kind": "webhook", "url": fake.url + "/hook", "secret": fake.secret,
            **FAST, **kw}  # fmt: skip


def notifier(*channels: dict[str, Any], drain_s: float = 2.0) -> Notifier:
    settings = msgspec.convert({"channels": list(channels), "drain_s": drain_s}, NotifySettings)
    n = Notifier(settings, Harness(Clock()).engine)
    n.start()
    return n


def alert(
    code: str = "breaker_tripped", message: str = "equity drawdown 12.5% over 10%"
) -> ev.Alert:  # noqa: E501
    return ev.Alert(ts=1_764_000_000_000, code=code, message=message,
                    details={"rule": "day_drawdown", "drawdown_pct": 12.5, "limit_pct": 10})  # fmt: skip


async def test_a_breaker_trip_reaches_telegram_as_a_send_message(telegram: FakeTelegram) -> None:
    n = notifier(tg(telegram, events=["breakers"]))
    n.on_events([alert()])
    await poll_until_async(lambda: telegram.delivered, what="a sendMessage")
    (seen,) = telegram.delivered
    assert seen.path == f"/bot{telegram.token}/sendMessage"
    assert seen.headers["Content-Type"] == "application/json"
    body = seen.body
    assert (body["chat_id"], body["parse_mode"]) == (-100123, "HTML")
    assert body["text"].startswith("<b>BREAKER breaker_tripped</b>\nequity drawdown 12.5% over 10%")
    assert "drawdown_pct: 12.5" in body["text"]
    await n.close()
    health = n.health()["tg"]
    assert health.pop("last_sent_at").startswith("20")
    assert health == {"kind": "telegram", "status": "ok", "queued": 0, "sent": 1,
                                     "failed": 0, "dropped": 0, "retries": 0}  # fmt: skip


async def test_telegram_429_waits_its_retry_after(telegram: FakeTelegram) -> None:
    telegram.script(("429", 1))
    n = notifier(tg(telegram))
    n.on_events([alert()])
    await poll_until_async(lambda: telegram.delivered, what="the retried sendMessage")
    first, second = telegram.seen
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95  # retry_after is 1 s: not retried before it
    await n.close()
    stats = n.senders["tg"].stats
    assert (stats.sent, stats.retries, stats.failed) == (1, 1, 0)


async def test_discord_gets_its_content_shape_and_429_is_waited(discord: FakeDiscord) -> None:
    discord.script(("429", 0.3))
    n = notifier(dc(discord, events=["alerts"]))
    n.on_events([alert("price_divergence", "@everyone sources disagree")])
    await poll_until_async(lambda: discord.delivered, what="an executed webhook")
    first, second = discord.seen
    assert second.at - first.at >= 0.28
    body = second.body
    assert body["content"].startswith("**ALERT price\\_divergence**\n@everyone sources disagree")
    assert body["allowed_mentions"] == {"parse": []}
    assert second.status == 204
    await n.close()


async def test_a_failing_channel_is_retried_up_to_max_retries_then_counted_failed(
    discord: FakeDiscord,
) -> None:
    discord.script("500", "500", "500", "500", "500")
    n = notifier(dc(discord, max_retries=2))
    n.on_events([alert()])
    sender = n.senders["dc"]
    await poll_until_async(lambda: sender.stats.failed, what="the notice given up on")
    assert [s.status for s in discord.seen] == [500, 500, 500]  # 1 try + 2 retries, no more
    assert (sender.stats.retries, sender.stats.sent) == (2, 0)
    assert n.health()["dc"]["status"] == "failing"
    assert n.health()["dc"]["last_error"] == "HTTP 500"
    n.on_events([alert()])  # the channel goes on with the next notice
    await poll_until_async(lambda: discord.delivered, what="the next notice")
    await n.close()


async def test_a_refused_request_is_not_retried(telegram: FakeTelegram) -> None:
    n = notifier(tg(telegram, bot_token="999:wrong-token-for-this-fake"))
    n.on_events([alert()])
    sender = n.senders["tg"]
    await poll_until_async(lambda: sender.stats.failed, what="the refused notice")
    assert [s.status for s in telegram.seen] == [401]
    assert sender.stats.last_error == "Unauthorized"
    await n.close()


async def test_a_hanging_channel_times_out_and_drops_its_oldest_notices() -> None:
    hole = BlackHole()
    url = await hole.start()
    try:
        n = notifier({"name": "hang", "kind": "discord", "url": url + "/api/webhooks/1/t",
                      "timeout_s": 0.2, "max_retries": 0, "queue_max": 3})  # fmt: skip
        sender = n.senders["hang"]
        n.on_events([alert(message="first")])
        await poll_until_async(lambda: sender.busy, what="the first request in flight")
        n.on_events([alert(message=str(i)) for i in range(5)])  # queue of 3: two dropped
        assert sender.stats.dropped == 2
        assert [e.event.message for e in sender.queue] == ["2", "3", "4"]  # type: ignore[union-attr]
        await poll_until_async(lambda: sender.stats.failed >= 1, what="the timed-out request")
        assert sender.stats.last_error == "timeout"
        await n.close()
        assert sender.stats.dropped + sender.stats.failed == 6  # nothing sent, all counted
    finally:
        await hole.close()


async def test_a_down_channel_counts_a_connection_failure(telegram: FakeTelegram) -> None:
    url = telegram.url
    await telegram.close()  # nothing listens there now
    n = notifier({"name": "down", "kind": "webhook", "url": url + "/hook", "secret": "x" * 16,
                  "max_retries": 1, **FAST})  # fmt: skip
    n.on_events([alert()])
    sender = n.senders["down"]
    await poll_until_async(lambda: sender.stats.failed, what="the undeliverable notice")
    assert (sender.stats.retries, sender.stats.last_error) == (1, "connection failed")
    await n.close()


async def test_the_webhook_signature_verifies_and_its_id_is_kept_across_retries(
    sink: WebhookSink,
) -> None:
    sink.script("503")
    n = notifier(wh(sink))
    n.on_events([alert()])
    await poll_until_async(lambda: sink.delivered, what="a verified webhook")
    first, second = sink.seen
    assert sink.verifies(first) and sink.verifies(second)
    assert first.headers["X-Tradingd-Event-Id"] == second.headers["X-Tradingd-Event-Id"]
    doc = second.body
    assert doc["kind"] == "breakers" and doc["channel"] == "wh"
    assert doc["event"] == msgspec.to_builtins(alert())
    assert str(doc["sent_at"]) == second.headers["X-Tradingd-Timestamp"]
    tampered = type(second)(second.at, second.path, second.headers, second.raw + b" ")
    assert not sink.verifies(tampered)
    await n.close()


async def test_a_stop_drains_the_queue_within_its_bound(telegram: FakeTelegram) -> None:
    n = notifier(tg(telegram), drain_s=5.0)
    n.on_events([alert(message=str(i)) for i in range(30)])
    await n.close()  # returns once sent (2 batched messages), well before drain_s
    assert n.senders["tg"].stats.sent == 30
    assert sum(t.count("BREAKER") for t in telegram.texts) == 30


async def test_no_secret_reaches_a_log_record(
    telegram: FakeTelegram,
    discord: FakeDiscord,
    sink: WebhookSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram.script("500", "500")
    discord.script("500", "500")
    sink.script("500", "500")
    n = notifier(tg(telegram, max_retries=1), dc(discord, max_retries=1), wh(sink, max_retries=1))
    n.on_events([alert()])
    await poll_until_async(
        lambda: all(s.stats.failed for s in n.senders.values()), what="all three given up"
    )
    await n.close()
    logged = "\n".join(repr(vars(r)) + r.getMessage() for r in caplog.records)
    assert "notification not delivered" in logged
    for secret in (telegram.token, discord.webhook_path.rsplit("/", 1)[1], sink.secret):
        assert secret not in logged


async def test_the_daily_summary_goes_out_at_utc_midnight_once(telegram: FakeTelegram) -> None:
    day_ms = 86_400_000
    midnight = (time.time_ns() // 1_000_000 // day_ms + 1) * day_ms
    started = time.monotonic()

    def clock() -> int:  # 150 ms before a UTC midnight, then running
        return midnight - 150 + int((time.monotonic() - started) * 1000)

    settings = msgspec.convert(
        {"channels": [tg(telegram, events=["daily_summary"])]}, NotifySettings
    )
    h = Harness(Clock())
    h.sol()
    h.agent({})
    n = Notifier(settings, h.engine, clock=clock)
    n.start()
    await poll_until_async(lambda: telegram.delivered, what="the summary at midnight")
    text = telegram.texts[0]
    assert text.startswith(
        f"<b>DAILY SUMMARY {iso_ms(midnight - day_ms)[:10]} (UTC)</b>\na: day 0 SOL"
    )
    assert n.post_daily_summary(midnight - day_ms) == 0  # that day was sent already
    await n.close()
    assert len(telegram.delivered) == 1


async def test_a_notice_that_cannot_be_written_is_skipped_and_the_channel_goes_on(
    sink: WebhookSink,
) -> None:
    n = notifier(wh(sink))
    n.on_events(
        [ev.Alert(ts=1, code="odd", message="details hold an object", details={"x": object()})]
    )
    n.on_events([alert()])
    await poll_until_async(lambda: sink.delivered, what="the next notice")
    assert [s.body["event"]["code"] for s in sink.delivered] == ["breaker_tripped"]
    await n.close()
    assert (n.senders["wh"].stats.failed, n.senders["wh"].stats.sent) == (1, 1)
