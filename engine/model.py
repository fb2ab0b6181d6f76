"""The domain model: agents, balances, positions, orders, signals and ticks.

Money is `int` atomic units; prices are float USD per whole token. Mutable records (Agent,
Balance, Position, Order) are owned by the Engine and changed only inside its transitions."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from .config import AgentConfig
from .lifecycle import OrderStatus, PositionStatus

Side = Literal["buy", "sell"]
ExitReason = Literal["stop_loss", "take_profit", "signal", "manual", "stale_trade", "max_hold"]
OrderPurpose = Literal["entry", "dca", "exit"]
ExecStatus = Literal["skipped", "resting", "pending", "filled", "failed"]
EntryType = Literal["limit", "stop"]


class Tick(Struct, frozen=True, gc=False):
    """A price of `token`: `price_usd` USD per whole token at `ts` (epoch ms), from `source`; the
    token's `decimals`, pool liquidity in USD and a confidence (0-1) when the feed knows them.
    Market data where the feed gives it: `conf_usd` (Pyth's confidence interval half-width, USD),
    `market_cap_usd`, `fdv_usd`, `volume_24h_usd` (USD) and `pair_created_at` (epoch ms, the
    pool's creation: DexScreener's `pairCreatedAt`)."""

    token: str
    price_usd: float
    ts: int  # epoch ms
    source: str = "push"
    decimals: int | None = None
    liquidity_usd: float | None = None
    confidence: float | None = None
    conf_usd: float | None = None
    market_cap_usd: float | None = None
    fdv_usd: float | None = None
    volume_24h_usd: float | None = None
    pair_created_at: int | None = None


class EntryCondition(Struct, frozen=True, kw_only=True):
    """When a resting buy executes: `limit` when the price is at or below `price_usd` (buy the
    dip), `stop` when it is at or above it (buy the breakout). USD per whole token, as written."""

    type: EntryType
    price_usd: float


class Signal(Struct, frozen=True, kw_only=True):
    """A trading signal: buy or sell `token`, with a `strength` and a `type` the agents' filters
    read; received and expiring at epoch ms; `decimals` of the token if the client knows them;
    `client_id` makes it idempotent. A buy with an `entry` rests until the price meets it or it
    expires; `key_id` is the API key that posted it (who may cancel it)."""

    id: str
    token: str
    side: Side = "buy"
    symbol: str | None = None
    type: str = ""
    strength: int = 1
    source: str = ""
    reason: str = ""
    received_at: int  # epoch ms
    expires_at: int  # epoch ms
    decimals: int | None = None
    client_id: str | None = None
    entry: EntryCondition | None = None
    key_id: str | None = None


class Attribution(Struct, frozen=True, kw_only=True, gc=False):
    """The signal that opened a position: its id, `source`, `type`, `strength`, the API key that
    posted it (`key_id`), when it was received (epoch ms) and the token's last price then
    (`price_usd`, USD per whole token; None if none was known): slippage is measured from it."""

    signal_id: str
    source: str = ""
    type: str = ""
    strength: int = 1
    key_id: str | None = None
    received_at: int = 0
    price_usd: float | None = None


class Balance(Struct, kw_only=True, gc=False):
    """An agent's holding of one asset: `total` and `reserved` (for buys in flight), atomic units
    with `decimals`."""

    asset: str
    decimals: int
    total: int = 0
    reserved: int = 0

    @property
    def available(self) -> int:
        """What may be reserved now: total - reserved, atomic units."""
        return self.total - self.reserved


class Performance(Struct, kw_only=True):
    """An agent's realized performance: PnL in quote atomic units, round trips won and lost, the
    realized equity peak and max drawdown (percent 0-100), and the current UTC day's counters."""

    realized_pnl: int = 0
    trades: int = 0
    wins: int = 0
    losses: int = 0
    equity_peak: int = 0  # quote atomic, realized equity high-water mark
    max_drawdown_pct: float = 0.0
    day: int = -1  # UTC day number of the counters below
    day_start_equity: int = 0
    day_realized: int = 0


class Agent(Struct, kw_only=True):
    """A trading agent: its venue, quote (symbol or mint, with its decimals), config, status, the
    sum of its quote deposits (atomic), its performance, and the last exit per token (epoch ms,
    for cooldowns)."""

    id: str
    name: str
    venue: str
    quote: str  # "SOL" / "USDC" / "USDT" or a mint
    quote_decimals: int
    config: AgentConfig
    status: Literal["active", "paused"] = "active"
    created_at: int = 0
    wallet_id: str | None = None
    deposited: int = 0  # sum of quote deposits, atomic
    perf: Performance = msgspec.field(default_factory=Performance)
    last_exit_at: dict[str, int] = msgspec.field(default_factory=dict)  # token -> ms


class Position(Struct, kw_only=True, gc=False):
    """One holding of one token by one agent. `cost` is the quote cost basis of `amount`."""

    id: str
    seq: int  # global open order; exits on one tick are decided in this order
    agent_id: str
    token: str
    symbol: str | None
    decimals: int
    config: AgentConfig  # the exit config the position was opened with
    status: PositionStatus = PositionStatus.OPENING  # moved only by lifecycle.move_position
    amount: int = 0
    original_amount: int = 0  # all tokens ever bought into this position (entry + DCA)
    cost: int = 0
    entry_price_usd: float = 0.0  # average entry, weighted by token amount
    peak_price_usd: float = 0.0
    stop_gain_pct: float | None = None  # ratcheted S; None until the position is open
    tp_done: int = 0  # take-profit levels already taken
    moon_bag_amount: int = 0
    dca_count: int = 0
    last_dca_at: int = 0
    opened_at: int = 0
    closed_at: int | None = None
    exit_reason: ExitReason | None = None
    realized_pnl: int = 0
    in_flight: str | None = None  # order id of a buy (DCA) or sell in motion
    signal_id: str | None = None
    # An exit asked for while an order was in flight (sell signal, manual close, a stop that
    # crossed): applied to whatever is held when that order settles.
    pending_exit: ExitReason | None = None
    pending_exit_signal_id: str | None = None
    # Automatic exits (stop-loss, take-profit, stale, max hold) whose sell failed in a row, and
    # the epoch ms before which none is placed again (a venue refusing a sell, e.g. for funds
    # the account does not hold, must not be sent a new order on every tick).
    exit_failures: int = 0
    exit_retry_at: int = 0
    exit_alerted_at: int = 0  # epoch ms of the last exit_below_minimum alert (one a minute)
    opened_by: Attribution | None = None  # the signal that opened it (None: before attribution)
    exit_signal_id: str | None = None  # the sell signal that closed it, if one did


class RestingEntry(Struct, kw_only=True):
    """A buy waiting for its price (see EntryCondition): `amount` quote atomic units reserved
    from the agent's balance while it rests, so nothing else can spend them; `seq` is its arrival
    (time priority); it executes until `expires_at` (epoch ms, inclusive), then expires."""

    id: str
    seq: int
    agent_id: str
    signal_id: str
    token: str
    symbol: str | None
    type: EntryType
    price_usd: float
    amount: int  # quote atomic, reserved
    quote: str
    created_at: int  # epoch ms: when the signal was received and the entry rested
    expires_at: int  # epoch ms
    signal_type: str = ""  # the signal's `type`: the entry order's reason is "signal:<type>"
    key_id: str | None = None  # the API key that posted the signal
    opened_by: Attribution | None = None  # the signal, for the position it will open


class SwapSubmission(Struct, frozen=True, kw_only=True):
    """A signed on-chain swap of an order, recorded durably BEFORE it is sent (a Solana
    transaction's signature is known once it is signed): `signature` (base58, the txid),
    `last_valid_block_height` (the blockhash's expiry: past it, a transaction not seen is dead),
    `transaction` (base64 of the signed bytes), the `slippage_bps` and quoted amounts it was built
    with (atomic), which `attempt` of the order it is (1-based), when it was signed (epoch ms), and
    the fees its earlier attempts cost (`prior_fees`, lamports).
    Source of the rule: ../shared/contracts/solana-rpc.md "Blockhash"."""

    signature: str
    last_valid_block_height: int
    transaction: str
    slippage_bps: int
    in_amount: int
    quoted_out: int
    min_out: int
    attempt: int
    signed_at: int
    # Lamports the order's earlier attempts cost by landing with an error (their fees).
    prior_fees: int = 0


class ExchangeSubmission(Struct, frozen=True, kw_only=True):
    """An order's request to an exchange account, recorded durably BEFORE it is sent, so a
    retry or a restart looks it up by its client order id before anything is sent again:
    `client_order_id` (the exchange's own parameter, e.g. Binance `newClientOrderId`), which
    `attempt` of the order it is (1-based), the `account` and CCXT `symbol`, what was asked
    (`amount`: base atomic for a sell or a buy by amount; `cost`: quote atomic for a buy by
    cost), when (epoch ms), and the client ids of the order's earlier attempts, each found
    not placed before this one was sent (`earlier`: a reconciliation looks them up again)."""

    client_order_id: str
    attempt: int
    account: str
    symbol: str
    sent_at: int
    amount: int = 0
    cost: int = 0
    earlier: tuple[str, ...] = ()


class Order(Struct, kw_only=True, gc=False):
    """Money in motion: the one record that says what was reserved or is being sold."""

    id: str
    agent_id: str
    position_id: str
    side: Side
    purpose: OrderPurpose
    token: str
    amount_in: int  # quote atomic for buys (the reservation), token atomic for sells
    reason: str
    created_at: int
    venue: str
    quote: str
    quote_decimals: int
    token_decimals: int
    slippage_bps: int
    fee_bps: int
    signal_id: str | None = None
    expires_at: int | None = None
    max_price_impact_pct: float | None = None
    tp_levels: int = 0  # take-profit levels this sell takes; given back if it fails
    # The market price (USD) the decision was taken at: a new position's trailing peak starts
    # here, never at the slippage-adjusted fill price.
    decision_price_usd: float | None = None
    # The most the fill may return, atomic units (tokens for a buy, quote for a sell): what keeps
    # the position's amount (buys, DCA included) or the quote balance (sells) within u64, the
    # width of SPL amounts. A venue refuses a fill above it. None: orders persisted before it.
    max_amount_out: int | None = None
    # The swap last signed for this order (live Solana venues): while it is set and the order is
    # submitted, a restart resolves this signature before anything is sent again.
    swap: SwapSubmission | None = None
    # A buy from a resting limit entry: the most it may pay, USD per whole token; a venue never
    # fills it at a worse price.
    limit_price_usd: float | None = None
    # An entry buy's signal execution latency (ms from the signal's receipt to this order): what
    # its execution record says when the order settles after the signal left the dedupe window.
    signal_latency_ms: float | None = None
    # The request last sent for this order to an exchange account (CCXT venues): while it is
    # set and the order is submitted, a restart looks it up by client order id first.
    exchange: ExchangeSubmission | None = None
    status: OrderStatus = OrderStatus.SUBMITTED  # moved only by lifecycle.move_order


class Fill(Struct, frozen=True, kw_only=True, gc=False):
    """What a venue reports: `amount_in` spent and `amount_out` received, atomic."""

    order_id: str
    amount_in: int
    amount_out: int
    price_usd: float  # effective USD per whole token
    fee: int  # quote atomic, already deducted from the quote side
    venue_ref: str
    ts: int
    # Quote atomic units the order cost beyond what `amount_in`/`amount_out` can carry (network
    # fees above a sell's proceeds, a buy's spend above its reservation): taken from the free
    # quote balance and booked as a realized loss.
    charge: int = 0
    # A fee the venue took in a third currency (e.g. BNB on Binance): its code and amount as
    # the venue wrote it; `fee` then holds its quote value at the fill (not deducted: the quote
    # balance did not pay it).
    fee_currency: str | None = None
    fee_amount: str | None = None


class Execution(Struct, kw_only=True, gc=False):
    """What one agent did with one signal: skipped (with the reason), pending, filled or failed;
    the position and order it made, and the latency from receipt in ms."""

    agent_id: str
    status: ExecStatus
    reason: str = ""
    position_id: str | None = None
    order_id: str | None = None
    latency_ms: float | None = None


class Trade(Struct, frozen=True, kw_only=True, gc=False):
    """One executed fill: `amount` token atomic units bought or sold for `quote_amount` quote
    atomic units at `price_usd`, with the quote `fee` (atomic) and the venue's reference; `ts`
    epoch ms."""

    id: str
    agent_id: str
    position_id: str
    side: Side
    token: str
    amount: int
    quote_amount: int
    price_usd: float
    fee: int
    venue: str
    venue_ref: str
    reason: str
    ts: int
    fee_currency: str | None = None  # a fee paid in a third currency: its code (see Fill)
    fee_amount: str | None = None  # ... and its amount, as the venue wrote it
    signal_id: str | None = None  # the signal behind the order (entry buy or sell signal)
    source: str | None = None  # the source of the signal that opened the position
