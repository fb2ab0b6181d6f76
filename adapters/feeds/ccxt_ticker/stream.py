"""The ticker feed's WebSocket: ccxt.pro `watch_tickers` of one exchange, the symbol list it is
subscribed to, the changed tickers it read, its state, the reconnection backoff after a failure,
and the watch for a stream that went silent without closing.

Three ccxt.pro behaviours shape it (ccxt 4.5.90, checked against the fake Binance):
- `watch_tickers` resolves with the one message that woke it; the messages that come while
  nobody awaits only update the cache `exchange.tickers`. So the changed tickers are read from
  the cache after each wake-up (and 50 ms later: one push for a burst).
- binance gives every distinct symbol list passed to `watch_tickers` a stream slot of its own, a
  new connection (`/ws/<n>`, up to `streamLimits` = 50), never released: a changed list leaves
  the old connection open with its subscriptions, and after 50 x 200 lists every watch raises
  BadRequest. So a new list is subscribed on fresh connections only (the old ones closed first),
  at most once per `resubscribe_ms`, and a shrunk list keeps its subscription until the unwanted
  symbols outnumber the wanted ones.
- The receive loop dies on a message CCXT cannot parse (a "NaN" price) and leaves the socket
  open: nothing would reconnect it. A stream that hears nothing for `silent_ms` is closed."""

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

# Nothing heard for this many times `stale_after_ms`: the stream is taken for dead (a quiet
# market costs a reconnection that often, a dead stream no more than that).
SILENT_AFTER_STALE: Final = 3
# A connection that streamed this long before failing is retried at once (the backoff starts
# over); one that fails sooner keeps climbing it (a server that accepts, sends one message and
# drops us must not be dialled 4 times a second: Binance allows 300 connections per 5 min).
STABLE_MS: Final = 30_000
STALE_SUBSCRIPTIONS: Final = 16  # unwanted symbols kept subscribed beyond as many as wanted
CLOSE_TIMEOUT_S: Final = 5.0
# An update is pushed with those that follow it within this: one `watch_tickers` call costs
# O(symbols) in ccxt (a future per symbol raced), so waking per message costs ~1.4 ms at 200
# symbols; Binance's tickers are 1 s aggregates, so 50 ms more latency is small.
BATCH_S: Final = 0.05


