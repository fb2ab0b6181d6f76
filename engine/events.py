"""Events (facts, past tense) and intents (work for the adapters) emitted by transitions.

Events carry everything a subscriber needs, so the outbox (Redis, Postgres, WebSocket, metrics)
never reads engine state to interpret one. All are tagged msgspec Structs: one encoder writes
them all and the decoder restores the exact type."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from .config import AgentConfig
from .model import Order, Position, RestingEntry, Trade


class Event(Struct, frozen=True, tag=True, tag_field="event", kw_only=True, gc=False):
    """Base of every event: `ts` is when it happened, epoch ms; the tag field `event` names its
    kind on the wire."""

    ts: int


class AgentCreated(Event, frozen=True):
    """An agent was created with this venue, quote (a symbol or mint, `quote_decimals` its
    decimals) and config."""

    agent_id: str
    name: str
    venue: str
    quote: str
    quote_decimals: int
    config: AgentConfig
    wallet_id: str | None = None


class AgentRenamed(Event, frozen=True):
    """An agent got a new display name."""

    agent_id: str
    name: str


class AgentDeleted(Event, frozen=True):
    """An agent and everything it owned in memory were deleted."""

    agent_id: str


class AgentConfigUpdated(Event, frozen=True):
    """An agent got a new config; `apply_to_open` True: its open positions took it too."""

    agent_id: str
    config: AgentConfig
    apply_to_open: bool = False


class AgentPaused(Event, frozen=True):
    """An agent stopped taking buys (exits go on)."""

    agent_id: str


class AgentResumed(Event, frozen=True):
    """A paused agent takes buys again."""

    agent_id: str


class Deposited(Event, frozen=True):
    """`amount` (atomic units of `asset`) was credited to the agent; `total` is the balance after
    it."""

    agent_id: str
    asset: str
    amount: int
    total: int


class SignalReceived(Event, frozen=True):
    """A new signal was accepted (ids, token, side, and what the client sent); `expires_at` in
    epoch ms."""

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
    """What one agent did with a signal: `status` skipped, pending, filled or failed, with the
    reason, the position and order, and the latency from receipt in ms."""

    signal_id: str
    agent_id: str
    status: str
    reason: str = ""
    position_id: str | None = None
    order_id: str | None = None
    latency_ms: float | None = None


class EntryRested(Event, frozen=True):
    """A buy now rests until its price (the entry's condition) or its expiry, its quote
    reserved."""

    entry: RestingEntry


class EntryEnded(Event, frozen=True):
    """A resting buy stopped resting: `outcome` triggered (its price came: an order was placed,
    or it was skipped for `reason`), expired, or cancelled; its reservation went to the order or
    was released. `price_usd` the price that triggered it."""

    entry_id: str
    agent_id: str
    signal_id: str
    token: str
    outcome: str  # "triggered" | "expired" | "cancelled"
    reason: str = ""
    order_id: str | None = None
    price_usd: float | None = None
    entry: RestingEntry | None = None  # the entry as it rested (for consumers that show it)


class SignalFiltered(Event, frozen=True):
    """Agents whose signal filters rejected a signal, in one event (not one per agent)."""

    signal_id: str
    reasons: dict[str, str]  # agent id -> skip reason


class OrderSubmitted(Event, frozen=True):
    """An order was placed: money is in motion (see Order)."""

    order: Order


class SwapSubmitted(Event, frozen=True):
    """A signed swap of an order in flight is recorded before it is sent: `order` carries it in
    `order.swap` (its signature and the block height it expires at)."""

    order: Order


class ExchangeOrderSent(Event, frozen=True):
    """An exchange request of an order in flight is recorded before it is sent: `order`
    carries it in `order.exchange` (its client order id and attempt)."""

    order: Order


class OrderFilled(Event, frozen=True):
    """An order filled; `trade` is what it executed (atomic amounts)."""

    order_id: str
    trade: Trade


class OrderFailed(Event, frozen=True):
    """An order failed for `reason`; a buy's reservation was released. `fee`: quote atomic units
    its failed attempts still cost (network fees of transactions that landed with an error),
    taken from the agent's quote balance."""

    order_id: str
    agent_id: str
    position_id: str
    reason: str
    fee: int = 0


class ExitTriggered(Event, frozen=True):
    """An exit rule (or a signal, or the operator) sells `sell_amount` token atomic units of a
    position at `price_usd`; `stop_price_usd` the stop level that fired, if one did."""

    position_id: str
    agent_id: str
    token: str
    reason: str
    price_usd: float
    sell_amount: int
    stop_price_usd: float | None = None


class MoonBagSet(Event, frozen=True):
    """A take-profit set aside `amount` token atomic units never sold by take-profit."""

    position_id: str
    amount: int


class DcaTriggered(Event, frozen=True):
    """A DCA level (`level`, 0-based) fired at `price_usd`."""

    position_id: str
    agent_id: str
    price_usd: float
    level: int


class PositionOpened(Event, frozen=True):
    """A position's entry buy filled: the position as opened."""

    position: Position


class PositionChanged(Event, frozen=True):
    """Any change of an open position's amounts, entry or exit state (DCA, partial sell)."""

    position: Position


class PositionClosed(Event, frozen=True):
    """A position sold out: the position as closed, with its realized PnL (quote atomic)."""

    position: Position


class BalanceChanged(Event, frozen=True):
    """A balance after a change: `total` and `reserved`, atomic units of `asset` with `decimals`."""

    agent_id: str
    asset: str
    decimals: int
    total: int
    reserved: int


class HaltChanged(Event, frozen=True):
    """The operator's kill switch: `buys` True halts new buys; `flatten` True also sold every
    position. `rule`: the account breaker that set it (account_breakers.py), with `details`
    the numbers that tripped it; None for the operator's own halt (and for records written
    before breakers existed)."""

    buys: bool
    flatten: bool
    rule: str | None = None
    details: dict[str, Any] = {}


class PriceEvicted(Event, frozen=True):
    """A price nobody needs left the bounded price book (engine.price_book.room_for_price)."""

    token: str


class Alert(Event, frozen=True):
    """Something an operator should see: a stable `code`, a message and details."""

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
    | EntryRested
    | EntryEnded
    | OrderSubmitted
    | SwapSubmitted
    | ExchangeOrderSent
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
