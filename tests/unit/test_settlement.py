"""Settlement: what a fill or a failure does to balances, positions and performance, driven
through the engine's public transitions with fills written by hand (atomic units)."""

from __future__ import annotations

import pytest
from tradingd.engine.errors import InvariantViolation, NotFound
from tradingd.engine.lifecycle import OrderStatus, PositionStatus
from tradingd.engine.model import Fill, Order

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants

SOL = 10**9
T = TOKENS[0]
DEPOSIT = 10 * SOL


def fill(order: Order, amount_in: int, amount_out: int, price: float = 1.0) -> Fill:
    return Fill(
        order_id=order.id,
        amount_in=amount_in,
        amount_out=amount_out,
        price_usd=price,
        fee=0,
        venue_ref="ref",
        ts=0,
    )


def entry() -> tuple[Harness, Order]:
    h = Harness(Clock())
    h.sol()
    h.agent({"sizing": {"mode": "fixed", "amount": str(SOL)}}, deposit=DEPOSIT)
    h.tick(T, 1.0)
    h.signal(T)
    (order,) = h.pending
    h.pending.clear()
    return h, order


def opened(tokens: int = 1_000_000, spent: int = SOL) -> tuple[Harness, str]:
    h, order = entry()
    h.engine.on_fill(fill(order, spent, tokens))
    h.collect()
    return h, order.position_id


def sell(h: Harness, position_id: str, pct: float) -> Order:
    h.engine.close_position(position_id, pct)
    h.collect()
    (order,) = h.pending
    h.pending.clear()
    return order


def test_a_buy_fill_spending_less_than_reserved_gives_the_rest_back():
    h, order = entry()
    h.engine.on_fill(fill(order, SOL - 7, 1_000_000))
    bal = h.engine.ledger.balance(order.agent_id, "SOL")
    assert (bal.total, bal.reserved) == (DEPOSIT - SOL + 7, 0)
    p = h.engine.positions[order.position_id]
    assert (p.status, p.amount, p.cost, p.in_flight) == (
        PositionStatus.OPEN,
        1_000_000,
        SOL - 7,
        None,
    )
    assert order.status is OrderStatus.FILLED and order.id not in h.engine.orders


def test_a_buy_fill_above_its_reservation_is_refused():
    h, order = entry()
    with pytest.raises(InvariantViolation):
        h.engine.on_fill(fill(order, SOL + 1, 1_000_000))


def test_a_failed_entry_releases_the_whole_reservation_and_drops_the_position():
    h, order = entry()
    h.engine.on_order_failed(order.id, "rejected")
    h.collect()
    bal = h.engine.ledger.balance(order.agent_id, "SOL")
    assert (bal.total, bal.reserved) == (DEPOSIT, 0)
    assert order.position_id not in h.engine.positions
    assert order.status is OrderStatus.FAILED
    check_invariants(h)


def test_a_partial_sell_realizes_pnl_on_the_sold_slice_of_the_cost_rounded_down():
    h, pid = opened(tokens=3_000_000, spent=SOL)
    order = sell(h, pid, 100 / 3)
    assert order.amount_in == 1_000_000
    h.engine.on_fill(fill(order, 1_000_000, 400_000_000))
    h.collect()
    p = h.engine.positions[pid]
    basis = SOL * 1_000_000 // 3_000_000  # 333_333_333
    assert (p.amount, p.cost, p.realized_pnl) == (2_000_000, SOL - basis, 400_000_000 - basis)
    assert p.status is PositionStatus.OPEN
    agent = h.engine.agents[p.agent_id]
    assert agent.perf.realized_pnl == 400_000_000 - basis and agent.perf.trades == 0
    check_invariants(h)


def test_selling_everything_closes_the_position_and_counts_the_round_trip():
    h, pid = opened(tokens=1_000_000, spent=SOL)
    order = sell(h, pid, 100)
    h.engine.on_fill(fill(order, 1_000_000, SOL + 5))
    h.collect()
    p = h.engine.positions[pid]
    assert (p.status, p.amount, p.cost, p.realized_pnl) == (PositionStatus.CLOSED, 0, 0, 5)
    agent = h.engine.agents[p.agent_id]
    assert (agent.perf.trades, agent.perf.wins) == (1, 1)
    assert h.engine.ledger.balance(agent.id, "SOL").total == DEPOSIT + 5
    assert pid not in h.engine.live_positions[agent.id]
    check_invariants(h)


def test_a_sell_fill_of_more_than_the_order_is_refused():
    h, pid = opened(tokens=2_000_000)
    order = sell(h, pid, 50)
    with pytest.raises(InvariantViolation):
        h.engine.on_fill(fill(order, order.amount_in + 1, SOL))


def test_a_failed_sell_reopens_the_position_with_nothing_sold():
    h, pid = opened(tokens=2_000_000)
    order = sell(h, pid, 50)
    assert h.engine.positions[pid].status is PositionStatus.CLOSING
    h.engine.on_order_failed(order.id, "rejected")
    h.collect()
    p = h.engine.positions[pid]
    assert (p.status, p.amount, p.cost, p.in_flight) == (PositionStatus.OPEN, 2_000_000, SOL, None)
    check_invariants(h)


def test_a_fill_of_an_order_not_in_flight_is_refused():
    h, pid = opened()
    with pytest.raises(NotFound):
        h.engine.on_fill(
            Fill(
                order_id="ord_none",
                amount_in=1,
                amount_out=1,
                price_usd=1.0,
                fee=0,
                venue_ref="r",
                ts=0,
            )
        )
