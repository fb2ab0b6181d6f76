"""Pre-trade checks (engine/risk.py): every refusal, on both sides of its boundary, with exact
numbers; and buy sizing in atomic units (fixed, percent of balance, tiers, reserve, per-token
cap)."""

from __future__ import annotations

from typing import Any

import pytest
from tradingd.engine.config import AgentConfig, config_from_builtins
from tradingd.engine.model import Agent, Performance, Signal
from tradingd.engine.risk import DAY_MS, filter_reason, limit_reason, size_buy

TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"
OTHER = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
NOW = 1_767_225_600_000 + 12 * 3_600_000  # noon UTC
TODAY = NOW // DAY_MS
SOL = 10**9  # lamports


def cfg(**sections: Any) -> AgentConfig:
    return config_from_builtins(sections)


def signal(token: str = TOKEN, strength: int = 3, type_: str = "breakout") -> Signal:
    return Signal(
        id="sig-1",
        token=token,
        strength=strength,
        type=type_,
        received_at=NOW,
        expires_at=NOW + 30_000,
    )


def agent(config: AgentConfig, **fields: Any) -> Agent:
    return Agent(
        id="agt-1", name="a", venue="paper", quote="SOL", quote_decimals=9, config=config, **fields
    )


# -- signal filters -------------------------------------------------------------------------


def test_a_signal_weaker_than_min_strength_is_filtered_and_one_at_it_passes() -> None:
    c = cfg(signals={"min_strength": 3})
    assert filter_reason(c, signal(strength=2), None) == "strength_below_min"
    assert filter_reason(c, signal(strength=3), None) is None


def test_a_type_outside_the_listed_types_is_filtered_and_no_list_passes_all() -> None:
    c = cfg(signals={"types": ["breakout", "volume"]})
    assert filter_reason(c, signal(type_="news"), None) == "type_filtered"
    assert filter_reason(c, signal(type_="volume"), None) is None
    assert filter_reason(cfg(), signal(type_="news"), None) is None


def test_an_allow_list_admits_only_its_tokens() -> None:
    c = cfg(signals={"token_filter": "allow", "tokens": [TOKEN]})
    assert filter_reason(c, signal(OTHER), None) == "token_not_allowed"
    assert filter_reason(c, signal(TOKEN), None) is None


def test_a_deny_list_refuses_only_its_tokens() -> None:
    c = cfg(signals={"token_filter": "deny", "tokens": [TOKEN]})
    assert filter_reason(c, signal(TOKEN), None) == "token_denied"
    assert filter_reason(c, signal(OTHER), None) is None


def test_liquidity_below_the_minimum_or_unknown_is_refused_and_at_it_passes() -> None:
    c = cfg(signals={"min_liquidity_usd": 50_000})
    assert filter_reason(c, signal(), None) == "liquidity_unknown"
    assert filter_reason(c, signal(), 49_999.99) == "liquidity_below_min"
    assert filter_reason(c, signal(), 50_000.0) is None


def test_liquidity_is_not_checked_when_the_caller_says_so() -> None:
    c = cfg(signals={"min_liquidity_usd": 50_000})
    assert filter_reason(c, signal(), None, check_liquidity=False) is None


def test_the_first_failing_filter_is_the_reason_given() -> None:
    c = cfg(signals={"min_strength": 4, "token_filter": "deny", "tokens": [TOKEN]})
    assert filter_reason(c, signal(TOKEN, strength=1), None) == "strength_below_min"


# -- position limits, cooldown, daily loss ----------------------------------------------------


def test_max_open_positions_refuses_at_the_limit_and_passes_below_it() -> None:
    a = agent(cfg(limits={"max_open_positions": 2, "max_positions_per_token": 5}))
    assert limit_reason(a, TOKEN, 1, 0, NOW) is None
    assert limit_reason(a, TOKEN, 2, 0, NOW) == "max_open_positions"


def test_max_positions_per_token_refuses_at_the_limit_and_passes_below_it() -> None:
    a = agent(cfg(limits={"max_open_positions": 10, "max_positions_per_token": 2}))
    assert limit_reason(a, TOKEN, 1, 1, NOW) is None
    assert limit_reason(a, TOKEN, 2, 2, NOW) == "max_positions_per_token"


def test_token_cooldown_refuses_until_exactly_its_seconds_after_the_last_exit() -> None:
    a = agent(cfg(limits={"token_cooldown_s": 10}), last_exit_at={TOKEN: NOW - 9_999})
    assert limit_reason(a, TOKEN, 0, 0, NOW) == "token_cooldown"
    assert limit_reason(a, TOKEN, 0, 0, NOW + 1) is None  # 10_000 ms after the exit
    assert limit_reason(a, OTHER, 0, 0, NOW) is None  # per token


def test_no_cooldown_configured_means_a_token_can_be_bought_right_after_an_exit() -> None:
    a = agent(cfg(), last_exit_at={TOKEN: NOW})
    assert limit_reason(a, TOKEN, 0, 0, NOW) is None


