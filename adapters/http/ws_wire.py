"""Wire schemas of the WebSocket stream (API.md "WebSocket"): client operations in, message
payloads out, and the mapping of engine events to the channel, agent and token that route them.

Money travels as decimal strings of atomic units, like REST; timestamps as epoch milliseconds."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct
from tradingd.engine.config import AgentConfig
from tradingd.engine.exits import next_take_profit_price, stop_trigger_price
from tradingd.engine.model import Agent, Balance, Position, Tick, Trade

Channel = Literal["prices", "positions", "trades", "signals", "agents", "alerts"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
Id = Annotated[str, Meta(min_length=1, max_length=128)]
Ids = Annotated[list[Id], Meta(max_length=1000)]

# -- client -> server ------------------------------------------------------------------------


class _Op(Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    pass


class Subscribe(_Op, tag="subscribe"):
    channels: Annotated[list[Channel], Meta(min_length=1, max_length=6)] = msgspec.field(
        default_factory=lambda: list(CHANNELS)
    )
    agents: Ids | None = None  # None: every agent
    tokens: Ids | None = None  # None: every token


class Unsubscribe(_Op, tag="unsubscribe"):
    channels: Annotated[list[Channel], Meta(max_length=6)] | None = None  # None: every channel
    agents: Ids | None = None
    tokens: Ids | None = None


class Ping(_Op, tag="ping"):
    pass


class Auth(_Op, tag="auth"):
    key: Annotated[str, Meta(max_length=512)]


ClientOp = Subscribe | Unsubscribe | Ping | Auth
op_decoder = msgspec.json.Decoder(ClientOp)
encode = msgspec.json.Encoder().encode

# -- server -> client payloads ---------------------------------------------------------------


class _Out(Struct, kw_only=True):
    pass


class TickOut(_Out):
    token: str
    price_usd: float
    source: str
    ts: int


class PricesOut(_Out):
    ticks: list[TickOut]


class PositionOut(_Out):
    id: str
    agent_id: str
    token: str
    symbol: str | None
    status: str
    amount: str
    decimals: int
    cost: str
    entry_price_usd: float
    peak_price_usd: float
    stop_price_usd: float | None
    next_take_profit_usd: float | None
    dca_count: int
    opened_at: int | None
    closed_at: int | None
    exit_reason: str | None
    realized_pnl: str


class PositionMessage(PositionOut):
    event: Literal["opened", "changed", "closed"]


class TradeOut(_Out):
    id: str
    agent_id: str
    order_id: str
    position_id: str
    side: str
    token: str
    amount: str
    quote_amount: str
    price_usd: float
    fee: str
    venue: str
    venue_ref: str
    reason: str
    ts: int


class BalanceOut(_Out):
    agent_id: str
    asset: str
    decimals: int
    total: str
    reserved: str
    available: str


class AgentOut(_Out):
    id: str
    name: str
    venue: str
    quote: str
    status: str
    created_at: int
    wallet_id: str | None
    config: AgentConfig


class AgentMessage(_Out):
    event: str  # created, renamed, config_updated, paused, resumed, deleted, balance_changed
    agent_id: str
    agent: AgentOut | None = None  # the agent after the change; None once deleted
    balance: BalanceOut | None = None


class SignalReceivedMessage(_Out, kw_only=True):
    event: Literal["received"] = "received"
    signal_id: str
    token: str
    side: str
    type: str
    strength: int
    symbol: str | None
    source: str
    reason: str
    client_id: str | None
    expires_at: int


class SignalExecutionMessage(_Out, kw_only=True):
    """One agent's outcome for a signal, as in `GET /v1/signals/{id}` `executions`."""

    event: Literal["execution"] = "execution"
    signal_id: str
    agent_id: str
    token: str | None
    status: str  # skipped, pending, filled, failed
    reason: str
    position_id: str | None
    order_id: str | None
    latency_ms: float | None


class AlertOut(_Out):
    code: str
    message: str = ""
    details: dict[str, Any] = {}


class ErrorOut(_Out):
    code: str
    message: str
    details: dict[str, Any] = {}


class SubscriptionOut(_Out):
    channels: list[str]
    agents: list[str] | None
    tokens: list[str] | None


class SnapshotOut(_Out):
    subscription: SubscriptionOut
    halted: bool
    agents: list[AgentOut]
    positions: list[PositionOut]
    balances: list[BalanceOut]
    prices: list[TickOut]


# -- domain -> wire --------------------------------------------------------------------------


def tick_out(t: Tick) -> TickOut:
    return TickOut(token=t.token, price_usd=t.price_usd, source=t.source, ts=t.ts)


def position_fields(p: Position) -> dict[str, Any]:
    open_ = p.status in ("open", "closing") and p.entry_price_usd > 0
    return {
        "id": p.id,
        "agent_id": p.agent_id,
        "token": p.token,
        "symbol": p.symbol,
        "status": p.status,
        "amount": str(p.amount),
        "decimals": p.decimals,
        "cost": str(p.cost),
        "entry_price_usd": p.entry_price_usd,
        "peak_price_usd": p.peak_price_usd,
        "stop_price_usd": stop_trigger_price(p) if open_ else None,
        "next_take_profit_usd": next_take_profit_price(p) if open_ else None,
        "dca_count": p.dca_count,
        "opened_at": p.opened_at or None,
        "closed_at": p.closed_at,
        "exit_reason": p.exit_reason,
        "realized_pnl": str(p.realized_pnl),
    }


def position_out(p: Position) -> PositionOut:
    return PositionOut(**position_fields(p))


def trade_out(order_id: str, t: Trade) -> TradeOut:
    return TradeOut(
        id=t.id,
        agent_id=t.agent_id,
        order_id=order_id,
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
        ts=t.ts,
    )


def balance_out(agent_id: str, b: Balance) -> BalanceOut:
    return BalanceOut(
        agent_id=agent_id,
        asset=b.asset,
        decimals=b.decimals,
        total=str(b.total),
        reserved=str(b.reserved),
        available=str(b.total - b.reserved),
    )


def agent_out(a: Agent) -> AgentOut:
    return AgentOut(
        id=a.id,
        name=a.name,
        venue=a.venue,
        quote=a.quote,
        status=a.status,
        created_at=a.created_at,
        wallet_id=a.wallet_id,
        config=a.config,
    )
