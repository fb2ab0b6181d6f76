"""The Engine's state and the plumbing every transition shares: ids, the event and intent
buffers, lookups, prices, and the two ways money starts to move (a new order, a sell that marks
its position `closing`). Transitions live in core.py, signals.py and settlement.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Literal, TypedDict

import msgspec
from msgspec import Struct

from . import events as ev
from .account_breakers import AccountBreakers, AccountEquity, BreakerRules
from .assets import KNOWN_DECIMALS, PEGGED_USD, market_parts, quote_mint
from .book import AgentBook, BookView
from .config import MAX_ATOMIC
from .entry_index import EntryBook, EntryIndex, NaiveEntries
from .errors import InvariantViolation, NotFound
from .exits import ratcheted_stop_gain
from .exposure import Exposure
from .history import HistoryBounds, SignalWindow
from .ledger import Ledger
from .lifecycle import HOLDING, OrderStatus, PositionStatus, move_order, move_position
from .lots import InstrumentRules
from .model import (
    Agent,
    Balance,
    Execution,
    ExitReason,
    Order,
    Position,
    RestingEntry,
    Signal,
    Tick,
    Trade,
)
from .money import exact, quote_value
from .price_sources import PricePolicy, PriceSources
from .scorecards import OTHER, Scorecards
from .token_market import TokenMarket
from .token_risk import RiskScore, risk_score
from .triggers import ExitIndex, NaiveScan, TriggerIndex

Clock = Callable[[], int]
# A position's exit_below_minimum alert is repeated at most this often (ms).
EXIT_ALERT_EVERY_MS = 60_000
# Trades kept in memory per agent (settlement.py trims at twice this); the rest is in Postgres.
TRADES_KEPT = 10_000


class Output(Struct):
    """What transitions produced since the last drain: events, and intents (orders to carry to
    venues), in order."""

    events: list[ev.Event]
    intents: list[ev.SubmitOrder]


class SignalRecord(Struct, kw_only=True, gc=False):
    """A signal the engine took, with each reached agent's execution by agent id and how many
    agents its filters let through."""

    signal: Signal
    executions: dict[str, Execution]
    agents_matched: int = 0


_ENDED = frozenset(("skipped", "filled", "failed"))


class EngineOptions(TypedDict, total=False):
    """EngineState's keyword options, which the Engine passes on (settings.engine_options builds
    them from a config): `max_price_age_ms`: a price older than this cannot open a buy, and a
    tick older than this is refused; `default_decimals`: of a token no tick or signal named;
    `node`: a prefix that keeps ids unique across nodes; `history`: the memory bounds
    (signals, closed positions); `max_future_skew_ms`: how far ahead of the clock a tick may
    be; `max_priced_tokens`: the price book's bound; `watchlist`: mints always priced;
    `price_policy`: how a token's price is chosen among sources and cross-checked;
    `pegged_usd`: mints priced at 1 USD until a feed prices them (besides USDC and USDT);
    `token_decimals`: decimals known from the configuration (the token registry);
    `exit_index`: "indexed" (the trigger indexes of exits and resting entries) or "naive" (the
    oracles' full scans); `max_resting_entries`: resting buys held at most (a new one past it
    is skipped `resting_capacity`); `max_resting_ms`: how far past its receipt a resting buy
    may expire; `instruments`: exchange markets' order-size rules by instrument id (their
    `decimals` are the instruments' decimals); `venue_exchanges`: the CCXT exchange id each
    exchange venue ("ccxt:<account>") trades, so its agents take signals for that exchange's
    markets only; `breakers`: the account breakers' rules (account_breakers.py); `max_sources`:
    signal sources given scorecards of their own (more are counted as "other", scorecards.py);
    `max_agent_sources`: the same for one agent's cards; `max_key_sources`: source cards the
    signals of one API key may begin."""

    exit_index: Literal["indexed", "naive"]
    max_price_age_ms: int
    default_decimals: int
    node: str
    history: HistoryBounds | None
    max_future_skew_ms: int
    max_priced_tokens: int
    watchlist: Iterable[str]
    price_policy: PricePolicy | None
    pegged_usd: Iterable[str]
    token_decimals: Mapping[str, int] | None
    max_resting_entries: int
    max_resting_ms: int
    instruments: Mapping[str, InstrumentRules] | None
    venue_exchanges: Mapping[str, str] | None
    breakers: BreakerRules | None
    max_sources: int
    max_agent_sources: int
    max_key_sources: int


class EngineState:
    """The state the Engine holds and the plumbing its transitions share: the agents' books (and
    read-only views over them by agent id), the ledger, the position and order indexes, prices
    and token decimals, the signal window, the halt and buy pause, the exit index, and the event
    and intent buffers. Read freely; changed only through Engine transitions."""

    def __init__(
        self,
        clock: Clock,
        *,
        exit_index: Literal["indexed", "naive"] = "indexed",
        max_price_age_ms: int = 60_000,
        default_decimals: int = 6,
        node: str = "",
        history: HistoryBounds | None = None,
        max_future_skew_ms: int = 5_000,
        max_priced_tokens: int = 20_000,
        watchlist: Iterable[str] = (),
        price_policy: PricePolicy | None = None,
        pegged_usd: Iterable[str] = (),
        token_decimals: Mapping[str, int] | None = None,
        max_resting_entries: int = 100_000,
        max_resting_ms: int = 24 * 3600 * 1000,
        instruments: Mapping[str, InstrumentRules] | None = None,
        venue_exchanges: Mapping[str, str] | None = None,
        breakers: BreakerRules | None = None,
        max_sources: int = 1000,
        max_agent_sources: int = 200,
        max_key_sources: int = 100,
    ) -> None:
        self.clock = clock
        # Per-source and per source x agent scorecards and per-source breakers (scorecards.py).
        self.scorecards = Scorecards(max_sources, max_agent_sources, max_key_sources)
        # Account breakers (account_breakers.py): the rules' state and the account's equity.
        self.breakers = AccountBreakers(breakers)
        self.equity = AccountEquity(self)
        self.instruments: dict[str, InstrumentRules] = dict(instruments or {})
        self.venue_exchanges: dict[str, str] = dict(venue_exchanges or {})
        self.max_resting_entries = max_resting_entries
        self.max_resting_ms = max_resting_ms
        self.max_future_skew_ms = max_future_skew_ms
        self.max_priced_tokens = max_priced_tokens
        self.watchlist = frozenset(watchlist)
        self.price_policy = price_policy or PricePolicy()
        self.sources = PriceSources(self.price_policy)  # each token's last tick per source
        self.market = TokenMarket()  # pool data, confidence, volatility per token
        self.pegged_usd = PEGGED_USD | frozenset(pegged_usd)
        self._no_room_until = 0  # ms: a full price book with nothing to evict is rescanned then
        self.history = history or HistoryBounds()
        self.index: ExitIndex = TriggerIndex() if exit_index == "indexed" else NaiveScan()
        self.entry_index: EntryBook = EntryIndex() if exit_index == "indexed" else NaiveEntries()
        self.max_price_age_ms = max_price_age_ms
        self.default_decimals = default_decimals
        # Each agent's state has one owner, its book; the views below only read the books.
        self.books: dict[str, AgentBook] = {}
        self.agents: Mapping[str, Agent] = BookView(self.books, lambda b: b.agent)
        self.agent_positions: Mapping[str, dict[str, Position]] = BookView(
            self.books, lambda b: b.positions
        )  # live and recently closed
        self.live_positions: Mapping[str, dict[str, Position]] = BookView(
            self.books, lambda b: b.live
        )
        self.exposure: Mapping[str, Exposure] = BookView(self.books, lambda b: b.exposure)
        self.trades: Mapping[str, list[Trade]] = BookView(self.books, lambda b: b.trades)
        self.ledger = Ledger(self.books)
        # Global indexes over the books, kept in step with them.
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self.entries: dict[str, RestingEntry] = {}  # resting buys by entry id
        self.entries_by_signal: dict[str, dict[str, None]] = {}  # signal id -> entry ids
        self.prices: dict[str, Tick] = {}
        self.decimals: dict[str, int] = (
            dict(token_decimals or {})
            | {token: r.decimals for token, r in self.instruments.items()}
            | KNOWN_DECIMALS
        )
        self.signal_window = SignalWindow(self.history)  # the dedupe window
        self.signals = self.signal_window.records  # by signal id, oldest first
        self.signal_by_client = self.signal_window.by_client
        self.halted_buys = False
        # Wallets whose keypair the process holds unlocked (Engine.set_wallet_unlocked).
        self.unlocked_wallets: set[str] = set()
        # Set by adapters through Engine.pause_buys, not the operator: e.g. "store_unavailable"
        # while Redis is down.
        self._buys_paused_reason: str | None = None
        self._events: list[ev.Event] = []
        self._intents: list[ev.SubmitOrder] = []
        self.id_seq = 0
        self._node = node

    @property
    def buys_paused_reason(self) -> str | None:
        """Why new buys are refused by the daemon (e.g. "store_unavailable"), or None. Set only
        by `Engine.pause_buys` / `Engine.resume_buys`; separate from the operator's halt."""
        return self._buys_paused_reason

    @property
    def has_intents(self) -> bool:
        """Orders asked for since the last drain."""
        return bool(self._intents)

    def drain(self) -> Output:
        """Take the events and intents produced since the last drain (the buffers start empty
        again)."""
        out = Output(self._events, self._intents)
        self._events, self._intents = [], []
        return out

    def _id(self, prefix: str, now: int) -> str:
        self.id_seq += 1
        return f"{prefix}_{self._node}{now:x}{self.id_seq:06x}"

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _snapshot(self, position: Position) -> Position:
        self.refresh(position)
        return msgspec.structs.replace(position)

    def refresh(self, position: Position) -> Position:
        """Materialize the lazily kept peak and ratcheted stop of an open position."""
        if position.status in HOLDING and position.entry_price_usd > 0:
            peak = self.index.peak_of(position)
            position.peak_price_usd = peak
            if position.config.stop_loss.enabled:
                position.stop_gain_pct = float(ratcheted_stop_gain(position, peak))
        return position

    def agent(self, agent_id: str) -> Agent:
        """The agent with this id. Raises NotFound."""
        book = self.books.get(agent_id)
        if book is None:
            raise NotFound(f"unknown agent {agent_id!r}", {"agent_id": agent_id})
        return book.agent

    def position(self, position_id: str) -> Position:
        """The position with this id (in memory: live or recently closed), its peak and ratcheted
        stop refreshed. Raises NotFound."""
        position = self.positions.get(position_id)
        if position is None:
            raise NotFound(f"unknown position {position_id!r}", {"position_id": position_id})
        return self.refresh(position)

    def price_usd(self, mint: str) -> float | None:
        """The last price of `mint`, USD per whole token; 1.0 for a USD-pegged mint never priced;
        None when unknown."""
        tick = self.prices.get(mint)
        if tick is not None:
            return tick.price_usd
        return 1.0 if mint in self.pegged_usd else None

    def quote_usd(self, quote: str) -> float | None:
        """The USD price of one whole unit of `quote` (a symbol or a mint), or None when unknown."""
        return self.price_usd(quote_mint(quote))

    def diverged_now(self, token: str) -> bool:
        """Whether the token's fresh sources disagree beyond `max_divergence_pct` now (a
        source gone silent no longer counts, even before the next tick clears the state)."""
        return self.sources.still_diverged(token, self.clock(), self.max_price_age_ms)

    def token_risk(self, token: str) -> RiskScore:
        """The token's risk score now (engine/token_risk.py) from its fresh market data."""
        now = self.clock()
        age = self.price_policy.max_market_age_ms
        vol = self.market.volatility.get(token)
        return risk_score(
            self.market.pool(token, now, age),
            vol.pct_per_minute() if vol is not None else None,
            self.market.conf_ratio(token, now, age),
            now,
        )

    def token_decimals(self, token: str) -> int:
        """The decimals of `token`: known from a tick or signal, else the configured default."""
        return self.decimals.get(token, self.default_decimals)

    def _forget_closed(self, p: Position) -> None:
        book = self.books[p.agent_id]
        book.closed_ids.append(p.id)
        while len(book.closed_ids) > self.history.closed_kept:
            old = book.closed_ids.popleft()
            self.positions.pop(old, None)
            book.drop_position(old)

    def _add_book(self, book: AgentBook) -> None:
        self.books[book.agent.id] = book

    def _add_position(self, p: Position) -> None:
        self.positions[p.id] = p
        self.books[p.agent_id].add_position(p)

    def _add_entry(self, entry: RestingEntry) -> None:
        """Own and index a resting entry (its reservation is the caller's)."""
        self.entries[entry.id] = entry
        self.entries_by_signal.setdefault(entry.signal_id, {})[entry.id] = None
        self.books[entry.agent_id].entries[entry.id] = entry
        self.entry_index.add(entry)

    def _drop_entry(self, entry: RestingEntry) -> None:
        """Forget a resting entry everywhere but in the entry index (which popped it, or
        from which the caller removed it)."""
        self.entries.pop(entry.id, None)
        ids = self.entries_by_signal.get(entry.signal_id)
        if ids is not None:
            ids.pop(entry.id, None)
            if not ids:
                del self.entries_by_signal[entry.signal_id]
        book = self.books.get(entry.agent_id)
        if book is not None:
            book.entries.pop(entry.id, None)

    def _drop_position(self, p: Position) -> None:
        self.positions.pop(p.id, None)
        self.books[p.agent_id].drop_position(p.id)

    def _balance_changed(self, agent_id: str, bal: Balance, now: int) -> None:
        self._emit(
            ev.BalanceChanged(
                ts=now,
                agent_id=agent_id,
                asset=bal.asset,
                decimals=bal.decimals,
                total=bal.total,
                reserved=bal.reserved,
            )
        )

    @staticmethod
    def _sorted(positions: Iterable[Position]) -> list[Position]:
        return sorted(positions, key=lambda p: p.seq)

    def _new_order(
        self,
        agent: Agent,
        p: Position,
        side: str,
        purpose: str,
        amount_in: int,
        reason: str,
        now: int,
        signal: Signal | None = None,
        tp_levels: int = 0,
        price: float | None = None,
        signal_id: str | None = None,
        expires_at: int | None = None,
        limit_price_usd: float | None = None,
        signal_latency_ms: float | None = None,
    ) -> Order:
        ex = agent.config.execution
        order = Order(
            id=self._id("ord", now),
            agent_id=agent.id,
            position_id=p.id,
            side=side,  # type: ignore[arg-type]
            purpose=purpose,  # type: ignore[arg-type]
            token=p.token,
            amount_in=amount_in,
            reason=reason,
            created_at=now,
            venue=agent.venue,
            quote=agent.quote,
            quote_decimals=agent.quote_decimals,
            token_decimals=p.decimals,
            slippage_bps=ex.slippage_bps,
            fee_bps=ex.fee_bps,
            signal_id=signal.id if signal else signal_id,
            expires_at=signal.expires_at if signal else expires_at,
            max_price_impact_pct=agent.config.signals.max_price_impact_pct
            if side == "buy"
            else None,
            tp_levels=tp_levels,
            decision_price_usd=price,
            max_amount_out=MAX_ATOMIC
            - (p.amount if side == "buy" else self.ledger.balance(agent.id, agent.quote).total),
            limit_price_usd=limit_price_usd,
            signal_latency_ms=signal_latency_ms,
        )
        if p.in_flight is not None:
            raise InvariantViolation(f"position {p.id} has order {p.in_flight} in flight")
        self.orders[order.id] = order
        p.in_flight = order.id  # the one place it is set; _order_done the one it is cleared
        self._emit(ev.OrderSubmitted(ts=now, order=order))
        self._intents.append(ev.SubmitOrder(order))
        return order

    def market_price(self, token: str, price_usd: float) -> Fraction | None:
        """An exchange market's price in its quote currency (exact, per whole base) from a USD
        price: price_usd / USD price of the market's quote; None for a mint or an unpriced
        quote."""
        parts = market_parts(token)
        quote_usd = self.quote_usd(parts[2]) if parts is not None else None
        if not quote_usd or price_usd <= 0:
            return None
        return exact(price_usd) / exact(quote_usd)

    def sell_size(self, p: Position, amount: int, price: float) -> int:
        """What a sell of `amount` at `price` really sells: the whole position when the
        remainder would be dust (worth less than the agent's `execution.dust_quote` quote atomic
        units; default 1, i.e. a remainder that rounds to no quote at all) or, on an exchange
        market, below the market's least amount or notional; else `amount`, rounded down to the
        market's amount step, or, when that is below the market's minimum, UP to the least amount
        the market takes (a take-profit level is honoured with the least sellable slice rather
        than dropped). 0 when the sell itself is worth no quote atomic unit or is below the
        market's minimum: such a sell is not placed. A whole position is ordered whole: the
        venue sends its multiple of the step (what is below one step stays on the exchange)."""
        agent = self.books[p.agent_id].agent
        rules = self.instruments.get(p.token)
        if rules is not None and amount < p.amount:
            amount = rules.floor(amount)
            if self._below_lot(p.token, amount, price):
                amount = min(p.amount, self._least_sellable(p.token, rules, price))
        quote_usd = self.quote_usd(agent.quote)
        if not quote_usd or price <= 0:
            if rules is not None and rules.tradable(p.amount) == 0:
                return 0
            return amount  # cannot value it here: the venue decides
        qd = agent.quote_decimals
        rest = p.amount - amount
        if rest > 0 and (
            quote_value(rest, p.decimals, price, quote_usd, qd)
            < int(agent.config.execution.dust_quote)
            or self._below_lot(p.token, rest, price)
        ):
            amount = p.amount
        if amount <= 0 or quote_value(amount, p.decimals, price, quote_usd, qd) <= 0:
            return 0
        if self._below_lot(p.token, amount, price):
            return 0
        return amount

    def _least_sellable(self, token: str, rules: InstrumentRules, price: float) -> int:
        """The least amount (atomic, a multiple of the step) an order of `token` may carry at
        `price` (USD): at least the market's least amount and worth its least notional."""
        least = max(rules.min_amount, 1)
        market_price = self.market_price(token, price)
        if rules.min_cost > 0 and market_price is not None:
            need = exact(rules.min_cost) * 10**rules.decimals / market_price
            least = max(least, -(-need.numerator // need.denominator))  # ceil
        return -(-least // rules.step) * rules.step  # up to the step

    def _below_lot(self, token: str, amount: int, price: float) -> bool:
        """Whether an order of `amount` (atomic) of an exchange market at `price` (USD) is
        below what the market takes: nothing at its step, under its least amount or notional."""
        rules = self.instruments.get(token)
        if rules is None:
            return False
        sendable = rules.tradable(amount)
        if sendable == 0:
            return True
        market_price = self.market_price(token, price)
        return market_price is not None and rules.notional_below_min(sendable, market_price)

    def _sell(
        self,
        p: Position,
        amount: int,
        reason: str,
        price: float,
        stop_price: float | None,
        tp_levels: int = 0,
        signal_id: str | None = None,
    ) -> str | None:
        """Mark `p` closing and order the sale of `amount` (or all of it, if the rest would be
        dust). Returns the order id, or None when the sale is worth no quote at `price`: then
        nothing is placed, the position stays open and an `exit_below_minimum` alert says so."""
        now = self.clock()
        if amount <= 0 or amount > p.amount:
            raise InvariantViolation(f"sell of {amount} from position {p.id} holding {p.amount}")
        sized = self.sell_size(p, amount, price)
        if sized == 0:
            if now - p.exit_alerted_at < EXIT_ALERT_EVERY_MS:
                return None  # said a moment ago: once a minute per position, not every tick
            p.exit_alerted_at = now
            self._emit(
                ev.Alert(
                    ts=now,
                    code="exit_below_minimum",
                    message="sell not placed: it is worth less than one quote atomic unit "
                    "or below the market's least amount or notional",
                    details={"agent_id": p.agent_id, "position_id": p.id, "reason": reason},
                )
            )
            return None
        amount = sized
        agent = self.books[p.agent_id].agent
        move_position(p, PositionStatus.CLOSING)
        self._emit(
            ev.ExitTriggered(
                ts=now,
                position_id=p.id,
                agent_id=p.agent_id,
                token=p.token,
                reason=reason,
                price_usd=price,
                sell_amount=amount,
                stop_price_usd=stop_price,
            )
        )
        order = self._new_order(
            agent,
            p,
            "sell",
            "exit",
            amount,
            reason,
            now,
            tp_levels=tp_levels,
            price=price,
            signal_id=signal_id,
        )
        if amount < p.amount:  # keep watching the rest: an exit it crosses waits (pending)
            self.index.rearm(p, now, fresh=False)
        self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        return order.id

    def _order_done(self, order_id: str, status: OrderStatus) -> Order:
        """Take the order out of flight, moved to `status` (filled or failed); its position
        no longer has an order in flight. Raises NotFound for an order not in flight."""
        order = self.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order in flight {order_id!r}", {"order_id": order_id})
        move_order(order, status)
        del self.orders[order_id]
        p = self.positions.get(order.position_id)
        if p is not None and p.in_flight == order_id:
            p.in_flight = None
        return order

    def _selling_all(self, p: Position) -> bool:
        order = self.orders.get(p.in_flight) if p.in_flight else None
        return order is not None and order.side == "sell" and order.amount_in >= p.amount

    def _pend(self, p: Position, reason: ExitReason, signal_id: str | None, now: int) -> None:
        p.pending_exit = reason
        p.pending_exit_signal_id = signal_id
        self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))

    def _exit_or_pend(self, p: Position, reason: ExitReason, signal_id: str | None) -> str | None:
        """Sell all of `p` now, or, with an order in flight, once it settles. Returns the order
        id of a sell placed now; None when pending (or not placed: worth no quote)."""
        tick = self.prices.get(p.token)
        price = tick.price_usd if tick else p.entry_price_usd
        if p.in_flight is None:
            return self._sell(p, p.amount, reason, price, None, signal_id=signal_id)
        if p.pending_exit is None:
            self._pend(p, reason, signal_id, self.clock())
        return None

    def _record_execution(self, order: Order, status: str, reason: str, now: int) -> None:
        if order.signal_id is None:
            return
        record = self.signals.get(order.signal_id)
        if record is None:
            # The signal left the dedupe window (a resting buy may wait as long as the window
            # lasts): its entry buy's execution is still recorded (REST reads it from Postgres).
            if order.purpose == "entry":
                gone = Execution(
                    agent_id=order.agent_id,
                    status=status,  # type: ignore[arg-type]
                    reason=reason,
                    position_id=order.position_id,
                    order_id=order.id,
                    latency_ms=order.signal_latency_ms,
                )
                self._execution_changed(order.signal_id, gone, now)
            return
        execution = record.executions.get(order.agent_id)
        if execution is None or execution.order_id != order.id:
            return
        execution.status = status  # type: ignore[assignment]
        execution.reason = reason
        self._execution_changed(order.signal_id, execution, now)

    def _put_execution(self, record: SignalRecord, execution: Execution, now: int) -> None:
        """Set the agent's execution on a signal being taken (the window counts the record's
        executions once it is taken) and record it (event SignalExecutionRecorded)."""
        record.executions[execution.agent_id] = execution
        self._execution_changed(record.signal.id, execution, now)

    def _execution_changed(self, signal_id: str, execution: Execution, now: int) -> None:
        if execution.status in _ENDED:
            self._score_execution(signal_id, execution, now)
        self._emit(
            ev.SignalExecutionRecorded(
                ts=now,
                signal_id=signal_id,
                agent_id=execution.agent_id,
                status=execution.status,
                reason=execution.reason,
                position_id=execution.position_id,
                order_id=execution.order_id,
                latency_ms=execution.latency_ms,
            )
        )

    # -- scorecards ---------------------------------------------------------------------------

    def _score_execution(self, signal_id: str, execution: Execution, now: int) -> None:
        record = self.signals.get(signal_id)
        if record is not None:
            source = record.signal.source
        else:  # the signal left the dedupe window: its position says who opened it
            p = self.positions.get(execution.position_id or "")
            source = p.opened_by.source if p is not None and p.opened_by is not None else ""
        self.scorecards.execution(
            execution.agent_id, source, execution.status, execution.reason, now
        )

    def _score_close(self, p: Position, agent: Agent, now: int) -> None:
        """Count a closed position on its source's cards and judge the agent's breaker on
        that source (its current config), alerting when it trips."""
        cards = self.scorecards
        name = cards.closed(
            agent.id,
            p.opened_by,
            agent.quote,
            agent.quote_decimals,
            self.quote_usd(agent.quote),
            p.realized_pnl,
            now - p.opened_at,
            now,
        )
        cfg = agent.config.source_breaker
        if not cfg.enabled or name == OTHER:  # a card shared by many sources has no breaker
            return
        tripped = cards.record_result(agent.id, name, cfg, p.realized_pnl, agent.deposited, now)
        if tripped is not None:
            rule, details = tripped
            self._source_breaker_alert("breaker_tripped", agent.id, name, rule, details, now)

    def _source_breaker_alert(
        self,
        code: str,
        agent_id: str,
        source: str,
        rule: str,
        details: dict[str, object],
        now: int,
    ) -> None:
        what = "stops taking" if code == "breaker_tripped" else "takes again"
        self._emit(
            ev.Alert(
                ts=now,
                code=code,
                message=f"agent {agent_id} {what} buy signals from source {source!r} ({rule})",
                details={
                    "scope": "source",
                    "agent_id": agent_id,
                    "source": source,
                    "rule": rule,
                    **details,
                },
            )
        )
