"""CCXT tickers -> Ticks: the one place that knows both CCXT's unified ticker structure and our
instrument ids. Pure (the receipt time comes in as an argument).

Wire format: CCXT Manual, "Ticker structure" — a dict with `symbol`, `timestamp` (epoch ms or
None), `last`, `close`, `bid`, `ask`, `quoteVolume` (float or None; `close` equals `last` where
the exchange sends one price). `fetch_tickers`/`watch_tickers` answer {symbol: ticker}."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final

from msgspec import Struct
from tradingd.adapters.feeds import MAX_FEED_PRICE_USD, MIN_FEED_PRICE_USD
from tradingd.engine.assets import USD_MARKET_QUOTES, market_parts
from tradingd.engine.model import Tick

# The engine's default [prices] max_future_skew_ms: a ticker further ahead of our clock is a
# fault at the exchange (or our clock), refused here rather than pushed and refused there.
FUTURE_SKEW_MS: Final = 5_000


def market_symbol(exchange_id: str, token: str) -> str | None:
    """CCXT's unified symbol ("BTC/USDT") of the instrument `token` ("binance:BTC/USDT") when it
    is a market of `exchange_id` quoted in a USD stablecoin (its last price is USD per whole
    base unit); None otherwise (a mint, another exchange, a non-USD quote such as ETH/BTC)."""
    parts = market_parts(token)
    if parts is None or parts[0] != exchange_id or parts[2] not in USD_MARKET_QUOTES:
        return None
    return f"{parts[1]}/{parts[2]}"


def instrument_id(exchange_id: str, symbol: str) -> str:
    """The instrument id of a CCXT unified spot symbol on `exchange_id`: "binance:BTC/USDT"."""
    return f"{exchange_id}:{symbol}"


class ParsedTickers(Struct, frozen=True):
    """The ticks of one answer (one per wanted symbol at most) and the tickers refused, by
    counter name: "errors_bad_price" (no positive finite price in bounds), "errors_future"
    (timestamp more than FUTURE_SKEW_MS ahead), "errors_bad_timestamp" (not a positive finite
    number), "errors_malformed" (not a ticker dict). Tickers of symbols not wanted are skipped
    uncounted (a subscription left from an earlier watched set)."""

    ticks: list[Tick]
    refused: dict[str, int]


def _number(value: object) -> float | None:
    """A finite float from CCXT's number (float, int or Decimal; never bool or str)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def ticker_price(ticker: Mapping[str, object]) -> float | None:
    """The price of a ticker in its quote per whole base unit: `last`; when absent, `close`;
    when both are absent, the mid of `bid` and `ask` (both positive, bid <= ask). A `last` or
    `close` that is present but zero, negative or not finite is a fault: None, with no fallback.
    The result lies within the feeds' bounds (MIN/MAX_FEED_PRICE_USD) or is None."""
    for field in ("last", "close"):
        raw = ticker.get(field)
        if raw is not None:
            price = _positive(raw)
            break
    else:
        bid, ask = _positive(ticker.get("bid")), _positive(ticker.get("ask"))
        price = (bid + ask) / 2 if bid is not None and ask is not None and bid <= ask else None
    if price is None or not MIN_FEED_PRICE_USD <= price <= MAX_FEED_PRICE_USD:
        return None
    return price


def ticker_ts(ticker: Mapping[str, object], received_ms: int) -> int | None:
    """The ticker's `timestamp` (epoch ms); `received_ms` when the exchange sent none; None when
    it is present but not a positive finite number."""
    raw = ticker.get("timestamp")
    if raw is None:
        return received_ms
    ts = _positive(raw)
    return int(ts) if ts is not None and 1 <= ts < 2**53 else None


def parse_tickers(
    tickers: Mapping[str, object] | Iterable[object],
    instruments: Mapping[str, str],
    source: str,
    received_ms: int,
) -> ParsedTickers:
    """Ticks of the wanted symbols in a `fetch_tickers`/`watch_tickers` answer (a dict by
    symbol, or a list of tickers). `instruments`: symbol -> instrument id of the symbols wanted
    now. Tick: token = the instrument id, price_usd = `ticker_price` (a USD stablecoin quote is
    1 USD), ts = `ticker_ts`, `source`, volume_24h_usd = `quoteVolume` when finite and >= 0.
    The last ticker of a symbol wins when an answer repeats it."""
    values = tickers.values() if isinstance(tickers, Mapping) else tickers
    by_token: dict[str, Tick] = {}
    refused: dict[str, int] = {}
    for ticker in values:
        if not isinstance(ticker, Mapping):
            refused["errors_malformed"] = refused.get("errors_malformed", 0) + 1
            continue
        symbol = ticker.get("symbol")
        token = instruments.get(symbol) if isinstance(symbol, str) else None
        if token is None:
            continue
        kind, tick = _tick(ticker, token, source, received_ms)
        if tick is None:
            refused[kind] = refused.get(kind, 0) + 1
        else:
            by_token[token] = tick
    return ParsedTickers(list(by_token.values()), refused)


def _tick(
    ticker: Mapping[str, object], token: str, source: str, received_ms: int
) -> tuple[str, Tick | None]:
    price = ticker_price(ticker)
    if price is None:
        return "errors_bad_price", None
    ts = ticker_ts(ticker, received_ms)
    if ts is None:
        return "errors_bad_timestamp", None
    if ts > received_ms + FUTURE_SKEW_MS:
        return "errors_future", None
    volume = _number(ticker.get("quoteVolume"))
    if volume is not None and volume < 0:
        volume = None
    return "", Tick(token, price, ts, source, volume_24h_usd=volume)
