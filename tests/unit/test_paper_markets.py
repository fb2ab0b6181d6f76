"""Paper fills of exchange markets: the book's price with slippage and fee as for a mint, sized by
the market's rules as the exchange sizes a market order (amounts in multiples of the step, never
below the least amount or notional; a whole-position sell leaves the sub-step residue).

The market throughout: binance:BTC/USDT at 8 decimals, step 0.00001 BTC (1,000 atomic), least
amount 0.00001 BTC, least notional 5 USDT (Binance's filters as CCXT loads them); quote USDT at
6 decimals, 1 USD."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.venues.paper import (
    PaperRejected,
    PaperVenue,
    market_quote_usd,
    paper_fill,
    settle_paper,
)
from tradingd.adapters.venues.paper_quotes import JupiterQuotedPaper
from tradingd.engine.assets import USDT_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Order, Signal, Tick
from tradingd.engine.money import exact, slipped

from tests.unit.harness import Clock

BTC = "binance:BTC/USDT"
RULES = InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0)
USDT = 10**6
NOW = 1_767_225_600_000


def order(
    side: str = "buy",
    amount_in: int = 100 * USDT,
    *,
    slippage_bps: int = 0,
    fee_bps: int = 0,
    quote: str = "USDT",
    quote_decimals: int = 6,
    limit_price_usd: float | None = None,
) -> Order:
    return Order(
        id="ord_1",
        agent_id="agt_1",
        position_id="pos_1",
        side=side,
        purpose="entry" if side == "buy" else "exit",  # type: ignore[arg-type]
        token=BTC,
        amount_in=amount_in,
        reason="test",
        created_at=NOW,
        venue="paper",
        quote=quote,
        quote_decimals=quote_decimals,
        token_decimals=8,
        slippage_bps=slippage_bps,
        fee_bps=fee_bps,
        limit_price_usd=limit_price_usd,
    )


def fill(o: Order, price: float = 65_000.0, quote_usd: float = 1.0, rules=RULES):
    return paper_fill(o, price, quote_usd, NOW, rules)


# -- buys ------------------------------------------------------------------------------------


def test_buy_receives_tokens_rounded_down_to_the_step():
    # 100 USDT at 65,000 moved 10 bps up: 65,065; 100/65,065 BTC = 0.0015369246 -> 0.00153
    f = fill(order(slippage_bps=10))
    assert f.price_usd == 65_065.0
    assert f.amount_out == (100 * 10**8 // 65_065) // 1_000 * 1_000 == 153_000
    # spends what 0.00153 BTC cost at 65,065, exactly: 99.54945 USDT; the rest is released
    assert f.amount_in == 99_549_450
    assert f.fee == 0


def test_buy_fee_is_taken_on_what_the_fill_cost():
    f = fill(order(slippage_bps=10, fee_bps=10))
    # 99.9 USDT after the fee buys 0.0015353877 BTC -> 0.00153, costing 99.54945 USDT
    assert f.amount_out == 153_000
    assert f.fee == 99_549_450 * 10 // 10_000 == 99_549
    assert f.amount_in == 99_549_450 + 99_549


def test_buy_cost_rounds_up_to_a_quote_atomic_unit():
    # 10 USDT at 65,432.17 buys 0.00015283 BTC -> 0.00015, worth 9.8148255 USDT: 9.814826 paid
    f = fill(
        order(amount_in=10 * USDT), price=65_432.17, rules=InstrumentRules(decimals=8, step=1_000)
    )
    assert f.amount_out == 15_000
    assert f.amount_in == 9_814_826


def test_buy_of_another_quote_converts_through_its_price():
    # a paper agent quoted in SOL (9 decimals, 150 USD) buys 1 SOL of BTC at 65,000
    f = fill(order(amount_in=10**9, quote="SOL", quote_decimals=9), quote_usd=150.0)
    assert f.amount_out == 230_000  # 150/65,000 BTC = 0.0023076923 -> 0.0023
    assert f.amount_in == -(-230_000 * 65_000 * 10**9 // (150 * 10**8))  # 0.996666667 SOL


def test_buy_below_the_least_notional_fails_below_venue_minimum():
    # 5 USDT buys 0.0000769 BTC -> 0.00007 BTC = 4.55 USDT: under the 5 USDT notional
    with pytest.raises(PaperRejected) as caught:
        fill(order(amount_in=5 * USDT))
    assert caught.value.message == "below_venue_minimum"
    assert caught.value.transient is False
    assert caught.value.details["amount"] == "7000"


def test_buy_below_one_step_fails_below_venue_minimum():
    rules = InstrumentRules(decimals=8, step=1_000, min_amount=1_000)
    with pytest.raises(PaperRejected, match="below_venue_minimum"):
        fill(order(amount_in=USDT // 2), rules=rules)  # 0.5 USDT: 0.0000077 BTC
    assert fill(order(amount_in=USDT), rules=rules).amount_out == 1_000


def test_limit_buy_above_its_limit_still_fails_limit_not_met():
    with pytest.raises(PaperRejected, match="limit_not_met"):
        fill(order(limit_price_usd=64_000.0))
    assert fill(order(slippage_bps=100, limit_price_usd=65_100.0)).price_usd == 65_100.0


# -- sells -----------------------------------------------------------------------------------


def test_whole_position_sell_sends_the_floor_and_reports_the_whole_amount():
    # 0.00153699 BTC held: 0.00153 is sold at 64,935 (10 bps down); 0.00000699 stays behind
    f = fill(order("sell", 153_699, slippage_bps=10))
    assert f.amount_in == 153_699
    assert f.amount_out == 153_000 * 64_935 // 100 == 99_350_550
    assert f.price_usd == 64_935.0


def test_sell_fee_is_taken_from_the_proceeds():
    f = fill(order("sell", 153_000, fee_bps=10))
    gross = 153_000 * 65_000 // 100
    assert f.fee == gross * 10 // 10_000
    assert f.amount_out == gross - f.fee


@pytest.mark.parametrize(
    ("amount", "why"),
    [(999, "under one step"), (7_000, "0.00007 BTC = 4.55 USDT: under the 5 USDT notional")],
)
def test_sell_below_the_minimum_fails_below_venue_minimum(amount, why):
    with pytest.raises(PaperRejected) as caught:
        fill(order("sell", amount))
    assert caught.value.message == "below_venue_minimum", why
    assert not caught.value.transient


def test_a_mint_or_a_market_without_rules_fills_as_before():
    plain = order(slippage_bps=10)
    assert fill(plain, rules=None) == paper_fill(plain, 65_000.0, 1.0, NOW)
    assert fill(plain, rules=None).amount_out == 153_692  # no step
    assert fill(plain, rules=None).amount_in == 100 * USDT


# -- the venue -------------------------------------------------------------------------------


def test_paper_venue_sizes_markets_by_rules_of():
    prices = {BTC: 65_000.0, USDT_MINT: 1.0}
    venue = PaperVenue(prices.get, lambda: NOW, rules_of={BTC: RULES}.get)
    f = venue.execute_now(order(slippage_bps=10))
    assert (f.amount_out, f.amount_in) == (153_000, 99_549_450)
    unsized = PaperVenue(prices.get, lambda: NOW)
    assert unsized.execute_now(order(slippage_bps=10)).amount_out == 153_692


def test_market_quote_priced_by_a_feed_moves_the_notional():
    # USDT at 0.9 USD: 0.00008 BTC at 65,000 USD is 5.78 USDT (5.2 at par)
    assert market_quote_usd(BTC, {USDT_MINT: 0.9}.get) == 0.9
    assert market_quote_usd(BTC, {}.get) == 1.0
    with pytest.raises(PaperRejected):
        paper_fill(order("sell", 7_000), 65_000.0, 1.0, NOW, RULES, 1.0)
    assert paper_fill(order("sell", 8_000), 65_000.0, 1.0, NOW, RULES, 0.9).amount_in == 8_000


def paper_engine(**config_parts: Any) -> tuple[Engine, Clock, str]:
    clock = Clock()
    engine = Engine(clock, instruments={BTC: RULES})
    parts: dict[str, Any] = {
        "sizing": {"mode": "fixed", "amount": str(100 * USDT)},
        "execution": {"slippage_bps": 10, "fee_bps": 10},
        "stop_loss": {"enabled": False},
    }
    parts.update(config_parts)
    agent = engine.create_agent("p", "paper", config_from_builtins(parts), "USDT")
    engine.deposit(agent.id, "USDT", 1_000 * USDT)
    engine.drain()
    return engine, clock, agent.id


def test_a_paper_agent_round_trip_on_a_market_through_the_engine():
    engine, clock, agent_id = paper_engine()
    engine.on_tick(Tick(BTC, 65_000.0, clock.now))
    engine.on_signal(Signal(id="s1", token=BTC, received_at=clock.now, expires_at=clock.now + 1))
    assert settle_paper(engine, clock.now) == (1, 0)
    (position,) = engine.books[agent_id].live.values()
    assert position.amount == 153_000 and position.decimals == 8
    assert engine.ledger.balance(agent_id, "USDT").total == 1_000 * USDT - 99_648_999
    clock.now += 1_000
    engine.on_tick(Tick(BTC, 66_000.0, clock.now))
    engine.on_signal(
        Signal(id="s2", token=BTC, side="sell", received_at=clock.now, expires_at=clock.now + 1)
    )
    assert settle_paper(engine, clock.now) == (1, 0)
    assert not engine.books[agent_id].live
    trades = engine.books[agent_id].trades
    assert [t.amount for t in trades] == [153_000, 153_000]
    gross = 153_000 * 65_934 // 100  # 66,000 moved 10 bps down
    assert trades[1].quote_amount == gross - gross * 10 // 10_000


# -- property --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    amount=st.integers(1, 10**14),
    price=st.decimals(min_value="0.0001", max_value="1000000", places=4).map(float),
    quote_usd=st.sampled_from([1.0, 0.9993, 150.25]),
    quote_decimals=st.sampled_from([6, 9]),
    slippage=st.integers(0, 500),
    fee=st.integers(0, 100),
    step=st.integers(1, 10**8),
    min_steps=st.integers(0, 5),
    min_cost=st.sampled_from([0.0, 1.0, 5.0, 10.0]),
)
def test_market_fills_are_whole_steps_above_the_minimum_and_never_oversell(
    side, amount, price, quote_usd, quote_decimals, slippage, fee, step, min_steps, min_cost
):
    rules = InstrumentRules(decimals=8, step=step, min_amount=step * min_steps, min_cost=min_cost)
    o = order(
        side,
        amount,
        slippage_bps=slippage,
        fee_bps=fee,
        quote="SOL" if quote_decimals == 9 else "USDT",
        quote_decimals=quote_decimals,
    )
    try:
        f = paper_fill(o, price, quote_usd, NOW, rules)
    except PaperRejected:
        return
    traded = f.amount_out if side == "buy" else rules.floor(f.amount_in)
    at = Fraction(*slipped(price, slippage if side == "buy" else -slippage))  # exact USD price
    assert traded % step == 0
    assert traded >= max(rules.min_amount, 1)
    assert not rules.notional_below_min(traded, at)  # the market's quote at 1 USD
    worth = Fraction(traded, 10**8) * at / exact(quote_usd) * 10**quote_decimals  # quote atomic
    if side == "buy":
        assert 0 < f.amount_in <= o.amount_in  # never spends more than reserved
        assert worth <= f.amount_in - f.fee < worth + 1  # paid what it got, rounded up once
    else:
        assert f.amount_in == o.amount_in  # the order's whole amount is accounted...
        assert traded <= o.amount_in  # ...but never more than held is sold
        assert worth - 1 < f.amount_out + f.fee <= worth  # proceeds of the floor amount only


async def test_paper_at_jupiter_quotes_fills_a_market_at_the_book():
    # A market has no Jupiter route: it fills as on the plain paper venue, Jupiter never asked.
    prices = {BTC: 65_000.0, USDT_MINT: 1.0}
    venue = JupiterQuotedPaper(None, prices.get, lambda: NOW, rules_of={BTC: RULES}.get)  # type: ignore[arg-type]
    f = await venue.execute(order(slippage_bps=10))
    assert (f.amount_out, f.amount_in) == (153_000, 99_549_450)