def day(realized: int, start_equity: int = 10 * SOL, day_number: int = TODAY) -> Performance:
    return Performance(day=day_number, day_start_equity=start_equity, day_realized=realized)


def test_daily_loss_limit_refuses_once_the_day_lost_exactly_its_percent() -> None:
    limits = cfg(limits={"daily_loss_limit_pct": 5})
    # 5% of 10 SOL is 0.5 SOL
    assert limit_reason(agent(limits, perf=day(-500_000_000)), TOKEN, 0, 0, NOW) == (
        "daily_loss_limit"
    )
    assert limit_reason(agent(limits, perf=day(-499_999_999)), TOKEN, 0, 0, NOW) is None


def test_daily_loss_limit_in_decimal_percent_is_exact() -> None:
    # 0.9% of 10 SOL is 0.09 SOL; in floats 0.9 / 100 * 10**10 = 90000000.00000001, which an
    # exactly-at-the-limit loss would not reach
    limits = cfg(limits={"daily_loss_limit_pct": 0.9})
    assert limit_reason(agent(limits, perf=day(-90_000_000)), TOKEN, 0, 0, NOW) == (
        "daily_loss_limit"
    )
    assert limit_reason(agent(limits, perf=day(-89_999_999)), TOKEN, 0, 0, NOW) is None


def test_daily_loss_of_an_earlier_day_does_not_refuse_today() -> None:
    limits = cfg(limits={"daily_loss_limit_pct": 5})
    yesterday = day(-5 * SOL, day_number=TODAY - 1)
    assert limit_reason(agent(limits, perf=yesterday), TOKEN, 0, 0, NOW) is None


def test_daily_loss_limit_needs_a_starting_equity_and_a_configured_limit() -> None:
    limits = cfg(limits={"daily_loss_limit_pct": 5})
    assert limit_reason(agent(limits, perf=day(-SOL, start_equity=0)), TOKEN, 0, 0, NOW) is None
    assert limit_reason(agent(cfg(), perf=day(-10 * SOL)), TOKEN, 0, 0, NOW) is None


def test_a_profitable_day_never_trips_the_daily_loss_limit() -> None:
    limits = cfg(limits={"daily_loss_limit_pct": 5})
    assert limit_reason(agent(limits, perf=day(3 * SOL)), TOKEN, 0, 0, NOW) is None


# -- sizing -----------------------------------------------------------------------------------


def test_fixed_sizing_spends_the_configured_amount() -> None:
    assert size_buy(cfg(sizing={"amount": "500000000"}), SOL, 0) == (500_000_000, None)


def test_balance_pct_sizing_rounds_down_to_the_atomic_unit() -> None:
    # 20% of 1_000_000_007 lamports is 200_000_001.4
    c = cfg(sizing={"mode": "balance_pct", "balance_pct": 20})
    assert size_buy(c, 1_000_000_007, 0) == (200_000_001, None)


def test_balance_pct_of_a_balance_too_small_for_one_unit_is_amount_zero() -> None:
    c = cfg(sizing={"mode": "balance_pct", "balance_pct": 20})
    assert size_buy(c, 4, 0) == (0, "amount_zero")  # 0.8 lamports
    assert size_buy(c, 5, 0) == (1, None)


TIERS = {
    "mode": "tiers",
    "tiers": [
        {"min_balance": "1000000000", "amount": "100000000"},
        {"min_balance": "5000000000", "amount": "900000000"},
    ],
}


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (999_999_999, (0, "no_tier_for_balance")),
        (1_000_000_000, (100_000_000, None)),
        (4_999_999_999, (100_000_000, None)),
        (5_000_000_000, (900_000_000, None)),
    ],
)
def test_tier_sizing_takes_the_highest_tier_the_balance_reaches(
    available: int, expected: tuple[int, str | None]
) -> None:
    assert size_buy(cfg(sizing=TIERS), available, 0) == expected


def test_min_reserve_is_never_spent() -> None:
    c = cfg(sizing={"amount": "500000000", "min_reserve": "500000000"})
    assert size_buy(c, SOL, 0) == (500_000_000, None)  # exactly the reserve left
    assert size_buy(c, SOL - 1, 0) == (0, "insufficient_balance")


def test_an_empty_balance_is_insufficient() -> None:
    assert size_buy(cfg(sizing={"amount": "1"}), 0, 0) == (0, "insufficient_balance")


def test_max_per_token_caps_the_buy_at_what_is_left_under_it() -> None:
    c = cfg(sizing={"amount": "500000000", "max_per_token": "600000000"})
    assert size_buy(c, 10 * SOL, 0) == (500_000_000, None)
    assert size_buy(c, 10 * SOL, 200_000_000) == (400_000_000, None)
    assert size_buy(c, 10 * SOL, 599_999_999) == (1, None)
    assert size_buy(c, 10 * SOL, 600_000_000) == (0, "max_per_token")
