"""Wire types of the REST control port (API.md), as msgspec Structs.

Requests forbid unknown fields (a typo must not silently change trading behaviour); responses
carry atomic amounts as decimal strings and times as ISO-8601 UTC with milliseconds. The same
types decode the requests, encode the responses and generate `/v1/openapi.json`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from tradingd.engine.config import AgentConfig, Atomic

Timestamp = Annotated[
    str,
    Meta(
        description="ISO-8601 UTC with milliseconds",
        extra_json_schema={"format": "date-time"},
    ),
]
SignedAtomic = Annotated[
    str, Meta(pattern=r"^-?(0|[1-9][0-9]*)$", description="signed atomic units")
]
Id = Annotated[str, Meta(min_length=1, max_length=128)]
# An instrument id (engine/assets.py): a base58 mint (32-44 chars) or an exchange market
# `<exchange>:<BASE>/<QUOTE>`, at most 32 + 1 + 20 + 1 + 20 = 74 chars.
INSTRUMENT_MAX = 74
InstrumentId = Annotated[
    str,
    Meta(
        max_length=INSTRUMENT_MAX,
        description="instrument id: a base58 mint, or an exchange market "
        "<exchange>:<BASE>/<QUOTE> (CCXT exchange id and unified spot symbol, e.g. "
        "binance:BTC/USDT)",
    ),
]
Name = Annotated[str, Meta(min_length=1, max_length=128)]
Decimals = Annotated[int, Meta(ge=0, le=18)]
Price = Annotated[float, Meta(gt=0, lt=1e300, description="USD per whole token")]
Scope = Literal["signals", "feed", "read", "trade", "admin"]
SCOPES: frozenset[str] = frozenset(("signals", "feed", "read", "trade", "admin"))


class _In(Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies."""


class _Out(Struct, kw_only=True):
    """Response bodies."""


# -- errors ---------------------------------------------------------------------------------


class ErrorDetail(_Out):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(_Out):
    error: ErrorDetail


# -- signals --------------------------------------------------------------------------------


class EntryIn(_In):
    """When a resting buy executes: `limit` at or below `price_usd`, `stop` at or above it."""

    type: Literal["limit", "stop"]
    price_usd: Price


class SignalIn(_In):
    token: InstrumentId
    id: (
        Annotated[str, Meta(min_length=1, max_length=128, description="client id: idempotency")]
        | None
    ) = None
    symbol: Annotated[str, Meta(max_length=32)] | None = None
    side: Literal["buy", "sell"] = "buy"
    type: Annotated[str, Meta(max_length=64)] = ""
    strength: Annotated[int, Meta(ge=1, le=5)] = 1
    source: Annotated[str, Meta(max_length=128)] = ""
    reason: Annotated[str, Meta(max_length=1024)] = ""
    # Unset rather than defaulted: with an `entry` it must not be sent (`expires_at` is the
    # resting buy's expiry), and a default would hide that it was.
    expires_in_ms: (
        Annotated[int, Meta(ge=1, le=3_600_000, description="default 30000; not with `entry`")]
        | UnsetType
    ) = UNSET
    decimals: Decimals | None = None
    entry: Annotated[EntryIn, Meta(description="a resting buy: needs `expires_at`")] | None = None
    expires_at: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=10**14,
                description="epoch ms: when a resting buy (`entry`) expires; only with `entry`",
            ),
        ]
        | UnsetType
    ) = UNSET


class SignalAccepted(_Out):
    signal_id: str
    received_at: Timestamp
    duplicate: bool
    agents_matched: int


class ExecutionOut(_Out):
    agent_id: str
    # "resting": a resting buy waits for its price (see RestingEntryOut)
    status: Literal["skipped", "resting", "pending", "filled", "failed"]
    reason: Annotated[
        str,
        Meta(
            description="why it skipped or failed (docs/api.md), e.g. no_price, "
            "venue_cannot_trade, quote_mismatch, below_venue_minimum; else empty"
        ),
    ]
    position_id: str | None
    order_id: str | None
    latency_ms: float | None


class EntryOut(_Out):
    type: Literal["limit", "stop"]
    price_usd: float


class SignalOut(_Out):
    signal_id: str
    id: str | None  # the client's id, if it sent one
    token: InstrumentId
    symbol: str | None
    side: Literal["buy", "sell"]
    type: str
    strength: int
    source: str
    reason: str
    decimals: int | None
    received_at: Timestamp
    expires_at: Timestamp
    agents_matched: int
    executions: list[ExecutionOut]
    entry: EntryOut | None = None  # a resting buy's condition


