"""An agent's money: paper deposits, balances, and realized/unrealized performance."""

from __future__ import annotations

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import daemon_of, json_response, read_body
from tradingd.adapters.http.errors import PaperVenueOnly
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.http.schemas import BalanceOut, DepositIn, PerformanceOut
from tradingd.adapters.http.shapes import balance_out
from tradingd.engine.assets import quote_mint
from tradingd.engine.config import MAX_ATOMIC, parse_atomic
from tradingd.engine.errors import ValidationError

_deposit_in = msgspec.json.Decoder(DepositIn)


async def post_deposit(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    engine = daemon.engine
    agent = engine.agent(request.match_info["agent_id"])
    body = await read_body(request, _deposit_in)
    if agent.venue != "paper":
        raise PaperVenueOnly("deposits are for paper agents only", {"venue": agent.venue})
    amount = parse_atomic(body.amount, "$.amount")
    held = {quote_mint(b.asset): b.total for b in engine.ledger.balances(agent.id)}
    if held.get(quote_mint(body.asset), 0) + amount > MAX_ATOMIC:
        raise ValidationError("the balance would exceed the u64 maximum", "$.amount")
    balance = daemon.runtime.apply(engine.deposit, agent.id, body.asset, amount)
    return json_response(balance_out(balance))


async def get_balances(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    return json_response([balance_out(b) for b in engine.ledger.balances(agent.id)])


async def get_performance(request: web.Request) -> web.Response:
    engine = daemon_of(request).engine
    agent = engine.agent(request.match_info["agent_id"])
    perf = agent.perf
    return json_response(
        PerformanceOut(
            quote=agent.quote,
            quote_decimals=agent.quote_decimals,
            realized_pnl=str(perf.realized_pnl),
            unrealized_pnl=str(engine.unrealized_pnl(agent.id)),
            trades=perf.trades,
            wins=perf.wins,
            losses=perf.losses,
            win_rate=perf.wins / perf.trades if perf.trades else 0.0,
            max_drawdown_pct=perf.max_drawdown_pct,
        )
    )


_AGENT = "/v1/agents/{agent_id}"
ROUTES = [
    Route(
        "POST",
        _AGENT + "/deposits",
        post_deposit,
        "Deposit into a paper agent",
        "accounts",
        "admin",
        {200: BalanceOut},
        body=DepositIn,
        errors=(409,),
        intake=True,
        description="409 `paper_venue_only` for agents on live venues.",
    ),
    Route(
        "GET",
        _AGENT + "/balances",
        get_balances,
        "An agent's balances",
        "accounts",
        "read",
        {200: list[BalanceOut]},
    ),
    Route(
        "GET",
        _AGENT + "/performance",
        get_performance,
        "Realized and unrealized PnL",
        "accounts",
        "read",
        {200: PerformanceOut},
    ),
]
