"""Wire schemas of the WebSocket stream (API.md "WebSocket"): client operations in, message
payloads out, and the mapping of engine events to the channel, agent and token that route them.

Payloads are the REST shapes (adapters/http/shapes.py builds them for both): money as decimal
strings of atomic units, times as ISO-8601 UTC strings with milliseconds. Only the envelope's
`ts` (when the message was sent) is epoch milliseconds."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct
from tradingd.adapters.http.schemas import (
    INSTRUMENT_MAX,
    AgentOut,
    BalanceOut,
    ExecutionOut,
    PositionOut,
    RestingEntryOut,
    SignalOut,
    TickOut,
    TradeOut,
)
from tradingd.adapters.http.source_schemas import SourceMessage
from tradingd.adapters.http.token_schemas import TokenOut

Channel = Literal[
    "prices", "positions", "trades", "signals", "agents", "alerts", "tokens", "sources"
]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
Id = Annotated[str, Meta(min_length=1, max_length=128)]
MAX_IDS = 1000  # ids in one filter list; token views in one snapshot
Ids = Annotated[list[Id], Meta(max_length=MAX_IDS)]
# Instrument ids: the REST bound (a mint, or <exchange>:<BASE>/<QUOTE>).
TokenIds = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=INSTRUMENT_MAX)]], Meta(max_length=MAX_IDS)
]

# -- client -> server ------------------------------------------------------------------------


class _Op(Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    pass


class Subscribe(_Op, tag="subscribe"):
    channels: Annotated[list[Channel], Meta(min_length=1, max_length=8)] = msgspec.field(
        default_factory=lambda: list(CHANNELS)
    )
    agents: Ids | None = None  # None: every agent
    tokens: TokenIds | None = None  # None: every token


class Unsubscribe(_Op, tag="unsubscribe"):
    channels: Annotated[list[Channel], Meta(max_length=8)] | None = None  # None: every channel
    agents: Ids | None = None
    tokens: TokenIds | None = None


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


class PricesOut(_Out):
    ticks: list[TickOut]


PositionEvent = Literal["opened", "changed", "closed"]


class PositionMessage(PositionOut, kw_only=True):
    event: PositionEvent


class TradeMessage(TradeOut, kw_only=True):
    order_id: str


class AgentBalanceOut(BalanceOut, kw_only=True):
    agent_id: str


class AgentMessage(_Out):
    event: str  # created, renamed, config_updated, paused, resumed, deleted, balance_changed
    agent_id: str
    agent: AgentOut | None = None  # the agent after the change; None once deleted
    balance: AgentBalanceOut | None = None


class SignalReceivedMessage(SignalOut, kw_only=True):
    """The signal as `GET /v1/signals/{id}` gives it, when the engine took it."""

    event: Literal["received"] = "received"


class SignalExecutionMessage(ExecutionOut, kw_only=True):
    """One agent's outcome for a signal, as in `GET /v1/signals/{id}` `executions`, with the
    signal's id and token."""

    event: Literal["execution"] = "execution"
    signal_id: str
    token: str | None


EntryOutcome = Literal["rested", "triggered", "expired", "cancelled"]


class EntryMessage(_Out):
    """A resting buy rested or ended: the entry as `GET /v1/agents/{id}/entries` gives it, what
    happened, why it was skipped if it was (`reason`), the order a trigger placed."""

    entry: RestingEntryOut
    outcome: EntryOutcome
    reason: str = ""
    order_id: str | None = None
    price_usd: float | None = None  # the price that triggered it


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
    balances: list[AgentBalanceOut]
    prices: list[TickOut]
    entries: list[RestingEntryOut] = []  # resting buys admitted by the subscription
    # with the `tokens` channel: the subscribed tokens' views (all watched ones without a list)
    tokens: list[TokenOut] = []
    # with the `sources` channel: every source's card (the first 1000 by name), as `source`
    # messages carry them
    sources: list[SourceMessage] = []
