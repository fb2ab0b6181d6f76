"""The Engine: the single writer of all trading state.

Every public method is a synchronous transition: it validates, mutates, and appends events and
intents to buffers the runtime drains with `drain()`. Money moves only here, and a buy reserves
its quote (a sell marks its position `closing`) in the same transition that emits the order, so
no later signal or tick can spend or sell the same units twice. This module holds agents, the
kill switch, ticks and exits; signals.py the intake of signals; settlement.py fills."""

from __future__ import annotations

from typing import Literal, Unpack

import msgspec

from . import account_breakers as breakers
from . import events as ev
from .assets import normalize_quote, quote_mint, require_mint
from .book import AgentBook
from .cascade import ExitCascade, TickWork
from .config import AgentConfig, parse_atomic
from .errors import Conflict, NotFound, ValidationError
from .exit_actions import ExitActions
from .lifecycle import HOLDING, LIVE, PositionStatus
from .lots import InstrumentRules
from .model import (
    Agent,
    Balance,
    ExchangeSubmission,
    ExitReason,
    Fill,
    Order,
    RestingEntry,
    Signal,
    SwapSubmission,
    Tick,
)
from .money import market_value, pct_of
from .price_book import admit_tick, cross_check, watched_tokens
from .resting import RestingEntries
from .risk import filter_reason
from .scorecards import RESERVED_SOURCES
from .settlement import Settlement
from .signals import SignalIntake
from .state import Clock, EngineOptions, EngineState, Output, SignalRecord
from .venue_records import record_exchange_request, record_swap, set_rules

__all__ = ["Clock", "Engine", "Output", "SignalRecord"]


