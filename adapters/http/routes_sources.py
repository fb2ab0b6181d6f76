"""Signal-provider scorecards on the control port (docs/sources.md): `GET /v1/sources` (every
source, one window), `GET /v1/sources/{source}` (its four windows), `GET
/v1/sources/{source}/agents` (per agent, with each agent's breaker on it), `GET
/v1/agents/{agent_id}/sources` and the breaker's reset. The figures are kept by
engine/scorecards.py as things happen; a request only merges at most 30 buckets a card."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from msgspec import Struct
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response, paginate
from tradingd.adapters.http.openapi import PAGED, QueryParam, Route
from tradingd.adapters.http.source_schemas import (
    AgentSourceOut,
    AgentSourcePage,
    ResetOut,
    SourceDetailOut,
    SourceOut,
    SourcePage,
    breaker_out,
    stats_out,
)
from tradingd.adapters.timestamps import iso_ms_or_none
from tradingd.engine.errors import NotFound, ValidationError
from tradingd.engine.scorecard_stats import WINDOWS, Card

if TYPE_CHECKING:
    from tradingd.engine.core import Engine

log = logging.getLogger("tradingd.http")
Window = Literal["24h", "7d", "30d", "all"]
WINDOW = QueryParam(
    "window",
    {"type": "string", "enum": list(WINDOWS), "default": "24h"},
    "rolling window: the last 24 hours (hourly buckets), 7 or 30 UTC days, or all time",
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


def _agent_source(
    engine: Engine, agent_id: str, source: str, card: Card, window: str
) -> AgentSourceOut:
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


async def forget_source(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    source = request.match_info["source"]
    agents = daemon.runtime.apply(daemon.engine.forget_source, source)
    log.warning(
        "signal source card forgotten",
        extra={"source": source[:200], "agents": agents, "key_id": request[API_KEY].id},
    )
    return json_response(ForgottenOut(source=source, agents=agents))


class ForgottenOut(Struct, kw_only=True):
    """The card forgotten and how many agents had a card (and a breaker) on it."""

    source: str
    agents: int


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
        "DELETE",
        "/v1/sources/{source}",
        forget_source,
        "Forget a signal source's card, every agent's card and breaker on it (frees its slot)",
        "sources",
        "admin",
        {200: ForgottenOut},
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
