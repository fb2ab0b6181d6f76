"""Backtest report: the result of a replay (per agent: trades, PnL, win rate, drawdown, open
positions, equity curve, exposure), as text for a terminal and as JSON with atomic amounts as
decimal strings. The HTML report (report_html.py) renders this same result."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from msgspec import Struct
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine import events as ev

# JSON-ready builtins, as msgspec.to_builtins returns them.
Json = dict[str, "Json"] | list["Json"] | str | int | float | bool | None


class TradeRow(Struct, kw_only=True):
    ts: int
    side: str
    token: str
    symbol: str | None
    amount: int  # token atomic
    decimals: int
    quote_amount: int  # quote atomic
    price_usd: float
    fee: int
    reason: str
    position_id: str


class OpenPosition(Struct, kw_only=True):
    position_id: str
    token: str
    symbol: str | None
    amount: int
    decimals: int
    cost: int
    moon_bag_amount: int  # token atomic that take-profit never sells
    last_price_usd: float | None
    unrealized_pnl: int | None  # quote atomic; None without a token or quote price


class EquityPoint(Struct, kw_only=True):
    ts: int
    equity: int  # quote atomic: balance plus open positions at the last prices
    drawdown_pct: float  # below the running high of equity up to ts (over every record)


class PricePoint(Struct, kw_only=True):
    ts: int
    price_usd: float


class PriceSeries(Struct, kw_only=True):
    """A traded token's last price after each record, bounded (backtest_series.py); the price
    at each trade's time is always kept, so its marker sits on the line."""

    token: str
    symbol: str | None
    points: list[PricePoint]


class AgentReport(Struct, kw_only=True):
    agent_id: str
    name: str
    quote: str
    quote_decimals: int
    deposited: int
    balance: int
    trades: list[TradeRow]
    realized_pnl: int
    round_trips: int
    wins: int
    losses: int
    win_rate: float | None
    max_drawdown_pct: float  # of realized equity (deposits + realized PnL)
    open_positions: list[OpenPosition]
    unrealized_pnl: int
    signals_skipped: dict[str, int]
    orders_failed: int
    entries_resting: int = 0  # resting buys still waiting for their price at the end
    venue: str = "paper"  # as the config names it; a replay trades every agent on paper
    config: dict[str, Any] = {}  # the agent config as applied (API.md "Agent config")
    final_equity: int = 0  # quote atomic: balance plus open positions at the last prices
    # Mark-to-market equity after every record (not only realized, as max_drawdown_pct).
    equity_max_drawdown_pct: float = 0.0
    exposure_ms: int = 0  # time holding at least one position not closed
    exposure_pct: float | None = None  # of the replay's span; None for a span of 0
    equity_curve: list[EquityPoint] = []  # bounded: at most a few thousand points


class BacktestResult(Struct, kw_only=True):
    records: int
    ticks: int
    signals: int
    clocks: int
    cancels: int = 0
    first_ts: int | None
    last_ts: int | None
    agents: list[AgentReport]
    events: list[ev.Event] = []  # every event in order, when run with keep_events=True
    prices: list[PriceSeries] = []  # each traded token, for the report's price charts


