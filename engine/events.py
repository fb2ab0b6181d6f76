"""Events (facts, past tense) and intents (work for the adapters) emitted by transitions.

Events carry everything a subscriber needs, so the outbox (Redis, Postgres, WebSocket, metrics)
never reads engine state to interpret one. All are tagged msgspec Structs: one encoder writes
them all and the decoder restores the exact type."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from .config import AgentConfig
from .model import Order, Position, Trade


class Event(Struct, frozen=True, tag=True, tag_field="event", kw_only=True):
    ts: int


class AgentCreated(Event, frozen=True):
    agent_id: str
    name: str
    venue: str
    quote: str
    quote_decimals: int
    config: AgentConfig
    wallet_id: str | None = None


class AgentRenamed(Event, frozen=True):
    agent_id: str
    name: str


class AgentDeleted(Event, frozen=True):
    agent_id: str


class AgentConfigUpdated(Event, frozen=True):
    agent_id: str
    config: AgentConfig
    apply_to_open: bool = False


class AgentPaused(Event, frozen=True):
    agent_id: str


class AgentResumed(Event, frozen=True):
    agent_id: str


class Deposited(Event, frozen=True):
    agent_id: str
    asset: str
    amount: int
    total: int


class SignalReceived(Event, frozen=True):
    signal_id: str
    token: str
    side: str
    type: str
    strength: int
    symbol: str | None = None
    source: str = ""
    reason: str = ""
    client_id: str | None = None
    expires_at: int = 0
    decimals: int | None = None


class SignalExecutionRecorded(Event, frozen=True):
    signal_id: str
    agent_id: str
    status: str
    reason: str = ""
    position_id: str | None = None
    order_id: str | None = None
    latency_ms: float | None = None


class SignalFiltered(Event, frozen=True):
    """Agents whose signal filters rejected a signal, in one event (not one per agent)."""

    signal_id: str
    reasons: dict[str, str]  # agent id -> skip reason


class OrderSubmitted(Event, frozen=True):
    order: Order


class OrderFilled(Event, frozen=True):
    order_id: str
    trade: Trade


class OrderFailed(Event, frozen=True):
    order_id: str
    agent_id: str
    position_id: str
    reason: str


class ExitTriggered(Event, frozen=True):
    position_id: str
    agent_id: str
    token: str
    reason: str
    price_usd: float
    sell_amount: int
    stop_price_usd: float | None = None


class MoonBagSet(Event, frozen=True):
    position_id: str
    amount: int


class DcaTriggered(Event, frozen=True):
    position_id: str
    agent_id: str
    price_usd: float
    level: int


class PositionOpened(Event, frozen=True):
    position: Position


class PositionChanged(Event, frozen=True):
    """Any change of an open position's amounts, entry or exit state (DCA, partial sell)."""

    position: Position


class PositionClosed(Event, frozen=True):
    position: Position


class BalanceChanged(Event, frozen=True):
    agent_id: str
    asset: str
    decimals: int
    total: int
    reserved: int


class HaltChanged(Event, frozen=True):
    buys: bool
    flatten: bool


class PriceEvicted(Event, frozen=True):
    """A price nobody needs left the bounded price book (engine.state.room_for_price)."""

    token: str


class Alert(Event, frozen=True):
    code: str
    message: str
    details: dict[str, Any] = {}


AnyEvent = (
    AgentCreated
    | AgentRenamed
    | AgentDeleted
    | AgentConfigUpdated
    | AgentPaused
    | AgentResumed
    | Deposited
    | SignalReceived
    | SignalExecutionRecorded
    | SignalFiltered
    | OrderSubmitted
    | OrderFilled
    | OrderFailed
    | ExitTriggered
    | MoonBagSet
    | DcaTriggered
    | PositionOpened
    | PositionChanged
    | PositionClosed
    | BalanceChanged
    | HaltChanged
    | PriceEvicted
    | Alert
)


class SubmitOrder(Struct, frozen=True):
    """Intent: carry this order to its venue and report back with on_fill / on_order_failed."""

    order: Order
