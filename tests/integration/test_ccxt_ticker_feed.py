"""CcxtTickerFeed against the fake Binance (tests/fakes/binance.py) driven by unmodified
ccxt.pro / ccxt.async_support `binance` objects (tests/fakes/binance_ccxt.py): watched markets
are priced from the WebSocket; a newly watched one is priced at once and then streamed, and a
changing watched set never leaves a second connection open; a dropped stream reconnects, and a
stream gone silent (CCXT's receive loop dead on a "NaN") is closed and opened again; REST polling
stands in while the stream is unavailable and hands back once it returns; bad tickers are never
pushed; a 429 or a 418 holds the requests for its Retry-After; `fetch` answers one REST request;
the ticks reach the engine. Everything on 127.0.0.1, each wait bounded (BUDGET_S)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable

import pytest
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.core import Engine

from tests.fakes.binance import FakeBinance
from tests.integration.ccxt_ticker_rig import (
    BNB,
    BTC,
    BUDGET_S,
    ETH,
    TICKER_24HR,
    Rig,
    Rigs,
    free_port,
    market_stream,
    send_event,
)
from tests.polling import poll_until_async


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    fake = FakeBinance()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def make(fake: FakeBinance) -> AsyncIterator[Callable[..., Rig]]:
    """make(watched, ws=True | False | "dead" | <FakeBinance serving the WebSocket>, **opts)."""
    rigs = Rigs(fake)
    try:
        yield rigs.build
    finally:
        await rigs.close()


# -- the stream ---------------------------------------------------------------------------------


async def test_a_watched_market_is_priced_from_the_websocket(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC])
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66000.5")
    await rig.priced(BTC, 66000.5)
    tick = next(t for t in rig.ticks if t.price_usd == 66000.5)
    assert tick.source == "binance"
    assert abs(tick.ts - wall_clock_ms()) < 2_000  # the event time of the update
    assert fake.requests_to(TICKER_24HR) == 0  # streamed, not polled
    health = rig.feed.health()
    assert (health["status"], health["mode"], health["tokens"]) == ("ok", "websocket", [BTC])
    assert rig.feed.counters()["ws_updates"] >= 1


async def test_updates_arriving_together_are_all_pushed(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    # watch_tickers returns the one update that woke it; the rest come from ccxt's cache
    rig = make([BTC, ETH, BNB])
    rig.run()
    for token in (BTC, ETH, BNB):
        await fake.ws.wait_subscribed(market_stream(token), BUDGET_S)
    fake.set_price("BTC/USDT", "66000")
    await rig.priced(BTC, 66000.0)
    batches = len(rig.batches)
    for symbol, price in (("BTC/USDT", "66001"), ("ETH/USDT", "3501"), ("BNB/USDT", "601")):
        fake.set_price(symbol, price)  # three frames queued at once
    for token, price in ((BTC, 66001.0), (ETH, 3501.0), (BNB, 601.0)):
        await rig.priced(token, price)
    assert fake.requests_to(TICKER_24HR) == 0  # all streamed
    assert len(rig.batches) - batches <= 3


async def test_a_newly_watched_market_is_priced_then_streamed_on_one_connection(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC])
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66000")
    await rig.priced(BTC, 66000.0)
    rig.watched.add(ETH)
    await rig.priced(ETH, 3500.0, "a first ETH price (polled while the stream resubscribes)")
    await fake.ws.wait_subscribed("ethusdt@miniTicker", BUDGET_S)
    await poll_until_async(lambda: len(fake.ws.conns), lambda n: n == 1, timeout_s=BUDGET_S)
    assert {"btcusdt@miniTicker", "ethusdt@miniTicker"} <= set(fake.ws.conns[0].streams)
    updates = rig.feed.counters()["ws_updates"]
    fake.set_price("ETH/USDT", "3612.25")
    await rig.priced(ETH, 3612.25)
    assert rig.feed.counters()["ws_updates"] > updates
    assert rig.feed.health()["tokens"] == [BTC, ETH]


async def test_a_changing_watched_set_never_leaves_a_second_connection(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    # ccxt.pro binance opens a connection per distinct symbol list and keeps the old ones
    rig = make([BTC])
    rig.run()
    for wanted in ([BTC, ETH], [ETH], [BNB], [BNB, BTC], [BTC]):
        rig.watched.clear()
        rig.watched.update(wanted)
        streams = {market_stream(token) for token in wanted}
        await poll_until_async(
            lambda: [set(c.streams) for c in fake.ws.conns],
            lambda conns, streams=streams: len(conns) == 1 and streams <= conns[0],
            timeout_s=BUDGET_S,
            what=f"one connection subscribed to {sorted(streams)}",
        )
    # each new list was subscribed on a fresh connection; a shrunk one keeps its subscription
    assert sorted(fake.ws.conns[0].streams) == ["bnbusdt@miniTicker", "btcusdt@miniTicker"]


async def test_a_dropped_websocket_reconnects_and_prices_again(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC])
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66001")
    await rig.priced(BTC, 66001.0)
    assert await fake.drop_ws() == 1
    await rig.counter("reconnects", 1)
    await poll_until_async(lambda: fake.ws.connections_opened, lambda n: n >= 2, timeout_s=BUDGET_S)
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66002")
    await rig.priced(BTC, 66002.0, "a streamed tick after the reconnection")
    health = rig.feed.health()
    assert (health["status"], health["mode"]) == ("ok", "websocket")
    assert health["reconnects"] >= 1 and health["last_error"] == "stream: NetworkError"
    assert rig.feed.counters()["stream_resumes"] == 1  # what a reconciliation may wait for


async def test_a_zero_streamed_price_is_counted_and_never_pushed(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC])
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    assert send_event(fake, "BTCUSDT", c="0", o="0", h="0", l="0") == 1
    await rig.counter("errors_bad_price", 1)
    fake.set_price("BTC/USDT", "66003")
    await rig.priced(BTC, 66003.0)
    assert all(math.isfinite(p) and p > 0 for p in rig.prices(BTC))
    assert rig.feed.counters()["ticks"] == len(rig.ticks)


async def test_a_nan_streamed_price_is_never_pushed_and_the_stream_recovers(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    # CCXT's receive loop dies on a "NaN" it cannot parse and leaves the socket open: REST
    # prices the market meanwhile, and the silent stream is closed and opened again
    rig = make([BTC], stale_after_ms=800)
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66004")
    await rig.priced(BTC, 66004.0)
    assert send_event(fake, "BTCUSDT", c="NaN") == 1
    fake.set_price("BTC/USDT", "66005")  # the stream no longer reads it: REST does
    await rig.priced(BTC, 66005.0, "a polled tick while the stream is silent")
    await rig.counter("errors_silent", 1)
    await poll_until_async(lambda: fake.ws.connections_opened, lambda n: n >= 2, timeout_s=BUDGET_S)
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66006")
    await rig.priced(BTC, 66006.0)
    await poll_until_async(lambda: rig.feed.health()["mode"], lambda m: m == "websocket")
    assert all(math.isfinite(p) and p > 0 for p in rig.prices(BTC))


# -- polling --------------------------------------------------------------------------------------


async def test_without_a_websocket_the_feed_polls_rest(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC, ETH], ws=False)
    rig.run()
    await rig.priced(BTC, 65000.0)
    await rig.priced(ETH, 3500.0)
    fake.set_price("ETH/USDT", "3501.5")
    await rig.priced(ETH, 3501.5, "the next poll's price")
    health = rig.feed.health()
    assert (health["status"], health["mode"], health["reason"]) == ("ok", "polling", "")
    tick = next(t for t in rig.ticks if t.token == BTC)
    assert tick.volume_24h_usd == 0.0  # quoteVolume of the fake's 24h ticker
    assert rig.feed.counters()["reconnects"] == 0


async def test_an_unreachable_websocket_falls_back_to_polling(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC], ws="dead")
    rig.run()
    await rig.priced(BTC, 65000.0)
    await rig.counter("reconnects", 1)
    fake.set_price("BTC/USDT", "64999")
    await rig.priced(BTC, 64999.0, "a polled tick while the stream is down")
    health = rig.feed.health()
    assert (health["status"], health["mode"]) == ("ok", "polling")
    assert "stream down" in str(health["reason"])


async def test_the_stream_takes_over_again_once_it_recovers(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    port = free_port()
    streams = FakeBinance()  # the WebSocket's server: absent at first, started on its port
    streams.ws_url = f"ws://127.0.0.1:{port}"
    rig = make([BTC], ws=streams)
    rig.run()
    await rig.counter("reconnects", 1)
    await rig.priced(BTC, 65000.0, "a polled tick while the stream is absent")
    assert rig.feed.health()["mode"] == "polling"
    await streams.start(port)
    try:
        await streams.ws.wait_subscribed("btcusdt@miniTicker", 2 * BUDGET_S)
        streams.set_price("BTC/USDT", "70000")
        await rig.priced(BTC, 70000.0, "a streamed tick from the recovered stream")
        assert rig.feed.health()["mode"] == "websocket"
    finally:
        await streams.close()


async def test_bad_polled_tickers_are_not_pushed(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    # ccxt derives a zero last price from open and change: only a ticker of zeros has none
    fields = ("lastPrice", "openPrice", "prevClosePrice", "weightedAvgPrice", "bidPrice")
    zero = fake.ws.rest_ticker("BTCUSDT") | dict.fromkeys(fields + ("askPrice",), "0.00000000")
    nan = fake.ws.rest_ticker("BTCUSDT") | {"lastPrice": "NaN"}  # ccxt cannot parse it
    fake.fail_next(200, json.dumps([zero]), path=TICKER_24HR)
    fake.fail_next(200, json.dumps([nan]), path=TICKER_24HR)
    rig = make([BTC], ws=False)
    rig.run()
    await rig.priced(BTC, 65000.0)
    assert rig.prices(BTC) == [65000.0] * len(rig.prices(BTC))
    counters = rig.feed.counters()
    assert (counters["errors_bad_price"], counters["errors_malformed"]) == (1, 1)


async def test_rest_failing_with_no_stream_is_down_then_recovers(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC], ws=False)
    rig.run()
    await rig.priced(BTC, 65000.0)
    fake.server_error(503, n=3, path=TICKER_24HR)
    await poll_until_async(
        lambda: rig.feed.health(), lambda h: h["status"] == "down", timeout_s=BUDGET_S
    )
    assert rig.feed.health()["last_error"] == "rest: ExchangeNotAvailable"
    fake.set_price("BTC/USDT", "64000")
    await rig.priced(BTC, 64000.0, "a tick once the exchange answers again")
    assert rig.feed.health()["status"] == "ok"
    assert rig.feed.counters()["errors_network"] == 3


# -- rate limits --------------------------------------------------------------------------------


async def test_a_429_holds_requests_for_its_retry_after(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    fake.rate_limit(n=2, retry_after_s=1, path=TICKER_24HR)
    rig = make([BTC], ws=False, poll_interval_ms=20)
    rig.run()
    await rig.counter("errors_rate_limited", 1)
    health = rig.feed.health()
    # ccxt's binance raises DDoSProtection for a 429 as for a 418: both are rate limits here
    assert health["status"] == "backoff" and health["last_error"] == "rest: DDoSProtection"
    assert health["retry_after_s"] is not None and 0 < float(health["retry_after_s"]) <= 1.0
    await rig.priced(BTC, 65000.0, "a tick once the rate limit passed")
    polls = [r.at for r in fake.requests if r.path == TICKER_24HR]
    assert len(polls) >= 3
    # Retry-After: 1 between the two 429s and the request after them; no storm at 20 ms
    assert polls[1] - polls[0] >= 0.95 and polls[2] - polls[1] >= 0.95
    assert rig.feed.health()["status"] == "ok"


async def test_a_418_ban_stops_polling_for_its_retry_after(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    fake.ban(n=1, retry_after_s=120, path=TICKER_24HR)
    rig = make([BTC], ws=False, poll_interval_ms=20)
    rig.run()
    await rig.counter("errors_rate_limited", 1)
    await asyncio.sleep(1.0)  # 50 polls at the interval; the ban allows none
    assert fake.requests_to(TICKER_24HR) == 1
    health = rig.feed.health()
    assert health["status"] == "backoff" and float(health["retry_after_s"] or 0) > 100
    assert await rig.feed.fetch([BTC], 1.0) == []  # a fetch would wait past its caller
    assert fake.requests_to(TICKER_24HR) == 1


# -- fetch, covers, bounds -----------------------------------------------------------------------


async def test_fetch_answers_one_rest_request_without_running(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([])
    ticks = await rig.feed.fetch([BTC, "kraken:BTC/USDT", "binance:ETH/BTC"], 2.0)
    assert [(t.token, t.price_usd, t.source) for t in ticks] == [(BTC, 65000.0, "binance")]
    assert fake.requests_to(TICKER_24HR) == 1
    assert rig.batches == []  # fetched, not pushed
    fake.server_error(503, path=TICKER_24HR)
    assert await rig.feed.fetch([BTC], 2.0) == []
    assert rig.feed.counters()["errors_fetch"] == 1


async def test_covers_markets_of_its_exchange_listed_and_usd_quoted(
    make: Callable[..., Rig],
) -> None:
    rig = make([BTC], ws=False)
    assert rig.feed.covers(BTC) and not rig.feed.covers("kraken:BTC/USDT")
    assert not rig.feed.covers("binance:ETH/BTC")  # its last price is in BTC, not USD
    rig.run()
    await rig.priced(BTC, 65000.0)
    assert not rig.feed.covers("binance:DOGE/USDT")  # the markets are loaded: not listed


async def test_markets_beyond_max_symbols_or_unlisted_are_counted_not_priced(
    make: Callable[..., Rig],
) -> None:
    rig = make([BTC, ETH, BNB, "binance:DOGE/USDT"], ws=False, max_symbols=2)
    rig.run()
    await rig.priced(BTC, 65000.0)
    health = rig.feed.health()
    assert health["tokens"] == [BNB, BTC]  # by name; ETH/USDT is left out
    assert (health["over_limit"], health["unknown_symbols"]) == (1, 1)
    counters = rig.feed.counters()
    assert (counters["errors_over_limit"], counters["errors_unknown_symbol"]) == (1, 1)


async def test_a_feed_left_without_watched_markets_closes_its_stream(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    rig = make([BTC])
    rig.run()
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    rig.watched.clear()
    await poll_until_async(lambda: len(fake.ws.conns), lambda n: n == 0, timeout_s=BUDGET_S)
    assert rig.feed.health()["status"] == "idle"
    rig.watched.add(ETH)  # watched again: streamed again
    await fake.ws.wait_subscribed("ethusdt@miniTicker", BUDGET_S)
    fake.set_price("ETH/USDT", "3333")
    await rig.priced(ETH, 3333.0)


async def test_an_idle_feed_sends_nothing(fake: FakeBinance, make: Callable[..., Rig]) -> None:
    rig = make(["So11111111111111111111111111111111111111112", "kraken:BTC/USDT"])
    rig.run()
    await asyncio.sleep(0.3)
    assert rig.feed.health()["status"] == "idle"
    assert fake.requests == [] and fake.ws.connections_opened == 0


# -- into the engine ------------------------------------------------------------------------------


async def test_streamed_prices_reach_the_engine(
    fake: FakeBinance, make: Callable[..., Rig]
) -> None:
    engine = Engine(wall_clock_ms, watchlist=[BTC])
    runtime = Runtime(engine, {"paper": PaperVenue(engine.price_usd, wall_clock_ms)})
    rig = make(engine.watched_tokens)  # the daemon's own watched()
    rig.run(runtime.push_ticks)
    await fake.ws.wait_subscribed("btcusdt@miniTicker", BUDGET_S)
    fake.set_price("BTC/USDT", "66100")
    await poll_until_async(
        lambda: engine.prices.get(BTC),
        lambda tick: tick is not None and tick.price_usd == 66100.0,
        timeout_s=BUDGET_S,
        what="the engine's BTC/USDT price",
    )
    assert engine.prices[BTC].source == "binance"