class Engine(EngineState):
    """The single writer of trading state (see the module docstring). The state it holds is
    read freely; it changes only through the public methods below. Signal intake and
    settlement are collaborators (`SignalIntake`, `Settlement`) given this state, called only
    from here."""

    def __init__(self, clock: Clock, **options: Unpack[EngineOptions]) -> None:
        """`clock` returns epoch ms; `options` are EngineState's (see EngineOptions): the price
        age and source policy, decimals, the memory and price-book bounds, the exit index."""
        super().__init__(clock, **options)
        self._resting = RestingEntries(self)
        self._intake = SignalIntake(self, self._resting)
        self._settlement = Settlement(self)
        self._exits = ExitActions(self)
        # One tick's exits decided `exit_slice` at a time (None: all in the tick's transition);
        # the daemon's runtime sets it and calls continue_exits until none are left.
        self.exit_slice: int | None = None
        self._cascade = ExitCascade(self, self._exits, self._after_exits)
        # (signal, tick work) signal_may_reach last found apart from all of that work's
        # agents: on_signal does not filter every agent a second time for the same answer
        # (the runtime asks first; with 1,000 agents that is 1,000 filter checks).
        self._unreached: tuple[Signal, TickWork] | None = None

    def on_signal(self, signal: Signal) -> tuple[SignalRecord, bool]:
        """Take a signal to every agent (see `SignalIntake.on_signal`). Returns (record,
        duplicate); raises ValidationError on a bad token or conflicting decimals."""
        work, unreached = self._cascade.work, self._unreached
        self._unreached = None
        known = unreached is not None and unreached[0] is signal and unreached[1] is work
        if (
            work is not None
            and not known
            and self.signal_may_reach(signal, work.token, work.agents)
        ):
            self._cascade.finish()
        return self._intake.on_signal(signal)

    def pause_buys(self, reason: str) -> None:
        """Refuse new buys with `reason` (an adapter's, e.g. "store_unavailable") until
        `resume_buys`. Exits and settlement go on. Separate from the operator's `set_halt`."""
        self._finish_exits()
        self._buys_paused_reason = reason

    def resume_buys(self) -> None:
        """Lift `pause_buys`: buys are taken again (unless the operator halted them)."""
        self._finish_exits()
        self._buys_paused_reason = None

    def create_agent(
        self,
        name: str,
        venue: str,
        config: AgentConfig,
        quote: str = "SOL",
        wallet_id: str | None = None,
        agent_id: str | None = None,
        quote_decimals: int | None = None,
    ) -> Agent:
        """Create an agent trading on `venue` in `quote` ("SOL", "USDC", "USDT" or a mint;
        `quote_decimals` needed for a mint of unknown decimals) with an empty book. Returns it.
        Raises ValidationError, or Conflict when `agent_id` exists."""
        now = self.clock()
        quote = normalize_quote(quote)
        qmint = quote_mint(quote)
        decimals = quote_decimals if quote_decimals is not None else self.decimals.get(qmint)
        if decimals is None:
            raise ValidationError(
                "quote_decimals needed for a quote mint of unknown decimals", "$.quote"
            )
        agent_id = agent_id or self._id("agt", now)
        if agent_id in self.books:
            raise Conflict(f"agent {agent_id!r} exists", {"agent_id": agent_id})
        agent = Agent(
            id=agent_id,
            name=name,
            venue=venue,
            quote=quote,
            quote_decimals=decimals,
            config=config,
            created_at=now,
            wallet_id=wallet_id,
        )
        self._add_book(AgentBook(agent))
        self._emit(
            ev.AgentCreated(
                ts=now,
                agent_id=agent_id,
                name=name,
                venue=venue,
                quote=quote,
                quote_decimals=decimals,
                config=config,
                wallet_id=wallet_id,
            )
        )
        return agent

    def rename_agent(self, agent_id: str, name: str) -> Agent:
        """Give the agent a new display name. Returns it; raises NotFound."""
        agent = self.agent(agent_id)
        agent.name = name
        self._emit(ev.AgentRenamed(ts=self.clock(), agent_id=agent_id, name=name))
        return agent

    def delete_agent(self, agent_id: str) -> None:
        """Delete the agent with its whole book: balances, closed positions and trades leave memory
        with it, so an agent created later with the same id starts empty; its resting buys are
        cancelled first (reason agent_deleted). Raises NotFound, or Conflict while it has
        positions not closed or orders in flight."""
        self._finish_exits()
        self.agent(agent_id)
        if self.books[agent_id].live:
            raise Conflict("agent has open positions", {"agent_id": agent_id})
        if any(o.agent_id == agent_id for o in self.orders.values()):
            raise Conflict("agent has orders in flight", {"agent_id": agent_id})
        now = self.clock()
        for entry in list(self.books[agent_id].entries.values()):
            self._resting.cancel(entry, "agent_deleted", now)
        # The whole book goes, and the closed positions it kept leave the global index with
        # it: an agent later created with this id starts with nothing of this one's.
        book = self.books.pop(agent_id)
        for position_id in book.positions:
            self.positions.pop(position_id, None)
        self.scorecards.drop_agent(agent_id)
        self.breakers.rebase()  # its quote left the account: not a drawdown
        self._emit(ev.AgentDeleted(ts=self.clock(), agent_id=agent_id))

    def update_config(
        self, agent_id: str, config: AgentConfig, apply_to_open: bool = False
    ) -> Agent:
        """Give the agent a new config, for new positions; with `apply_to_open` also to its open
        ones (exits re-armed and evaluated at the last price at once). Returns the agent; raises
        NotFound."""
        self._finish_exits()
        agent = self.agent(agent_id)
        now = self.clock()
        agent.config = config
        self._emit(
            ev.AgentConfigUpdated(
                ts=now, agent_id=agent_id, config=config, apply_to_open=apply_to_open
            )
        )
        if apply_to_open:
            for p in list(self.books[agent_id].live.values()):
                if p.status in HOLDING:
                    p.config = config
                    p.stop_gain_pct = None
                    p.tp_done = min(p.tp_done, len(config.take_profit.levels))
                    if p.status == PositionStatus.OPEN and p.in_flight is None:
                        self.index.rearm(p, now, fresh=True)
                    self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
            # A new stop (or level) the price already crossed acts now, not on the next tick.
            for p in self._sorted(self.books[agent_id].live.values()):
                if p.token in self.prices:
                    self._exits.evaluate([p], now, p.token)
        return agent

    def forget_source(self, source: str) -> int:
        """Forget signal source card `source` (its name as the scorecards show it) with every
        agent's card and breaker on it, freeing its slot (`[sources] max_tracked`); positions
        it opened are counted under "other" from now on. Returns how many agents had a card
        on it (alert `source_forgotten`); raises NotFound for an unknown card."""
        self._finish_exits()
        if source in RESERVED_SOURCES:
            raise ValidationError(
                f"{source!r} is the scorecards' shared card: it cannot be forgotten", "$.source"
            )
        try:
            agents = self.scorecards.forget(source)
        except KeyError:
            raise NotFound("no signal source card of this name", {"source": source[:200]}) from None
        self._emit(
            ev.Alert(
                ts=self.clock(),
                code="source_forgotten",
                message=f"signal source card {source!r} forgotten with {agents} agents' cards",
                details={"source": source, "agents": agents},
            )
        )
        return agents

    def reset_source_breaker(self, agent_id: str, source: str) -> bool:
        """Re-arm the agent's breaker on signal source `source` (its scorecard name): buy
        signals from it are taken again and its trade memory starts afresh; an alert
        `breaker_reset` says so. Returns False when it was not tripped; raises NotFound for an
        unknown agent or a source it has no card on."""
        self._finish_exits()
        self.agent(agent_id)
        now = self.clock()
        if source not in self.scorecards.by_agent.get(agent_id, {}):
            raise NotFound(
                "the agent has no card on this signal source",
                {"agent_id": agent_id, "source": source[:200]},
            )
        if not self.scorecards.reset(agent_id, source, now):
            return False
        self._source_breaker_alert("breaker_reset", agent_id, source, "manual reset", {}, now)
        return True

    def set_agent_status(self, agent_id: str, status: Literal["active", "paused"]) -> Agent:
        """Pause (no new buys; exits go on) or resume an agent. Returns it; raises NotFound."""
        self._finish_exits()
        agent = self.agent(agent_id)
        if agent.status != status:
            agent.status = status
            now = self.clock()
            self._emit(
                ev.AgentPaused(ts=now, agent_id=agent_id)
                if status == "paused"
                else ev.AgentResumed(ts=now, agent_id=agent_id)
            )
        return agent

    def deposit(self, agent_id: str, asset: str, amount: int) -> Balance:
        """Credit `amount` atomic units of `asset` (the quote as a symbol or mint, or a token mint)
        to the agent; a quote deposit adds to `deposited`. Returns the balance; raises NotFound
        or ValidationError (amount not positive, bad mint)."""
        self._finish_exits()
        agent = self.agent(agent_id)
        if amount <= 0:
            raise ValidationError("deposit amount must be positive", "$.amount")
        parse_atomic(str(amount), "$.amount")
        if asset.upper() in ("SOL", "USDC", "USDT"):
            asset = asset.upper()
        else:
            require_mint(asset, "$.asset")
        is_quote = quote_mint(asset) == quote_mint(agent.quote)
        asset = agent.quote if is_quote else asset
        decimals = agent.quote_decimals if is_quote else self.token_decimals(quote_mint(asset))
        bal = self.ledger.credit(agent_id, asset, decimals, amount)
        if is_quote:
            agent.deposited += amount
        now = self.clock()
        self._emit(
            ev.Deposited(ts=now, agent_id=agent_id, asset=asset, amount=amount, total=bal.total)
        )
        self._balance_changed(agent_id, bal, now)
        return bal

    def set_wallet_unlocked(self, wallet_id: str, unlocked: bool) -> None:
        """The wallet's keypair is (un)locked in the process: agents on a live venue trading from
        it take buys only while it is unlocked (skip reason `wallet_locked`). Not persisted: a
        restarted process starts with every wallet locked."""
        self._finish_exits()
        if unlocked:
            self.unlocked_wallets.add(wallet_id)
        else:
            self.unlocked_wallets.discard(wallet_id)

    def on_swap_submitted(self, order_id: str, swap: SwapSubmission) -> Order:
        """A live venue signed `swap` for the order in flight and is about to send it: record it
        on the order (event SwapSubmitted, written through before the venue sends). Returns the
        order. Raises NotFound for an order not in flight, InvariantViolation for an attempt not
        newer than the one recorded."""
        return record_swap(self, order_id, swap)

    def on_exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> Order:
        """An exchange venue is about to send `sent` for the order in flight: record it on the
        order (event ExchangeOrderSent, written through before the request leaves). Returns the
        order. Raises NotFound for an order not in flight, InvariantViolation for an attempt not
        newer than the one recorded."""
        return record_exchange_request(self, order_id, sent)

    def set_instrument_rules(self, token: str, rules: InstrumentRules) -> None:
        """An exchange market's order-size rules, loaded or changed (a market's precision may
        change while the daemon runs): later orders of `token` follow them. The instrument's
        decimals never change once known (positions hold amounts at that scale). Raises
        ValidationError for a token that is not an exchange market, for decimals other than the
        token's known ones, or for rules out of bounds."""
        self._finish_exits()
        set_rules(self, token, rules)

    def set_halt(self, buys: bool, flatten: bool = False) -> list[str]:
        """The operator's kill switch: `buys` True refuses new buys; `flatten` True also sells
        every position (now, or once its order in flight settles). Returns the ids of the sell
        orders placed now. Lifting the halt also clears an account breaker's trip."""
        self._finish_exits()
        if not buys and self.breakers.tripped is not None:
            self._reset_breakers()
        return self._halt(buys, flatten)

    def _halt(
        self, buys: bool, flatten: bool, trip: breakers.BreakerTrip | None = None
    ) -> list[str]:
        self.halted_buys = buys
        # A trip's halt is stamped with the trip's own time (recovery restores `at` from it);
        # a second clock read could differ by a millisecond.
        if trip is not None:
            ts, rule, details = trip.at, trip.rule, trip.details
        else:
            ts, rule, details = self.clock(), None, {}
        self._emit(ev.HaltChanged(ts=ts, buys=buys, flatten=flatten, rule=rule, details=details))
        orders: list[str] = []
        if flatten:
            for p in self._sorted(self.positions.values()):
                if p.status in HOLDING and p.amount > 0:
                    oid = self._exit_or_pend(p, "manual", None)
                    if oid is not None:
                        orders.append(oid)
        return orders

    def on_tick(self, tick: Tick) -> str | None:
        """A new price; exits fire from it, each decision taken at this tick's price. Returns
        None when applied, else why it was not: `out_of_order` (older than the known price:
        feeds may reorder), `future` (more than `max_future_skew_ms` ahead of the clock: one
        bad timestamp must not lock a token's price), `decimals_conflict` (the tick names other
        decimals than the token's known ones: never re-scale positions; an alert goes out),
        `token_capacity` (a new token while `max_priced_tokens` prices are held and none can be
        evicted: see `room_for_price`), and those of `admit_tick`: `stale`, `secondary` (a
        higher-priority source prices the token)."""
        if self._cascade.work is not None:  # inline: this is the per-tick hot path
            self._cascade.finish()
        now = self.clock()
        if tick.ts > now:
            if tick.ts > now + self.max_future_skew_ms:
                return "future"
            # Within the skew: accepted as of now, so a feed whose clock runs a little fast
            # cannot make the next real-time ticks look older and lock the token's price.
            tick = msgspec.structs.replace(tick, ts=now)
        reason = admit_tick(self, tick, now)
        if reason is not None:
            return reason
        candidates = list(self.index.on_price(tick.token, tick.price_usd))
        candidates.extend(self.index.due(now))
        if candidates:
            work = TickWork(self._exits.ordered(candidates), now, tick.token, tick.price_usd)
            self._cascade.start(work, self.exit_slice)
        elif self.entries:  # no exit to decide (most ticks): the resting buys' turn at once
            self._after_exits(TickWork([], now, tick.token, tick.price_usd))
        return None

    def _after_exits(self, work: TickWork) -> None:
        """The rest of a tick's transition, once its exits are decided."""
        self._unreached = None  # an answer about this work ends with it (and frees it)
        if self.entries:  # resting buys: expired ones end, then those the price meets execute
            self._resting.expire(work.now)
            self._resting.on_price(work.token, work.price_usd, work.now)

    # -- a tick's exits in slices (cascade.py) ------------------------------------------------

    @property
    def exits_pending(self) -> bool:
        """Some exits of the last tick are still to decide (`continue_exits`)."""
        return self._cascade.pending

    @property
    def exits_left(self) -> int:
        """How many positions of the last tick are still to decide (0 when none is pending)."""
        w = self._cascade.work
        return 0 if w is None else len(w.positions) - w.next

    def exits_pending_agents(self) -> frozenset[str]:
        """The agents the last tick reached while some of its exits are still to decide."""
        return self._cascade.agents()

    def continue_exits(self) -> bool:
        """Decide the next `exit_slice` exits of the last tick. True while some remain."""
        return self._cascade.advance(self.exit_slice)

    def finish_exits(self) -> None:
        """Decide every exit of the last tick still to decide, now."""
        self._finish_exits()

    def _finish_exits(self) -> None:
        if self._cascade.pending:
            self._cascade.finish()

    def _finish_exits_of(self, agent_id: str) -> None:
        if self._cascade.pending and agent_id in self._cascade.agents():
            self._cascade.finish()

    def signal_may_reach(self, signal: Signal, token: str, agents: frozenset[str]) -> bool:
        """Whether `signal` could see or change the state of a cascade on `token` reaching
        `agents`: it is for that token, or one of those agents' config filters (strength, type,
        token lists; not liquidity or risk) passes it, or it would rest while the cascade's
        tick still has resting buys to expire or trigger (their count is bounded). Reads
        only."""
        if signal.token == token:
            return True
        work = self._cascade.work
        if signal.entry is not None and work is not None and work.resting:
            return True
        reach = any(
            filter_reason(self.books[a].agent.config, signal, None, False) is None
            for a in agents
            if a in self.books
        )
        # The answer holds while `work` does: its agents' configs change only after it is
        # finished (update_config, delete_agent finish it first), and agents outside it are not
        # asked. So on_signal need not ask again for the same signal and work.
        if (
            not reach
            and work is not None
            and token == work.token
            and (agents is work.agents or agents >= work.agents)
        ):
            self._unreached = (signal, work)
        return reach

    def watched_tokens(self, recent_signal_ms: int = 600_000) -> set[str]:
        """Tokens the live feeds must price now: held, quotes, watchlist, and tokens of signals
        of the last `recent_signal_ms` (see price_book.watched_tokens). Reads only."""
        return watched_tokens(self, self.clock(), recent_signal_ms)

    def on_clock(self) -> None:
        """Time passes without a price: max hold and stale-trade deadlines; a divergence whose
        sources went silent clears."""
        self._finish_exits()
        now = self.clock()
        for token in list(self.sources.diverged):
            cross_check(self, token, now)
        due = list(self.index.due(now))
        if due:
            self._exits.evaluate(due, now, None)
        if self.entries:
            self._resting.expire(now)
        if self.breakers.rules.any:
            self._trip(breakers.on_clock(self, now), now)

    def cancel_resting(self, signal_id: str) -> list[RestingEntry]:
        """Cancel every buy of the signal still resting: each ends (outcome cancelled, its
        execution skipped `cancelled`) and its reservation is released. Returns the entries
        cancelled, [] when none rests (triggered, expired, or never rested). Who may cancel is
        the caller's check (the control port: the key that posted the signal, or admin)."""
        self._finish_exits()
        now = self.clock()
        ids = list(self.entries_by_signal.get(signal_id, ()))
        cancelled = [self.entries[i] for i in ids]
        for entry in cancelled:
            self._resting.cancel(entry, "cancelled", now)
        return cancelled

    # -- settlement follow-ups ----------------------------------------------------------------

    def on_fill(self, fill: Fill) -> None:
        """A venue filled an order: settle it (see Settlement.on_fill), then apply an exit kept
        pending, or evaluate the position at a newer price. Raises NotFound, InvariantViolation."""
        order = self.orders.get(fill.order_id)
        if order is not None:
            self._finish_exits_of(order.agent_id)
        p = self.positions.get(order.position_id) if order is not None else None
        mark = len(self._events)
        self._settlement.on_fill(fill)
        if p is not None and order is not None:
            self._exits.after_settle(p, evaluate=self._exits.ticked_since(order))
        self._breakers_after(mark)

    def on_order_failed(self, order_id: str, reason: str, fee: int = 0) -> None:
        """A venue failed an order for `reason`, its failed attempts costing `fee` quote atomic
        units: undo what it held (see Settlement.on_order_failed), then apply an exit kept
        pending. Raises NotFound."""
        order = self.orders.get(order_id)
        if order is not None:
            self._finish_exits_of(order.agent_id)
        p = self.positions.get(order.position_id) if order is not None else None
        mark = len(self._events)
        self._settlement.on_order_failed(order_id, reason, fee)
        if p is not None:
            self._exits.after_settle(p, evaluate=False)
        self._breakers_after(mark)

    # -- account breakers (account_breakers.py) -----------------------------------------------

    def _breakers_after(self, mark: int) -> None:
        """The account breakers hear of a settlement (the events emitted since `mark`)."""
        if self.breakers.rules.any:
            now = self.clock()
            self._trip(breakers.after_settlement(self, self._events[mark:], now), now)

    def _trip(self, trip: breakers.BreakerTrip | None, now: int) -> None:
        """A breaker tripped: an alert, buys halted (persisted as the operator's halt is), and
        with `flatten` every position sold."""
        if trip is None:
            return
        # A tick's exits still to decide (a sliced cascade) are decided first, at their tick's
        # price, as in one transition (replay): the halt must not reach its resting buys.
        self._finish_exits()
        flatten = self.breakers.rules.flatten
        self._emit(
            ev.Alert(
                ts=now,
                code="breaker_tripped",
                message=f"account breaker {trip.rule} tripped: buys halted"
                + (", every position sold" if flatten else ""),
                details=trip.details,
            )
        )
        self._halt(True, flatten, trip)

    def reset_breakers(self) -> breakers.BreakerTrip | None:
        """An admin's reset of the account breakers: every rule starts over (alert
        `breaker_reset`) and, when one had tripped, the halt it set is lifted. Returns the trip
        cleared, or None."""
        self._finish_exits()
        was = self._reset_breakers()
        if was is not None and self.halted_buys:
            self._halt(False, False)
        return was

    def _reset_breakers(self) -> breakers.BreakerTrip | None:
        now = self.clock()
        was = self.breakers.reset(now)
        self._emit(
            ev.Alert(
                ts=now,
                code="breaker_reset",
                message="account breakers reset"
                + (f": {was.rule} cleared" if was is not None else ""),
                details={"rule": was.rule if was is not None else None},
            )
        )
        return was

    def breaker_values(self) -> dict[str, object]:
        """The numbers each account breaker watches now (see account_breakers.breaker_values).
        Reads only."""
        return breakers.breaker_values(self, self.clock())

    def close_position(
        self, position_id: str, pct: float = 100.0, reason: ExitReason = "manual"
    ) -> str | None:
        """Sell `pct` of a position now: returns the order id. A full close of a position
        with its entry buy, a DCA buy or a partial sell in flight is kept pending and applied
        when that order settles: returns None. Raises Conflict when it is closed, already selling everything,
        or a partial close meets an order in flight; ValidationError when the sell rounds to
        zero tokens or is worth no quote."""
        self._finish_exits()
        p = self.position(position_id)
        if not 0 < pct <= 100:
            raise ValidationError("pct must be in (0, 100]", "$.pct")
        busy = p.in_flight is not None
        live = LIVE if busy else (PositionStatus.OPEN,)
        if p.status not in live or (busy and (pct < 100 or self._selling_all(p))):
            raise Conflict(
                f"position is {p.status}" + (" with an order in flight" if busy else ""),
                {"position_id": position_id, "status": p.status},
            )
        if busy:
            self._exit_or_pend(p, reason, None)
            return None
        amount = p.amount if pct >= 100 else pct_of(p.amount, pct)
        if amount <= 0:
            raise ValidationError("pct rounds to zero tokens", "$.pct")
        tick = self.prices.get(p.token)
        price = tick.price_usd if tick else p.entry_price_usd
        if self.sell_size(p, amount, price) == 0:
            raise ValidationError(
                "the sell is worth less than one quote atomic unit, or below the market's "
                "least amount or notional",
                "$.pct",
            )
        oid = self._sell(p, amount, reason, price, None)
        assert oid is not None
        return oid

    def unrealized_pnl(self, agent_id: str) -> int:
        """The agent's unrealized PnL, quote atomic units: the value of its held tokens at the last
        prices minus their cost; 0 without a quote price. Raises NotFound."""
        agent = self.agent(agent_id)
        quote_price = self.quote_usd(agent.quote)
        total = 0
        if not quote_price:
            return 0
        for p in self.books[agent_id].live.values():
            if p.status in HOLDING and p.amount:
                tick = self.prices.get(p.token)
                value = market_value(
                    p.amount,
                    p.decimals,
                    tick.price_usd if tick is not None else None,
                    quote_price,
                    agent.quote_decimals,
                )
                if value is not None:  # a position without a price counts nothing
                    total += value - p.cost
        return total