class SignalPage(_Out):
    items: list[SignalOut]
    next_cursor: str | None


class RestingEntryOut(_Out):
    """One agent's resting buy: `amount` of its quote reserved until the price meets `type` /
    `price_usd` or `expires_at` passes."""

    id: str
    agent_id: str
    signal_id: str
    token: InstrumentId
    symbol: str | None
    type: Literal["limit", "stop"]
    price_usd: float
    amount: Atomic
    quote: str
    quote_decimals: int
    created_at: Timestamp
    expires_at: Timestamp


class RestingEntryPage(_Out):
    items: list[RestingEntryOut]
    next_cursor: str | None


class SignalCancelled(_Out):
    signal_id: str
    cancelled: Annotated[int, Meta(ge=0, description="entries cancelled; 0 when none rested")]
    entries: list[RestingEntryOut]


# -- prices ---------------------------------------------------------------------------------


class TickIn(_In):
    token: InstrumentId
    price_usd: Price
    ts: Annotated[int, Meta(ge=0, le=10**14, description="epoch ms; default now")] | None = None
    source: Annotated[str, Meta(max_length=64)] = "push"
    decimals: Decimals | None = None
    liquidity_usd: Annotated[float, Meta(ge=0, lt=1e300)] | None = None
    confidence: Annotated[float, Meta(ge=0, lt=1e300)] | None = None
    conf_usd: (
        Annotated[float, Meta(ge=0, lt=1e300, description="confidence half-width, USD")] | None
    ) = None
    market_cap_usd: Annotated[float, Meta(ge=0, lt=1e300)] | None = None
    fdv_usd: Annotated[float, Meta(ge=0, lt=1e300)] | None = None
    volume_24h_usd: Annotated[float, Meta(ge=0, lt=1e300)] | None = None
    pair_created_at: (
        Annotated[int, Meta(ge=0, le=10**14, description="the pool's creation, epoch ms")] | None
    ) = None


class TicksIn(_In):
    ticks: list[TickIn]


class TicksAccepted(_Out):
    accepted: int
    rejected: int = 0
    # reason -> count: `future` (ts beyond [prices] max_future_skew_ms ahead), `stale` (older
    # than max_price_age_ms), `out_of_order` (older than the source's or the token's known
    # price), `secondary` (kept: a higher-priority source prices the token), ...
    reasons: dict[str, int] = msgspec.field(default_factory=dict)


class TickOut(_Out):
    """A price as every client sees it: REST `GET /v1/prices/{token}` (as PriceOut), the
    WebSocket `prices` batches and snapshots."""

    token: InstrumentId
    price_usd: float
    source: str
    ts: Timestamp


class PriceOut(TickOut):
    age_ms: int
    decimals: int | None = None
    liquidity_usd: float | None = None


# -- agents ---------------------------------------------------------------------------------

Venue = Annotated[
    str,
    Meta(
        pattern=r"^(paper|jupiter|ccxt:[a-z0-9_]{1,32})$",
        description="paper, jupiter, or ccxt:<account> (an exchange account of "
        "[venues.ccxt.<account>]: quote USDT or USDC, the quote of the markets it trades)",
    ),
]


class AgentIn(_In):
    name: Name
    venue: Venue = "paper"
    wallet_id: Id | None = None
    quote: Annotated[str, Meta(min_length=1, max_length=64)] = "SOL"
    quote_decimals: Decimals | None = None
    config: AgentConfig = msgspec.field(default_factory=AgentConfig)


class AgentPatch(_In):
    name: Name


class AgentOut(_Out):
    id: str
    name: str
    venue: str
    quote: str
    quote_decimals: int
    status: Literal["active", "paused"]
    created_at: Timestamp
    wallet_id: str | None
    config: AgentConfig


class AgentPage(_Out):
    items: list[AgentOut]
    next_cursor: str | None


class DepositIn(_In):
    asset: Annotated[str, Meta(min_length=1, max_length=64, description="mint or SOL/USDC/USDT")]
    amount: Atomic


class BalanceOut(_Out):
    asset: str
    decimals: int
    total: Atomic
    reserved: Atomic
    available: Atomic


class PerformanceOut(_Out):
    quote: str
    quote_decimals: int
    realized_pnl: SignedAtomic
    unrealized_pnl: SignedAtomic
    trades: int
    wins: int
    losses: int
    win_rate: Annotated[float, Meta(ge=0, le=1, description="wins / trades, 0..1")]
    max_drawdown_pct: float


# -- positions and trades -------------------------------------------------------------------

ExitReasonOut = Literal["stop_loss", "take_profit", "signal", "manual", "stale_trade", "max_hold"]


