"""DexScreenerFeed: DexScreener's token pairs polled as a LiveFeed (engine/ports.py) — a pass
over the watched tokens every `interval_ms`, in requests of at most 30 addresses through one
rate gate, the best pair per token as its Tick; faults counted, backed off, never raised
(../shared/contracts/dexscreener.md)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence

import aiohttp
from tradingd.adapters.app.settings import DexScreenerFeedSettings
from tradingd.adapters.feeds.errors import FeedStatusError, ResponseTooLarge
from tradingd.adapters.feeds.retry import Backoff
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.model import Tick
from tradingd.engine.ports import ComponentHealth, PushTicks

from .client import DexScreenerClient, is_address
from .fetches import FetchBatcher
from .parsing import SOURCE, MalformedBody, decode_pairs, price_tokens, quote_addresses
from .rate import FETCH, POLL, RequestGate

log = logging.getLogger("tradingd.feeds.dexscreener")

_BASE_COUNTERS = (
    "ticks",
    "requests",
    "passes",
    "reconnects",
    "errors_http_429",
    "errors_http_5xx",
    "errors_http_4xx",
    "errors_timeout",
    "errors_connection",
    "errors_truncated",
    "errors_malformed",
    "errors_malformed_pair",
    "errors_too_large",
    "errors_no_pair",
    "errors_fetch_timeout",
    "errors_fetch_rate_limited",
    "errors_push",
    "errors_internal",
)
# The first wait after a failure: an eighth of the cap (so a few failures in a row climb to it),
# at most half a second.
BACKOFF_INITIAL_MS = 500
DOWN_AFTER_FAILURES = 3  # failed requests in a row (429s aside) before health says "down"
MIN_STALE_MS = 15_000


class _Failed(Exception):
    """One request failed; the kind is counted already. `rate_limited`: a 429 (the gate paused
    every request)."""

    def __init__(self, kind: str, rate_limited: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.rate_limited = rate_limited


class DexScreenerFeed:
    """Prices of the watched tokens (chain addresses on `settings.chain`) from DexScreener.

    Ticks: token = the watched address as given, price_usd USD per whole token (`priceUsd` via
    Decimal), ts = `clock()` (epoch ms) when the response arrived, source "dexscreener", with
    liquidity_usd, market_cap_usd, fdv_usd, volume_24h_usd (USD) and pair_created_at (epoch ms)
    of the pair with the highest USD liquidity. `watched()` is read at the start of each pass;
    tokens that are not chain addresses (CCXT instruments) are never asked for."""

    source = SOURCE

    def __init__(
        self,
        settings: DexScreenerFeedSettings,
        watched: Callable[[], Collection[str]],
        clock: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._watched = watched
        self._clock = clock
        self._quotes = quote_addresses(settings.chain, settings.quote_symbols)
        self._gate = RequestGate(settings.max_requests_per_min)
        self._fetches = FetchBatcher(
            lambda: self._gate.acquire(FETCH), self._send_fetch, settings.max_addresses_per_request
        )
        initial = max(1, min(BACKOFF_INITIAL_MS, settings.backoff_max_ms // 8))
        self._backoff = Backoff(initial, settings.backoff_max_ms, rng or random.Random())
        self._counters: dict[str, int] = dict.fromkeys(_BASE_COUNTERS, 0)
        self.last_tick_ms: int | None = None
        self._tokens: tuple[str, ...] = ()
        self._watching_since: int | None = None
        self._client: DexScreenerClient | None = None
        self._backoff_until_ms = 0  # the poller waits out a failure until then (wall ms)
        self._failures_in_row = 0
        self._answered = False
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"DexScreenerFeed(url={self.settings.url!r}, chain={self.settings.chain!r})"

    # -- LiveFeed ---------------------------------------------------------------------------

    def covers(self, token: str) -> bool:
        """Any chain address (DexScreener lists every token with a pool); not a CCXT symbol."""
        return is_address(token)

    def counters(self) -> Mapping[str, int]:
        return dict(self._counters)

    def health(self) -> ComponentHealth:
        now = self._clock()
        age = None if self.last_tick_ms is None else now - self.last_tick_ms
        paused = self._gate.paused_for()
        status, reason = self._status(now, paused)
        return {
            "status": status,
            "reason": reason,
            "tokens": list(self._tokens),
            "last_tick_age_ms": age,
            "reconnects": self._counters["reconnects"],
            "last_error": self._last_error,
            "retry_after_s": round(paused, 3) if paused > 0 else None,
        }

    def _status(self, now: int, paused: float) -> tuple[str, str]:
        if not self._tokens:
            return "idle", "no watched token"
        if self._failures_in_row >= DOWN_AFTER_FAILURES:
            return "down", f"{self._failures_in_row} requests failed in a row"
        # stale whatever the reason: a long Retry-After or backoff leaves prices unrefreshed
        stale_ms = max(MIN_STALE_MS, 3 * self.settings.interval_ms)
        since = max(self.last_tick_ms or 0, self._watching_since or 0)
        if now - since > stale_ms:
            why = " (rate limited)" if paused > 0 else ""
            return "stale", f"no tick for more than {stale_ms} ms{why}"
        if paused > 0:
            return "backoff", f"rate limited: retry in {paused * 1000:.0f} ms"
        if now < self._backoff_until_ms:
            return "backoff", f"retry in {self._backoff_until_ms - now} ms"
        if not self._answered:
            return "connecting", "no answer yet"
        return "ok", ""

    async def fetch(self, tokens: list[str], timeout_s: float) -> list[Tick]:
        """The prices of `tokens` now, ahead of the polling queue (same rate gate; fetches that
        wait together share one request), within `timeout_s`; [] on any failure (counted,
        never raised). Not pushed: the caller does."""
        wanted = [t for t in dict.fromkeys(tokens) if is_address(t)]
        if not wanted or timeout_s <= 0:
            return []
        if self._gate.paused_for() >= timeout_s:
            self._bump("errors_fetch_rate_limited")  # asking now would wait past the caller
            return []
        try:
            async with asyncio.timeout(timeout_s):
                return await self._fetches.fetch(wanted)
        except TimeoutError:
            self._bump("errors_fetch_timeout")
            return []

    async def run(self, push_ticks: PushTicks, /) -> None:
        """Poll until cancelled; never raises anything else (every failure is retried)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.request_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._client = self._new_client(session)
            try:
                await self._poll_forever(push_ticks)
            finally:
                self._client = None

    # -- polling ------------------------------------------------------------------------------

    def _want(self) -> list[str]:
        try:
            watched = self._watched()
        except Exception:  # the engine's read must not take the feed down
            log.exception("dexscreener: watched() failed")
            watched = ()
        tokens = sorted({t for t in watched if is_address(t)})
        if tokens and not self._tokens:
            self._watching_since = self._clock()
        self._tokens = tuple(tokens)
        return tokens

    async def _poll_forever(self, push_ticks: PushTicks) -> None:
        loop = asyncio.get_running_loop()
        interval = self.settings.interval_ms / 1000
        while True:
            started = loop.time()
            tokens = self._want()
            if tokens:
                try:
                    await self._pass(tokens, push_ticks)
                except Exception:  # a bug here must cost a pass, never the feed
                    log.exception("dexscreener: a polling pass failed unexpectedly")
                    self._count_error("internal", "a polling pass failed unexpectedly")
                    await self._wait_backoff()
                self._counters["passes"] += 1
            # a pass longer than the interval is followed at once by the next; the gate alone
            # paces the requests, so that never bursts
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    async def _pass(self, tokens: Sequence[str], push_ticks: PushTicks) -> None:
        size = self.settings.max_addresses_per_request
        for i in range(0, len(tokens), size):
            batch = tokens[i : i + size]
            await self._gate.acquire(POLL)
            try:
                ticks = await self._send(batch)
            except _Failed as failed:
                # the batch's tokens are asked again in the next pass
                self._counters["reconnects"] += 1
                if not failed.rate_limited:  # a 429 paused the gate already
                    await self._wait_backoff()
                continue
            if ticks:
                self._deliver(ticks, push_ticks)

    async def _wait_backoff(self) -> None:
        delay = self._backoff.next_s()
        self._backoff_until_ms = self._clock() + int(delay * 1000)
        await asyncio.sleep(delay)

    def _deliver(self, ticks: list[Tick], push_ticks: PushTicks) -> None:
        try:
            push_ticks(ticks)
        except Exception:  # the runtime's failure is not the feed's: keep polling
            log.exception("dexscreener: pushing ticks failed")
            self._bump("errors_push")
            return
        self._counters["ticks"] += len(ticks)
        self.last_tick_ms = self._clock()

    # -- one request --------------------------------------------------------------------------

    async def _send_fetch(self, addresses: list[str]) -> list[Tick]:
        try:
            return await self._send(addresses)
        except _Failed:
            return []

    async def _send(self, addresses: Sequence[str]) -> list[Tick]:
        """Ask for `addresses` once (the caller has passed the gate); their ticks (maybe none).
        Raises _Failed after counting the failure (a 429 pauses the gate for every request)."""
        self._counters["requests"] += 1
        try:
            body = await self._get(addresses)
        except FeedStatusError as exc:
            raise self._on_status(exc) from None
        except ResponseTooLarge as exc:
            raise self._fail("too_large", str(exc)) from None
        except TimeoutError:
            raise self._fail(
                "timeout", f"no answer in {self.settings.request_timeout_s} s"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise self._fail("truncated", f"body cut short: {type(exc).__name__}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._fail("connection", type(exc).__name__) from None
        arrived = self._clock()
        try:
            decoded = decode_pairs(body)
        except MalformedBody as exc:
            raise self._fail("malformed", f"not a JSON array of pairs: {exc}") from None
        self._answered = True
        self._failures_in_row = 0
        self._backoff.reset()
        self._backoff_until_ms = 0
        if decoded.malformed:
            self._bump("errors_malformed_pair", decoded.malformed)
        s = self.settings
        priced = price_tokens(decoded.pairs, addresses, s.chain, arrived, self._quotes)
        if priced.no_pair:
            self._bump("errors_no_pair", len(priced.no_pair))
            log.debug("dexscreener: no usable pair", extra={"tokens": priced.no_pair[:5]})
        return priced.ticks

    async def _get(self, addresses: Sequence[str]) -> bytes:
        if self._client is not None:
            return await self._client.tokens(addresses)
        # fetch() before run() opened the session: a session for this request alone
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.request_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await self._new_client(session).tokens(addresses)

    def _on_status(self, exc: FeedStatusError) -> _Failed:
        status = exc.status
        if status == 429:
            wait = exc.retry_after_s
            if wait is None:
                wait = self._backoff.next_s()
            self._gate.pause(wait)
            self._count_error("http_429", f"{exc}; every request waits {wait:.3f} s")
            return _Failed("http_429", rate_limited=True)
        kind = "http_5xx" if status >= 500 else "http_4xx"
        return self._fail(kind, str(exc))

    def _fail(self, kind: str, text: str) -> _Failed:
        self._failures_in_row += 1
        self._count_error(kind, text)
        return _Failed(kind)

    def _count_error(self, kind: str, text: str) -> None:
        self._bump(f"errors_{kind}")
        self._last_error = f"{kind}: {text[:300]}"
        log.warning("dexscreener: %s", self._last_error)

    def _new_client(self, session: aiohttp.ClientSession) -> DexScreenerClient:
        s = self.settings
        return DexScreenerClient(
            session, s.url, s.chain, s.request_timeout_s, s.max_response_bytes, self._clock
        )

    def _bump(self, counter: str, n: int = 1) -> None:
        self._counters[counter] = self._counters.get(counter, 0) + n
