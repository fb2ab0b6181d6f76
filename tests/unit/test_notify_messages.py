"""What the notifier takes from the engine's events and what it writes: fills and closes with
exact decimal amounts, alerts and breaker trips routed once per channel, a full queue dropping
its oldest notice and counting it, and each service's wire shape."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import msgspec
import pytest
from tradingd.adapters import units
from tradingd.adapters.notify.config import ChannelSettings, NotifySettings
from tradingd.adapters.notify.delivery import ChannelSender
from tradingd.adapters.notify.messages import text_of
from tradingd.adapters.notify.notices import DailySummary, Notice, NoticeRouter
from tradingd.adapters.notify.notifier import Notifier
from tradingd.adapters.notify.wire import DiscordWire, TelegramWire, WebhookWire
from tradingd.engine import events as ev

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]


def traded() -> Harness:
    """An agent that bought 0.1 SOL of T at $0.0123 and sold it at a stop-loss."""
    h = Harness(Clock())
    h.sol()
    h.agent(
        {
            "sizing": {"mode": "fixed", "amount": "100000000"},
            "stop_loss": {"mode": "fixed", "default_pct": -10},
        }
    )
    h.tick(T, 0.0123)
    h.signal(T)
    h.settle()
    h.tick(T, 0.01)
    h.settle()
    return h


def routed(h: Harness, events: list[str]) -> list[Notice]:
    got: list[Notice] = []
    router = NoticeRouter(h.engine, {kind: [got.append] for kind in events})  # type: ignore[misc]
    router(h.events())
    return got


def test_a_fill_reads_with_exact_amounts_the_agent_and_the_price() -> None:
    h = traded()
    buy = routed(h, ["fills"])[0]
    assert isinstance(buy.event, ev.OrderFilled)
    text = text_of(buy)
    trade = buy.event.trade
    assert text.title == "BUY DezX…nZ9a · a"
    whole = Decimal(trade.amount).scaleb(-6)  # the token's 6 decimals, exact
    assert text.lines[0] == (
        f"{whole.normalize():f} DezX…nZ9a for 0.1 SOL at {units.usd(trade.price_usd)}"
    )
    assert text.lines[1] == "reason signal:t"


def test_a_close_reads_with_its_reason_and_signed_pnl() -> None:
    h = traded()
    (closed,) = routed(h, ["exits"])
    text = text_of(closed)
    assert text.title.startswith("CLOSED DezX…nZ9a (stop_loss)")
    assert text.lines[0].startswith("realized PnL -0.0")
    assert text.lines[0].endswith(" SOL")


def test_only_the_kinds_a_channel_asked_for_reach_it() -> None:
    h = traded()
    assert [n.kind for n in routed(h, ["exits"])] == ["exits"]
    assert {n.kind for n in routed(h, ["fills"])} == {"fills"}


def test_a_breaker_alert_reaches_a_channel_of_alerts_or_breakers_once() -> None:
    h = Harness(Clock())
    got: list[Notice] = []
    router = NoticeRouter(h.engine, {"alerts": [got.append], "breakers": [got.append]})
    router([ev.Alert(ts=1, code="breaker_tripped", message="drawdown", details={"rule": "dd"})])
    router([ev.Alert(ts=1, code="price_divergence", message="apart")])
    assert [n.kind for n in got] == ["breakers", "alerts"]
    text = text_of(got[0])
    assert (text.title, text.lines) == ("BREAKER breaker_tripped", ["drawdown", "rule: dd"])


def test_a_full_queue_drops_its_oldest_and_counts_it() -> None:
    sender = ChannelSender(_channel("telegram"))
    notices = [Notice("alerts", ev.Alert(ts=i, code="c", message=str(i))) for i in range(5)]
    for n in notices:
        sender.offer(n)
    assert [n.event.ts for n in sender.queue] == [2, 3, 4]  # type: ignore[union-attr]
    assert sender.stats.dropped == 2


def _channel(kind: str, **kw: object) -> ChannelSettings:
    base: dict[str, object] = {"name": "c", "kind": kind, "queue_max": 3}
    base |= {
        "telegram": {"bot_token": "123:abc", "chat_id": 42},
        "discord": {"url": "http://127.0.0.1:1/api/webhooks/1/tok"},
        "webhook": {"url": "http://127.0.0.1:1/hook", "secret": "s" * 20},
    }[kind]
    return msgspec.convert(base | kw, ChannelSettings)


def _alert(message: str = "<b>5 < 6</b> & @everyone") -> Notice:
    return Notice("alerts", ev.Alert(ts=1, code="x", message=message))


def test_telegram_sends_escaped_html_to_its_chat() -> None:
    wire = TelegramWire(_channel("telegram"))
    req = wire.request([_alert()], 0, "id")
    body = json.loads(req.body)
    assert req.url.endswith("/bot123:abc/sendMessage")
    assert body["chat_id"] == 42 and body["parse_mode"] == "HTML"
    assert body["text"] == "<b>ALERT x</b>\n&lt;b&gt;5 &lt; 6&lt;/b&gt; &amp; @everyone"


def test_text_messages_batch_notices_and_say_what_was_dropped() -> None:
    wire = DiscordWire(_channel("discord"))
    req = wire.request([_alert("one"), _alert("two")], 7, "id")
    body = json.loads(req.body)
    assert req.notices == 2
    assert body["content"] == (
        "**ALERT x**\none\n\n**ALERT x**\ntwo\n\n(7 earlier notifications dropped: queue full)"
    )
    assert body["allowed_mentions"] == {"parse": []}


def test_a_text_message_stays_within_the_service_limit() -> None:
    wire = DiscordWire(_channel("discord"))
    req = wire.request([_alert("x" * 900) for _ in range(5)], 0, "id")
    assert len(json.loads(req.body)["content"]) <= 2000
    assert req.notices == 2


@pytest.mark.parametrize(
    ("status", "body", "retry", "after"),
    [
        (200, b'{"ok":true,"result":{}}', None, None),
        (429, b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3",'
              b'"parameters":{"retry_after":3}}', True, 3.0),
        (500, b"<html>", True, None),
        (400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}', False, None),  # noqa: E501
        (200, b'{"ok":false,"description":"odd"}', True, None),
    ],
)  # fmt: skip
def test_telegram_answers_are_read(status, body, retry, after) -> None:  # type: ignore[no-untyped-def]
    out = TelegramWire(_channel("telegram")).outcome(status, {}, body)
    assert out.ok is (retry is None)
    if retry is not None:
        assert (out.retry, out.retry_after_s) == (retry, after)


def test_a_migrated_telegram_group_says_its_new_chat_id() -> None:
    body = (b'{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded '
            b'to a supergroup chat","parameters":{"migrate_to_chat_id":-1001987654321}}')  # fmt: skip
    out = TelegramWire(_channel("telegram")).outcome(400, {}, body)
    assert (out.ok, out.retry) == (False, False)
    assert out.reason.endswith("(set chat_id = -1001987654321)")


def test_discord_429_takes_retry_after_from_the_body_or_the_headers() -> None:
    wire = DiscordWire(_channel("discord"))
    limited = b'{"message":"You are being rate limited.","retry_after":0.25,"global":false}'
    assert wire.outcome(429, {}, limited).retry_after_s == 0.25
    assert wire.outcome(429, {"Retry-After": "2"}, b"").retry_after_s == 2.0
    assert wire.outcome(204, {}, b"").ok


def test_the_webhook_body_is_signed_with_the_secret() -> None:
    settings = _channel("webhook")
    req = WebhookWire(settings).request([_alert("m")], 0, "abc")
    mac = hmac.new(("s" * 20).encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Tradingd-Signature"] == f"sha256={mac}"
    doc = json.loads(req.body)
    assert doc["id"] == req.headers["X-Tradingd-Event-Id"] == "abc"
    assert str(doc["sent_at"]) == req.headers["X-Tradingd-Timestamp"]
    assert doc["event"]["event"] == "Alert" and doc["event"]["message"] == "m"


def test_a_daily_summary_lists_each_agent_with_exact_pnl() -> None:
    h = traded()
    notifier = Notifier(NotifySettings(channels=[_channel("telegram")]), h.engine)
    summary = notifier.summary(h.clock.now)
    assert isinstance(summary, DailySummary)
    (row,) = summary.agents
    agent = next(iter(h.engine.agents.values()))
    assert row.realized_pnl == agent.perf.realized_pnl == row.day_realized_pnl
    text = text_of(Notice("daily_summary", summary=summary))
    assert text.title.startswith("DAILY SUMMARY 2025-11-24")
    assert "1 round trips (0 won, 1 lost)" in text.lines[0]
