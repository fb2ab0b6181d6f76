"""Resting entries, a collaborator of the Engine: a buy signal with an `entry` condition rests
for each agent it reaches with the agent's quote reserved (reservation before I/O: later signals
cannot spend it), and executes when a tick meets its price, in price-time priority, or ends when
it expires or is cancelled, releasing the reservation.

Checks split in two. When it rests: the signal filters, the standing checks (halt, pause,
wallet) and the sizing, which reserves. When its price comes: the standing checks again and the
market checks with the agent's limits as they are then, entry by entry in priority order, so
when a limit lets only some through the better-priced, earlier ones get it; the others are
skipped with the reason and their reservation released."""

from __future__ import annotations

from . import events as ev
from .buying import lot_reason, market_reason, open_entry, standing_reason
from .entry_index import priority_order
from .model import Agent, Attribution, Execution, RestingEntry, Signal
from .risk import size_buy
from .state import EngineState, SignalRecord

# A triggered entry's order may be retried by its venue for this long (ms): the signal's own
# expiry may be a moment away when its price comes.
TRIGGERED_ORDER_TTL_MS = 30_000


class RestingEntries:
    """Rests, triggers, expires and cancels entries. It changes only the `state` it is given
    (the books, the ledger, the entry index, the event and intent buffers), and only when the
    Engine or its signal intake calls it."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    # -- resting ----------------------------------------------------------------------------

    def rest(
        self,
        agent: Agent,
        signal: Signal,
        record: SignalRecord,
        now: int,
        opened_by: Attribution | None = None,
    ) -> None:
        """Rest the signal's buy for `agent`, or skip it with the reason (standing checks,
        `expired` when `now` is past the signal's expiry, `resting_capacity` when
        `max_resting_entries` rest already, then the sizing)."""
        state = self.state
        reason = standing_reason(state, agent, signal.token)
        if now > signal.expires_at and reason != "token_is_quote":
            # As a market buy: a signal taken after its expiry (it waited in a queue) does
            # nothing; its entry would execute at once if marketable, or rest already expired.
            reason = "expired"
        if reason is None and len(state.entry_index) >= state.max_resting_entries:
            reason = "resting_capacity"
        bal = state.ledger.balance(agent.id, agent.quote)
        exposure = state.books[agent.id].exposure
        amount = 0
        if reason is None:
            amount, reason = size_buy(agent.config, bal.available, exposure.committed[signal.token])
        if reason is None and signal.entry is not None:
            reason = lot_reason(state, agent, signal.token, amount, signal.entry.price_usd)
        if reason is not None:
            skipped = Execution(agent_id=agent.id, status="skipped", reason=reason)
            state._put_execution(record, skipped, now)
            return
        assert signal.entry is not None
        entry = RestingEntry(
            id=state._id("ent", now),
            seq=state.id_seq,
            agent_id=agent.id,
            signal_id=signal.id,
            token=signal.token,
            symbol=signal.symbol,
            type=signal.entry.type,
            price_usd=signal.entry.price_usd,
            amount=amount,
            quote=agent.quote,
            created_at=now,
            expires_at=signal.expires_at,
            signal_type=signal.type,
            key_id=signal.key_id,
            opened_by=opened_by,
        )
        state.ledger.reserve(agent.id, agent.quote, amount)
        exposure.commit(signal.token, amount)
        state._add_entry(entry)
        state._emit(ev.EntryRested(ts=now, entry=entry))
        execution = Execution(
            agent_id=agent.id, status="resting", latency_ms=float(now - signal.received_at)
        )
        state._put_execution(record, execution, now)
        state._balance_changed(agent.id, bal, now)

    # -- ending -----------------------------------------------------------------------------

    def on_price(self, token: str, price: float, now: int) -> None:
        """A price of `token` (USD, admitted at `now`): the entries it meets execute, or are
        skipped, in price-time priority."""
        crossed = self.state.entry_index.crossed(token, price)
        if not crossed:
            return
        for entry in priority_order(crossed, price) if len(crossed) > 1 else crossed:
            self._trigger(entry, price, now)

    def at_last_price(self, token: str, now: int) -> None:
        """Entries that just rested meet the token's last price already (a marketable limit):
        they execute now, if that price is fresh."""
        tick = self.state.prices.get(token)
        if tick is not None and now - tick.ts <= self.state.max_price_age_ms:
            self.on_price(token, tick.price_usd, now)

    def expire(self, now: int) -> None:
        """Entries past their expiry end (outcome expired), their reservation released."""
        expired = self.state.entry_index.expired(now)
        if not expired:
            return
        for entry in sorted(expired, key=lambda e: e.seq):
            self._end(entry, "expired", "expired", now)

    def cancel(self, entry: RestingEntry, reason: str, now: int) -> None:
        """End `entry` now (outcome cancelled, execution skipped with `reason`)."""
        self.state.entry_index.remove(entry)
        self._end(entry, "cancelled", reason, now)

    def _trigger(self, entry: RestingEntry, price: float, now: int) -> None:
        state = self.state
        book = state.books[entry.agent_id]
        agent = book.agent
        reason = (
            standing_reason(state, agent, entry.token)
            or market_reason(state, agent, entry.token, now)
            or lot_reason(state, agent, entry.token, entry.amount, price)
        )
        if reason is not None:
            return self._end(entry, "triggered", reason, now, price)
        state._drop_entry(entry)
        p, order = open_entry(
            state,
            agent,
            entry.token,
            entry.symbol,
            entry.amount,
            now,
            signal_id=entry.signal_id,
            signal_type=entry.signal_type,
            expires_at=now + TRIGGERED_ORDER_TTL_MS,
            limit_price_usd=entry.price_usd if entry.type == "limit" else None,
            latency_ms=float(now - entry.created_at),
            opened_by=entry.opened_by,
        )
        self._ended(entry, "triggered", now, order_id=order.id, price=price)
        execution = Execution(
            agent_id=agent.id,
            status="pending",
            position_id=p.id,
            order_id=order.id,
            latency_ms=float(now - entry.created_at),
        )
        self._execution_of(entry, execution, now)

    def _end(
        self,
        entry: RestingEntry,
        outcome: str,
        reason: str,
        now: int,
        price: float | None = None,
    ) -> None:
        state = self.state
        state._drop_entry(entry)
        bal = state.ledger.release(entry.agent_id, entry.quote, entry.amount)
        state.books[entry.agent_id].exposure.commit(entry.token, -entry.amount)
        self._ended(entry, outcome, now, reason=reason, price=price)
        self._execution_of(
            entry, Execution(agent_id=entry.agent_id, status="skipped", reason=reason), now
        )
        state._balance_changed(entry.agent_id, bal, now)

    def _ended(
        self,
        entry: RestingEntry,
        outcome: str,
        now: int,
        *,
        reason: str = "",
        order_id: str | None = None,
        price: float | None = None,
    ) -> None:
        self.state._emit(
            ev.EntryEnded(
                ts=now,
                entry_id=entry.id,
                agent_id=entry.agent_id,
                signal_id=entry.signal_id,
                token=entry.token,
                outcome=outcome,
                reason=reason,
                order_id=order_id,
                price_usd=price,
                entry=entry,
            )
        )

    # -- execution records ------------------------------------------------------------------

    def _execution_of(self, entry: RestingEntry, execution: Execution, now: int) -> None:
        record = self.state.signals.get(entry.signal_id)
        signal_id = entry.signal_id
        if record is not None:
            before = len(record.executions)
            record.executions[execution.agent_id] = execution
            self.state.signal_window.executions_added(record, before)
        self.state._execution_changed(signal_id, execution, now)
