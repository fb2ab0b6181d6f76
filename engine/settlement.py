"""Settlement: what a venue's fill or failure does to balances, positions and performance.
A buy's reservation is settled (spent, rest released) or released; a sell realizes PnL on the
sold slice's cost basis and closes the position when nothing is left."""

from __future__ import annotations

import msgspec

from . import events as ev
from .errors import InvariantViolation
from .lifecycle import OrderStatus, PositionStatus, move_position
from .model import Fill, Order, Trade
from .money import exact
from .state import TRADES_KEPT, EngineState

# Sells the exit rules place on their own (not a signal's, an operator's close or a flatten):
# after one fails, the next waits (exit_backoff_ms).
AUTOMATIC_EXITS = frozenset({"stop_loss", "take_profit", "stale_trade", "max_hold"})


def exit_backoff_ms(failures: int) -> int:
    """The wait (ms) before an automatic exit is placed again after `failures` failed in a row:
    1 s, doubling, at most 5 minutes."""
    return int(min(1000 * 2 ** min(failures - 1, 16), 300_000))


class Settlement:
    """Settlement of orders, a collaborator of the Engine: it changes only the `state` it is given
    (the books, the ledger, the order and position indexes, the exit index, the event buffer),
    and only when the Engine calls `on_fill` or `on_order_failed`."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    def on_fill(self, fill: Fill) -> None:
        """Settle the order `fill` names: a buy spends its reservation (the rest is released)
        and opens or adds to the position; a sell realizes PnL on the sold slice's cost basis
        (quote atomic) and closes the position when nothing is left. Raises NotFound for an
        order not in flight, InvariantViolation for a fill outside the order."""
        order = self.state._order_done(fill.order_id, OrderStatus.FILLED)
        if order.side == "buy":
            self._settle_buy(order, fill)
        else:
            self._settle_sell(order, fill)

    def on_order_failed(self, order_id: str, reason: str, fee: int = 0) -> None:
        """The order failed for `reason`: a buy's reservation is released (an entry's
        position is dropped), a sell's position is open again with its take-profit levels
        given back. `fee` (quote atomic, >= 0): what its failed attempts cost on chain, taken
        from the quote balance and booked as a realized loss. Raises NotFound for an order not
        in flight."""
        order = self.state._order_done(order_id, OrderStatus.FAILED)
        now = self.state.clock()
        p = self.state.positions[order.position_id]
        self.state._emit(
            ev.OrderFailed(
                ts=now,
                order_id=order_id,
                agent_id=order.agent_id,
                position_id=p.id,
                reason=reason,
                fee=fee,
            )
        )
        exposure = self.state.books[order.agent_id].exposure
        if order.side == "buy":
            bal = self.state.ledger.release(order.agent_id, order.quote, order.amount_in)
            exposure.commit(p.token, -order.amount_in)
            self.state._balance_changed(order.agent_id, bal, now)
        if fee:
            self._charge_fee(order, fee, now)
        if order.purpose == "entry":
            exposure.closed(p.token)
            move_position(p, PositionStatus.CLOSED)
            p.closed_at = now
            self.state._drop_position(p)
            self.state._record_execution(order, "failed", reason, now)
            return
        if order.purpose == "dca":
            p.last_dca_at = now
        else:
            if order.reason in AUTOMATIC_EXITS:
                p.exit_failures += 1
                p.exit_retry_at = now + exit_backoff_ms(p.exit_failures)
            p.tp_done -= order.tp_levels
            move_position(p, PositionStatus.OPEN)
            self.state._record_execution(order, "failed", reason, now)  # a sell signal's sell
        self.state.index.rearm(p, now, fresh=True)
        self.state._emit(ev.PositionChanged(ts=now, position=self.state._snapshot(p)))

    def _charge_fee(self, order: Order, fee: int, now: int) -> None:
        agent = self.state.books[order.agent_id].agent
        bal, unbooked = self.state.ledger.charge(agent.id, agent.quote, fee)
        self.state.ledger.realize(agent, unbooked - fee, now)
        self.state._balance_changed(agent.id, bal, now)
        if unbooked:
            self.state._emit(
                ev.Alert(
                    ts=now,
                    code="fee_unbooked",
                    message=f"{unbooked} quote atomic units of network fees exceed the free "
                    "quote balance: the book and the wallet differ by that much",
                    details={
                        "agent_id": agent.id,
                        "order_id": order.id,
                        "fee": fee,
                        "unbooked": unbooked,
                    },
                )
            )

    def _trade(self, order: Order, fill: Fill, amount: int, quote_amount: int, now: int) -> None:
        trade = Trade(
            id=self.state._id("trd", now),
            agent_id=order.agent_id,
            position_id=order.position_id,
            side=order.side,
            token=order.token,
            amount=amount,
            quote_amount=quote_amount,
            price_usd=fill.price_usd,
            fee=fill.fee,
            venue=order.venue,
            venue_ref=fill.venue_ref,
            reason=order.reason,
            ts=now,
            fee_currency=fill.fee_currency,
            fee_amount=fill.fee_amount,
            signal_id=order.signal_id,
            source=by.source if (by := self.state.positions[order.position_id].opened_by) else None,
        )
        trades = self.state.books[order.agent_id].trades
        trades.append(trade)
        if len(trades) > 2 * TRADES_KEPT:
            del trades[:TRADES_KEPT]
        self.state._emit(ev.OrderFilled(ts=now, order_id=order.id, trade=trade))

    def _settle_buy(self, order: Order, fill: Fill) -> None:
        now = self.state.clock()
        spent, got = fill.amount_in, fill.amount_out
        if spent > order.amount_in or spent < 0 or got <= 0 or fill.charge < 0:
            raise InvariantViolation(
                f"buy fill {fill} outside order {order.id} reservation {order.amount_in}"
            )
        bal = self.state.ledger.settle_buy(order.agent_id, order.quote, order.amount_in, spent)
        p = self.state.positions[order.position_id]
        self.state.books[order.agent_id].exposure.commit(p.token, spent - order.amount_in)
        self._trade(order, fill, got, spent, now)
        if order.purpose == "entry":
            p.amount = p.original_amount = got
            p.cost = spent
            p.entry_price_usd = fill.price_usd
            move_position(p, PositionStatus.OPEN)
            p.opened_at = now
            # The peak starts at the market price the buy was decided on (a slippage-adjusted
            # fill price never traded), then follows ticks only.
            self.state.index.add(p, now, peak=order.decision_price_usd or fill.price_usd)
            self.state._emit(ev.PositionOpened(ts=now, position=self.state._snapshot(p)))
            self.state.scorecards.entry_filled(p.agent_id, p.opened_by, fill.price_usd, now)
            self.state._record_execution(order, "filled", "", now)
        else:
            # Ratchet the stop at the old average first: S is a running max over (peak, entry).
            self.state.refresh(p)
            # Average entry weighted by token amount, exact, then the nearest float.
            p.entry_price_usd = float(
                (exact(p.entry_price_usd) * p.amount + exact(fill.price_usd) * got)
                / (p.amount + got)
            )
            p.amount += got
            p.original_amount += got
            p.cost += spent
            p.dca_count += 1
            p.last_dca_at = now
            self.state.index.rearm(p, now, fresh=True)
            self.state._emit(ev.PositionChanged(ts=now, position=self.state._snapshot(p)))
        self.state._balance_changed(order.agent_id, bal, now)
        if fill.charge:
            self._charge_fee(order, fill.charge, now)

    def _settle_sell(self, order: Order, fill: Fill) -> None:
        now = self.state.clock()
        p = self.state.refresh(self.state.positions[order.position_id])
        sold, proceeds = fill.amount_in, fill.amount_out
        if (
            sold <= 0
            or sold > order.amount_in
            or sold > p.amount
            or proceeds < 0
            or fill.charge < 0
        ):
            raise InvariantViolation(
                f"sell fill {fill} outside order {order.id} for {order.amount_in}"
            )
        basis = p.cost if sold == p.amount else p.cost * sold // p.amount
        p.exit_failures, p.exit_retry_at = 0, 0
        p.amount -= sold
        p.cost -= basis
        pnl = proceeds - basis
        p.realized_pnl += pnl
        p.moon_bag_amount = min(p.moon_bag_amount, p.amount)
        agent = self.state.books[order.agent_id].agent
        exposure = self.state.books[agent.id].exposure
        exposure.commit(p.token, -basis)
        bal = self.state.ledger.credit(agent.id, agent.quote, agent.quote_decimals, proceeds)
        self.state.ledger.realize(agent, pnl, now)
        self._trade(order, fill, sold, proceeds, now)
        self.state._record_execution(order, "filled", "", now)  # a sell signal's sell
        if p.amount == 0:
            move_position(p, PositionStatus.CLOSED)
            p.closed_at = now
            p.exit_reason = order.reason  # type: ignore[assignment]
            if order.reason == "signal":
                p.exit_signal_id = order.signal_id
            self.state.index.remove(p)
            exposure.closed(p.token)
            self.state.books[p.agent_id].live.pop(p.id)
            agent.last_exit_at[p.token] = now
            self.state.ledger.count_round_trip(agent, p.realized_pnl)
            self.state._emit(ev.PositionClosed(ts=now, position=msgspec.structs.replace(p)))
            self.state._score_close(p, agent, now)
            self.state._forget_closed(p)
        else:
            move_position(p, PositionStatus.OPEN)
            self.state.index.rearm(p, now, fresh=True)
            self.state._emit(ev.PositionChanged(ts=now, position=self.state._snapshot(p)))
        self.state._balance_changed(agent.id, bal, now)
        if fill.charge:
            self._charge_fee(order, fill.charge, now)
