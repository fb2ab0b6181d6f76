"""CCXT tickers -> Ticks (adapters/feeds/ccxt_ticker/parsing.py) and the map of CCXT's
exceptions to the feed's error kinds (faults.py): which instruments a feed prices, which price
and timestamp a ticker gives, and which tickers are refused."""

from __future__ import annotations

import math
from decimal import Decimal

import ccxt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradingd.adapters.feeds.ccxt_ticker.faults import classify, response_retry_after_s
from tradingd.adapters.feeds.ccxt_ticker.parsing import (
    FUTURE_SKEW_MS,
    instrument_id,
    market_symbol,
    parse_tickers,
    ticker_price,
    ticker_ts,
)
from tradingd.engine.model import Tick

NOW = 1_796_000_000_000
WANTED = {"BTC/USDT": "binance:BTC/USDT", "ETH/USDC": "binance:ETH/USDC"}


def ticker(symbol: str = "BTC/USDT", **fields: object) -> dict[str, object]:
    """A CCXT unified ticker with every price field absent unless given."""
    base: dict[str, object] = {
        "symbol": symbol,
        "timestamp": NOW - 1000,
        "last": None,
        "close": None,
        "bid": None,
        "ask": None,
        "quoteVolume": None,
    }
    base.update(fields)
    return base


def test_market_symbol_takes_usd_quoted_markets_of_its_exchange_only() -> None:
    assert market_symbol("binance", "binance:BTC/USDT") == "BTC/USDT"
    assert market_symbol("binance", "binance:1000SATS/USDC") == "1000SATS/USDC"
    assert market_symbol("binance", "kraken:BTC/USDT") is None
    assert market_symbol("binance", "binance:ETH/BTC") is None  # its price is not USD
    assert market_symbol("binance", "So11111111111111111111111111111111111111112") is None
    assert instrument_id("binance", "BTC/USDT") == "binance:BTC/USDT"


def test_price_is_last_then_close_then_the_mid_of_bid_and_ask() -> None:
    assert ticker_price(ticker(last=101.5, close=100.0)) == 101.5
    assert ticker_price(ticker(close=100.0)) == 100.0
    assert ticker_price(ticker(bid=99.0, ask=101.0)) == 100.0
    assert ticker_price(ticker(last=Decimal("42.5"))) == 42.5
    assert ticker_price(ticker(last=7)) == 7.0


@pytest.mark.parametrize(
    "fields",
    [
        {"last": 0.0},
        {"last": -1.0},
        {"last": math.nan, "close": 100.0},  # a bad last is a fault: no fallback to close
        {"last": math.inf},
        {"last": "100"},  # CCXT gives numbers; a string is not one
        {"last": True},
        {"last": 1e13},  # beyond the feeds' bound
        {"bid": 101.0, "ask": 99.0},  # crossed book
        {"bid": 99.0},
        {},
    ],
)
def test_a_ticker_without_a_sane_price_has_none(fields: dict[str, object]) -> None:
    assert ticker_price(ticker(**fields)) is None


def test_timestamp_is_the_tickers_or_the_receipt_time() -> None:
    assert ticker_ts(ticker(timestamp=NOW - 5), NOW) == NOW - 5
    assert ticker_ts(ticker(timestamp=None), NOW) == NOW
    assert ticker_ts(ticker(timestamp=0), NOW) is None
    assert ticker_ts(ticker(timestamp=0.5), NOW) is None
    assert ticker_ts(ticker(timestamp=math.nan), NOW) is None
    assert ticker_ts(ticker(timestamp="1796000000000"), NOW) is None


def test_parse_prices_wanted_symbols_and_counts_refusals() -> None:
    answer = {
        "BTC/USDT": ticker(last=95_000.5, quoteVolume=1.5e9),
        "ETH/USDC": ticker("ETH/USDC", last=0.0),
        "SOL/USDT": ticker("SOL/USDT", last=150.0),  # subscribed earlier, not wanted now
    }
    parsed = parse_tickers(answer, WANTED, "binance", NOW)
    assert parsed.ticks == [
        Tick("binance:BTC/USDT", 95_000.5, NOW - 1000, "binance", volume_24h_usd=1.5e9)
    ]
    assert parsed.refused == {"errors_bad_price": 1}


def test_parse_refuses_future_and_bad_timestamps_and_non_tickers() -> None:
    answer = [
        ticker(last=1.0, timestamp=NOW + FUTURE_SKEW_MS + 1),
        ticker("ETH/USDC", last=1.0, timestamp=-5),
        "not a ticker",
    ]
    parsed = parse_tickers(answer, WANTED, "binance", NOW)
    assert parsed.ticks == []
    assert parsed.refused == {
        "errors_future": 1,
        "errors_bad_timestamp": 1,
        "errors_malformed": 1,
    }


def test_parse_takes_a_timestamp_within_the_skew_and_drops_a_negative_volume() -> None:
    answer = {"BTC/USDT": ticker(last=2.0, timestamp=NOW + FUTURE_SKEW_MS, quoteVolume=-3.0)}
    (tick,) = parse_tickers(answer, WANTED, "binance", NOW).ticks
    assert tick.ts == NOW + FUTURE_SKEW_MS
    assert tick.volume_24h_usd is None


@given(
    st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=5),
    ),
    st.one_of(st.none(), st.floats(), st.integers(min_value=-(2**70), max_value=2**70)),
)
def test_every_pushed_tick_has_a_positive_finite_price_and_a_sane_ts(
    last: object, ts: object
) -> None:
    parsed = parse_tickers({"x": ticker(last=last, timestamp=ts)}, WANTED, "binance", NOW)
    for tick in parsed.ticks:
        assert math.isfinite(tick.price_usd) and tick.price_usd > 0
        assert 0 < tick.ts <= NOW + FUTURE_SKEW_MS
    assert len(parsed.ticks) + sum(parsed.refused.values()) == 1


@pytest.mark.parametrize(
    ("exc", "kind", "rate_limited"),
    [
        (ccxt.RateLimitExceeded("binance GET https://x/api?k=1"), "rate_limited", True),
        (ccxt.DDoSProtection("418"), "rate_limited", True),
        (ccxt.RequestTimeout("t"), "timeout", False),
        (TimeoutError(), "timeout", False),
        (ccxt.ExchangeNotAvailable("down"), "network", False),
        (ccxt.NetworkError("closed 1006"), "network", False),
        (ccxt.BadSymbol("x"), "bad_symbol", False),
        (ccxt.NotSupported("x"), "not_supported", False),
        (ccxt.ExchangeError("x"), "exchange", False),
        (ccxt.BadResponse("x"), "exchange", False),
        (ConnectionResetError(), "network", False),
        (ValueError("NaN"), "malformed", False),  # ccxt could not parse the answer
        (RuntimeError("x"), "internal", False),
    ],
)
def test_ccxt_errors_map_to_one_kind_and_show_only_their_class(
    exc: BaseException, kind: str, rate_limited: bool
) -> None:
    fault = classify(exc)
    assert (fault.kind, fault.rate_limited) == (kind, rate_limited)
    assert fault.name == type(exc).__name__  # never the message (it holds the URL)


def test_retry_after_is_read_from_ccxts_last_headers_in_any_case() -> None:
    assert response_retry_after_s({"Retry-After": "7"}, NOW) == 7.0
    assert response_retry_after_s({"retry-after": "2.5"}, NOW) == 2.5
    assert response_retry_after_s({"Content-Type": "application/json"}, NOW) is None
    assert response_retry_after_s(None, NOW) is None
    assert response_retry_after_s({"Retry-After": "soon"}, NOW) is None
