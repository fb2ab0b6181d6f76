"""The ticker feed's WebSocket: ccxt.pro `watch_tickers` of one exchange, its state, the
reconnection backoff after a failure, and the watch for a stream that went silent without
closing (CCXT's receive loop dies on a message it cannot parse — a "NaN" price — and leaves the
socket open: nothing would ever reconnect it)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Final

from tradingd.adapters.feeds.retry import Backoff

from .faults import Fault, classify
from .rest import BACKOFF_INITIAL_MS, BACKOFF_MAX_MS

log = logging.getLogger("tradingd.feeds.ccxt")

# Nothing heard for this many times `stale_after_ms`: the stream is taken for dead and its
# connections closed, so the next watch opens a new one (a quiet market costs a reconnection
# that often, a dead stream no more than that).
SILENT_AFTER_STALE: Final = 3


class TickerStream:
    """`watch_tickers` through `exchange` (a ccxt.pro exchange the caller owns; the feed may
    close its connections, never the object's other state). `state`: "connecting" (no update
    yet), "streaming", "backoff" (failed; tried again from `retry_at`, `monotonic_ms`) or "off" (no
    WebSocket: absent, `has['watchTickers']` false, or NotSupported). Failures go to
    `on_fault(fault, "stream")`; each one that leads to a new connection to `on_reconnect()`."""

    def __init__(
        self,
        exchange: Any | None,
        usable: bool,
        silent_ms: int,
        monotonic_ms: Callable[[], int],
        rng: random.Random,
        on_fault: Callable[[Fault, str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self.exchange = exchange
        self.state = "connecting" if usable and exchange is not None else "off"
        self.retry_at = 0
        self.error: str | None = None  # the last failure's exception class
        self._silent_ms = silent_ms
        self._monotonic = monotonic_ms
        self._backoff = Backoff(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, rng)
        self._on_fault = on_fault
        self._on_reconnect = on_reconnect
        self._heard_at = 0  # wall ms: the last update, or the start of the current attempt
        self._delivered = False  # the current connection brought an update

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"

    def due(self, now: int) -> bool:
        """Whether the stream is to be read (or tried again) now."""
        return self.state != "off" and now >= self.retry_at

    async def next_update(self, symbols: list[str], wait_s: float, timeout_s: float) -> object:
        """The next update of `symbols` ({symbol: ticker}, CCXT's `newUpdates`: the tickers that
        changed), or None when none came within `wait_s` or the stream failed (counted, backed
        off: see `state`). The markets load within `timeout_s` first. A changed symbol list
        subscribes the new symbols; those no longer wanted stay subscribed until the connection
        ends (the feed filters them out)."""
        exchange = self.exchange
        now = self._monotonic()
        self._heard_at = self._heard_at or now
        try:
            if not exchange.markets:
                async with asyncio.timeout(timeout_s):
                    await exchange.load_markets()
            listed = [s for s in symbols if s in exchange.markets]
            if not listed:  # the REST polls price them
                await asyncio.sleep(wait_s)
                return None
            return await self._watch(listed, wait_s)
        except Exception as exc:
            self._failed(exc)
            return None

    async def _watch(self, symbols: list[str], wait_s: float) -> object:
        try:
            async with asyncio.timeout(wait_s) as waited:
                answer = await self.exchange.watch_tickers(symbols)
        except TimeoutError:
            if not waited.expired():
                raise  # CCXT's own
            if self._monotonic() - self._heard_at > self._silent_ms:
                await self._restart()
            return None
        if not self.streaming:
            log.info("ccxt %s: streaming tickers", self.exchange.id)
        self.state, self.error, self._delivered = "streaming", None, True
        self._heard_at = self._monotonic()
        return answer

    def _failed(self, exc: BaseException) -> None:
        fault = classify(exc)
        self.error = fault.name
        self._on_fault(fault, "stream")
        if fault.kind == "not_supported":
            self.state = "off"
            return
        if self._delivered:  # a connection that worked is retried at once (0..0.5 s)
            self._backoff.reset()
            self._delivered = False
        self.retry_at = self._monotonic() + int(self._backoff.next_s() * 1000)
        self._heard_at = self.retry_at
        self.state = "backoff"
        self._on_reconnect()

    async def _restart(self) -> None:
        """Close the exchange's WebSocket connections (ccxt.pro `close()`: the object stays
        usable, its next watch connects again) after silence past `silent_ms`."""
        self._on_fault(Fault("silent", "silent", False), "stream")
        self.error = f"nothing heard for {self._silent_ms} ms"
        self.state, self._delivered = "backoff", False
        self.retry_at = self._heard_at = self._monotonic()
        self._on_reconnect()
        try:
            await asyncio.wait_for(self.exchange.close(), 5.0)
        except Exception as exc:  # the next watch finds out whether it worked
            log.warning(
                "ccxt %s: closing a silent stream: %s", self.exchange.id, type(exc).__name__
            )
