"""Which engine events the WebSocket stream carries, on which channel, for which agent and
token, and with what payload. Events the stream does not carry (orders submitted, exit and DCA
triggers, moon bags, deposits) have no route; their effects arrive as position, trade and
balance messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msgspec import Struct, structs
from tradingd.adapters.http.shapes import (
    agent_out,
    execution_out,
    position_message,
    resting_entry_out,
    signal_received_message,
    trade_message,
)
from tradingd.adapters.http.ws_wire import (
    AgentBalanceOut,
    AgentMessage,
    AlertOut,
    Channel,
    EntryMessage,
    EntryOutcome,
    PositionEvent,
    SignalExecutionMessage,
)
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.model import Position


class Routed(Struct, frozen=True):
    """One outgoing message before its envelope: who may see it and what it says."""

    type: bytes  # the message `type`, pre-encoded for the envelope
    channel: Channel
    agent_id: str | None  # None: not about one agent, passes agent filters
    token: str | None  # None: not about one token, passes token filters
    data: Struct


POSITION, TRADE, SIGNAL, AGENT, ALERT = b"position", b"trade", b"signal", b"agent", b"alert"
ENTRY = b"entry"
_POSITION_EVENTS: dict[type, PositionEvent] = {
    ev.PositionOpened: "opened",
    ev.PositionChanged: "changed",
    ev.PositionClosed: "closed",
}
_AGENT_EVENTS = {
    ev.AgentCreated: "created",
    ev.AgentRenamed: "renamed",
    ev.AgentConfigUpdated: "config_updated",
    ev.AgentPaused: "paused",
    ev.AgentResumed: "resumed",
    ev.AgentDeleted: "deleted",
}


def _position(e: Any, engine: Engine) -> Routed:
    p: Position = e.position
    data = position_message(p, _POSITION_EVENTS[type(e)])  # the snapshot: refreshed when taken
    return Routed(POSITION, "positions", p.agent_id, p.token, data)


def _trade(e: ev.OrderFilled, engine: Engine) -> Routed:
    return Routed(
        TRADE, "trades", e.trade.agent_id, e.trade.token, trade_message(e.order_id, e.trade)
    )


def _signal_received(e: ev.SignalReceived, engine: Engine) -> Routed | None:
    # The record is complete when the events are fanned out (after the transition); a signal
    # already evicted from the dedupe window by then is not announced.
    record = engine.signals.get(e.signal_id)
    if record is None:
        return None
    return Routed(SIGNAL, "signals", None, e.token, signal_received_message(record))


def _signal_execution(e: ev.SignalExecutionRecorded, engine: Engine) -> Routed:
    record = engine.signals.get(e.signal_id)
    token = record.signal.token if record is not None else None
    data = SignalExecutionMessage(
        **structs.asdict(execution_out(e)), signal_id=e.signal_id, token=token
    )
    return Routed(SIGNAL, "signals", e.agent_id, token, data)


def _entry_rested(e: ev.EntryRested, engine: Engine) -> Routed:
    entry = e.entry
    data = EntryMessage(entry=resting_entry_out(entry, engine), outcome="rested")
    return Routed(ENTRY, "signals", entry.agent_id, entry.token, data)


def _entry_ended(e: ev.EntryEnded, engine: Engine) -> Routed | None:
    if e.entry is None:  # an event recorded before it carried its entry
        return None
    outcome: EntryOutcome = e.outcome  # type: ignore[assignment]
    data = EntryMessage(
        entry=resting_entry_out(e.entry, engine),
        outcome=outcome,
        reason=e.reason,
        order_id=e.order_id,
        price_usd=e.price_usd,
    )
    return Routed(ENTRY, "signals", e.agent_id, e.token, data)


def _agent(e: Any, engine: Engine) -> Routed:
    agent = engine.agents.get(e.agent_id)
    data = AgentMessage(
        event=_AGENT_EVENTS[type(e)],
        agent_id=e.agent_id,
        agent=agent_out(agent)
        if agent is not None and not isinstance(e, ev.AgentDeleted)
        else None,
    )
    return Routed(AGENT, "agents", e.agent_id, None, data)


def _balance(e: ev.BalanceChanged, engine: Engine) -> Routed:
    bal = AgentBalanceOut(
        agent_id=e.agent_id,
        asset=e.asset,
        decimals=e.decimals,
        total=str(e.total),
        reserved=str(e.reserved),
        available=str(e.total - e.reserved),
    )
    return Routed(
        AGENT,
        "agents",
        e.agent_id,
        None,
        AgentMessage(event="balance_changed", agent_id=e.agent_id, balance=bal),
    )


def _alert(e: ev.Alert, engine: Engine) -> Routed:
    agent_id = e.details.get("agent_id")
    return Routed(
        ALERT,
        "alerts",
        agent_id if isinstance(agent_id, str) else None,
        None,
        AlertOut(code=e.code, message=e.message, details=e.details),
    )


def _halt(e: ev.HaltChanged, engine: Engine) -> Routed:
    message = "buys halted" if e.buys else "buys resumed"
    return Routed(
        ALERT,
        "alerts",
        None,
        None,
        AlertOut(
            code="halt_changed", message=message, details={"buys": e.buys, "flatten": e.flatten}
        ),
    )


def _order_failed(e: ev.OrderFailed, engine: Engine) -> Routed:
    details = {
        "agent_id": e.agent_id,
        "position_id": e.position_id,
        "order_id": e.order_id,
        "reason": e.reason,
    }
    return Routed(
        ALERT,
        "alerts",
        e.agent_id,
        None,
        AlertOut(code="order_failed", message=e.reason, details=details),
    )


ROUTES: dict[type[ev.Event], Callable[[Any, Engine], Routed | None]] = {
    ev.PositionOpened: _position,
    ev.PositionChanged: _position,
    ev.PositionClosed: _position,
    ev.OrderFilled: _trade,
    ev.SignalReceived: _signal_received,
    ev.SignalExecutionRecorded: _signal_execution,
    ev.EntryRested: _entry_rested,
    ev.EntryEnded: _entry_ended,
    **{cls: _agent for cls in _AGENT_EVENTS},
    ev.BalanceChanged: _balance,
    ev.Alert: _alert,
    ev.HaltChanged: _halt,
    ev.OrderFailed: _order_failed,
}
# The channel each routed event type goes to, so the dispatcher builds a message only when the
# channel has a subscriber (a dashboard on `trades` alone must not pay for position messages).
ROUTE_CHANNELS: dict[type[ev.Event], str] = {
    **dict.fromkeys((ev.PositionOpened, ev.PositionChanged, ev.PositionClosed), "positions"),
    ev.OrderFilled: "trades",
    **dict.fromkeys(
        (ev.SignalReceived, ev.SignalExecutionRecorded, ev.EntryRested, ev.EntryEnded), "signals"
    ),
    **dict.fromkeys((*_AGENT_EVENTS, ev.BalanceChanged), "agents"),
    **dict.fromkeys((ev.Alert, ev.HaltChanged, ev.OrderFailed), "alerts"),
}
assert ROUTE_CHANNELS.keys() == ROUTES.keys()
