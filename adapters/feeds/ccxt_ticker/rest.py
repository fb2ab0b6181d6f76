"""The ticker feed's REST requests to one exchange (ccxt.async_support `fetch_tickers`,
`load_markets`), paced: CCXT's own rate limiter spaces them; after a failure every request waits
a jittered exponential backoff, after a rate limit (429, a 418 ban) the exchange's Retry-After
when it sends one."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, Final

from tradingd.adapters.feeds.retry import Backoff

from .faults import Fault, classify, response_retry_after_s

BACKOFF_INITIAL_MS: Final = 500  # the first wait after a failure (full jitter: 0..500 ms)
BACKOFF_MAX_MS: Final = 30_000
# A rate limit without Retry-After waits at least this: a jittered wait near 0 would meet the
# same limit again at once.
RATE_LIMIT_MIN_WAIT_S: Final = 1.0


def monotonic_ms() -> int:
    """A steady clock in ms for waits and schedules (a wall-clock step must not stall them)."""
    return time.monotonic_ns() // 1_000_000


class RestRequests:
    """REST calls through `exchange` (a ccxt.async_support exchange the caller owns). Each call
    counts `requests` and, failing, reports its Fault to `on_fault(fault, what)` (what: "rest" or
    "markets"); none raises. `paused_until` is on the `monotonic` clock (ms); `clock` (wall ms)
    only dates a Retry-After given as an HTTP date."""

    def __init__(
        self,
        exchange: Any,
        clock: Callable[[], int],
        monotonic: Callable[[], int],
        rng: random.Random,
        count_request: Callable[[], None],
        on_fault: Callable[[Fault, str], None],
    ) -> None:
        self.exchange = exchange
        self._clock = clock
        self._monotonic = monotonic
        self._count_request = count_request
        self._on_fault = on_fault
        self._backoff = Backoff(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, rng)
        self.paused_until = 0  # monotonic ms: no request before (backoff, Retry-After)
        self.rate_limited = False  # the pause is the exchange's rate limit
        self.failures = 0  # failed requests in a row
        self.answered = False  # a request succeeded since start

    def paused_ms(self) -> int:
        """How long requests still wait, ms (0 when they may go)."""
        return max(0, self.paused_until - self._monotonic())

    async def wait_pause(self) -> None:
        """Return once requests may go again."""
        wait_ms = self.paused_ms()
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)

    async def tickers(self, symbols: list[str], timeout_s: float) -> object | None:
        """`fetch_tickers(symbols)` within `timeout_s` (CCXT: {symbol: ticker}); None after a
        failure (counted, backed off). Does not wait for a pause: the caller decides."""
        self._count_request()
        try:
            async with asyncio.timeout(timeout_s):
                answer: object = await self.exchange.fetch_tickers(symbols)
        except Exception as exc:
            self._failed(exc, "rest")
            return None
        self._succeeded()
        return answer

    async def load_markets(self, timeout_s: float) -> bool:
        """`load_markets()` within `timeout_s`, after any pause; False after a failure
        (counted, backed off)."""
        await self.wait_pause()
        self._count_request()
        try:
            async with asyncio.timeout(timeout_s):
                await self.exchange.load_markets()
        except Exception as exc:
            self._failed(exc, "markets")
            return False
        self._succeeded()
        return True

    def _succeeded(self) -> None:
        self.answered = True
        self.failures = 0
        self.rate_limited = False
        self._backoff.reset()

    def _failed(self, exc: BaseException, what: str) -> None:
        fault = classify(exc)
        wait = None
        if fault.rate_limited:  # read before any await: CCXT keeps the last answer's headers
            wait = response_retry_after_s(self.exchange.last_response_headers, self._clock())
        backoff = self._backoff.next_s()  # the ceiling grows for the next failure either way
        if wait is None:
            wait = max(backoff, RATE_LIMIT_MIN_WAIT_S) if fault.rate_limited else backoff
        self.failures += 1
        self.rate_limited = fault.rate_limited
        self.paused_until = max(self.paused_until, self._monotonic() + int(wait * 1000))
        self._on_fault(fault, what)
