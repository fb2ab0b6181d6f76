"""Exit actions, a collaborator of the Engine: what an exit rule's decision does to a position
(a sell placed, a take-profit level taken, a DCA buy, an exit kept pending while an order is in
flight) and the follow-up once a position's order settles."""

from __future__ import annotations

from . import events as ev
from .buying import lot_reason
from .exits import Decision, decide
from .lifecycle import HOLDING, PositionStatus
from .model import Order, Position
from .money import decimal_ratio, quote_value
from .state import EngineState


class ExitActions:
    """Acts on exit decisions. It changes only the `state` it is given, and only when the
    Engine calls it from a transition (a tick, the clock, a config applied, a settlement)."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    def evaluate(self, candidates: list[Position], now: int, token: str | None) -> None:
        """Decide the exit rules of `candidates` (positions; each once, in opening order) at their
        tokens' last prices at `now` (epoch ms) and act on each decision; `token` is the token
        whose price just moved (its price rules apply), None for the clock alone. Positions not
        holding, or without a price, are skipped."""
        self.evaluate_ordered(self.ordered(candidates), now, token)

    def ordered(self, candidates: list[Position]) -> list[Position]:
        """`candidates` in the order they are decided: opening order, each once."""
        seen: set[str] = set()
        out = []
        for p in self.state._sorted(candidates):
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
        return out

    def evaluate_ordered(self, positions: list[Position], now: int, token: str | None) -> None:
        """`evaluate` on positions already ordered and deduped (`ordered`)."""
        for p in positions:
            if p.status not in HOLDING:
                continue
            tick = self.state.prices.get(p.token)
            if tick is None:
                continue
            peak = self.state.index.peak_of(p)
            if p.in_flight is not None:
                self._pend_exit_in_flight(p, tick.price_usd, now, peak, p.token == token)
                continue
            decision = decide(p, tick.price_usd, now, peak, p.token == token)
            if decision.kind == "none":
                self.state.index.rearm(p, now, fresh=False)
            else:
                self._act(p, decision, tick.price_usd, now)

    def _pend_exit_in_flight(
        self, p: Position, price: float, now: int, peak: float, price_rules: bool
    ) -> None:
        """A position with an order in flight whose exit rule fires: keep the exit pending, to
        sell what is held once the order settles. Nothing to keep when everything is already
        being sold, or an exit is already pending."""
        if p.pending_exit is not None or self.state._selling_all(p):
            return
        decision = decide(p, price, now, peak, price_rules, in_flight=True)
        if decision.kind == "exit":
            self.state._pend(p, decision.reason, None, now)  # type: ignore[arg-type]
        else:
            self.state.index.rearm(
                p, now, fresh=False
            )  # keep watching while the order is in flight

    def _act(self, p: Position, d: Decision, price: float, now: int) -> None:
        if d.kind in ("exit", "take_profit") and now < p.exit_retry_at:
            # The last automatic sell failed: wait out the backoff, the level still armed.
            self.state.index.rearm(p, now, fresh=False)
            return
        if d.kind == "exit":
            if self.state._sell(p, d.sell_amount, d.reason, price, d.stop_price_usd) is None:
                self.state.index.rearm(p, now, fresh=False)
        elif d.kind == "take_profit":
            if d.moon_bag_amount:
                p.moon_bag_amount = d.moon_bag_amount
                self.state._emit(ev.MoonBagSet(ts=now, position_id=p.id, amount=d.moon_bag_amount))
            p.tp_done += d.tp_levels
            placed = d.sell_amount > 0 and (
                self.state._sell(
                    p, d.sell_amount, "take_profit", price, None, tp_levels=d.tp_levels
                )
                is not None
            )
            if not placed:  # the levels are spent, or they would re-trigger on every tick
                self.state.index.rearm(p, now, fresh=False)
                self.state._emit(ev.PositionChanged(ts=now, position=self.state._snapshot(p)))
        elif d.kind == "dca":
            self._dca(p, d.dca_level, price, now)

    def ticked_since(self, order: Order) -> bool:
        """Whether the order's token has a price newer than the one the order was decided at:
        only then can a level have been crossed while it was in flight."""
        tick = self.state.prices.get(order.token)
        return tick is not None and (
            tick.ts > order.created_at or tick.price_usd != order.decision_price_usd
        )

    def after_settle(self, p: Position, evaluate: bool = True) -> None:
        """Once a position's order settles: apply the exit kept pending (sell what is now
        held), or, after a fill with a newer price than the order's, evaluate the position at
        it at once, so a level crossed while the order was in flight is not left waiting for
        the next tick. Not after a failure: an order that fails at once (in-process venue)
        would be re-placed in a loop; the position waits for the next tick, as a retry."""
        if p.in_flight is not None:
            return
        now = self.state.clock()
        reason, signal_id = p.pending_exit, p.pending_exit_signal_id
        if p.status == PositionStatus.CLOSED:  # sold out by the settled order, or its entry failed
            if reason is not None:
                p.pending_exit = p.pending_exit_signal_id = None
                why = f"closed_by_{p.exit_reason}" if p.exit_reason else "entry_failed"
                self._close_pending_record(p, signal_id, None, why, now)
            return
        if p.status != PositionStatus.OPEN:
            return
        if reason is not None:
            p.pending_exit = p.pending_exit_signal_id = None
            tick = self.state.prices.get(p.token)
            price = tick.price_usd if tick else p.entry_price_usd
            oid = self.state._sell(p, p.amount, reason, price, None, signal_id=signal_id)
            if oid is None:
                self.state.index.rearm(p, now, fresh=False)
            self._close_pending_record(p, signal_id, oid, "exit_below_minimum", now)
            return
        if evaluate and p.token in self.state.prices:
            self.evaluate([p], now, p.token)

    def _close_pending_record(
        self, p: Position, signal_id: str | None, order_id: str | None, reason: str, now: int
    ) -> None:
        """The execution record of the signal whose exit was pending: now tied to the sell
        placed (it becomes `filled` or `failed` with it), or `skipped` with `reason`."""
        record = self.state.signals.get(signal_id) if signal_id else None
        execution = record.executions.get(p.agent_id) if record else None
        if execution is None or execution.position_id != p.id or signal_id is None:
            return
        execution.order_id = order_id
        execution.status = "pending" if order_id else "skipped"
        execution.reason = "" if order_id else reason
        self.state._execution_changed(signal_id, execution, now)

    def _dca(self, p: Position, level: int, price: float, now: int) -> None:
        agent = self.state.books[p.agent_id].agent
        quote_price = self.state.quote_usd(agent.quote)
        buy_pct = p.config.dca.levels[level].buy_pct
        amount = 0
        if quote_price:
            n, d = decimal_ratio(buy_pct)
            amount = quote_value(
                p.amount, p.decimals, price, quote_price, agent.quote_decimals, (n, 100 * d)
            )
        bal = self.state.ledger.balance(agent.id, agent.quote)
        spendable = bal.available - int(agent.config.sizing.min_reserve)
        amount = min(amount, spendable)
        self.state._emit(
            ev.DcaTriggered(
                ts=now, position_id=p.id, agent_id=agent.id, price_usd=price, level=level
            )
        )
        below = amount > 0 and lot_reason(self.state, agent, p.token, amount, price) is not None
        if amount <= 0 or below:
            # Unfundable: the level is spent, or it would re-trigger on every tick.
            p.dca_count += 1
            p.last_dca_at = now
            self.state.index.rearm(p, now, fresh=False)
            code, why = (
                ("below_venue_minimum", "the buy is below the market's least amount or notional")
                if below
                else ("dca_unfunded", "no spendable quote")
            )
            self.state._emit(
                ev.Alert(
                    ts=now,
                    code=code,
                    message=f"DCA level skipped: {why}",
                    details={"agent_id": agent.id, "position_id": p.id},
                )
            )
            self.state._emit(ev.PositionChanged(ts=now, position=self.state._snapshot(p)))
            return
        self.state.ledger.reserve(agent.id, agent.quote, amount)
        self.state.books[agent.id].exposure.commit(p.token, amount)
        self.state._new_order(agent, p, "buy", "dca", amount, "dca", now, price=price)
        self.state.index.rearm(p, now, fresh=False)  # an exit crossed meanwhile waits (pending)
        self.state._balance_changed(agent.id, bal, now)
