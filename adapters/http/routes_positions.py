"""Positions (with their live exit state: peak, ratcheted stop, next take-profit), manual
closes, and an agent's trades."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from adapters.http.codec import daemon_of, json_response, paginate, query_choice, read_body
from adapters.http.openapi import PAGED, QueryParam, Route
from adapters.http.schemas import (
    CloseAccepted,
    CloseIn,
    PositionOut,
    PositionPage,
    TradeOut,
    TradePage,
    iso_ms,
    iso_ms_or_none,
)
from engine.core import Engine
from engine.errors import NotFound
from engine.exits import next_take_profit_price, stop_price
from engine.model import Position, Trade

log = logging.getLogger("tradingd.http")
_close_in = msgspec.json.Decoder(CloseIn)
STATUS = QueryParam(
    "status",
    {"type": "string", "enum": ["open", "closed"]},
    "open: not yet closed (opening, open, closing); closed: closed",
)


def position_out(engine: Engine, p: Position) -> PositionOut:
    live = p.status in ("open", "closing") and p.entry_price_usd > 0
    if live:
        engine.refresh(p)
    stop = None
    if live and p.config.stop_loss.enabled and p.stop_gain_pct is not None:
        stop = stop_price(p, p.stop_gain_pct)
    return PositionOut(
        id=p.id,
        agent_id=p.agent_id,
        token=p.token,
        symbol=p.symbol,
        status=p.status,
        amount=str(p.amount),
        decimals=p.decimals,
        cost=str(p.cost),
        entry_price_usd=p.entry_price_usd or None,
        peak_price_usd=p.peak_price_usd or None,
        stop_price_usd=stop,
        next_take_profit_usd=next_take_profit_price(p) if live else None,
        dca_count=p.dca_count,
        opened_at=iso_ms_or_none(p.opened_at),
        closed_at=iso_ms_or_none(p.closed_at),
        exit_reason=p.exit_reason,
        realized_pnl=str(p.realized_pnl),
        moon_bag_amount=str(p.moon_bag_amount),
        signal_id=p.signal_id,
    )


def trade_out(t: Trade) -> TradeOut:
    return TradeOut(
        id=t.id,
        agent_id=t.agent_id,
        position_id=t.position_id,
        side=t.side,
        token=t.token,
        amount=str(t.amount),
        quote_amount=str(t.quote_amount),
        price_usd=t.price_usd,
        fee=str(t.fee),
        venue=t.venue,
        venue_ref=t.venue_ref,
        reason=t.reason,
        ts=iso_ms(t.ts),
    )


async def list_positions(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    status = query_choice(request, "status", ("open", "closed"))
    positions = sorted(engine.agent_positions[agent.id].values(), key=lambda p: p.seq)
    if status == "closed":
        positions = [p for p in positions if p.status == "closed"]
    elif status == "open":
        positions = [p for p in positions if p.status != "closed"]
    page, cursor = paginate(request, positions, lambda p: (p.seq, p.id))
    items = [position_out(engine, p) for p in page]
    return json_response(PositionPage(items=items, next_cursor=cursor))


async def get_position(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    return json_response(position_out(engine, engine.position(request.match_info["position_id"])))


async def close_position(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    engine = daemon.engine
    agent = engine.agent(request.match_info["agent_id"])
    position_id = request.match_info["position_id"]
    if engine.position(position_id).agent_id != agent.id:
        raise NotFound(
            f"agent {agent.id!r} has no position {position_id!r}",
            {"agent_id": agent.id, "position_id": position_id},
        )
    body = await read_body(request, _close_in, optional=True)
    order_id = daemon.runtime.apply(engine.close_position, position_id, body.pct, "manual")
    log.info(
        "manual close",
        extra={
            "agent_id": agent.id,
            "position_id": position_id,
            "order_id": order_id,
            "pct": body.pct,
        },
    )
    return json_response(CloseAccepted(order_id=order_id, position_id=position_id), 202)


async def list_trades(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    # append-only, oldest first: the cursor's position never moves
    page, cursor = paginate(request, engine.trades[agent.id], lambda t: (t.ts, t.id))
    return json_response(TradePage(items=[trade_out(t) for t in page], next_cursor=cursor))


_AGENT = "/v1/agents/{agent_id}"
ROUTES = [
    Route(
        "GET",
        _AGENT + "/positions",
        list_positions,
        "An agent's positions",
        "positions",
        "read",
        {200: PositionPage},
        query=(STATUS, *PAGED),
        description="Status `opening` (entry order in flight) is an addition to API.md's "
        "open/closing/closed; `?status=open` lists every position not yet closed.",
    ),
    Route(
        "GET",
        "/v1/positions/{position_id}",
        get_position,
        "A position",
        "positions",
        "read",
        {200: PositionOut},
    ),
    Route(
        "POST",
        _AGENT + "/positions/{position_id}/close",
        close_position,
        "Close (part of) a position",
        "positions",
        "trade",
        {202: CloseAccepted},
        body=CloseIn,
        body_optional=True,
        errors=(409,),
        intake=True,
    ),
    Route(
        "GET",
        _AGENT + "/trades",
        list_trades,
        "An agent's trades, oldest first",
        "positions",
        "read",
        {200: TradePage},
        query=PAGED,
    ),
]
