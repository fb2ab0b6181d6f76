"""Numbers for people (adapters/units.py): atomic amounts in decimal units, prices without noise."""

from __future__ import annotations

import pytest
from tradingd.adapters import units


@pytest.mark.parametrize(
    ("atomic", "decimals", "asset", "text"),
    [
        (100_000_000, 9, "SOL", "0.1 SOL"),
        (500_520_000, 5, "BONK", "5,005.2 BONK"),
        (5_000_000_000, 9, "SOL", "5 SOL"),
        (1, 9, "SOL", "0.000000001 SOL"),
        (0, 6, "USDC", "0 USDC"),
        (-12_000_000, 9, "SOL", "-0.012 SOL"),
        (1_234_567_890_123_456_789_012_345, 6, "X", "1,234,567,890,123,456,789.012345 X"),
        (42, 0, "N", "42 N"),
    ],
)
def test_atomic_amounts_render_in_decimal_units_with_thousands_separators(
    atomic, decimals, asset, text
):
    assert units.amount(atomic, decimals, asset) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.000020200000000000003, "0.0000202"),
        (0.1 + 0.2, "0.3"),
        (1.7, "1.7"),
        (150.0, "150"),
        (1.0101010101, "1.0101"),
        (123456.789, "123,457"),
        (123456789.0, "123,457,000"),
        (1e-12, "0.000000000001"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (float("inf"), "inf"),
    ],
)
def test_prices_have_six_significant_digits_no_float_noise_and_no_exponent(value, text):
    assert units.price(value) == text


def test_usd_prices_and_short_mints():
    assert units.usd(0.000020200000000000003) == "$0.0000202"
    assert units.usd(-1.5) == "-$1.5"
    assert units.price(1.23456789, digits=3) == "1.23"
    assert units.short_mint("DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263") == "DezX…B263"
    assert units.short_mint("BONK") == "BONK"
    assert units.short_mint("binance:BTC/USDT") == "BTC/USDT"  # the base, not "bina…USDT"
