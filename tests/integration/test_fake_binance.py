"""The fake Binance (tests/fakes/binance.py) driven by unmodified ccxt 4.5.90 binance objects
(tests/fakes/binance_ccxt.py): markets, tickers, market orders with client order ids, lookups,
trades, balances and cancels answer as the real Spot API, and each fault knob raises the ccxt
exception a real Binance answer raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import TypeVar

import aiohttp
import ccxt.async_support as ccxt
import ccxt.pro as ccxt_pro
import pytest

from tests.fakes.binance import FakeBinance, FakeMarket
from tests.fakes.binance_ccxt import async_binance, binance_urls, ccxt_config, pro_binance

T = TypeVar("T")
STEP_DOWN_BUDGET_S = 5.0  # the hang after an accepted order: longer than ccxt's 1.5 s timeout
WS_BUDGET_S = 3.0


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


# -- faults ------------------------------------------------------------------------------------


async def test_429_is_ddos_protection_with_retry_after(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.rate_limit(retry_after_s=7)
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        await exchange.fetch_ticker("BTC/USDT")
    assert exchange.last_response_headers["Retry-After"] == "7"
    assert fake.requests[-1].status == 429


async def test_418_ban_is_ddos_protection(fake: FakeBinance, exchange: ccxt.binance) -> None:
    fake.ban(path="/api/v3/order")
    with pytest.raises(ccxt.DDoSProtection, match="IP banned until"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "x"})
    assert fake.orders_for("x") == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ccxt.ExchangeNotAvailable),
        (503, ccxt.ExchangeNotAvailable),
        (504, ccxt.RequestTimeout),
    ],
)
async def test_gateway_5xx_maps_to_ccxt_network_errors(
    fake: FakeBinance, exchange: ccxt.binance, status: int, error: type[Exception]
) -> None:
    fake.server_error(status)
    with pytest.raises(error):
        await exchange.fetch_balance()
    assert (await exchange.fetch_balance())["USDT"]["free"] == 10000.0  # one-shot


async def test_timeout_after_accept_leaves_exactly_one_filled_order(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.accept_then_hang(delay_s=STEP_DOWN_BUDGET_S)
    with pytest.raises(ccxt.RequestTimeout):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "t"})
    found = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "t"})
    assert found["status"] == "closed" and len(fake.orders_for("t")) == 1


async def test_connection_cut_after_accept_is_a_network_error_and_the_order_exists(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.accept_then_drop()
    with pytest.raises(ccxt.NetworkError):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "d"})
    assert [o.status for o in fake.orders_for("d")] == ["FILLED"]


async def test_backend_timeout_answer_after_accept_is_request_timeout(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    msg = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."  # fmt: skip
    fake.accept_then_fail(400, {"code": -1007, "msg": msg})
    with pytest.raises(ccxt.RequestTimeout, match="-1007"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "k"})
    assert len(fake.orders_for("k")) == 1


async def test_client_id_of_an_open_order_is_a_duplicate(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"clientOrderId": "o"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "o"})
    assert len(fake.orders_for("o")) == 1 and len(fake.order_posts("o")) == 2


async def test_client_id_of_a_filled_order_is_reusable_unless_scope_any(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    # Binance refuses a client id only while an order with it is open (rest-api.md)
    for _ in range(2):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "r"})
    fake.duplicate_scope = "any"
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "r"})
    fake.duplicate_next()
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "n"})
    assert len(fake.orders_for("r")) == 2 and fake.orders_for("n") == []


async def test_thin_book_market_order_expires_partly_filled(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.set_balance("BTC", "1")
    fake.fill_next("0.4")
    order = await exchange.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "e"})  # fmt: skip
    assert order["status"] == "expired" and order["filled"] == 0.0004
    assert order["info"]["expiryReason"] == "INSUFFICIENT_LIQUIDITY"
    assert fake.balance("BTC") == Decimal("0.9996")


async def test_partially_filled_order_stays_open_until_canceled(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.fill_next("0.5", status="PARTIALLY_FILLED")
    order = await exchange.create_market_buy_order_with_cost("BTC/USDT", 130, {"clientOrderId": "p"})  # fmt: skip
    assert order["status"] == "open" and order["filled"] == 0.001 and order["amount"] == 0.002
    canceled = await exchange.cancel_order(None, "BTC/USDT", {"clientOrderId": "p"})
    assert canceled["status"] == "canceled" and canceled["filled"] == 0.001
    assert fake.balance("USDT") == Decimal("10000") - Decimal("65")


async def test_hidden_order_is_not_found_n_times_then_found(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "h"})
    fake.hide_orders(2)
    for _ in range(2):
        with pytest.raises(ccxt.OrderNotFound, match="-2013"):
            await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "h"})
    assert (await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "h"}))["status"] == "closed"  # fmt: skip
    assert fake.requests_to("/api/v3/order", "GET") == 3
    assert fake.requests_to("/api/v3/order", "POST") == 1


async def test_unserved_api_families_answer_404_and_stay_local(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await exchange.sapi_get_system_status()
    assert fake.requests[-1].path == "/sapi/v1/system/status"


# -- WebSocket ---------------------------------------------------------------------------------


@pytest.fixture
async def pro(fake: FakeBinance) -> AsyncIterator[ccxt_pro.binance]:
    ex = pro_binance(fake, timeout_ms=1500)
    await ex.load_markets()
    yield ex
    await ex.close()


async def _watch_after(
    fake: FakeBinance, watch: Awaitable[T], stream: str, symbol: str, price: float
) -> T:
    """Start `watch`, wait until the fake sees its `stream` subscribed, set `symbol`'s price,
    then await the watch (each step bounded by WS_BUDGET_S)."""
    task = asyncio.ensure_future(watch)
    await fake.ws.wait_subscribed(stream, timeout_s=WS_BUDGET_S)
    fake.set_price(symbol, price)
    return await asyncio.wait_for(task, WS_BUDGET_S)


async def test_watch_tickers_receive_a_price_set_after_subscribing(
    fake: FakeBinance, pro: ccxt_pro.binance
) -> None:
    tickers = await _watch_after(fake, pro.watch_tickers(["BTC/USDT"]), "btcusdt@miniTicker", "BTC/USDT", 66000)  # fmt: skip
    assert tickers["BTC/USDT"]["last"] == 66000.0
    assert fake.ws.controls == [{"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 1}]


async def test_watch_ticker_on_the_full_ticker_stream(fake: FakeBinance, pro: ccxt_pro.binance) -> None:  # fmt: skip
    ticker = await _watch_after(
        fake, pro.watch_ticker("ETH/USDT", {"name": "ticker"}), "ethusdt@ticker", "ETH/USDT", 3600
    )
    assert ticker["last"] == 3600.0 and ticker["open"] == 3500.0 and ticker["bid"] == 3600.0
    assert ticker["info"]["e"] == "24hrTicker"


async def test_watch_all_tickers_uses_the_mini_ticker_array(
    fake: FakeBinance, pro: ccxt_pro.binance
) -> None:
    tickers = await _watch_after(fake, pro.watch_tickers(), "!miniTicker@arr", "BNB/USDT", 610)
    assert {s: t["last"] for s, t in tickers.items()} == {"BNB/USDT": 610.0}


async def test_watch_tickers_reconnect_after_the_fake_drops_every_connection(
    fake: FakeBinance, pro: ccxt_pro.binance
) -> None:
    await _watch_after(
        fake, pro.watch_tickers(["BTC/USDT"]), "btcusdt@miniTicker", "BTC/USDT", 66000
    )
    pending = asyncio.ensure_future(pro.watch_tickers(["BTC/USDT"]))
    await asyncio.sleep(0.05)
    assert await fake.drop_ws() == 1
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(pending, WS_BUDGET_S)
    tickers = await _watch_after(fake, pro.watch_tickers(["BTC/USDT"]), "btcusdt@miniTicker", "BTC/USDT", 67000)  # fmt: skip
    assert tickers["BTC/USDT"]["last"] == 67000.0 and fake.ws.connections_opened == 2


async def test_combined_stream_wraps_the_24hr_ticker_in_binance_shape(fake: FakeBinance) -> None:
    async with aiohttp.ClientSession() as session:
        url = fake.ws_url + "/stream?streams=btcusdt@ticker"
        async with session.ws_connect(url) as ws:
            await fake.ws.wait_subscribed("btcusdt@ticker", timeout_s=WS_BUDGET_S)
            fake.set_price("BTC/USDT", "65100.5")
            frame = await ws.receive_json(timeout=WS_BUDGET_S)
    assert frame["stream"] == "btcusdt@ticker"
    event = frame["data"]
    assert set(event) == set("eEspPwxcQbBaAohlvqOCFLn")
    assert (event["e"], event["s"], event["c"], event["o"]) == ("24hrTicker", "BTCUSDT", "65100.50000000", "65000.00000000")  # fmt: skip
    assert event["P"] == "0.155"


async def test_cancel_that_races_a_fill_is_not_found_and_the_order_filled(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"clientOrderId": "c"})  # fmt: skip
    fake.race_cancels()
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await exchange.cancel_order(order["id"], "BTC/USDT")
    found = await exchange.fetch_order(order["id"], "BTC/USDT")
    assert found["status"] == "closed" and found["average"] == 65000.0


async def test_hiding_one_client_id_leaves_other_lookups_alone(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    for cid in ("a", "b"):
        await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": cid})
    fake.hide_orders(1, client_order_id="a")
    assert (await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "b"}))["status"] == "closed"  # fmt: skip
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "a"})


async def test_open_and_all_orders_list_what_was_placed(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"clientOrderId": "l"})
    await exchange.create_market_buy_order_with_cost("BTC/USDT", 50, {"clientOrderId": "m"})
    assert [o["clientOrderId"] for o in await exchange.fetch_open_orders("BTC/USDT")] == ["l"]
    assert [o["clientOrderId"] for o in await exchange.fetch_orders("BTC/USDT")] == ["l", "m"]


async def test_a_market_added_later_is_listed_on_reload(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.add_market(FakeMarket("SOL", "USDT", step=Decimal("0.001"), min_qty=Decimal("0.001")), "150")  # fmt: skip
    await exchange.load_markets(reload=True)
    assert exchange.markets["SOL/USDT"]["precision"]["amount"] == 0.001
    assert (await exchange.fetch_ticker("SOL/USDT"))["last"] == 150.0


async def test_config_urls_reach_the_fake_without_touching_the_object(fake: FakeBinance) -> None:
    config = {**ccxt_config(fake), "urls": binance_urls(fake.url, fake.ws_url)}
    ex = ccxt.binance(config)
    try:
        await ex.load_markets()
        assert "BTC/USDT" in ex.markets
    finally:
        await ex.close()
    assert fake.requests_to("/api/v3/exchangeInfo") == 1


async def test_slippage_moves_market_fills_against_the_taker(
    fake: FakeBinance, exchange: ccxt.binance
) -> None:
    fake.slippage_bps = 10
    fake.set_balance("BTC", "1")
    bought = await exchange.create_order("BTC/USDT", "market", "buy", 0.001)
    sold = await exchange.create_order("BTC/USDT", "market", "sell", 0.001)
    assert (bought["average"], sold["average"]) == (65065.0, 64935.0)


async def test_periodic_pushes_feed_a_watch_without_price_changes(
    fake: FakeBinance, pro: ccxt_pro.binance
) -> None:
    fake.ws.interval_s = 0.05
    tickers = await asyncio.wait_for(pro.watch_tickers(["ETH/USDT"]), WS_BUDGET_S)
    assert tickers["ETH/USDT"]["last"] == 3500.0
