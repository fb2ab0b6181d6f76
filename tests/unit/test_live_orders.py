"""The engine's side of live venues: a signed swap recorded on its order, wallets that gate
buys, fees of failed on-chain attempts and fills' extra charges booked exactly."""

from __future__ import annotations

import pytest
from tradingd.engine import events as ev
from tradingd.engine.config import config_from_builtins
from tradingd.engine.errors import InvariantViolation, NotFound
from tradingd.engine.model import Fill, SwapSubmission

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]
DEPOSIT = 10 * 10**9
SIZE = 500_000_000


def live(h: Harness, wallet: str = "w1") -> str:
    cfg = config_from_builtins({"sizing": {"mode": "fixed", "amount": str(SIZE)}})
    agent = h.engine.create_agent("live", "jupiter", cfg, "SOL", wallet)
    h.engine.deposit(agent.id, "SOL", DEPOSIT)
    h.engine.set_wallet_unlocked(wallet, True)
    h.collect()
    h.sol()
    h.tick(T, 0.0001)
    return agent.id


def swap(attempt: int = 1) -> SwapSubmission:
    return SwapSubmission(signature=f"sig{attempt}", last_valid_block_height=100,
                          transaction="AQID", slippage_bps=100, in_amount=1, quoted_out=1,
                          min_out=1, attempt=attempt, signed_at=0)  # fmt: skip


def test_buys_of_a_locked_wallet_are_skipped_and_resume_on_unlock() -> None:
    h = Harness(Clock())
    agent = live(h)
    h.engine.set_wallet_unlocked("w1", False)
    record, _ = h.signal(T)
    assert [(x.status, x.reason) for x in record.executions.values()] == [
        ("skipped", "wallet_locked")
    ]
    h.engine.set_wallet_unlocked("w1", True)
    record, _ = h.signal(T)
    assert [x.status for x in record.executions.values()] == ["pending"]
    assert h.engine.ledger.balance(agent, "SOL").reserved == SIZE


def test_a_paper_agent_naming_a_wallet_is_not_gated() -> None:
    h = Harness(Clock())
    agent = h.engine.create_agent("p", "paper", config_from_builtins({}), "SOL", "w9")
    h.engine.deposit(agent.id, "SOL", DEPOSIT)
    h.sol()
    h.tick(T, 0.0001)
    record, _ = h.signal(T)
    assert [x.status for x in record.executions.values()] == ["pending"]


def test_a_recorded_swap_is_on_the_order_and_in_one_event() -> None:
    h = Harness(Clock())
    live(h)
    h.signal(T)
    (order,) = h.pending
    h.engine.on_swap_submitted(order.id, swap(1))
    out = h.engine.drain()
    (event,) = out.events
    assert isinstance(event, ev.SwapSubmitted) and event.order.swap == swap(1)
    assert h.engine.orders[order.id].swap == swap(1)


def test_a_swap_attempt_must_be_newer_and_its_order_in_flight() -> None:
    h = Harness(Clock())
    live(h)
    h.signal(T)
    (order,) = h.pending
    h.engine.on_swap_submitted(order.id, swap(2))
    with pytest.raises(InvariantViolation):
        h.engine.on_swap_submitted(order.id, swap(2))
    with pytest.raises(NotFound):
        h.engine.on_swap_submitted("ord-unknown", swap(3))


def test_a_failed_buy_releases_its_reservation_and_books_the_fees_it_cost() -> None:
    h = Harness(Clock())
    agent = live(h)
    h.signal(T)
    (order,) = h.pending
    h.engine.on_order_failed(order.id, "slippage_exceeded", fee=10_000)
    bal = h.engine.ledger.balance(agent, "SOL")
    assert (bal.total, bal.reserved) == (DEPOSIT - 10_000, 0)
    assert h.engine.agents[agent].perf.realized_pnl == -10_000


def test_fees_beyond_the_free_balance_are_alerted_not_invented() -> None:
    h = Harness(Clock())
    cfg = config_from_builtins({"sizing": {"mode": "fixed", "amount": str(SIZE)}})
    agent = h.engine.create_agent("live", "jupiter", cfg, "SOL", "w1").id
    h.engine.deposit(agent, "SOL", SIZE)
    h.engine.set_wallet_unlocked("w1", True)
    h.sol()
    h.tick(T, 0.0001)
    h.signal(T)
    (order,) = h.pending
    h.engine.on_order_failed(order.id, "transaction_failed", fee=SIZE + 7)
    out = h.engine.drain()
    alerts = [e for e in out.events if isinstance(e, ev.Alert)]
    assert [a.code for a in alerts] == ["fee_unbooked"] and alerts[0].details["unbooked"] == 7
    assert h.engine.ledger.balance(agent, "SOL").total == 0


def test_a_sell_charge_takes_what_the_proceeds_could_not_carry() -> None:
    h = Harness(Clock())
    agent = live(h)
    h.signal(T)
    (buy,) = h.pending
    h.pending.clear()
    h.engine.on_fill(Fill(order_id=buy.id, amount_in=SIZE, amount_out=10**9, price_usd=0.0001,
                          fee=5_000, venue_ref="sig", ts=h.clock.now))  # fmt: skip
    h.collect()
    (position,) = h.engine.live_positions[agent].values()
    h.engine.close_position(position.id)
    h.collect()
    (sell,) = h.pending
    before = h.engine.ledger.balance(agent, "SOL").total
    h.engine.on_fill(Fill(order_id=sell.id, amount_in=10**9, amount_out=0, price_usd=0.0,
                          fee=5_000, venue_ref="sig2", ts=h.clock.now, charge=4_999))  # fmt: skip
    assert h.engine.ledger.balance(agent, "SOL").total == before - 4_999
    assert h.engine.live_positions[agent] == {}
