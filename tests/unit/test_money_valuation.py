"""The one valuation of a held token amount in the quote (exact, rounded down once) and the
float forms for display and metrics (the exact value rounded once to the nearest float)."""

from tradingd.engine.money import market_value, units_float, usd_float


def test_market_value_is_exact_and_rounds_down_once() -> None:
    # 5_005_200_000 BONK atomic (6 decimals) at $0.0000202, SOL at $150: 0.000674033... SOL
    assert market_value(5_005_200_000, 6, 0.0000202, 150.0, 9) == 674_033
    # 1 token unit at 1/3 of the quote: 0.333... quote units -> 333 with 3 decimals, never 334
    assert market_value(1_000, 3, 1.0, 3.0, 3) == 333


def test_market_value_is_none_without_a_price() -> None:
    assert market_value(1_000, 3, None, 3.0, 3) is None
    assert market_value(1_000, 3, 1.0, None, 3) is None
    assert market_value(1_000, 3, 0.0, 3.0, 3) is None


def test_units_float_is_the_nearest_float() -> None:
    assert units_float(1_500_000_000, 9) == 1.5
    assert units_float(-3, 1) == -0.3
    assert units_float(20_200, 9) == 2.02e-05


def test_usd_float_rounds_once() -> None:
    # 0.3 units at $0.1: the float product 0.3 * 0.1 is 0.030000000000000002
    assert usd_float(3, 1, 0.1) == 0.03
    assert usd_float(1_500_000_000, 9, 150.0) == 225.0
