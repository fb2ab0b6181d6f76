"""Positions (with their live exit state: peak, ratcheted stop, next take-profit), manual
closes, and an agent's trades."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import (
    cursor_after,
    daemon_of,
    json_response,
    page_request,
    paginate,
    query_choice,
    read_body,
)
from tradingd.adapters.http.openapi import PAGED, QueryParam, Route
from tradingd.adapters.http.schemas import (
    CloseAccepted,
    CloseIn,
    PositionOut,
    PositionPage,
    TradePage,
)
from tradingd.adapters.http.shapes import position_out, trade_out
from tradingd.engine.errors import Conflict, NotFound
from tradingd.engine.model import Position, Trade
from tradingd.engine.state import TRADES_KEPT

if TYPE_CHECKING:
    from tradingd.adapters.store.history import HistoryReader

T = TypeVar("T")

log = logging.getLogger("tradingd.http")
_close_in = msgspec.json.Decoder(CloseIn)
STATUS = QueryParam(
    "status",
    {"type": "string", "enum": ["open", "closed"]},
    "open: not yet closed (opening, open, closing); closed: closed",
)


def _history(request: web.Request) -> HistoryReader | None:
    """Postgres' history, or None with the memory store (history that left memory is gone)."""
    return getattr(daemon_of(request).store, "history", None)


def _position_key(p: Position) -> tuple[int, str]:
    return (p.seq, p.id)


def _trade_key(t: Trade) -> tuple[int, str]:
    return (t.ts, t.id)


def merged_page(
    memory: Sequence[T],
    stored: list[T],
    order: Callable[[T], tuple[int, str]],
    ident: Callable[[T], str],
    after: tuple[int, str] | None,
    limit: int,
) -> tuple[list[T], str | None]:
    """One page of the union of `memory` (sorted by `order`) and `stored` (Postgres: the first
    `limit + 1` items after `after`, sorted), by id, the memory's version first. The union's
    first `limit + 1` items are among the first `limit + 1` of each source."""
    start = bisect.bisect_right(memory, after, key=order) if after is not None else 0
    merged = {ident(x): x for x in stored}
    merged.update((ident(x), x) for x in memory[start : start + limit + 1])
    items = sorted(merged.values(), key=order)
    page = items[:limit]
    return page, cursor_after(order(page[-1])) if len(items) > limit else None


async def list_positions(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    status = query_choice(request, "status", ("open", "closed"))
    positions = sorted(engine.agent_positions[agent.id].values(), key=lambda p: p.seq)
    if status == "closed":
        positions = [p for p in positions if p.status == "closed"]
    elif status == "open":
        positions = [p for p in positions if p.status != "closed"]
    history = _history(request)
    page: Sequence[Position]
    # Only closed positions ever leave memory, and only once the agent has more than memory
    # keeps: below that, memory answers alone (and a Postgres outage cannot fail the list).
    closed = sum(1 for p in engine.agent_positions[agent.id].values() if p.status == "closed")
    if history is None or status == "open" or closed < engine.history.closed_kept:
        page, cursor = paginate(request, positions, _position_key)
    else:
        limit, after = page_request(request)
        stored = await history.closed_positions(agent.id, after, limit + 1)
        page, cursor = merged_page(positions, stored, _position_key, lambda p: p.id, after, limit)
    items = [position_out(engine.refresh(p)) for p in page]
    return json_response(PositionPage(items=items, next_cursor=cursor))


async def get_position(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    position_id = request.match_info["position_id"]
    p = engine.positions.get(position_id)
    history = _history(request)
    if p is None and history is not None:
        p = await history.position(position_id)
    if p is None:
        raise NotFound(f"unknown position {position_id!r}", {"position_id": position_id})
    return json_response(position_out(engine.refresh(p)))


async def close_position(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    engine = daemon.engine
    agent = engine.agent(request.match_info["agent_id"])
    position_id = request.match_info["position_id"]
    history = _history(request)
    if position_id not in engine.positions and history is not None:
        stored = await history.position(position_id)  # closed and gone from memory: 409
        if stored is not None and stored.agent_id == agent.id:
            raise Conflict(
                f"position is {stored.status}",
                {"position_id": position_id, "status": stored.status},
            )
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
    return json_response(
        CloseAccepted(order_id=order_id, position_id=position_id, pending=order_id is None), 202
    )


async def list_trades(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    trades = engine.trades[agent.id]
    history = _history(request)
    page: Sequence[Trade]
    if history is None or len(trades) < TRADES_KEPT:  # nothing of this agent's left memory
        # append-only, oldest first: the cursor's position never moves
        page, cursor = paginate(request, trades, _trade_key)
    else:  # memory keeps the newest; older ones are in Postgres
        limit, after = page_request(request)
        stored = await history.trades(agent.id, after, limit + 1)
        page, cursor = merged_page(trades, stored, _trade_key, lambda t: t.id, after, limit)
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
        errors=(503,),
        description="Status `opening` (entry order in flight) is an addition to API.md's "
        "open/closing/closed; `?status=open` lists every position not yet closed. Memory keeps "
        "each agent's last `[engine] closed_positions_kept` closed positions (default 1000); "
        "older ones are read from Postgres and paged the same way (503 `store_unavailable` if "
        "it does not answer). With `TRADINGD_STORE=memory` they are gone.",
    ),
    Route(
        "GET",
        "/v1/positions/{position_id}",
        get_position,
        "A position",
        "positions",
        "read",
        {200: PositionOut},
        errors=(503,),
        description="A closed position that left memory is read from Postgres, same shape.",
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
        description="Sells `pct` (default 100) of the position at the market, exact and "
        "rounded down (docs/exact-money.md). A full close of a position whose entry buy, DCA "
        "buy or partial take-profit sell is in flight is kept pending and applied when that "
        "order settles: 202 with `order_id: null, pending: true`. 409 when the position is "
        "closed or already selling everything, or for a partial close during an order in "
        "flight; 422 when the sell rounds to zero tokens or is worth no quote.",
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
        errors=(503,),
        description="Memory keeps each agent's newest 10 000 to 20 000 trades; older ones are "
        "read from Postgres and paged the same way (503 `store_unavailable` if it does not "
        "answer). With `TRADINGD_STORE=memory` they are gone.",
    ),
]
