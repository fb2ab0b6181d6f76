"""The fill of a landed Jupiter swap, from the wallet's balance deltas: the book moves exactly as
the wallet did, never past the reservation, whatever the fees (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tradingd.adapters.venues.jupiter.fills import fill_from_deltas, usd_per_token
from tradingd.engine.model import Order, SwapSubmission

U64 = 2**64 - 1


def _order(side: str, amount_in: int) -> Order:
    return Order(
        id="o1", agent_id="a", position_id="p", side=side, purpose="entry" if side == "buy" else "exit",  # type: ignore[arg-type]
        token="T", amount_in=amount_in, reason="r", created_at=0, venue="jupiter", quote="SOL",
        quote_decimals=9, token_decimals=6, slippage_bps=100, fee_bps=0, decision_price_usd=1.0,
    )  # fmt: skip


def _swap(in_amount: int) -> SwapSubmission:
    return SwapSubmission(signature="sig", last_valid_block_height=1, transaction="", slippage_bps=1,
                          in_amount=in_amount, quoted_out=1, min_out=1, attempt=1, signed_at=0)  # fmt: skip


@given(
    reservation=st.integers(10_000, U64 // 4),
    swap_share=st.floats(0.0, 1.0),
    fee=st.integers(5_000, 2_000_000),
    rent=st.sampled_from([0, 2_039_280]),
    lost=st.integers(0, 100_000),
    tokens=st.integers(1, U64),
)
def test_a_buy_books_every_lamport_that_left_within_the_reservation(
    reservation, swap_share, fee, rent, lost, tokens
) -> None:
    swap_in = int(reservation * swap_share)
    delta = -(swap_in + fee + rent)
    fill, over = fill_from_deltas(_order("buy", reservation), _swap(swap_in), delta, fee, tokens,
                                  lost, 150.0, 7)  # fmt: skip
    assert fill.amount_in <= reservation and fill.amount_out == tokens
    assert fill.charge == over >= 0
    assert fill.amount_in + fill.charge == swap_in + fee + rent + lost  # nothing lost or invented
    assert fill.fee == fee + lost


@given(
    sold=st.integers(1, U64 // 2),
    proceeds=st.integers(0, U64 // 2),
    fee=st.integers(5_000, 2_000_000),
    lost=st.integers(0, 100_000),
)
def test_a_sell_books_the_lamports_received_net_of_every_fee_even_below_zero(
    sold, proceeds, fee, lost
) -> None:
    delta = proceeds - fee  # what the wallet's lamports moved
    fill, over = fill_from_deltas(_order("sell", sold), _swap(sold), delta, fee, -sold, lost,
                                  150.0, 7)  # fmt: skip
    assert fill.amount_in == sold and fill.amount_out >= 0 and fill.charge == over >= 0
    assert fill.amount_out - fill.charge == delta - lost  # the book moves as the wallet did


def test_the_fill_price_is_the_swaps_exact_rate_at_the_sol_price() -> None:
    # 0.5 SOL for 750,000 whole tokens at 150 USD/SOL: 0.0001 USD per token.
    assert usd_per_token(500_000_000, 750_000 * 10**6, 6, 9, 150.0, None) == 0.0001
    assert usd_per_token(0, 1, 6, 9, 150.0, 0.5) == 0.5  # nothing to price: the decision price
