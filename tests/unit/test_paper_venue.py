"""paper_fill: slippage and fee in bps, decimals and quote conversion, rejections, and the
invariants a settled fill must keep (no negative proceeds, the whole reservation accounted)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.venues.paper import PaperRejected, paper_fill
from tradingd.engine.model import Order

TOKEN = demo_mint("PAPERTEST")
NOW = 1_767_225_600_000


def order(
    side: str = "buy",
    amount_in: int = 10**9,
    *,
    slippage_bps: int = 0,
    fee_bps: int = 0,
    token_decimals: int = 6,
    quote: str = "SOL",
    quote_decimals: int = 9,
) -> Order:
    return Order(
        id="ord_1",
        agent_id="agt_1",
        position_id="pos_1",
        side=side,
        purpose="entry" if side == "buy" else "exit",  # type: ignore[arg-type]
        token=TOKEN,
        amount_in=amount_in,
        reason="test",
        created_at=NOW,
        venue="paper",
        quote=quote,
        quote_decimals=quote_decimals,
        token_decimals=token_decimals,
        slippage_bps=slippage_bps,
        fee_bps=fee_bps,
    )


def test_buy_without_slippage_or_fee_converts_quote_to_tokens_at_the_price() -> None:
    # 1 SOL at 150 USD buys 150 USD of a 2 USD token: 75 tokens of 6 decimals.
    fill = paper_fill(order("buy", 10**9), 2.0, 150.0, NOW)
    assert (fill.amount_in, fill.amount_out, fill.fee, fill.price_usd) == (
        10**9,
        75_000_000,
        0,
        2.0,
    )


def test_buy_slippage_raises_the_fill_price_by_the_bps() -> None:
    # 2 USD + 1% = 2.02 USD; 150 USD / 2.02 = 74.257425742... tokens, rounded down
    fill = paper_fill(order("buy", 10**9, slippage_bps=100), 2.0, 150.0, NOW)
    assert fill.price_usd == 2.02
    assert (fill.amount_in, fill.amount_out, fill.fee) == (10**9, 74_257_425, 0)


def test_buy_fee_is_taken_in_bps_of_the_quote_before_conversion() -> None:
    fill = paper_fill(order("buy", 10**9, fee_bps=30), 2.0, 150.0, NOW)
    assert fill.fee == 3_000_000  # 0.30% of 1 SOL
    assert fill.amount_in == 10**9  # the whole reservation is spent, fee included
    # 0.997 SOL x 150 USD = 149.55 USD / 2 USD = 74.775 tokens
    assert fill.amount_out == 74_775_000


def test_sell_slippage_lowers_the_fill_price_and_fee_comes_off_the_proceeds() -> None:
    # 75 tokens at 2 USD less 1% = 148.5 USD = 0.99 SOL gross; fee 0.5% of that = 0.00495 SOL.
    fill = paper_fill(order("sell", 75_000_000, slippage_bps=100, fee_bps=50), 2.0, 150.0, NOW)
    assert fill.price_usd == 1.98
    assert (fill.amount_in, fill.fee, fill.amount_out) == (75_000_000, 4_950_000, 985_050_000)


def test_sell_fee_rounds_down_to_the_atomic_unit() -> None:
    # 1 token (0 decimals) at 1 USD into 1 USD USDC (6 decimals): 1_000_000 gross;
    # 33 bps of it is 3300 exactly, 7 bps of 1_000_001 would be 700.0007: the fee never rounds up
    fill = paper_fill(
        order("sell", 1, fee_bps=33, token_decimals=0, quote="USDC", quote_decimals=6),
        1.0,
        1.0,
        NOW,
    )
    assert (fill.fee, fill.amount_out) == (3_300, 996_700)
    odd = paper_fill(
        order("sell", 1_000_001, fee_bps=7, token_decimals=6, quote="USDC", quote_decimals=6),
        1.0,
        1.0,
        NOW,
    )
    assert (odd.fee, odd.amount_out) == (700, 999_301)


@pytest.mark.parametrize(
    ("decimals", "atomic"),
    [(0, 50), (2, 5_000), (6, 50_000_000), (9, 50_000_000_000), (12, 50_000_000_000_000)],
)
def test_token_decimals_scale_the_atomic_amount_bought(decimals: int, atomic: int) -> None:
    # 1 SOL = 150 USD buys 50 tokens of a 3 USD token, whatever its decimals
    fill = paper_fill(order("buy", 10**9, token_decimals=decimals), 3.0, 150.0, NOW)
    assert fill.amount_out == atomic


def test_a_buy_is_computed_from_the_prices_as_written_not_float_products() -> None:
    # 0.3 USDC of a 0.1 USD token is exactly 3 tokens (in floats 0.3 / 0.1 = 2.9999999999999996)
    fill = paper_fill(
        order("buy", 300_000, token_decimals=0, quote="USDC", quote_decimals=6), 0.1, 1.0, NOW
    )
    assert fill.amount_out == 3


def test_a_buy_rounds_the_tokens_down_never_up() -> None:
    # 1 SOL = 150 USD of a 7 USD token: 21.428571428... tokens, 6 decimals
    fill = paper_fill(order("buy", 10**9), 7.0, 150.0, NOW)
    assert fill.amount_out == 21_428_571


def test_quote_conversion_uses_the_quote_usd_price() -> None:
    # 10 USDC (6 decimals, 1 USD) of a 0.5 USD token: 20 tokens.
    usdc = paper_fill(order("buy", 10_000_000, quote="USDC", quote_decimals=6), 0.5, 1.0, NOW)
    assert usdc.amount_out == 20 * 10**6
    # The same 20 tokens sold into SOL at 200 USD: 10 USD = 0.05 SOL.
    sol = paper_fill(order("sell", 20 * 10**6), 0.5, 200.0, NOW)
    assert sol.amount_out == 50_000_000


def test_buy_too_small_for_one_atomic_token_is_rejected() -> None:
    with pytest.raises(PaperRejected, match="zero tokens"):
        paper_fill(order("buy", 1, token_decimals=0), 1000.0, 150.0, NOW)


def test_buy_receiving_more_than_the_u64_maximum_is_rejected() -> None:
    # The attack's case: 0.1 SOL at $150 for a token at $1e-12 with 9 decimals would be
    # 14,851,485,148,514,851,485,148 atomic units (23 digits); SPL amounts are u64.
    with pytest.raises(PaperRejected, match="u64 maximum"):
        paper_fill(order("buy", 10**8, token_decimals=9), 1e-12, 150.0, NOW)
    # $15 at $1e-9 with 9 decimals is 1.5e19 atomic units: below 2**64 - 1 (~1.84e19), filled
    fill = paper_fill(order("buy", 10**8, token_decimals=9), 1e-9, 150.0, NOW)
    assert fill.amount_out == 15 * 10**18


@pytest.mark.parametrize(
    ("token_usd", "quote_usd"),
    [(None, 150.0), (2.0, None), (0.0, 150.0), (-1.0, 150.0), (2.0, 0.0)],
)
def test_missing_or_non_positive_prices_are_rejected(
    token_usd: float | None, quote_usd: float | None
) -> None:
    with pytest.raises(PaperRejected, match="no price"):
        paper_fill(order("buy"), token_usd, quote_usd, NOW)


def test_the_same_order_and_prices_give_the_same_fill() -> None:
    o = order("buy", 123_456_789, slippage_bps=75, fee_bps=25)
    assert paper_fill(o, 0.0123, 151.7, NOW) == paper_fill(o, 0.0123, 151.7, NOW)


prices = st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False)
bps_slippage = st.integers(min_value=0, max_value=5000)
bps_fee = st.integers(min_value=0, max_value=1000)
decimals = st.integers(min_value=0, max_value=12)
atomic = st.integers(min_value=1, max_value=2**64 - 1)


@given(atomic, prices, prices, bps_slippage, bps_fee, decimals, decimals)
def test_sells_never_produce_negative_proceeds_or_a_fee_above_gross(
    amount: int, token_usd: float, quote_usd: float, slip: int, fee: int, tdec: int, qdec: int
) -> None:
    o = order(
        "sell", amount, slippage_bps=slip, fee_bps=fee, token_decimals=tdec, quote_decimals=qdec
    )
    try:
        fill = paper_fill(o, token_usd, quote_usd, NOW)
    except PaperRejected as exc:  # proceeds that round to zero, or that no u64 balance can hold,
        # are refused, never booked
        assert "zero quote" in str(exc) or "above the u64 maximum" in str(exc)
        return
    assert fill.amount_out + fill.fee > 0
    assert 0 <= fill.fee <= fill.amount_out + fill.fee
    assert fill.amount_in == amount


@given(atomic, prices, prices, bps_slippage, bps_fee, decimals, decimals)
def test_buys_spend_exactly_the_reservation_and_receive_tokens_or_are_rejected(
    amount: int, token_usd: float, quote_usd: float, slip: int, fee: int, tdec: int, qdec: int
) -> None:
    o = order(
        "buy", amount, slippage_bps=slip, fee_bps=fee, token_decimals=tdec, quote_decimals=qdec
    )
    try:
        fill = paper_fill(o, token_usd, quote_usd, NOW)
    except PaperRejected:
        return
    assert fill.amount_in == amount
    assert fill.amount_out > 0
    assert 0 <= fill.fee <= amount
    assert fill.price_usd >= token_usd


@given(
    price=st.floats(min_value=5e-324, max_value=1e6, allow_nan=False, allow_infinity=False),
    decimals=st.integers(0, 18),
    amount_in=st.integers(1, 2**64 - 1),
)
def test_no_buy_fill_exceeds_the_u64_maximum(price: float, decimals: int, amount_in: int) -> None:
    try:
        fill = paper_fill(order("buy", amount_in, token_decimals=decimals), price, 150.0, NOW)
    except PaperRejected:
        return
    assert 0 < fill.amount_out <= 2**64 - 1
