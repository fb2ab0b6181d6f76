"""Wire schemas of the WebSocket stream (API.md "WebSocket"): client operations in, message
payloads out, and the mapping of engine events to the channel, agent and token that route them.

Money travels as decimal strings of atomic units, like REST; timestamps as epoch milliseconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from engine import events as ev
from engine.config import AgentConfig
from engine.core import Engine
from engine.exits import next_take_profit_price, stop_price
from engine.model import Agent, Balance, Position, Tick, Trade

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


class SignalMessage(_Out):
    event: Literal["received", "execution"]
    signal_id: str
    token: str | None
    agent_id: str | None = None
    side: str | None = None
    type: str | None = None
    strength: int | None = None
    symbol: str | None = None
    source: str | None = None
    reason: str = ""
    client_id: str | None = None
    expires_at: int | None = None
    status: str | None = None  # execution: skipped, pending, filled, failed
    position_id: str | None = None
    order_id: str | None = None
    latency_ms: float | None = None


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


def _position_fields(p: Position) -> dict[str, Any]:
    open_ = p.status in ("open", "closing") and p.entry_price_usd > 0
    return {
        "id": p.id, "agent_id": p.agent_id, "token": p.token, "symbol": p.symbol,
        "status": p.status, "amount": str(p.amount), "decimals": p.decimals, "cost": str(p.cost),
        "entry_price_usd": p.entry_price_usd, "peak_price_usd": p.peak_price_usd,
        "stop_price_usd": stop_price(p, p.stop_gain_pct) if open_ and p.stop_gain_pct is not None else None,
        "next_take_profit_usd": next_take_profit_price(p) if open_ else None,
        "dca_count": p.dca_count, "opened_at": p.opened_at or None, "closed_at": p.closed_at,
        "exit_reason": p.exit_reason, "realized_pnl": str(p.realized_pnl),
    }


def position_out(p: Position) -> PositionOut:
    return PositionOut(**_position_fields(p))


def trade_out(order_id: str, t: Trade) -> TradeOut:
    return TradeOut(
        id=t.id, agent_id=t.agent_id, order_id=order_id, position_id=t.position_id, side=t.side,
        token=t.token, amount=str(t.amount), quote_amount=str(t.quote_amount), price_usd=t.price_usd,
        fee=str(t.fee), venue=t.venue, venue_ref=t.venue_ref, reason=t.reason, ts=t.ts,
    )


def balance_out(agent_id: str, b: Balance) -> BalanceOut:
    return BalanceOut(agent_id=agent_id, asset=b.asset, decimals=b.decimals, total=str(b.total),
                      reserved=str(b.reserved), available=str(b.total - b.reserved))


def agent_out(a: Agent) -> AgentOut:
    return AgentOut(id=a.id, name=a.name, venue=a.venue, quote=a.quote, status=a.status,
                    created_at=a.created_at, wallet_id=a.wallet_id, config=a.config)


# -- engine events -> routed messages --------------------------------------------------------


class Routed(Struct, frozen=True):
    """One outgoing message before its envelope: who may see it and what it says."""

    type: bytes  # the message `type`, pre-encoded for the envelope
    channel: Channel
    agent_id: str | None  # None: not about one agent, passes agent filters
    token: str | None  # None: not about one token, passes token filters
    data: Struct


POSITION, TRADE, SIGNAL, AGENT, ALERT = b"position", b"trade", b"signal", b"agent", b"alert"
_POSITION_EVENTS = {ev.PositionOpened: "opened", ev.PositionChanged: "changed", ev.PositionClosed: "closed"}
_AGENT_EVENTS = {ev.AgentCreated: "created", ev.AgentRenamed: "renamed", ev.AgentConfigUpdated: "config_updated",
                 ev.AgentPaused: "paused", ev.AgentResumed: "resumed", ev.AgentDeleted: "deleted"}


def _position(e: Any, engine: Engine) -> Routed:
    p: Position = e.position
    data = PositionMessage(**_position_fields(p), event=_POSITION_EVENTS[type(e)])  # type: ignore[arg-type]
    return Routed(POSITION, "positions", p.agent_id, p.token, data)


def _trade(e: ev.OrderFilled, engine: Engine) -> Routed:
    return Routed(TRADE, "trades", e.trade.agent_id, e.trade.token, trade_out(e.order_id, e.trade))


def _signal_received(e: ev.SignalReceived, engine: Engine) -> Routed:
    data = SignalMessage(
        event="received", signal_id=e.signal_id, token=e.token, side=e.side, type=e.type,
        strength=e.strength, symbol=e.symbol, source=e.source, reason=e.reason,
        client_id=e.client_id, expires_at=e.expires_at,
    )
    return Routed(SIGNAL, "signals", None, e.token, data)


def _signal_execution(e: ev.SignalExecutionRecorded, engine: Engine) -> Routed:
    record = engine.signals.get(e.signal_id)
    token = record.signal.token if record is not None else None
    data = SignalMessage(
        event="execution", signal_id=e.signal_id, token=token, agent_id=e.agent_id, status=e.status,
        reason=e.reason, position_id=e.position_id, order_id=e.order_id, latency_ms=e.latency_ms,
    )
    return Routed(SIGNAL, "signals", e.agent_id, token, data)


def _agent(e: Any, engine: Engine) -> Routed:
    agent = engine.agents.get(e.agent_id)
    data = AgentMessage(event=_AGENT_EVENTS[type(e)], agent_id=e.agent_id,
                        agent=agent_out(agent) if agent is not None and not isinstance(e, ev.AgentDeleted) else None)
    return Routed(AGENT, "agents", e.agent_id, None, data)


def _balance(e: ev.BalanceChanged, engine: Engine) -> Routed:
    bal = BalanceOut(agent_id=e.agent_id, asset=e.asset, decimals=e.decimals, total=str(e.total),
                     reserved=str(e.reserved), available=str(e.total - e.reserved))
    return Routed(AGENT, "agents", e.agent_id, None, AgentMessage(event="balance_changed", agent_id=e.agent_id, balance=bal))


def _alert(e: ev.Alert, engine: Engine) -> Routed:
    agent_id = e.details.get("agent_id")
    return Routed(ALERT, "alerts", agent_id if isinstance(agent_id, str) else None, None,
                  AlertOut(code=e.code, message=e.message, details=e.details))


def _halt(e: ev.HaltChanged, engine: Engine) -> Routed:
    message = "buys halted" if e.buys else "buys resumed"
    return Routed(ALERT, "alerts", None, None,
                  AlertOut(code="halt_changed", message=message, details={"buys": e.buys, "flatten": e.flatten}))


def _order_failed(e: ev.OrderFailed, engine: Engine) -> Routed:
    details = {"agent_id": e.agent_id, "position_id": e.position_id, "order_id": e.order_id, "reason": e.reason}
    return Routed(ALERT, "alerts", e.agent_id, None, AlertOut(code="order_failed", message=e.reason, details=details))


ROUTES: dict[type[ev.Event], Callable[[Any, Engine], Routed]] = {
    ev.PositionOpened: _position,
    ev.PositionChanged: _position,
    ev.PositionClosed: _position,
    ev.OrderFilled: _trade,
    ev.SignalReceived: _signal_received,
    ev.SignalExecutionRecorded: _signal_execution,
    **{cls: _agent for cls in _AGENT_EVENTS},
    ev.BalanceChanged: _balance,
    ev.Alert: _alert,
    ev.HaltChanged: _halt,
    ev.OrderFailed: _order_failed,
}
