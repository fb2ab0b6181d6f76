"""CcxtTickerFeed: one exchange's tickers through CCXT as a LiveFeed (engine/ports.py) — the
watched markets streamed with ccxt.pro `watch_tickers` (stream.py), reconnected with backoff,
and polled with REST `fetch_tickers` (rest.py) while the stream is down, unsupported or quiet
for a market."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.model import Tick
from tradingd.engine.ports import ComponentHealth, PushTicks

from .faults import Fault
from .parsing import instrument_id, market_symbol, parse_tickers
from .rest import RestRequests, monotonic_ms
from .stream import SILENT_AFTER_STALE, TickerStream

log = logging.getLogger("tradingd.feeds.ccxt")

_BASE_COUNTERS: Final = (
    "ticks",
    "requests",
    "ws_updates",
    "reconnects",
    "stream_resumes",
    "errors_rate_limited",
    "errors_timeout",
    "errors_network",
    "errors_exchange",
    "errors_malformed",
    "errors_bad_symbol",
    "errors_silent",
    "errors_bad_price",
    "errors_bad_timestamp",
    "errors_future",
    "errors_unknown_symbol",
    "errors_over_limit",
    "errors_push",
    "errors_internal",
    "errors_fetch",
)
RESUBSCRIBE_POLLS: Final = 5  # a new symbol list is subscribed at most once per 5 poll intervals
DOWN_AFTER_FAILURES: Final = 3  # REST failures in a row, the stream not up, before "down"


class CcxtTickerFeed:
    """Prices of the watched markets of one exchange (`exchange_id`, CCXT's id, e.g. "binance").

    Instruments `<exchange_id>:<BASE>/<QUOTE>` with a USD stablecoin quote (USDT, USDC) listed
    in the exchange's markets are priced; at most `max_symbols` of them (those priced already
    first, then by name; the rest are counted, `errors_over_limit`, and shown in health).
    `ws_exchange`: a ccxt.pro exchange built for this feed alone (None: REST only), whose
    WebSocket connections the feed closes (to subscribe a changed symbol list, after silence,
    when nothing is watched); `rest_exchange`: a ccxt.async_support one, its markets loaded by
    the feed only when nobody has. The caller builds both (CCXT's rate limiter on), keeps their
    markets current, and closes them after the feed's task ended.

    Ticks: token = the instrument id, price_usd = the ticker's last price in its quote
    (parsing.ticker_price), ts = the ticker's timestamp (epoch ms; receipt time when absent),
    source = `exchange_id`, volume_24h_usd = quoteVolume; one push per REST answer, and per
    stream update with those that follow it within 50 ms (the latest ticker of each market).
    `poll_interval_ms`: the REST polling period, and how often the watched set is read
    (a changed list is subscribed at most once per 5 intervals, REST pricing the new markets);
    `stale_after_ms`: no tick for this long is health "stale", a market silent on the stream
    for half of it is polled over REST, a stream silent for 3x it is reconnected; `timeout_s`:
    one REST request or market load. Faults are counted, backed off (exponential, full jitter,
    0.5 s .. 30 s; a rate limit waits its Retry-After when the exchange sends one), never
    raised; health and errors show CCXT's exception class only (its messages hold URLs)."""

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
        monotonic: Callable[[], int] = monotonic_ms,
        rng: random.Random | None = None,
    ) -> None:
        if poll_interval_ms < 1 or stale_after_ms < 1 or timeout_s <= 0 or max_symbols < 1:
            raise ValueError("poll_interval_ms, stale_after_ms, timeout_s and max_symbols > 0")
        self.source = exchange_id
        self._watched = watched
        self._poll_ms = poll_interval_ms
        self._stale_ms = stale_after_ms
        self._quiet_ms = max(poll_interval_ms, stale_after_ms // 2)
        self._timeout_s = timeout_s
        self._max_symbols = max_symbols
        self._clock = clock  # wall ms: receipt times, last_tick_ms, health ages
        self._mono = monotonic  # ms: every schedule and wait
        rng = rng or random.Random()
        self._rest = RestRequests(
            rest_exchange, clock, monotonic, rng, self._count_request, self._error
        )
        has = getattr(ws_exchange, "has", None) or {}
        self._stream = TickerStream(
            ws_exchange,
            use_websocket and bool(has.get("watchTickers")),
            SILENT_AFTER_STALE * stale_after_ms,
            RESUBSCRIBE_POLLS * poll_interval_ms,
            monotonic,
            rng,
            self._error,
            lambda: self._bump("reconnects"),
            lambda: self._bump("stream_resumes"),
        )
        self._counters: dict[str, int] = dict.fromkeys(_BASE_COUNTERS, 0)
        self._push: PushTicks | None = None
        self._next_poll_at = 0  # monotonic ms: the next REST poll (or quiet refresh) is due
        self._next_watch_at = 0  # monotonic ms: the watched set is read again
        self._instruments: dict[str, str] = {}  # symbol -> instrument id, priced now
        self._candidates = 0  # watched markets of this exchange (before markets and the bound)
        self._unknown: set[str] = set()  # watched symbols the exchange does not list
        self._over: set[str] = set()  # watched symbols beyond max_symbols
        self._since: dict[str, int] = {}  # instrument -> monotonic ms of its last tick (or pick)
        self._watching_since: int | None = None
        self.last_tick_ms: int | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"CcxtTickerFeed({self.source!r}, websocket={self._stream.state != 'off'})"

    # -- LiveFeed ---------------------------------------------------------------------------

    def covers(self, token: str) -> bool:
        """A USD-quoted market of this exchange (listed, once the markets are loaded)."""
        symbol = market_symbol(self.source, token)
        markets = self._rest.exchange.markets
        return symbol is not None and (not markets or symbol in markets)

    def counters(self) -> Mapping[str, int]:
        return dict(self._counters)

    def health(self) -> ComponentHealth:
        """LiveFeed's fields, plus "mode" ("websocket" while the stream delivers, else
        "polling"), "over_limit" and "unknown_symbols" (watched markets left unpriced) and
        "retry_after_s" (while a rate limit holds REST requests)."""
        now = self._clock()
        paused = self._rest.paused_ms()
        status, reason = self._status(now, paused)
        return {
            "status": status,
            "reason": reason,
            "mode": "websocket" if self._stream.streaming else "polling",
            "tokens": sorted(self._instruments.values()),
            "last_tick_age_ms": None if self.last_tick_ms is None else now - self.last_tick_ms,
            "reconnects": self._counters["reconnects"],
            "last_error": self._last_error,
            "over_limit": len(self._over),
            "unknown_symbols": len(self._unknown),
            "retry_after_s": paused / 1000 if paused and self._rest.rate_limited else None,
        }

    def _status(self, now: int, paused: int) -> tuple[str, str]:
        rest, stream = self._rest, self._stream
        failing = not stream.streaming and rest.failures >= DOWN_AFTER_FAILURES
        if not self._instruments:
            if self._candidates and not rest.exchange.markets:  # the markets never loaded
                if failing:
                    return "down", f"markets not loaded: {rest.failures} failures in a row"
                return ("backoff" if rest.failures else "connecting"), "loading markets"
            if self._candidates and self._unknown:
                return "idle", f"no watched market is listed on {self.source}"
            return "idle", f"no watched market on {self.source}"
        if failing:
            return "down", f"{rest.failures} REST requests failed in a row; stream down"
        if now - max(self.last_tick_ms or 0, self._watching_since or 0) > self._stale_ms:
            return "stale", f"no tick for more than {self._stale_ms} ms"
        if not stream.streaming and paused and rest.rate_limited:
            return "backoff", f"rate limited: retry in {paused} ms"
        if not stream.streaming and rest.failures:
            return "backoff", f"REST failed: retry in {paused} ms"
        if not (stream.streaming or rest.answered):
            return "connecting", "no answer yet"
        if stream.state in ("backoff", "connecting") and stream.error:
            return "ok", f"stream down ({stream.error}): polling every {self._poll_ms} ms"
        return "ok", ""

    async def fetch(self, tokens: list[str], timeout_s: float) -> list[Tick]:
        """One REST `fetch_tickers` for the covered `tokens`, within `timeout_s`; [] on any
        failure (counted, never raised) or while a rate limit holds REST requests longer than
        `timeout_s`. Not pushed: the caller does."""
        symbols = {s: t for t in tokens if (s := market_symbol(self.source, t)) and self.covers(t)}
        if not symbols or timeout_s <= 0:
            return []
        if self._rest.rate_limited and self._rest.paused_ms() >= timeout_s * 1000:
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
                self._error(Fault("internal", type(exc).__name__, False), "feed")
                await asyncio.sleep(self._poll_ms / 1000)

    async def _turn(self) -> None:
        now = self._mono()
        if now >= self._next_watch_at:  # the watched set is read once a poll interval
            self._next_watch_at = now + self._poll_ms
            wanted = self._wanted()
            if wanted and not await self._ensure_markets():
                return
            self._select(wanted)
        if not self._instruments:
            await self._stream.stop()
            await asyncio.sleep(self._poll_ms / 1000)
        elif self._stream.due(self._mono()):
            await self._stream_turn()
        else:
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

    async def _ensure_markets(self) -> bool:
        """The REST exchange's markets are loaded (once; reloading them is their owner's job,
        the feed only reads them). False after a failed load (its backoff waited)."""
        if self._rest.exchange.markets:
            return True
        if await self._rest.load_markets(self._timeout_s):
            return True
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
        if kept and not self._instruments:
            self._watching_since = self._clock()
        now = self._mono()
        instruments = {s: instrument_id(self.source, s) for s in kept}
        self._since = {t: self._since.get(t, now) for t in instruments.values()}
        self._instruments = instruments

    # -- streaming and polling ------------------------------------------------------------------

    async def _stream_turn(self) -> None:
        """One stream update (at most a poll interval's wait), then a REST poll of the markets
        the stream left quiet."""
        was_streaming = self._stream.streaming
        wait_s = self._poll_ms / 1000
        answer = await self._stream.next_update(list(self._instruments), wait_s, self._timeout_s)
        if answer is not None:
            self._counters["ws_updates"] += 1
            self._deliver(self._parse(answer, self._instruments))
        elif was_streaming and not self._stream.streaming:
            self._next_poll_at = 0  # the stream just fell: prices do not wait for it
        if self._stream.due(self._mono()):
            await self._refresh_quiet()

    async def _refresh_quiet(self) -> None:
        """Poll over REST the priced markets without a tick for `quiet_ms` (streamed ones: a
        quiet market) or a poll interval (the others: not subscribed yet, not listed on the
        stream, or the stream not up yet); at most once a poll interval."""
        now = self._mono()
        if now < self._next_poll_at or self._rest.paused_ms():
            return
        streamed = self._stream.subscribed if self._stream.streaming else frozenset()
        quiet = {
            s: t
            for s, t in self._instruments.items()
            if now - self._since[t] >= (self._quiet_ms if s in streamed else self._poll_ms)
        }
        if quiet:
            self._next_poll_at = now + self._poll_ms
            answer = await self._rest.tickers(list(quiet), self._timeout_s)
            if answer is not None:
                self._deliver(self._parse(answer, quiet))

    async def _poll_turn(self) -> None:
        """One REST poll when due, then sleep until the next poll, the stream's retry or one
        poll interval (the watched set is read again), whichever comes first."""
        now = self._mono()
        if now >= self._next_poll_at and not self._rest.paused_ms():
            self._next_poll_at = now + self._poll_ms
            answer = await self._rest.tickers(list(self._instruments), self._timeout_s)
            if answer is not None:
                self._deliver(self._parse(answer, self._instruments))
        now = self._mono()
        wake = max(self._next_poll_at, self._rest.paused_until)
        if self._stream.state != "off":
            wake = min(wake, self._stream.retry_at)
        await asyncio.sleep(min(max(0, wake - now), self._poll_ms) / 1000)

    # -- ticks and counts -----------------------------------------------------------------------

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
        self._counters["ticks"] += len(ticks)
        self.last_tick_ms = self._clock()
        now = self._mono()
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
