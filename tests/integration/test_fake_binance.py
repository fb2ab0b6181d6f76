"""The fake Binance (tests/fakes/binance.py) driven by unmodified ccxt 4.5.90 binance objects
(tests/fakes/binance_ccxt.py): markets, tickers, market orders with client order ids, lookups,
trades, balances and cancels answer as the real Spot API, and each fault knob raises the ccxt
exception a real Binance answer raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from tests.fakes.binance import FakeBinance
from tests.fakes.binance_ccxt import async_binance

STEP_DOWN_BUDGET_S = 5.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance()
    await fake.start()
    fake.set_balance("USDT", "10000")
    yield fake
    await fake.close()


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[ccxt.binance]:
    ex = async_binance(fake, timeout_ms=1500)
    await ex.load_markets()
    yield ex
    await ex.close()


async def test_load_markets_reads_the_configured_lot_and_minimums(exchange: ccxt.binance) -> None:
    btc = exchange.markets["BTC/USDT"]
    assert btc["spot"] and btc["active"] and btc["id"] == "BTCUSDT"
    assert btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"]["min"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5.0
    assert {"ETH/USDT", "BNB/USDT"} <= set(exchange.markets)


async def test_fetch_tickers_show_the_price_set_by_the_test(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.set_price("BTC/USDT", 65000.5)
    tickers = await exchange.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert tickers["BTC/USDT"]["last"] == 65000.5
    assert tickers["ETH/USDT"]["last"] == 3500.0
    assert (await exchange.fetch_ticker("BTC/USDT"))["last"] == 65000.5


async def test_market_buy_by_cost_fills_at_last_price_fee_in_base(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    order = await exchange.create_market_buy_order_with_cost(
        "BTC/USDT", 100, {"clientOrderId": "buy-1"}
    )
    assert order["status"] == "closed" and order["clientOrderId"] == "buy-1"
    assert order["filled"] == 0.00153 and order["average"] == 65000.0
    assert order["fee"] == {"currency": "BTC", "cost": 0.00000153}
    assert fake.order_posts("buy-1")[0].params["quoteOrderQty"] == "100"
    assert fake.balance("BTC") == Decimal("0.00153") - Decimal("0.00000153")
    assert fake.balance("USDT") == Decimal("10000") - Decimal("99.45")


async def test_sell_by_amount_then_fetch_order_by_client_id(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.set_balance("BTC", "0.01")
    sold = await exchange.create_order("BTC/USDT", "market", "sell", 0.002, None, {"clientOrderId": "sell-1"})  # fmt: skip
    found = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "sell-1"})
    assert found["id"] == sold["id"] and found["status"] == "closed"
    assert found["filled"] == 0.002 and found["cost"] == 130.0
    assert fake.requests[-1].params["origClientOrderId"] == "sell-1"
    assert fake.balance("USDT") == Decimal("10000") + Decimal("130") - Decimal("0.13")


async def test_my_trades_carry_commission(fake: FakeBinance, exchange: ccxt.binance) -> None:
    fake.set_balance("BTC", "0.01")
    order = await exchange.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "s"})  # fmt: skip
    trades = await exchange.fetch_my_trades("BTC/USDT")
    assert [t["order"] for t in trades] == [order["id"]]
    assert trades[0]["fee"] == {"currency": "USDT", "cost": 0.065}
    assert trades[0]["side"] == "sell" and trades[0]["takerOrMaker"] == "taker"


async def test_fee_in_bnb_when_asked_and_bnb_suffices(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.fee_in_bnb = True
    fake.set_balance("BNB", "1")
    order = await exchange.create_market_buy_order_with_cost("BTC/USDT", 600, {"clientOrderId": "b"})  # fmt: skip
    # fee value 0.1% of the notional, x 0.75, in BNB at 600 USDT
    notional = Decimal(str(order["cost"]))
    bnb = (notional * Decimal("0.001") * Decimal("0.75") / 600).quantize(Decimal("1e-8"), rounding="ROUND_DOWN")  # fmt: skip
    assert order["fee"] == {"currency": "BNB", "cost": float(bnb)}
    assert fake.balance("BNB") == 1 - bnb
    assert fake.balance("BTC") == Decimal(str(order["filled"]))


async def test_resting_limit_order_cancels_and_releases_its_hold(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"clientOrderId": "lim"})  # fmt: skip
    assert order["status"] == "open" and fake.balance("USDT") == Decimal("9940")
    canceled = await exchange.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled" and fake.balance("USDT") == Decimal("10000")
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.cancel_order(order["id"], "BTC/USDT")


async def test_resting_limit_order_fills_when_the_price_crosses(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000)
    fake.set_price("BTC/USDT", 59000)
    found = await exchange.fetch_order(order["id"], "BTC/USDT")
    assert found["status"] == "closed" and found["average"] == 60000.0


async def test_bad_signature_is_refused_1022(fake: FakeBinance) -> None:
    ex = async_binance(fake, timeout_ms=1500)
    ex.secret = "not-the-secret"
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await ex.fetch_balance()
    finally:
        await ex.close()
    assert fake.requests[-1].status == 400


async def test_unknown_api_key_is_refused_2015(fake: FakeBinance) -> None:
    ex = async_binance(fake, timeout_ms=1500)
    ex.apiKey = "someone-else"
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await ex.fetch_balance()
    finally:
        await ex.close()


@pytest.mark.parametrize("skew_ms", [-30_000, 30_000])
async def test_timestamp_outside_recv_window_is_invalid_nonce(
    fake: FakeBinance, exchange: ccxt.binance, skew_ms: int
) -> None:
    fake.clock_skew_ms = skew_ms
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        await exchange.fetch_balance()


async def test_fetch_balance_lists_free_and_locked(fake: FakeBinance, exchange: ccxt.binance) -> None:  # fmt: skip
    fake.set_balance("ETH", "1.5")
    balance = await exchange.fetch_balance()
    assert balance["ETH"] == {"free": 1.5, "used": 0.0, "total": 1.5}
    assert balance["USDT"]["free"] == 10000.0


async def test_notional_below_minimum_is_refused(exchange: ccxt.binance) -> None:
    # ccxt maps -1013 to BadRequest; only a message naming LOT_SIZE becomes InvalidOrder
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 4)


async def test_insufficient_balance_is_insufficient_funds(exchange: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        await exchange.create_order("BTC/USDT", "market", "sell", 0.01)


async def test_changed_lot_size_refuses_old_steps_until_markets_reload(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.set_balance("BTC", "1")
    fake.set_lot("BTC/USDT", step="0.0001", min_qty="0.0001")
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        await exchange.create_order("BTC/USDT", "market", "sell", 0.00015)
    await exchange.load_markets(reload=True)
    assert exchange.markets["BTC/USDT"]["precision"]["amount"] == 0.0001
    sold = await exchange.create_order("BTC/USDT", "market", "sell", 0.00015)
    assert sold["filled"] == 0.0001  # ccxt now truncates to the new step
