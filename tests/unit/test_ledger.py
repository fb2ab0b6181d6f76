"""The ledger: balances in atomic units per agent and asset, the reservation discipline of a
buy (reserve, then settle or release), and realized performance."""

from __future__ import annotations

import pytest
from tradingd.engine.book import AgentBook
from tradingd.engine.config import config_from_builtins
from tradingd.engine.errors import InvariantViolation
from tradingd.engine.ledger import Ledger
from tradingd.engine.model import Agent
from tradingd.engine.risk import DAY_MS

SOL = 10**9


def ledger(*agent_ids: str) -> tuple[Ledger, dict[str, AgentBook]]:
    books = {
        aid: AgentBook(
            Agent(
                id=aid,
                name=aid,
                venue="paper",
                quote="SOL",
                quote_decimals=9,
                config=config_from_builtins({}),
            )
        )
        for aid in agent_ids
    }
    return Ledger(books), books


def test_a_new_agent_has_an_empty_quote_balance():
    led, _ = ledger("alpha")
    (bal,) = led.balances("alpha")
    assert (bal.asset, bal.decimals, bal.total, bal.reserved) == ("SOL", 9, 0, 0)


def test_credit_opens_a_balance_of_a_new_asset_with_its_decimals():
    led, _ = ledger("alpha")
    bal = led.credit("alpha", "USDC", 6, 2_500_000)
    assert (bal.asset, bal.decimals, bal.total) == ("USDC", 6, 2_500_000)
    assert led.credit("alpha", "USDC", 6, 1).total == 2_500_001


def test_a_negative_credit_is_refused():
    led, _ = ledger("alpha")
    with pytest.raises(InvariantViolation):
        led.credit("alpha", "SOL", 9, -1)
    assert led.balance("alpha", "SOL").total == 0


def test_an_unknown_agent_has_no_account():
    led, _ = ledger("alpha")
    assert led.balances("ghost") == []
    with pytest.raises(InvariantViolation):
        led.credit("ghost", "SOL", 9, 1)


def test_a_reservation_takes_from_available_not_from_total():
    led, _ = ledger("alpha")
    led.credit("alpha", "SOL", 9, 5 * SOL)
    bal = led.reserve("alpha", "SOL", 2 * SOL)
    assert (bal.total, bal.reserved, bal.available) == (5 * SOL, 2 * SOL, 3 * SOL)


def test_a_reservation_above_available_is_refused_and_changes_nothing():
    led, _ = ledger("alpha")
    led.credit("alpha", "SOL", 9, 5 * SOL)
    led.reserve("alpha", "SOL", 4 * SOL)
    with pytest.raises(InvariantViolation):
        led.reserve("alpha", "SOL", SOL + 1)
    bal = led.balance("alpha", "SOL")
    assert (bal.total, bal.reserved) == (5 * SOL, 4 * SOL)


def test_a_buy_that_spends_less_than_reserved_gives_the_rest_back():
    led, _ = ledger("alpha")
    led.credit("alpha", "SOL", 9, 5 * SOL)
    led.reserve("alpha", "SOL", 2 * SOL)
    bal = led.settle_buy("alpha", "SOL", 2 * SOL, 1_999_999_999)
    assert (bal.total, bal.reserved) == (5 * SOL - 1_999_999_999, 0)


def test_a_release_above_the_reservation_is_refused():
    led, _ = ledger("alpha")
    led.credit("alpha", "SOL", 9, 5 * SOL)
    led.reserve("alpha", "SOL", SOL)
    with pytest.raises(InvariantViolation):
        led.release("alpha", "SOL", SOL + 1)
    assert led.release("alpha", "SOL", SOL).reserved == 0


def test_balances_of_one_agent_are_not_another_agents():
    led, books = ledger("alpha", "beta")
    led.credit("alpha", "SOL", 9, SOL)
    assert led.balance("beta", "SOL").total == 0
    assert books["alpha"].balances["SOL"].total == SOL


def test_a_loss_is_a_drawdown_from_the_deposits_in_percent():
    _, books = ledger("alpha")
    agent = books["alpha"].agent
    agent.deposited = 1000
    Ledger(books).realize(agent, -100, 5 * DAY_MS)
    assert agent.perf.realized_pnl == -100
    assert agent.perf.max_drawdown_pct == 10.0
    assert agent.perf.day_start_equity == 1000 and agent.perf.day_realized == -100


def test_a_new_day_starts_its_counters_at_the_realized_equity():
    led, books = ledger("alpha")
    agent = books["alpha"].agent
    agent.deposited = 1000
    led.realize(agent, 300, 5 * DAY_MS)
    led.realize(agent, -50, 6 * DAY_MS + 1)
    assert (agent.perf.day, agent.perf.day_start_equity, agent.perf.day_realized) == (
        6,
        1300,
        -50,
    )
    assert agent.perf.equity_peak == 1300


def test_a_round_trip_at_zero_pnl_counts_as_a_loss():
    _, books = ledger("alpha")
    agent = books["alpha"].agent
    Ledger.count_round_trip(agent, 1)
    Ledger.count_round_trip(agent, 0)
    assert (agent.perf.trades, agent.perf.wins, agent.perf.losses) == (2, 1, 1)
