"""An order's amounts on an exchange, both ways. Its fill: Binance's answers parsed by CCXT's own
parser (no network), then turned into the engine's Fill: exact amounts, fees in base, quote or a
third currency, the whole-position sell's residue, partial fills, and the reservation
(hypothesis). Its request: a sell's step floor, a buy's cost or amount, the market's minimum."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure
from tradingd.adapters.venues.ccxt.fills import (
    ExchangeOrder,
    FeePaid,
    OrderRequest,
    decimal_of,
    order_fill,
    order_request,
    parse_order,
    with_trades,
)
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Order

MARKET = {
    "id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "baseId": "BTC",
    "quoteId": "USDT", "spot": True, "type": "spot", "active": True, "linear": None,
    "inverse": None, "contract": False, "settle": None, "margin": False, "swap": False,
    "future": False, "option": False, "precision": {"amount": 0.00001, "price": 0.01},
    "limits": {"amount": {"min": 0.00001}, "cost": {"min": 5}}, "info": {},
}  # fmt: skip


def _binance() -> ccxt.binance:
    ex = ccxt.binance()
    ex.set_markets([MARKET])
    return ex


def _parsed(raw: dict[str, Any]) -> ExchangeOrder:
    ex = _binance()
    return parse_order(ex.parse_order(raw, ex.market("BTC/USDT")))


def _new_order_answer(side: str, qty: str, quote_qty: str, fills: list[dict[str, str]]) -> dict:
    """Binance POST /api/v3/order with newOrderRespType FULL."""
    return {
        "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "td-o1-1",
        "transactTime": 1_700_000_000_000, "price": "0.00000000", "origQty": qty,
        "executedQty": qty, "cummulativeQuoteQty": quote_qty, "status": "FILLED",
        "timeInForce": "GTC", "type": "MARKET", "side": side.upper(), "fills": fills,
    }  # fmt: skip


def _order(side: str, amount_in: int, max_amount_out: int | None = None) -> Order:
    return Order(
        id="o1", agent_id="a", position_id="p", side=side,  # type: ignore[arg-type]
        purpose="entry" if side == "buy" else "exit", token="binance:BTC/USDT",
        amount_in=amount_in, reason="r", created_at=0, venue="ccxt:main", quote="USDT",
        quote_decimals=6, token_decimals=8, slippage_bps=100, fee_bps=0,
        max_amount_out=max_amount_out,
    )  # fmt: skip


def _no_price(_token: str) -> float | None:
    return None


def test_a_buy_with_its_fee_in_base_receives_the_filled_amount_less_the_fee() -> None:
    placed = _parsed(
        _new_order_answer("buy", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00100000", "commission": "0.00000060",
             "commissionAsset": "BTC", "tradeId": 56},
        ])
    )  # fmt: skip
    out = order_fill(_order("buy", 70_000_000), placed, sent_amount=None, price_of=_no_price, now=9)
    assert out is not None and out.cut == 0
    fill = out.fill
    assert fill.amount_out == 100_000 - 60  # 0.001 BTC less 0.0000006 BTC, 8 decimals
    assert fill.amount_in == 65_432_100  # 65.4321 USDT, 6 decimals
    assert fill.fee == 39_259  # 0.0000006 BTC at 65432.1 = 0.03925926 USDT, rounded down
    assert fill.price_usd == 65432.1 and fill.venue_ref == "28" and fill.ts == 9
    assert fill.fee_currency is None and fill.charge == 0


def test_a_fee_in_bnb_is_named_valued_and_charged_to_the_quote_balance() -> None:
    placed = _parsed(
        _new_order_answer("buy", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00060000", "commission": "0.00000700",
             "commissionAsset": "BNB", "tradeId": 56},
            {"price": "65432.10", "qty": "0.00040000", "commission": "0.00000300",
             "commissionAsset": "BNB", "tradeId": 57},
        ])
    )  # fmt: skip
    prices = {"binance:BNB/USDT": 600.0}
    out = order_fill(_order("buy", 70_000_000), placed, sent_amount=None, price_of=prices.get,
                     now=1)  # fmt: skip
    assert out is not None
    assert out.fill.fee_currency == "BNB" and out.fill.fee_amount == "0.00001"
    assert out.fill.fee == 6_000  # 0.00001 BNB x 600 USDT
    assert out.fill.amount_out == 100_000 and out.fill.amount_in == 65_432_100
    # the attack's F12: its value is a cost of the agent's (PnL net of every fee)
    assert out.fill.charge == 6_000


def test_an_unpriced_third_currency_fee_is_recorded_at_zero_value() -> None:
    placed = _parsed(
        _new_order_answer("sell", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00100000", "commission": "0.00001000",
             "commissionAsset": "BNB", "tradeId": 56},
        ])
    )  # fmt: skip
    out = order_fill(_order("sell", 100_000), placed, sent_amount=100_000, price_of=_no_price,
                     now=1)  # fmt: skip
    assert out is not None and out.fill.fee == 0 and out.fill.fee_currency == "BNB"
    assert out.fill.amount_out == 65_432_100


def test_a_whole_position_sell_filled_at_its_floor_reports_the_whole_amount() -> None:
    placed = _parsed(
        _new_order_answer("sell", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00100000", "commission": "0.06543210",
             "commissionAsset": "USDT", "tradeId": 56},
        ])
    )  # fmt: skip
    # the position holds 0.00100123 BTC; the step is 0.00001 BTC: 0.001 was sent
    out = order_fill(_order("sell", 100_123), placed, sent_amount=100_000, price_of=_no_price,
                     now=1)  # fmt: skip
    assert out is not None
    assert out.fill.amount_in == 100_123  # the residue stays on the exchange
    assert out.fill.amount_out == 65_366_667  # 65.4321 - 0.0654321 USDT, rounded down
    assert out.fill.fee == 65_432


def test_a_partially_filled_sell_reports_what_filled() -> None:
    raw = _new_order_answer("sell", "0.00060000", "39.25926000", [
        {"price": "65432.10", "qty": "0.00060000", "commission": "0", "commissionAsset": "USDT",
         "tradeId": 56},
    ])  # fmt: skip
    raw.update(origQty="0.00100000", status="EXPIRED")
    placed = _parsed(raw)
    assert placed.final and placed.status == "expired"
    out = order_fill(_order("sell", 100_123), placed, sent_amount=100_000, price_of=_no_price,
                     now=1)  # fmt: skip
    assert out is not None and out.fill.amount_in == 60_000
    assert out.fill.amount_out == 39_259_260


def test_an_order_that_filled_nothing_has_no_fill() -> None:
    raw = _new_order_answer("buy", "0.00000000", "0.00000000", [])
    raw.update(origQty="0.00100000", status="EXPIRED")
    out = order_fill(_order("buy", 1_000_000), _parsed(raw), sent_amount=None,
                     price_of=_no_price, now=1)  # fmt: skip
    assert out is None


def test_a_buy_with_its_fee_in_quote_never_books_past_the_reservation() -> None:
    placed = _parsed(
        _new_order_answer("buy", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00100000", "commission": "0.10000000",
             "commissionAsset": "USDT", "tradeId": 56},
        ])
    )  # fmt: skip
    out = order_fill(_order("buy", 65_500_000), placed, sent_amount=None, price_of=_no_price,
                     now=1)  # fmt: skip
    assert out is not None
    assert out.fill.amount_in == 65_500_000 and out.fill.charge == 32_100  # 65.5321 spent


def test_a_fill_above_max_amount_out_is_cut_and_says_by_how_much() -> None:
    placed = _parsed(
        _new_order_answer("buy", "0.00100000", "65.43210000", [
            {"price": "65432.10", "qty": "0.00100000", "commission": "0",
             "commissionAsset": "BTC", "tradeId": 56},
        ])
    )  # fmt: skip
    out = order_fill(_order("buy", 70_000_000, max_amount_out=90_000), placed, sent_amount=None,
                     price_of=_no_price, now=1)  # fmt: skip
    assert out is not None and out.fill.amount_out == 90_000 and out.cut == 10_000


def test_an_order_read_back_without_fills_takes_its_fees_from_its_trades() -> None:
    ex = _binance()
    get_order = {  # GET /api/v3/order: no fills, no commissions
        "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "td-o1-1",
        "price": "0.00000000", "origQty": "0.00100000", "executedQty": "0.00100000",
        "cummulativeQuoteQty": "65.43210000", "status": "FILLED", "timeInForce": "GTC",
        "type": "MARKET", "side": "BUY", "stopPrice": "0.00000000", "time": 1_700_000_000_000,
        "updateTime": 1_700_000_000_000, "isWorking": True,
    }  # fmt: skip
    placed = parse_order(ex.parse_order(get_order, ex.market("BTC/USDT")))
    assert placed.needs_trades and placed.client_order_id == "td-o1-1"
    my_trades = [  # GET /api/v3/myTrades?orderId=28
        {"symbol": "BTCUSDT", "id": 56, "orderId": 28, "price": "65432.10", "qty": "0.00100000",
         "quoteQty": "65.43210000", "commission": "0.00000060", "commissionAsset": "BTC",
         "time": 1_700_000_000_000, "isBuyer": True, "isMaker": False, "isBestMatch": True},
    ]  # fmt: skip
    trades = ex.parse_trades(my_trades, ex.market("BTC/USDT"))
    placed = with_trades(placed, trades)
    assert placed.fees == (FeePaid("BTC", Decimal("0.0000006")),)
    out = order_fill(_order("buy", 70_000_000), placed, sent_amount=None, price_of=_no_price,
                     now=1)  # fmt: skip
    assert out is not None and out.fill.amount_out == 99_940


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, "0.1"), (65.4321, "65.4321"), (1e-05, "0.00001"), ("0.00100000", "0.001"), (3, "3")],
)
def test_ccxt_numbers_are_read_as_the_decimals_written(value: object, expected: str) -> None:
    d = decimal_of(value)
    assert d is not None and d == Decimal(expected)


def test_absent_or_broken_numbers_read_as_none() -> None:
    assert decimal_of(None) is None and decimal_of(True) is None
    assert decimal_of(float("nan")) is None and decimal_of("x") is None


_QTY = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("1000"), places=8)
_COST = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=8)
_FEE = st.decimals(min_value=Decimal(0), max_value=Decimal("5"), places=8)


def _placed(filled: Decimal, cost: Decimal, fees: tuple[FeePaid, ...]) -> ExchangeOrder:
    return ExchangeOrder(id="x", client_order_id="c", symbol="BTC/USDT", side="buy",
                         status="closed", filled=filled, cost=cost, fees=fees)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(filled=_QTY, cost=_COST, fee=_FEE, currency=st.sampled_from(["BTC", "USDT", "BNB"]),
       reservation=st.integers(1, 10**12))  # fmt: skip
def test_a_buy_books_what_left_the_account_within_the_reservation(
    filled: Decimal, cost: Decimal, fee: Decimal, currency: str, reservation: int
) -> None:
    placed = _placed(filled, cost, (FeePaid(currency, fee),))
    out = order_fill(_order("buy", reservation), placed, sent_amount=None,
                     price_of={"binance:BNB/USDT": 600.0}.get, now=1)  # fmt: skip
    if out is None:
        assert currency == "BTC" and fee >= filled - Decimal("0.00000001")
        return
    fill = out.fill
    paid = cost + (fee if currency == "USDT" else 0)
    bnb = int((fee * 600 * 10**6).to_integral_value("ROUND_CEILING")) if currency == "BNB" else 0
    assert fill.amount_in <= reservation and fill.charge >= 0
    assert fill.amount_in + fill.charge == (
        int((paid * 10**6).to_integral_value("ROUND_CEILING")) + bnb
    )
    got = filled - (fee if currency == "BTC" else 0)
    assert fill.amount_out == int((got * 10**8).to_integral_value("ROUND_FLOOR"))
    assert fill.fee >= 0 and (fill.fee_currency == "BNB") == (currency == "BNB" and fee > 0)


@settings(max_examples=300, deadline=None)
@given(filled=_QTY, cost=_COST, fee=_FEE, currency=st.sampled_from(["BTC", "USDT", "BNB"]),
       held=st.integers(1, 10**12), share=st.floats(0.0, 1.0))  # fmt: skip
def test_a_sell_never_books_more_than_the_order_sold(
    filled: Decimal, cost: Decimal, fee: Decimal, currency: str, held: int, share: float
) -> None:
    sent = max(1, int(held * share))
    placed = _placed(filled, cost, (FeePaid(currency, fee),))
    out = order_fill(_order("sell", held), placed, sent_amount=sent, price_of=_no_price, now=1)
    assert out is not None
    fill = out.fill
    assert 0 < fill.amount_in <= held and fill.amount_out >= 0 and fill.charge >= 0
    if int(filled * 10**8) >= sent:
        assert fill.amount_in == held
    proceeds = cost - (fee if currency == "USDT" else 0)
    assert fill.amount_out - fill.charge in (
        int((proceeds * 10**6).to_integral_value("ROUND_FLOOR")),
        int((proceeds * 10**6).to_integral_value("ROUND_CEILING")),
    )


# -- what a request asks ----------------------------------------------------------------------

RULES = InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0)


def _request(side: str, amount_in: int, **kw: Any) -> OrderRequest:
    args: dict[str, Any] = {"exchange": "binance", "buys_by_cost": True, "last_price": None}
    return order_request(_order(side, amount_in), kw.pop("rules", RULES), **{**args, **kw})


def _refused(side: str, amount_in: int, **kw: Any) -> ExchangeFailure:
    with pytest.raises(ExchangeFailure) as failed:
        _request(side, amount_in, **kw)
    return failed.value


def test_a_sell_asks_the_amount_rounded_down_to_the_step() -> None:
    assert _request("sell", 1_000_123) == OrderRequest("BTC/USDT", "sell", amount=1_000_000)


def test_a_sell_below_one_step_or_below_the_notional_is_refused_final() -> None:
    assert _refused("sell", 999).reason == "below_venue_minimum"
    low = _refused("sell", 1_000, last_price=Decimal("65000"))  # 0.00001 BTC = 0.65 USDT < 5
    assert low.reason == "below_venue_minimum" and not low.transient


def test_a_buy_asks_its_reservation_as_cost_where_the_exchange_takes_one() -> None:
    assert _request("buy", 650_000_000) == OrderRequest("BTC/USDT", "buy", cost=650_000_000)
    assert _refused("buy", 4_999_999).reason == "below_venue_minimum"  # under 5 USDT


def test_a_buy_by_amount_buys_what_the_slipped_last_price_allows_rounded_down() -> None:
    asked = _request("buy", 650_000_000, buys_by_cost=False, last_price=Decimal("65000"))
    assert asked == OrderRequest("BTC/USDT", "buy", amount=990_000)  # 650 / 65650, step 0.00001
    no_price = _refused("buy", 650_000_000, buys_by_cost=False)
    assert no_price.reason == "no_price" and no_price.transient


def test_an_order_for_another_exchange_or_an_unknown_market_is_refused() -> None:
    assert _refused("sell", 1_000_000, exchange="kraken").reason == "venue_cannot_trade"
    assert _refused("sell", 1_000_000, rules=None).reason == "unknown_market"