def format_atomic(amount: int, decimals: int) -> str:
    """Exact decimal text of an atomic amount: 1500000000, 9 -> '1.5'."""
    text = format(Decimal(amount).scaleb(-decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _signed(amount: int, decimals: int) -> str:
    return ("+" if amount > 0 else "") + format_atomic(amount, decimals)


def _label(token: str, symbol: str | None) -> str:
    return symbol or f"{token[:4]}…{token[-4:]}"


def render_text(result: BacktestResult, source: str) -> str:
    lines = [
        f"replay {source}: {result.records} records ({result.ticks} ticks, {result.signals} signals, "
        f"{result.clocks} clock" + (f", {result.cancels} cancel)" if result.cancels else ")")
    ]
    if result.first_ts is not None and result.last_ts is not None:
        lines[0] += f", {iso_ms(result.first_ts)} .. {iso_ms(result.last_ts)}"
    tokens = {t.token: t.symbol for a in result.agents for t in a.trades}
    for token, symbol in sorted(tokens.items(), key=lambda kv: (kv[1] or "", kv[0])):
        lines.append(f"  token {_label(token, symbol):<12} {token}")
    for agent in result.agents:
        lines += [""] + _render_agent(agent)
    return "\n".join(lines) + "\n"


def _render_agent(a: AgentReport) -> list[str]:
    q, qd = a.quote, a.quote_decimals
    out = [
        f"agent {a.agent_id} ({a.name}), quote {q}, deposited {format_atomic(a.deposited, qd)} {q}"
    ]
    if a.trades:
        out.append(
            f"  {'time':<24} {'side':<4} {'token':<12} {'amount':>18} {'quote ' + q:>14} "
            f"{'price USD':>12}  reason"
        )
    for t in a.trades:
        out.append(
            f"  {iso_ms(t.ts):<24} {t.side:<4} {_label(t.token, t.symbol):<12} "
            f"{format_atomic(t.amount, t.decimals):>18} {format_atomic(t.quote_amount, qd):>14} "
            f"{t.price_usd:>12.6g}  {t.reason}"
        )
    rate = f"{a.win_rate * 100:.1f}%" if a.win_rate is not None else "n/a"
    out.append(
        f"  realized PnL {_signed(a.realized_pnl, qd)} {q} ({a.realized_pnl} atomic); "
        f"{len(a.trades)} trades, {a.round_trips} closed positions (wins {a.wins}, losses {a.losses}, "
        f"win rate {rate}); max drawdown of realized equity {a.max_drawdown_pct:.2f}%"
    )
    out.append(
        f"  balance {format_atomic(a.balance, qd)} {q}; open positions {len(a.open_positions)}, "
        f"unrealized PnL {_signed(a.unrealized_pnl, qd)} {q} ({a.unrealized_pnl} atomic)"
    )
    for p in a.open_positions:
        pnl = (
            "n/a (no price)" if p.unrealized_pnl is None else f"{_signed(p.unrealized_pnl, qd)} {q}"
        )
        price = f"{p.last_price_usd:.6g}" if p.last_price_usd else "n/a"
        bag = (
            f" (moon bag {format_atomic(p.moon_bag_amount, p.decimals)})"
            if p.moon_bag_amount
            else ""
        )
        out.append(
            f"    {_label(p.token, p.symbol):<12} amount {format_atomic(p.amount, p.decimals)}{bag}, cost "
            f"{format_atomic(p.cost, qd)} {q}, last price {price} USD, unrealized {pnl}"
        )
    if a.signals_skipped:
        out.append(
            "  signals skipped: " + ", ".join(f"{r} {n}" for r, n in a.signals_skipped.items())
        )
    if a.orders_failed:
        out.append(f"  orders failed: {a.orders_failed}")
    if a.entries_resting:
        out.append(f"  resting buys still waiting at the end: {a.entries_resting}")
    return out


_ATOMIC_FIELDS = frozenset(
    {
        "amount",
        "quote_amount",
        "fee",
        "cost",
        "moon_bag_amount",
        "deposited",
        "balance",
        "realized_pnl",
        "unrealized_pnl",
        "final_equity",
        "equity",
    }
)


# Times in the JSON output take the API's one form (docs/api.md "Timestamps"): ISO-8601 UTC with
# milliseconds, as REST and WebSocket payloads give them. The replay *input* keeps epoch ms.
_TIME_FIELDS = frozenset({"ts", "first_ts", "last_ts"})


def _field_as_text(key: str, value: Json) -> Json:
    if key == "config":
        return value  # an agent config, already in its API form (amounts as strings)
    if isinstance(value, int) and not isinstance(value, bool):
        if key in _ATOMIC_FIELDS:
            return str(value)
        if key in _TIME_FIELDS:
            return iso_ms(value)
    return _atomic_as_text(value)


def _atomic_as_text(obj: Json) -> Json:
    # msgspec encodes a field by its type only: no per-field "int as string", hence this walk.
    if isinstance(obj, dict):
        return {k: _field_as_text(k, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_atomic_as_text(v) for v in obj]
    return obj


def to_json_obj(result: BacktestResult) -> dict[str, Json]:
    """The result as JSON-ready builtins, atomic amounts as decimal strings (u64 amounts do not
    survive a JavaScript number), times (`ts`, `first_ts`, `last_ts`) as ISO-8601 UTC strings with
    milliseconds, the API's form; `events` only when it holds some."""
    data = _atomic_as_text(msgspec.to_builtins(result))
    assert isinstance(data, dict)  # a Struct becomes an object
    if not data.get("events"):
        data.pop("events", None)
    return data