class TickerStream:
    """`watch_tickers` through `exchange`: a ccxt.pro exchange the caller builds for this feed
    alone (the feed closes its connections: to resubscribe, and after silence) and closes.
    `state`: "connecting" (no update yet), "streaming", "backoff" (failed; tried again from
    `retry_at`) or "off" (no WebSocket: absent, `has['watchTickers']` false, or NotSupported).
    Times are `monotonic_ms`. Failures go to `on_fault(fault, "stream")`, each one followed by a
    new connection also to `on_reconnect()`; the first update after a failure to
    `on_resume()`."""

    def __init__(
        self,
        exchange: Any,  # None: no WebSocket (state "off")
        usable: bool,
        silent_ms: int,
        resubscribe_ms: int,
        monotonic_ms: Callable[[], int],
        rng: random.Random,
        on_fault: Callable[[Fault, str], None],
        on_reconnect: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        self.exchange = exchange
        self.state = "connecting" if usable and exchange is not None else "off"
        self.retry_at = 0
        self.error: str | None = None  # the last failure's exception class
        self.subscribed: frozenset[str] = frozenset()  # the symbols watched now
        self._list: list[str] = []  # the same, in the order given to watch_tickers
        self._silent_ms = silent_ms
        self._resubscribe_ms = resubscribe_ms
        self._resubscribe_at = 0
        self._monotonic = monotonic_ms
        self._backoff = Backoff(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, rng)
        self._on_fault = on_fault
        self._on_reconnect = on_reconnect
        self._on_resume = on_resume
        self._heard_at = 0  # the last update, or the start of the current attempt
        self._delivered = False  # the current connection brought an update
        self._streaming_since = 0
        # the ticker object last returned per symbol (bounded by the exchange's markets)
        self._seen: dict[str, object] = {}

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"

    def due(self, now: int) -> bool:
        """Whether the stream is to be read (or tried again) now."""
        return self.state != "off" and now >= self.retry_at

    async def next_update(self, wanted: list[str], wait_s: float, timeout_s: float) -> object:
        """The tickers of the subscribed symbols that changed since the last call ({symbol:
        ticker}, maybe of symbols no longer wanted; maybe empty) once an update came, or None
        when none came within `wait_s` or the stream failed (counted, backed off: see `state`).
        The markets load within `timeout_s` first; the subscription follows `wanted` (see the
        module's note)."""
        exchange = self.exchange
        self._heard_at = self._heard_at or self._monotonic()
        try:
            if not exchange.markets:
                async with asyncio.timeout(timeout_s):
                    await exchange.load_markets()
            listed = [s for s in wanted if s in exchange.markets]
            if not listed:  # the REST polls price them
                await asyncio.sleep(wait_s)
                return None
            symbols = await self._subscription(listed)
            if await self._watch(symbols, wait_s) is None:
                return None
            await asyncio.sleep(BATCH_S)  # what arrives meanwhile goes out in the same push
        except Exception as exc:
            self._failed(exc)
            return None
        return self._changed(symbols)

    def _changed(self, symbols: list[str]) -> dict[str, object]:
        """The cached tickers (ccxt.pro's `exchange.tickers`, replaced by a new dict on every
        message) of `symbols` not returned before. `watch_tickers` returns only the update that
        woke it: the messages that came while the feed was not waiting would be lost without
        the cache (measured: 2 of 200 updates a second)."""
        cache = self.exchange.tickers or {}
        seen = self._seen
        changed: dict[str, object] = {}
        for symbol in symbols:
            ticker = cache.get(symbol)
            if ticker is not None and ticker is not seen.get(symbol):
                changed[symbol] = seen[symbol] = ticker
        return changed

    async def _subscription(self, listed: list[str]) -> list[str]:
        want = frozenset(listed)
        now = self._monotonic()
        if self._list and (
            (want <= self.subscribed and len(self.subscribed - want) <= len(want) + STALE_SUBSCRIPTIONS)
            or now < self._resubscribe_at  # the new symbols are polled over REST until then
        ):  # fmt: skip
            return self._list
        if self._list:
            await self._close()
        self._list, self.subscribed = listed, want
        self._resubscribe_at = now + self._resubscribe_ms
        return listed

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
            if self.error is not None:
                self._on_resume()
            self._streaming_since = self._monotonic()
        self.state, self.error, self._delivered = "streaming", None, True
        self._heard_at = self._monotonic()
        return answer

    async def stop(self) -> None:
        """Nothing to watch: close the connections (when subscribed); the next watch starts
        afresh."""
        if self._list:
            await self._close()
        if self.state != "off":
            self.state, self._delivered, self._heard_at = "connecting", False, 0

    def _failed(self, exc: BaseException) -> None:
        fault = classify(exc)
        self.error = fault.name
        self._on_fault(fault, "stream")
        if fault.kind == "not_supported":
            self.state = "off"
            return
        now = self._monotonic()
        if self._delivered and now - self._streaming_since >= STABLE_MS:
            self._backoff.reset()
        self._delivered = False
        self.retry_at = now + int(self._backoff.next_s() * 1000)
        self._heard_at = self.retry_at
        self.state = "backoff"
        self._on_reconnect()

    async def _restart(self) -> None:
        """After silence past `silent_ms`: close the connections; the next watch opens one."""
        self._on_fault(Fault("silent", "silent", False), "stream")
        self.error = f"nothing heard for {self._silent_ms} ms"
        self.state, self._delivered = "backoff", False
        self.retry_at = self._heard_at = self._monotonic()
        self._on_reconnect()
        await self._close()

    async def _close(self) -> None:
        """Close the exchange's WebSocket connections (ccxt.pro `close()`: the object stays
        usable, its next watch connects again) and forget the subscription."""
        exchange = self.exchange
        self._list, self.subscribed = [], frozenset()
        try:
            await asyncio.wait_for(exchange.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:  # the next watch finds out whether it worked
            log.warning("ccxt %s: closing the stream: %s", exchange.id, type(exc).__name__)
        # binance's stream slots (see the module's note): with no connection left none is in
        # use, so they are counted afresh
        for slots in ("streamBySubscriptionsHash", "numSubscriptionsByStream"):
            if isinstance(exchange.options.get(slots), dict):
                exchange.options[slots] = {}
