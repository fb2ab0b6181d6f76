"""Client-facing shapes, each built once and given alike by REST and the WebSocket: a price
tick, a position (with its live exit state), a trade, a balance, an agent, a resting buy. The WebSocket's
message types extend these with what only a stream carries (a position's `event`, a trade's
`order_id`, a balance's `agent_id`); the fields they share have the same value in both.

Times are ISO-8601 UTC with milliseconds (adapters/timestamps.py); atomic amounts decimal
strings; prices JSON numbers, each the float nearest the exact value it stands for."""

from __future__ import annotations

from typing import TypeVar

from msgspec import structs
from tradingd.adapters.http.schemas import (
    AgentOut,
    AttributionOut,
    BalanceOut,
    EntryOut,
    ExecutionOut,
    PositionOut,
    RestingEntryOut,
    SignalOut,
    TickOut,
    TradeOut,
)
from tradingd.adapters.http.ws_wire import (
    AgentBalanceOut,
    PositionEvent,
    PositionMessage,
    SignalReceivedMessage,
    TradeMessage,
)
from tradingd.adapters.timestamps import iso_ms, iso_ms_or_none
from tradingd.engine.assets import quote_mint
from tradingd.engine.events import SignalExecutionRecorded
from tradingd.engine.exits import next_take_profit_shown, stop_trigger_price
from tradingd.engine.model import (
    Agent,
    Attribution,
    Balance,
    Execution,
    Position,
    RestingEntry,
    Tick,
    Trade,
)
from tradingd.engine.state import EngineState, SignalRecord

_T = TypeVar("_T", TradeOut, TradeMessage)


def tick_out(t: Tick) -> TickOut:
    """A price tick: USD per whole token, its source, when it was observed."""
    return TickOut(token=t.token, price_usd=t.price_usd, source=t.source, ts=iso_ms(t.ts))


def position_out(p: Position) -> PositionOut:
    """A position as given: pass a refreshed one (Engine.refresh, or an event's snapshot, which
    is refreshed when taken) so its peak and ratcheted stop are current. Prices are null where
    they do not exist yet (before the entry fills) or no longer apply (closed, rule off)."""
    live = p.status in ("open", "closing") and p.entry_price_usd > 0
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
        stop_price_usd=stop_trigger_price(p) if live else None,
        next_take_profit_usd=next_take_profit_shown(p) if live else None,
        dca_count=p.dca_count,
        opened_at=iso_ms_or_none(p.opened_at),
        closed_at=iso_ms_or_none(p.closed_at),
        exit_reason=p.exit_reason,
        realized_pnl=str(p.realized_pnl),
        moon_bag_amount=str(p.moon_bag_amount),
        signal_id=p.signal_id,
        opened_by=attribution_out(p.opened_by),
        exit_signal_id=p.exit_signal_id,
    )


def attribution_out(by: Attribution | None) -> AttributionOut | None:
    if by is None:
        return None
    return AttributionOut(
        signal_id=by.signal_id,
        source=by.source,
        type=by.type,
        strength=by.strength,
        key_id=by.key_id,
        received_at=iso_ms_or_none(by.received_at),
        price_usd=by.price_usd,
    )


def position_message(p: Position, event: PositionEvent) -> PositionMessage:
    """The WebSocket `position` message: the REST position plus what happened to it."""
    return PositionMessage(**structs.asdict(position_out(p)), event=event)


def trade_out(t: Trade) -> TradeOut:
    """A fill: tokens and quote in atomic units, the fill price in USD per whole token."""
    return _trade_shape(TradeOut, t)


def trade_message(order_id: str, t: Trade) -> TradeMessage:
    """The WebSocket `trade` message: the REST trade plus the order it filled (built in one
    step: a 100-agent signal sends 100 of them)."""
    return _trade_shape(TradeMessage, t, order_id=order_id)


def _trade_shape(shape: type[_T], t: Trade, **more: str) -> _T:
    return shape(
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
        fee_currency=t.fee_currency,
        fee_amount=t.fee_amount,
        signal_id=t.signal_id,
        source=t.source,
        **more,
    )


def balance_out(b: Balance) -> BalanceOut:
    """One asset's balance, atomic units: total, reserved by orders in flight, available."""
    return BalanceOut(
        asset=b.asset,
        decimals=b.decimals,
        total=str(b.total),
        reserved=str(b.reserved),
        available=str(b.available),
    )


def agent_balance_out(agent_id: str, b: Balance) -> AgentBalanceOut:
    """A balance with the agent it belongs to (WebSocket snapshots and agent messages)."""
    return AgentBalanceOut(**structs.asdict(balance_out(b)), agent_id=agent_id)


def agent_out(agent: Agent) -> AgentOut:
    """An agent with its whole exit configuration."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        venue=agent.venue,
        quote=agent.quote,
        quote_decimals=agent.quote_decimals,
        status=agent.status,
        created_at=iso_ms(agent.created_at),
        wallet_id=agent.wallet_id,
        config=agent.config,
    )


def signal_out(record: SignalRecord, *, executions: bool = True) -> SignalOut:
    """A signal and every reached agent's execution, as REST and the WebSocket give it (the
    WebSocket's `received` message without them: each follows as an `execution` message)."""
    s = record.signal
    return SignalOut(
        signal_id=s.id,
        id=s.client_id,
        token=s.token,
        symbol=s.symbol,
        side=s.side,
        type=s.type,
        strength=s.strength,
        source=s.source,
        reason=s.reason,
        decimals=s.decimals,
        received_at=iso_ms(s.received_at),
        expires_at=iso_ms(s.expires_at),
        agents_matched=record.agents_matched,
        executions=[execution_out(e) for e in (record.executions.values() if executions else ())],
        entry=EntryOut(type=s.entry.type, price_usd=s.entry.price_usd) if s.entry else None,
    )


def execution_out(e: Execution | SignalExecutionRecorded) -> ExecutionOut:
    """One agent's outcome for a signal, from the record or the event that recorded it."""
    return ExecutionOut(
        agent_id=e.agent_id,
        status=e.status,
        reason=e.reason,
        position_id=e.position_id,
        order_id=e.order_id,
        latency_ms=e.latency_ms,
    )


def resting_entry_out(e: RestingEntry, state: EngineState) -> RestingEntryOut:
    """A resting buy: its condition, the quote it reserves (atomic, with the quote's
    decimals: the agent's, or the known ones once the agent is deleted), when it rested and
    when it expires."""
    agent = state.agents.get(e.agent_id)
    quote_decimals = (
        agent.quote_decimals if agent is not None else state.token_decimals(quote_mint(e.quote))
    )
    return RestingEntryOut(
        id=e.id,
        agent_id=e.agent_id,
        signal_id=e.signal_id,
        token=e.token,
        symbol=e.symbol,
        type=e.type,
        price_usd=e.price_usd,
        amount=str(e.amount),
        quote=e.quote,
        quote_decimals=quote_decimals,
        created_at=iso_ms(e.created_at),
        expires_at=iso_ms(e.expires_at),
    )


def signal_received_message(record: SignalRecord) -> SignalReceivedMessage:
    """The WebSocket `signal` message with `event: "received"`: the REST signal, its
    `executions` empty (each agent's outcome follows as an `execution` message; building them
    here would cost O(agents) per signal with or without subscribers)."""
    return SignalReceivedMessage(**structs.asdict(signal_out(record, executions=False)))
