"""Notices as people read them (Telegram, Discord) and as programs read them (the webhook's
JSON). Amounts are exact decimal text of their atomic units (format_atomic), never float maths;
prices in USD to six significant digits. Runs in the sender task, never on the trading path."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import Struct
from tradingd.adapters import units
from tradingd.adapters.app.backtest_report import format_atomic
from tradingd.adapters.notify.notices import DailySummary, Names, Notice
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine import events as ev

MAX_DETAILS: Final = 8  # alert details shown in a text message
MAX_DETAIL_CHARS: Final = 120


class Text(Struct, frozen=True):
    """A message as a headline and its lines, before a channel's markup."""

    title: str
    lines: list[str]


def _signed(amount: int, decimals: int) -> str:
    return ("+" if amount > 0 else "") + format_atomic(amount, decimals)


def _fill(e: ev.OrderFilled, n: Names) -> Text:
    t = e.trade
    side = "BUY" if t.side == "buy" else "SELL"
    token, quote = n.token_label, n.quote_label
    lines = [
        f"{format_atomic(t.amount, n.token_decimals)} {token} for "
        f"{format_atomic(t.quote_amount, n.quote_decimals)} {quote} at {units.usd(t.price_usd)}",
        f"reason {t.reason}",
    ]
    if t.fee:
        lines.append(f"fee {format_atomic(t.fee, n.quote_decimals)} {quote}")
    return Text(f"{side} {token} · {n.agent}", lines)


def _exit(e: ev.PositionClosed, n: Names) -> Text:
    p = e.position
    token = n.token_label
    lines = [
        f"realized PnL {_signed(p.realized_pnl, n.quote_decimals)} {n.quote_label}",
        f"bought {format_atomic(p.original_amount, n.token_decimals)} {token} at "
        f"{units.usd(p.entry_price_usd)}",
    ]
    if p.closed_at and p.opened_at:
        lines.append(f"held {_duration((p.closed_at - p.opened_at) // 1000)}")
    return Text(f"CLOSED {token} ({p.exit_reason or 'closed'}) · {n.agent}", lines)


def _alert(e: ev.Alert, breaker: bool) -> Text:
    lines = [e.message]
    for i, (key, value) in enumerate(e.details.items()):
        if i == MAX_DETAILS:
            lines.append(f"… {len(e.details) - MAX_DETAILS} more details")
            break
        shown = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        if len(shown) > MAX_DETAIL_CHARS:
            shown = shown[: MAX_DETAIL_CHARS - 1] + "…"
        lines.append(f"{key}: {shown}")
    what = "BREAKER" if breaker else "ALERT"
    return Text(f"{what} {e.code}", lines)


def _summary(s: DailySummary) -> Text:
    lines = []
    for a in s.agents:
        q = a.quote_decimals
        lines.append(
            f"{a.name}: day {_signed(a.day_realized_pnl, q)} {a.quote}, total "
            f"{_signed(a.realized_pnl, q)} {a.quote}, {a.trades} round trips "
            f"({a.wins} won, {a.losses} lost), max drawdown {a.max_drawdown_pct:.2f}%, "
            f"{a.open_positions} open"
        )
    if s.agents_total > len(s.agents):
        lines.append(f"… and {s.agents_total - len(s.agents)} more agents")
    if not s.agents:
        lines.append("no agents")
    return Text(f"DAILY SUMMARY {s.day} (UTC)", lines)


def text_of(notice: Notice) -> Text:
    e = notice.event
    if notice.summary is not None:
        return _summary(notice.summary)
    if isinstance(e, ev.OrderFilled) and notice.names is not None:
        return _fill(e, notice.names)
    if isinstance(e, ev.PositionClosed) and notice.names is not None:
        return _exit(e, notice.names)
    if isinstance(e, ev.Alert):
        return _alert(e, notice.kind == "breakers")
    return Text(notice.kind, [])


def json_of(notice: Notice, channel: str, notice_id: str, dropped: int, sent_at: int) -> bytes:
    """The webhook body: the whole event (tagged, atomic amounts as integers), the names and
    decimals to show them, and when it was sent (signed with the body)."""
    doc: dict[str, Any] = {
        "id": notice_id,
        "channel": channel,
        "kind": notice.kind,
        "sent_at": sent_at,
        "dropped_before": dropped,
    }
    if notice.event is not None:
        doc["ts"] = iso_ms(notice.event.ts)
        doc["event"] = notice.event
    if notice.names is not None:
        doc["names"] = notice.names
    if notice.summary is not None:
        doc["summary"] = notice.summary
    return msgspec.json.encode(doc)


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
