"""CcxtTickerFeed: one exchange's tickers through CCXT as a LiveFeed (engine/ports.py) — the
watched markets streamed with ccxt.pro `watch_tickers`, reconnected with backoff, and polled with
REST `fetch_tickers` while the stream is down, unsupported or silent for a market."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from tradingd.adapters.feeds.retry import Backoff
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.model import Tick
from tradingd.engine.ports import ComponentHealth, PushTicks

from .faults import Fault, classify
from .parsing import instrument_id, market_symbol, parse_tickers
from .rest import BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, RestRequests

log = logging.getLogger("tradingd.feeds.ccxt")

_BASE_COUNTERS: Final = (
    "ticks",
    "requests",
    "ws_updates",
    "reconnects",
    "errors_rate_limited",
    "errors_ddos_protection",
    "errors_timeout",
    "errors_network",
    "errors_exchange",
    "errors_bad_symbol",
    "errors_bad_price",
    "errors_bad_timestamp",
    "errors_future",
    "errors_malformed",
    "errors_unknown_symbol",
    "errors_over_limit",
    "errors_push",
    "errors_internal",
    "errors_fetch",
)
DOWN_AFTER_FAILURES: Final = 3  # REST failures in a row, the stream not up, before "down"
MARKETS_RELOAD_MS: Final = 300_000  # an unknown watched symbol reloads the markets this seldom


class CcxtTickerFeed:
    """Prices of the watched markets of one exchange (`exchange_id`, CCXT's id, e.g. "binance").

    Instruments `<exchange_id>:<BASE>/<QUOTE>` with a USD stablecoin quote (USDT, USDC) listed
    in the exchange's markets are priced; at most `max_symbols` of them (those already priced
    first, then by name; the rest are counted, `errors_over_limit`, and shown in health).
    `ws_exchange`: a ccxt.pro exchange (None: REST only); `rest_exchange`: a
    ccxt.async_support one. The caller builds, configures (rate limiter on) and closes both.

    Ticks: token = the instrument id, price_usd = the ticker's last price in its quote (see
    parsing.ticker_price), ts = the ticker's timestamp (epoch ms; receipt time when absent),
    source = `exchange_id`, volume_24h_usd = quoteVolume. One push per stream update or REST
    answer. Timings: `poll_interval_ms` (REST polling period, and how often the watched set is
    read while streaming), `stale_after_ms` (no tick for this long: health "stale"; a market
    silent on the stream for half of it is polled over REST), `timeout_s` (one REST request or
    market load). Faults are counted, backed off (exponential, full jitter, 0.5 s .. 30 s; a
    rate limit waits its Retry-After when the exchange sends one) and never raised."""

    def __init__(
        self,
        exchange_id: str,
        ws_exchange: Any | None,
        rest_exchange: Any,
        watched: Callable[[], Iterable[str]],
        *,
        poll_interval_ms: int = 2000,
        stale_after_ms: int = 10_000,
        timeout_s: float = 5.0,
        max_symbols: int = 200,
        use_websocket: bool = True,
        clock: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        if poll_interval_ms < 1 or stale_after_ms < 1 or timeout_s <= 0 or max_symbols < 1:
            raise ValueError("poll_interval_ms, stale_after_ms, timeout_s and max_symbols > 0")
        self.source = exchange_id
        self._ws = ws_exchange
        self._watched = watched
        self._poll_ms = poll_interval_ms
        self._stale_ms = stale_after_ms
        self._quiet_ms = max(poll_interval_ms, stale_after_ms // 2)
        self._timeout_s = timeout_s
        self._max_symbols = max_symbols
        self._clock = clock
        rng = rng or random.Random()
        self._ws_backoff = Backoff(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, rng)
        self._rest = RestRequests(rest_exchange, clock, rng, self._count_request, self._error)
        has = getattr(ws_exchange, "has", None) or {}
        self._ws_usable = (
            use_websocket and ws_exchange is not None and bool(has.get("watchTickers"))
        )
        self._ws_state = "connecting" if self._ws_usable else "off"  # streaming|backoff|off
        self._ws_retry_at = 0  # wall ms: the stream is tried again from then
        self._ws_delivered = False  # the current connection brought an update
        self._next_poll_at = 0  # wall ms: the next REST poll (or quiet refresh) is due
        self._next_watch_at = 0  # wall ms: the watched set is read again
        self._ws_error: str | None = None  # the stream's last failure (exception class)
        self._markets_loaded_at: int | None = None
        self._counters: dict[str, int] = dict.fromkeys(_BASE_COUNTERS, 0)
        self._push: PushTicks | None = None
        self._instruments: dict[str, str] = {}  # symbol -> instrument id, priced now
        self._candidates = 0  # watched markets of this exchange (before markets and the bound)
        self._unknown: set[str] = set()  # watched symbols the exchange does not list
        self._over: set[str] = set()  # watched symbols beyond max_symbols
        self._since: dict[str, int] = {}  # instrument -> wall ms of its last tick (or selection)
        self._watching_since: int | None = None
        self._answered = False
        self.last_tick_ms: int | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"CcxtTickerFeed({self.source!r}, websocket={self._ws_usable})"

    # -- LiveFeed ---------------------------------------------------------------------------

    def covers(self, token: str) -> bool:
        """A USD-quoted market of this exchange (listed, once the markets are loaded)."""
        symbol = market_symbol(self.source, token)
        markets = self._rest.exchange.markets
        return symbol is not None and (not markets or symbol in markets)

    def counters(self) -> Mapping[str, int]:
        return dict(self._counters)

    def health(self) -> ComponentHealth:
        now = self._clock()
        paused = max(0, self._rest.paused_until - now)
        status, reason = self._status(now, paused)
        return {
            "status": status,
            "reason": reason,
            "mode": self._mode(),
            "tokens": sorted(self._instruments.values()),
            "last_tick_age_ms": None if self.last_tick_ms is None else now - self.last_tick_ms,
            "reconnects": self._counters["reconnects"],
            "last_error": self._last_error,
            "over_limit": len(self._over),
            "unknown_symbols": len(self._unknown),
            "retry_after_s": round(paused / 1000, 3)
            if self._rest.rate_limited and paused
            else None,
        }

    def _mode(self) -> str:
        return "websocket" if self._ws_state in ("streaming", "connecting") else "polling"

    def _status(self, now: int, paused: int) -> tuple[str, str]:
        streaming = self._ws_state == "streaming"
        failing = not streaming and self._rest.failures >= DOWN_AFTER_FAILURES
        if not self._instruments:
            if self._candidates and not self._rest.exchange.markets:  # the markets never loaded
                if failing:
                    return "down", f"markets not loaded: {self._rest.failures} failures in a row"
                return ("backoff" if self._rest.failures else "connecting"), "loading markets"
            if self._candidates and self._unknown:
                return "idle", f"no watched market is listed on {self.source}"
            return "idle", f"no watched market on {self.source}"
        if failing:
            return "down", f"{self._rest.failures} REST requests failed in a row; stream down"
        since = max(self.last_tick_ms or 0, self._watching_since or 0)
        if now - since > self._stale_ms:
            return "stale", f"no tick for more than {self._stale_ms} ms"
        if not streaming and paused and self._rest.rate_limited:
            return "backoff", f"rate limited: retry in {paused} ms"
        if not streaming and self._rest.failures and self._ws_state != "connecting":
            return "backoff", f"retry in {paused} ms"
        if not (self._answered or self._rest.answered):
            return "connecting", "no answer yet"
        if self._ws_usable and not streaming:
            why = self._ws_error or "not connected"
            return "ok", f"stream down ({why}): polling every {self._poll_ms} ms"
        return "ok", ""

    async def fetch(self, tokens: list[str], timeout_s: float) -> list[Tick]:
        """One REST `fetch_tickers` for the covered `tokens`, within `timeout_s`; [] on any
        failure (counted, never raised) or while a rate limit holds REST requests longer than
        `timeout_s`. Not pushed: the caller does."""
        symbols = {s: t for t in tokens if (s := market_symbol(self.source, t)) and self.covers(t)}
        if not symbols or timeout_s <= 0:
            return []
        wait_ms = self._rest.paused_until - self._clock()
        if self._rest.rate_limited and wait_ms >= timeout_s * 1000:
            self._bump("errors_fetch")
            return []
        answer = await self._rest.tickers(list(symbols)[: self._max_symbols], timeout_s)
        if answer is None:
            self._bump("errors_fetch")
            return []
        return self._parse(answer, symbols)

    async def run(self, push_ticks: PushTicks, /) -> None:
        """Stream (or poll) until cancelled; never raises anything else."""
        self._push = push_ticks
        while True:
            try:
                await self._turn()
            except Exception as exc:  # a bug here must cost a turn, never the feed
                log.exception("ccxt %s: a feed turn failed unexpectedly", self.source)
                self._error(classify(exc), "internal")
                await asyncio.sleep(self._poll_ms / 1000)

    async def _turn(self) -> None:
        now = self._clock()
        if now >= self._next_watch_at:  # the watched set is read once a poll interval
            self._next_watch_at = now + self._poll_ms
            wanted = self._wanted()
            if wanted and not await self._ensure_markets(wanted):
                return
            self._select(wanted)
        if not self._instruments:
            await asyncio.sleep(self._poll_ms / 1000)
        elif not (self._ws_usable and now >= self._ws_retry_at and await self._ws_turn()):
            await self._poll_turn()

    # -- the watched set ----------------------------------------------------------------------

    def _wanted(self) -> list[str]:
        try:
            watched = list(self._watched())
        except Exception:  # the engine's read must not take the feed down
            log.exception("ccxt %s: watched() failed", self.source)
            watched = []
        wanted = {s for t in watched if isinstance(t, str) and (s := market_symbol(self.source, t))}
        self._candidates = len(wanted)
        return sorted(wanted)

    async def _ensure_markets(self, wanted: list[str]) -> bool:
        """The REST exchange's markets are loaded (reloaded when a watched symbol is unknown,
        at most every MARKETS_RELOAD_MS). False after a failed first load (its backoff waited)."""
        now = self._clock()
        loaded = self._rest.exchange.markets
        at = self._markets_loaded_at
        if loaded and not (
            (at is None or now - at > MARKETS_RELOAD_MS) and any(s not in loaded for s in wanted)
        ):
            return True
        if await self._rest.load_markets(bool(loaded), self._timeout_s):
            self._markets_loaded_at = self._clock()
            return True
        if loaded:
            self._markets_loaded_at = now  # retried after MARKETS_RELOAD_MS, not each turn
            return True  # the markets we have still price the symbols they list
        await self._rest.wait_pause()
        return False

    def _select(self, wanted: list[str]) -> None:
        markets = self._rest.exchange.markets or {}
        unknown = {s for s in wanted if s not in markets}
        self._bump("errors_unknown_symbol", len(unknown - self._unknown))
        self._unknown = unknown
        # symbols priced already keep their place: a new one never evicts them
        listed = sorted(
            (s for s in wanted if s in markets), key=lambda s: (s not in self._instruments, s)
        )
        kept, over = listed[: self._max_symbols], set(listed[self._max_symbols :])
        if over - self._over:
            self._bump("errors_over_limit", len(over - self._over))
            log.warning(
                "ccxt %s: %d watched markets beyond max_symbols=%d are not priced",
                self.source, len(over), self._max_symbols,
            )  # fmt: skip
        self._over = over
        now = self._clock()
        if kept and not self._instruments:
            self._watching_since = now
        instruments = {s: instrument_id(self.source, s) for s in kept}
        self._since = {t: self._since.get(t, now) for t in instruments.values()}
        self._instruments = instruments

    # -- the stream -------------------------------------------------------------------------

    async def _ws_turn(self) -> bool:
        """Wait for one stream update of the priced symbols, at most a poll interval, then poll
        over REST the markets the stream left quiet. False when the stream lists none of them."""
        ws = self._ws
        try:
            if not ws.markets:
                async with asyncio.timeout(self._timeout_s):
                    await ws.load_markets()
            symbols = [s for s in self._instruments if s in ws.markets]
            if not symbols:
                return False
            answer = await self._watch(symbols)
        except Exception as exc:
            self._ws_failed(exc)
            return True
        if answer is not None:
            self._ws_ok()
            self._counters["ws_updates"] += 1
            self._deliver(self._parse(answer, self._instruments))
        await self._refresh_quiet()
        return True

    async def _watch(self, symbols: list[str]) -> object | None:
        """One `watch_tickers` update (CCXT's `newUpdates`: the tickers that changed), or None
        when none came within a poll interval. A changed symbol list subscribes the new ones;
        the ones no longer wanted stay subscribed until the connection ends (filtered out)."""
        try:
            async with asyncio.timeout(self._poll_ms / 1000) as waited:
                return await self._ws.watch_tickers(symbols)
        except TimeoutError:
            if waited.expired():
                return None
            raise

    def _ws_ok(self) -> None:
        if self._ws_state != "streaming":
            log.info("ccxt %s: streaming tickers", self.source)
        self._ws_state = "streaming"
        self._ws_delivered = True
        self._ws_error = None
        self._answered = True

    def _ws_failed(self, exc: BaseException) -> None:
        fault = classify(exc)
        self._error(fault, "stream")
        self._ws_error = fault.name
        if fault.kind == "not_supported":
            self._ws_usable = False
            self._ws_state = "off"
            return
        if self._ws_delivered:  # a connection that worked is retried at once (0..0.5 s)
            self._ws_backoff.reset()
            self._ws_delivered = False
            self._next_poll_at = 0  # and polled at once: prices do not wait for it
        self._counters["reconnects"] += 1
        self._ws_retry_at = self._clock() + int(self._ws_backoff.next_s() * 1000)
        self._ws_state = "backoff"

    async def _refresh_quiet(self) -> None:
        """Poll over REST the priced markets without a tick for `quiet_ms` while streaming (a
        quiet market, one the stream does not serve), for a poll interval otherwise (the
        stream is reconnecting); at most once a poll interval."""
        now = self._clock()
        if now < self._next_poll_at or now < self._rest.paused_until:
            return
        threshold = self._quiet_ms if self._ws_state == "streaming" else self._poll_ms
        quiet = {s: t for s, t in self._instruments.items() if now - self._since[t] >= threshold}
        if not quiet:
            return
        self._next_poll_at = now + self._poll_ms
        answer = await self._rest.tickers(list(quiet), self._timeout_s)
        if answer is not None:
            self._deliver(self._parse(answer, quiet))

    # -- polling ------------------------------------------------------------------------------

    async def _poll_turn(self) -> None:
        """One REST poll when due, then sleep until the next poll, the stream's retry or one
        poll interval (the watched set is read again), whichever comes first."""
        now = self._clock()
        if now >= self._next_poll_at and now >= self._rest.paused_until:
            self._next_poll_at = now + self._poll_ms
            answer = await self._rest.tickers(list(self._instruments), self._timeout_s)
            if answer is not None:
                self._deliver(self._parse(answer, self._instruments))
        now = self._clock()
        wake = max(self._next_poll_at, self._rest.paused_until)
        if self._ws_usable:
            wake = min(wake, self._ws_retry_at)
        await asyncio.sleep(min(max(0, wake - now), self._poll_ms) / 1000)

    # -- ticks --------------------------------------------------------------------------------

    def _parse(self, answer: object, instruments: Mapping[str, str]) -> list[Tick]:
        if not isinstance(answer, (Mapping, list)):
            self._bump("errors_malformed")
            return []
        parsed = parse_tickers(answer, instruments, self.source, self._clock())
        for counter, n in parsed.refused.items():
            self._bump(counter, n)
        if parsed.refused:
            self._last_error = "refused tickers: " + ", ".join(sorted(parsed.refused))
        return parsed.ticks

    def _deliver(self, ticks: list[Tick]) -> None:
        if not ticks or self._push is None:
            return
        try:
            self._push(ticks)
        except Exception:  # the runtime's failure is not the feed's: keep going
            log.exception("ccxt %s: pushing ticks failed", self.source)
            self._bump("errors_push")
            return
        now = self._clock()
        self._counters["ticks"] += len(ticks)
        self.last_tick_ms = now
        for tick in ticks:
            if tick.token in self._since:
                self._since[tick.token] = now

    def _count_request(self) -> None:
        self._counters["requests"] += 1

    def _bump(self, counter: str, n: int = 1) -> None:
        if n:
            self._counters[counter] = self._counters.get(counter, 0) + n

    def _error(self, fault: Fault, what: str) -> None:
        self._bump(f"errors_{fault.kind}")
        self._last_error = f"{what}: {fault.name}"
        log.warning("ccxt %s: %s failed: %s", self.source, what, fault.name)
