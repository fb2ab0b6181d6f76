"""Signal-provider scorecards on the control port (docs/sources.md): `GET /v1/sources` (every
source, one window), `GET /v1/sources/{source}` (its four windows), `GET
/v1/sources/{source}/agents` (per agent, with each agent's breaker on it), `GET
/v1/agents/{agent_id}/sources` and the breaker's reset. The figures are kept by
engine/scorecards.py as things happen; a request only merges at most 30 buckets a card."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiohttp import web
from msgspec import Meta, Struct
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response, paginate
from tradingd.adapters.http.openapi import PAGED, QueryParam, Route
from tradingd.adapters.timestamps import iso_ms_or_none
from tradingd.engine.errors import NotFound, ValidationError
from tradingd.engine.scorecard_stats import WINDOWS, Card, Stats
from tradingd.engine.source_breaker import BreakerState

if TYPE_CHECKING:
    from tradingd.engine.core import Engine

log = logging.getLogger("tradingd.http")
Window = Literal["24h", "7d", "30d", "all"]
WINDOW = QueryParam(
    "window",
    {"type": "string", "enum": list(WINDOWS), "default": "24h"},
    "rolling window: the last 24 hours (hourly buckets), 7 or 30 UTC days, or all time",
)
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
        avg_slippage_bps=s.slip_bps_sum / s.slip_n if s.slip_n else None,
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


def _window(request: web.Request) -> str:
    name = request.query.get("window", "24h")
    if name not in WINDOWS:
        raise ValidationError(f"window must be one of {', '.join(WINDOWS)}", "query.window")
    return name


def _card(engine: Engine, source: str) -> Card:
    card = engine.scorecards.by_source.get(source)
    if card is None:
        raise NotFound("no signal of this source is known", {"source": source[:200]})
    return card


def _by_name(item: tuple[str, Card]) -> tuple[int, str]:
    return 0, item[0]


async def list_sources(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    window = _window(request)
    now = engine.clock()
    cards = sorted(engine.scorecards.by_source.items())
    page, cursor = paginate(request, cards, _by_name)
    items = [
        SourceOut(
            source=name,
            first_at=iso_ms_or_none(card.created_at or None),
            updated_at=iso_ms_or_none(card.updated_at or None),
            window=window,
            stats=stats_out(card.window(window, now)),
        )
        for name, card in page
    ]
    return json_response(SourcePage(items=items, next_cursor=cursor))


async def get_source(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    source = request.match_info["source"]
    card = _card(engine, source)
    now = engine.clock()
    agents = sum(1 for cards in engine.scorecards.by_agent.values() if source in cards)
    return json_response(
        SourceDetailOut(
            source=source,
            first_at=iso_ms_or_none(card.created_at or None),
            updated_at=iso_ms_or_none(card.updated_at or None),
            agents=agents,
            windows={w: stats_out(card.window(w, now)) for w in WINDOWS},
        )
    )


def _agent_source(engine: Engine, agent_id: str, source: str, card: Card, window: str):  # type: ignore[no-untyped-def]
    stats = card.window(window, engine.clock())
    return AgentSourceOut(
        agent_id=agent_id,
        source=source,
        window=window,
        stats=stats_out(stats),
        realized_pnl=str(stats.pnl),
        max_drawdown=str(stats.curve.max_dd),
        breaker=breaker_out(engine.scorecards.breaker(agent_id, source)),
    )


async def source_agents(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    source = request.match_info["source"]
    _card(engine, source)
    window = _window(request)
    rows = sorted(
        (aid, cards[source])
        for aid, cards in engine.scorecards.by_agent.items()
        if source in cards and aid in engine.agents
    )
    page, cursor = paginate(request, rows, _by_name)
    items = [_agent_source(engine, aid, source, card, window) for aid, card in page]
    return json_response(AgentSourcePage(items=items, next_cursor=cursor))


async def agent_sources(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent_id = request.match_info["agent_id"]
    engine.agent(agent_id)  # NotFound
    window = _window(request)
    rows = sorted(engine.scorecards.by_agent.get(agent_id, {}).items())
    page, cursor = paginate(request, rows, _by_name)
    items = [_agent_source(engine, agent_id, name, card, window) for name, card in page]
    return json_response(AgentSourcePage(items=items, next_cursor=cursor))


async def reset_breaker(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    agent_id, source = request.match_info["agent_id"], request.match_info["source"]
    reset = daemon.runtime.apply(daemon.engine.reset_source_breaker, agent_id, source)
    if reset:
        log.warning(
            "source breaker reset",
            extra={"agent_id": agent_id, "source": source, "key_id": request[API_KEY].id},
        )
    return json_response(
        ResetOut(
            reset=reset, breaker=breaker_out(daemon.engine.scorecards.breaker(agent_id, source))
        )
    )


SOURCE_ERRORS = (404, 422)
ROUTES = [
    Route(
        "GET",
        "/v1/sources",
        list_sources,
        "Signal sources' scorecards in one window, by name",
        "sources",
        "read",
        {200: SourcePage},
        query=(WINDOW, *PAGED),
        errors=(422,),
    ),
    Route(
        "GET",
        "/v1/sources/{source}",
        get_source,
        "A signal source's scorecard in every window (24h, 7d, 30d, all)",
        "sources",
        "read",
        {200: SourceDetailOut},
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/sources/{source}/agents",
        source_agents,
        "A signal source's scorecard per agent, with each agent's breaker on it",
        "sources",
        "read",
        {200: AgentSourcePage},
        query=(WINDOW, *PAGED),
        errors=SOURCE_ERRORS,
    ),
    Route(
        "GET",
        "/v1/agents/{agent_id}/sources",
        agent_sources,
        "An agent's scorecards per signal source, with its breaker on each",
        "sources",
        "read",
        {200: AgentSourcePage},
        query=(WINDOW, *PAGED),
        errors=SOURCE_ERRORS,
    ),
    Route(
        "POST",
        "/v1/agents/{agent_id}/sources/{source}/reset",
        reset_breaker,
        "Re-arm an agent's breaker on a signal source (its buys are taken again)",
        "sources",
        "trade",
        {200: ResetOut},
        errors=(404,),
    ),
]
