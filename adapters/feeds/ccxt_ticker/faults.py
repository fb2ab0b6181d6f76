"""CCXT's exceptions mapped once to the feed's error kinds (the counter `errors_<kind>` and the
`last_error` of health), and the Retry-After of a refused REST request.

Only the exception's class name is ever shown: CCXT's messages carry the request URL (and the
body it got), which for a signed endpoint holds a signature; the ticker feed's requests are
public, but nothing here relies on that."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp
import ccxt
from msgspec import Struct
from tradingd.adapters.feeds.retry import retry_after_s

# CCXT's class -> kind, most specific first (BadSymbol and NotSupported are ExchangeErrors).
# RateLimitExceeded and DDoSProtection are one kind: ccxt's binance raises DDoSProtection for
# both its 429 and its 418 (an IP ban), other exchanges RateLimitExceeded for a 429.
_KINDS: Final[tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...]] = (
    (ccxt.RateLimitExceeded, "rate_limited"),
    (ccxt.DDoSProtection, "rate_limited"),
    (ccxt.RequestTimeout, "timeout"),
    (TimeoutError, "timeout"),
    (ccxt.BadSymbol, "bad_symbol"),
    (ccxt.NotSupported, "not_supported"),
    (ccxt.NetworkError, "network"),  # ExchangeNotAvailable, a closed WebSocket, 5xx
    (ccxt.ExchangeError, "exchange"),
    (ccxt.BaseError, "exchange"),  # BadResponse, NullResponse, UnsubscribeError
    (aiohttp.ClientError, "network"),
    (OSError, "network"),
    # raised by CCXT's parsing of an answer it cannot read (a "NaN" price: Precise's int())
    ((ValueError, TypeError, KeyError, IndexError, ArithmeticError), "malformed"),
)


class Fault(Struct, frozen=True):
    """What a failed CCXT call counts as: `kind` (counter `errors_<kind>`), `name` (the
    exception's class, the only text health shows) and `rate_limited` (the exchange asked us
    to slow down: every REST request waits)."""

    kind: str
    name: str
    rate_limited: bool


def classify(exc: BaseException) -> Fault:
    """The Fault of an exception raised by a CCXT call ("internal" for anything else)."""
    kind = next((k for cls, k in _KINDS if isinstance(exc, cls)), "internal")
    return Fault(kind, type(exc).__name__, kind == "rate_limited")


def response_retry_after_s(headers: Mapping[str, object] | None, now_ms: int) -> float | None:
    """The Retry-After (seconds from `now_ms`, epoch ms, at most MAX_RETRY_AFTER_S) of the last
    REST answer, from CCXT's `last_response_headers` (a plain dict: header names keep the
    server's case); None when absent or unreadable."""
    if not headers:
        return None
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "retry-after" and isinstance(value, str):
            return retry_after_s(value, now_ms)
    return None
