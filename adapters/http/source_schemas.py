"""The signal sources' scorecards as the control port shows them (REST and the WebSocket's
`sources` channel): the wire shapes and their building from engine/scorecard_stats.py values."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct
from tradingd.adapters.timestamps import iso_ms_or_none
from tradingd.engine.scorecard_stats import Card, Stats
from tradingd.engine.source_breaker import BreakerState

Usd = Annotated[str, Meta(description="USD, exact decimal text rounded down to 1e-6")]


class SignalCounts(Struct, kw_only=True):
    """Signals `received`; executions `executed` (filled), `failed`, `skipped` by reason."""

    received: int
    executed: int
    failed: int
    skipped: dict[str, int]


class LatencyOut(Struct, kw_only=True):
    """Signal receipt -> entry fill, ms: the histogram bucket's upper bound (at most 9.1 %
    above the true value); null without fills."""

    p50: float | None
    p99: float | None


class StatsOut(Struct, kw_only=True):
    """A window's figures. Trades are positions the source's signals opened that closed in the
    window; PnL per quote asset in atomic units (decimal strings) and in USD (valued at each
    close's quote price; `unpriced_trades` had none and are not in the USD figures); the
    drawdown is of the cumulative USD PnL; `win_rate` = wins / trades (0..1); slippage is the
    entry fill price against the token's price when the signal arrived (bps, positive = paid
    more)."""

    signals: SignalCounts
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    realized_pnl: dict[str, str]  # quote asset -> atomic units
    realized_pnl_usd: Usd
    avg_trade_usd: Usd | None
    best_trade_usd: Usd | None
    worst_trade_usd: Usd | None
    max_drawdown_usd: Usd
    unpriced_trades: int
    exposure_ms: int
    avg_slippage_bps: float | None
    latency_ms: LatencyOut


class SourceOut(Struct, kw_only=True):
    """A source's card: its name ("other": sources past `[sources] max_tracked`;
    "unattributed": signals without one), first and last activity, and the figures of
    `window`."""

    source: str
    first_at: str | None
    updated_at: str | None
    window: str
    stats: StatsOut


class SourcePage(Struct, kw_only=True):
    items: list[SourceOut]
    next_cursor: str | None


class SourceDetailOut(Struct, kw_only=True):
    """A source's card in every window, and how many agents traded or skipped its signals."""

    source: str
    first_at: str | None
    updated_at: str | None
    agents: int
    windows: dict[str, StatsOut]


class BreakerOut(Struct, kw_only=True):
    """An agent's breaker on a source: tripped or armed, the rule and figures that tripped it,
    when, and the PnL (quote atomic) of the trades it judges now."""

    state: Literal["armed", "tripped"]
    rule: str | None
    details: dict[str, Any]
    tripped_at: str | None
    reset_at: str | None
    recent_pnl: list[str]


class AgentSourceOut(Struct, kw_only=True):
    """One agent's card on one source, the figures of `window` (PnL and drawdown also in the
    agent's quote, atomic units), and its breaker there (null: it never judged a trade)."""

    agent_id: str
    source: str
    window: str
    stats: StatsOut
    realized_pnl: str  # quote atomic
    max_drawdown: str  # quote atomic
    breaker: BreakerOut | None


class AgentSourcePage(Struct, kw_only=True):
    items: list[AgentSourceOut]
    next_cursor: str | None


class ResetOut(Struct, kw_only=True):
    """`reset`: whether a tripped breaker was re-armed (false: it was not tripped)."""

    reset: bool
    breaker: BreakerOut | None


def micro_usd(micro: int) -> str:
    """Micro-USD as exact decimal text: -1500000 -> "-1.5"."""
    sign, micro = ("-", -micro) if micro < 0 else ("", micro)
    whole, frac = divmod(micro, 10**6)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return sign + text


def stats_out(s: Stats) -> StatsOut:
    priced = s.trades - s.unpriced
    avg = (
        micro_usd((Fraction(s.curve_usd.sum, priced)).__floor__()) if priced else None
    )  # rounded down once
    return StatsOut(
        signals=SignalCounts(
            received=s.received,
            executed=s.executed,
            failed=s.failed,
            skipped=dict(s.skipped),
        ),
        trades=s.trades,
        wins=s.wins,
        losses=s.losses,
        win_rate=s.wins / s.trades if s.trades else None,
        realized_pnl={q: str(v) for q, v in s.pnl_by_quote.items()},
        realized_pnl_usd=micro_usd(s.curve_usd.sum),
        avg_trade_usd=avg,
        best_trade_usd=None if s.best is None else micro_usd(s.best),
        worst_trade_usd=None if s.worst is None else micro_usd(s.worst),
        max_drawdown_usd=micro_usd(s.curve_usd.max_dd),
        unpriced_trades=s.unpriced,
        exposure_ms=s.exposure_ms,
        avg_slippage_bps=round(s.slip_bps_sum / s.slip_n, 6) if s.slip_n else None,
        latency_ms=LatencyOut(p50=s.latency_pct(0.5), p99=s.latency_pct(0.99)),
    )


def breaker_out(b: BreakerState | None) -> BreakerOut | None:
    if b is None:
        return None
    return BreakerOut(
        state="armed" if b.tripped_at is None else "tripped",
        rule=b.rule,
        details=dict(b.details),
        tripped_at=iso_ms_or_none(b.tripped_at),
        reset_at=iso_ms_or_none(b.reset_at or None),
        recent_pnl=[str(x) for x in b.recent],
    )


class SourceMessage(Struct, kw_only=True):
    """The WebSocket `source` message: a source's card after it changed (at most once per
    `[ws] token_interval_ms`), in the last 24 hours and all time."""

    source: str
    updated_at: str | None
    windows: dict[str, StatsOut]


def source_message(name: str, card: Card, now: int) -> SourceMessage:
    return SourceMessage(
        source=name,
        updated_at=iso_ms_or_none(card.updated_at or None),
        windows={w: stats_out(card.window(w, now)) for w in ("24h", "all")},
    )