class AttributionOut(_Out):
    """The signal that opened a position: id, source, type, strength, the id of the API key
    that posted it, when it was received, and the token's price then (USD per whole token)."""

    signal_id: str
    source: str
    type: str
    strength: int
    key_id: str | None
    received_at: Timestamp | None
    price_usd: float | None


class PositionOut(_Out):
    id: str
    agent_id: str
    token: InstrumentId
    symbol: str | None
    # "opening": the entry order is in flight (an addition to API.md's three states)
    status: Literal["opening", "open", "closing", "closed"]
    amount: Atomic
    decimals: int
    cost: Atomic
    entry_price_usd: float | None
    peak_price_usd: float | None
    stop_price_usd: float | None
    next_take_profit_usd: float | None
    dca_count: int
    opened_at: Timestamp | None
    closed_at: Timestamp | None
    exit_reason: ExitReasonOut | None
    realized_pnl: SignedAtomic
    moon_bag_amount: Atomic
    signal_id: str | None
    opened_by: AttributionOut | None = None  # None: opened before attribution was recorded
    exit_signal_id: str | None = None  # the sell signal that closed it, if one did


class PositionPage(_Out):
    items: list[PositionOut]
    next_cursor: str | None


class CloseIn(_In):
    pct: Annotated[float, Meta(gt=0, le=100)] = 100


class CloseAccepted(_Out):
    # null with `pending: true`: the position has a DCA buy or a partial sell in flight; the
    # close sells everything held once that order settles.
    order_id: str | None
    position_id: str
    pending: bool = False


class TradeOut(_Out):
    id: str
    agent_id: str
    position_id: str
    side: Literal["buy", "sell"]
    token: InstrumentId
    amount: Atomic
    quote_amount: Atomic
    price_usd: float
    fee: Atomic
    venue: str
    venue_ref: str
    reason: str
    ts: Timestamp
    # A fee the venue took in a third currency (e.g. BNB on Binance): `fee` is then its quote
    # value at the fill, not taken from the quote balance.
    fee_currency: (
        Annotated[str, Meta(description="the fee's currency code when not the quote")] | None
    ) = None
    fee_amount: (
        Annotated[str, Meta(description="the fee in `fee_currency`, as the venue wrote it")] | None
    ) = None
    signal_id: str | None = None  # the signal behind the order (entry buy or sell signal)
    source: str | None = None  # the source of the signal that opened the position


class TradePage(_Out):
    items: list[TradeOut]
    next_cursor: str | None


# -- halt, keys, health ---------------------------------------------------------------------


class HaltIn(_In):
    buys: bool = True
    flatten: bool = False


class HaltOut(_Out):
    halted: bool
    flatten_order_ids: list[str]


class KeyIn(_In):
    name: Name
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=5)]


class KeyOut(_Out):
    id: str
    name: str
    scopes: list[Scope]
    created_at: Timestamp


class KeyCreated(KeyOut):
    key: Annotated[str, Meta(description="the secret; shown only in this response")]


class KeyPage(_Out):
    items: list[KeyOut]
    next_cursor: str | None


class WriteBehindLag(_Out):
    entries: int
    seconds: float


class HealthOut(_Out):
    status: Literal["ok", "degraded", "down"]
    components: dict[str, Any]
    halted: bool
    write_behind_lag: WriteBehindLag
    uptime_s: float
    version: str
    ready: bool
    # account breakers (routes_breakers.health_field): {"tripped": {rule, at, details} | None,
    # "rules": {...}}
    breakers: dict[str, Any] | None = None
    # hot standby (docs/cluster.md): role, lease {held, expires_in_ms, lease_ms},
    # fencing_token, takeover_seconds; null without a cluster role
    cluster: dict[str, Any] | None = None


class ProbeOut(_Out):
    status: Literal["ok", "not_ready"]


# -- wallets --------------------------------------------------------------------------------

WalletId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Passphrase = Annotated[str, Meta(min_length=8, max_length=1024)]


class WalletIn(_In):
    name: Name
    passphrase: Passphrase
    id: WalletId | None = None
    secret: (
        Annotated[
            str,
            Meta(
                max_length=1024,
                description="import: the 64-byte keypair, base58 or a JSON byte array",
            ),
        ]
        | None
    ) = None


class UnlockIn(_In):
    passphrase: Passphrase


class WalletOut(_Out):
    id: str
    name: str
    public_key: str
    created_at: Timestamp
    unlocked: bool


class WalletPage(_Out):
    items: list[WalletOut]
    next_cursor: str | None
