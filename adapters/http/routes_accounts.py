"""An agent's money: paper deposits (live agents: allocations of their wallet's SOL), balances, and realized/unrealized performance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import daemon_of, json_response, read_body
from tradingd.adapters.http.errors import PaperVenueOnly
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.http.schemas import BalanceOut, DepositIn, PerformanceOut
from tradingd.adapters.http.shapes import balance_out
from tradingd.adapters.venues import JUPITER
from tradingd.engine.assets import CCXT_VENUE_PREFIX, SOL_MINT, quote_mint
from tradingd.engine.config import MAX_ATOMIC, parse_atomic
from tradingd.engine.errors import Conflict, Unavailable, ValidationError, VenueError
from tradingd.engine.model import Agent

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

_deposit_in = msgspec.json.Decoder(DepositIn)


async def post_deposit(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    engine = daemon.engine
    agent = engine.agent(request.match_info["agent_id"])
    body = await read_body(request, _deposit_in)
    amount = parse_atomic(body.amount, "$.amount")
    if agent.venue != "paper":
        await _check_allocation(daemon, agent, body.asset, amount)
    held = {quote_mint(b.asset): b.total for b in engine.ledger.balances(agent.id)}
    if held.get(quote_mint(body.asset), 0) + amount > MAX_ATOMIC:
        raise ValidationError("the balance would exceed the u64 maximum", "$.amount")
    balance = daemon.runtime.apply(engine.deposit, agent.id, body.asset, amount)
    return json_response(balance_out(balance))


async def _check_allocation(daemon: Daemon, agent: Agent, asset: str, amount: int) -> None:
    """A live agent's "deposit" allocates SOL its wallet already holds: the wallet's balance on
    chain must cover what the book already allocates to its agents plus `amount`. Raises
    PaperVenueOnly (venue without a wallet balance), ValidationError (not the SOL quote),
    Conflict `insufficient_wallet_funds`, Unavailable (the RPC did not answer). An exchange
    agent's allocates its quote the account holds beyond what the book allocates
    (ExchangeAccounts.check_allocation: 422 $.asset, 409, 503 when the exchange does not
    answer)."""
    if agent.venue.startswith(CCXT_VENUE_PREFIX) and agent.venue in daemon.runtime.venues:
        await daemon.exchanges.check_allocation(agent, asset, amount)
        return
    if agent.venue != JUPITER or daemon.live.venue is None or agent.wallet_id is None:
        raise PaperVenueOnly(
            "deposits are for paper, jupiter and exchange agents only", {"venue": agent.venue}
        )
    if quote_mint(asset.upper() if asset.upper() == "SOL" else asset) != SOL_MINT:
        raise ValidationError("a jupiter agent is allocated SOL only", "$.asset")
    try:
        on_chain = await daemon.live.wallet_lamports(agent.wallet_id)
    except VenueError as exc:
        raise Unavailable("the Solana RPC did not answer: wallet balance unknown") from exc
    free = on_chain - daemon.live.booked_lamports(agent.wallet_id)
    if amount > free:
        raise Conflict(
            "the wallet does not hold that much SOL beyond what its agents are allocated",
            {
                "wallet_id": agent.wallet_id,
                "on_chain": str(on_chain),
                "unallocated": str(max(free, 0)),
            },
        )


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
        description="Paper agents: a deposit of play money. Jupiter agents: an allocation of "
        "SOL the wallet holds on chain beyond what its agents are allocated (409 "
        "`conflict` otherwise, 503 when the RPC cannot tell). 409 `paper_venue_only` for "
        "other venues.",
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
