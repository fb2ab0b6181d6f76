"""PythFeed: the Pyth Hermes price stream as a LiveFeed (engine/ports.py) — primes with
/latest, streams the watched feeds over SSE, reconnects with backoff, resubscribes
make-before-break, and reports health and counts (../shared/contracts/pyth-hermes.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Collection, Mapping

import aiohttp
from tradingd.adapters.app.settings import PythFeedSettings
from tradingd.adapters.feeds.errors import FeedStatusError, ResponseTooLarge
from tradingd.adapters.feeds.retry import Backoff
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.model import Tick
from tradingd.engine.ports import ComponentHealth, PushTicks

from .client import HermesClient
from .parsing import SOURCE, PriceParser, is_feed_id, normalize_id
from .sse import EventTooLarge, SseDecoder, SseEvent

log = logging.getLogger("tradingd.feeds.pyth")

# Hermes closes every stream after 24 h, and a slow reader at will, each after an `event:error`
# naming why; the rest of its `event:error`s ("Error receiving update: …") leave it open.
_SERVER_ENDS = ("Connection timeout reached", "Slow consumer")
FUTURE_SKEW_MS = 5_000  # the engine's default [prices] max_future_skew_ms
_BASE_COUNTERS = (
    "ticks",
    "events",
    "requests",
    "reconnects",
    "stream_ends",
    "errors_malformed",
    "errors_unknown_id",
    "errors_timeout",
    "errors_connection",
)


class _Stream:
    """One subscription (a set of feed ids) and the task that keeps it connected."""

    def __init__(self, ids: frozenset[str]) -> None:
        self.ids = ids
        self.answered = asyncio.Event()  # its first connection answered 200
        self.state = "connecting"  # connecting | streaming | backoff | down
        self.reason = ""
        self.task: asyncio.Task[None] | None = None
        self.delivered = False  # the current connection pushed a price
        self.server_end: str | None = None  # the event:error text that announced the end


class PythFeed:
    """Prices of the watched mints that have a Pyth feed id, from Hermes.

    `ids`: mint -> feed id (any case, `0x` optional; an id that is not 64 hex is logged and
    skipped). `watched()` names the mints to price now. Ticks: token = the mint, price_usd and
    conf_usd in USD per whole token, ts = publish_time in epoch ms, source "pyth". `api_key`
    (else `settings.api_key`) goes only into the Authorization header, never into a log line,
    an error text, `health()` or repr."""

    source = SOURCE

    def __init__(
        self,
        settings: PythFeedSettings,
        ids: Mapping[str, str],
        watched: Callable[[], Collection[str]],
        clock: Callable[[], int] = wall_clock_ms,
        api_key: str | None = None,
        rng: random.Random | None = None,
        max_price_age_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self._watched = watched
        self._clock = clock
        self._api_key = api_key or settings.api_key
        self._rng = rng or random.Random()
        self.id_of: dict[str, str] = {}
        mints_by_id: dict[str, tuple[str, ...]] = {}
        for mint, raw in ids.items():
            feed_id = normalize_id(raw)
            if not is_feed_id(feed_id):
                log.warning("pyth feed id is not 64 hex characters: skipped", extra={"token": mint})
                continue
            self.id_of[mint] = feed_id
            mints_by_id[feed_id] = (*mints_by_id.get(feed_id, ()), mint)
        self._parser = PriceParser(mints_by_id)
        self.last_tick_ms: int | None = None
        self._newest_ts: int | None = None  # the newest publish_time pushed, epoch ms
        self._started_ms = self._clock()  # staleness counts from here before a first tick
        # prices older than this are refused by the engine: a feed whose newest publish_time
        # is older is stale, however fast its ticks arrive
        self._max_price_age_ms = max_price_age_ms
        self._counters: dict[str, int] = dict.fromkeys(_BASE_COUNTERS, 0)
        self._tokens: tuple[str, ...] = ()
        self._client: HermesClient | None = None
        self._push: PushTicks | None = None
        self._active: _Stream | None = None
        self._candidate: _Stream | None = None
        self._idle = True
        self._streaming_since: int | None = None
        self._last_error: str | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else None
        return f"PythFeed(url={self.settings.url!r}, feeds={len(self.id_of)}, api_key={key})"

    # -- LiveFeed ---------------------------------------------------------------------------

    def covers(self, token: str) -> bool:
        return token in self.id_of

    def counters(self) -> Mapping[str, int]:
        return dict(self._counters)

    def health(self) -> ComponentHealth:
        now = self._clock()
        age = None if self.last_tick_ms is None else now - self.last_tick_ms
        stream = self._active or self._candidate
        if self._idle or stream is None:
            status, reason = "idle", "no watched token has a Pyth feed id"
        else:
            status, reason = stream.state, stream.reason
            idle_ms = self.settings.idle_timeout_s * 1000
            if status == "streaming":
                status, reason = "ok", ""
                since = max(self.last_tick_ms or 0, self._streaming_since or 0)
                if now - since > idle_ms:
                    status, reason = "stale", f"no tick for more than {idle_ms:.0f} ms"
                elif self._newest_ts is not None and now - self._newest_ts > self._price_age_ms():
                    # ticks arrive, but Hermes' newest publish_time is old: its prices are
                    limit = self._price_age_ms()
                    status, reason = "stale", f"newest publish_time older than {limit:.0f} ms"
            elif status != "down" and now - max(self.last_tick_ms or 0, self._started_ms) > idle_ms:
                # reconnecting for longer than a stream may stay silent: prices age meanwhile
                status, reason = "stale", f"no tick for more than {idle_ms:.0f} ms ({reason})"
        return {
            "status": status,
            "reason": reason,
            "tokens": list(self._tokens),
            "last_tick_age_ms": age,
            "reconnects": self._counters["reconnects"],
            "last_error": self._last_error,
        }

    def _price_age_ms(self) -> float:
        idle_ms = self.settings.idle_timeout_s * 1000
        return idle_ms if self._max_price_age_ms is None else min(idle_ms, self._max_price_age_ms)

    async def fetch(self, tokens: list[str], timeout_s: float) -> list[Tick]:
        """The latest prices of the covered `tokens`, within `timeout_s`; [] on any failure."""
        wanted = set(tokens)
        ids = {self.id_of[t] for t in wanted if t in self.id_of}
        if not ids:
            return []
        ticks = await self._latest(ids, timeout_s)
        return [t for t in ticks if t.token in wanted]

    async def run(self, push_ticks: PushTicks, /) -> None:
        """Stream until cancelled; never raises anything else (every failure is retried)."""
        self._push = push_ticks
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._client = self._new_client(session)
            try:
                await self._supervise()
            finally:
                self._client = None
                await self._stop(self._candidate)
                await self._stop(self._active)
                self._active = self._candidate = None

    # -- subscription ---------------------------------------------------------------------

    def _want(self) -> frozenset[str]:
        try:
            watched = self._watched()
        except Exception:  # the engine's read must not take the feed down
            log.exception("pyth: watched() failed")
            watched = ()
        tokens = sorted(t for t in watched if t in self.id_of)
        self._tokens = tuple(tokens)
        return frozenset(self.id_of[t] for t in tokens)

    async def _supervise(self) -> None:
        primed: set[str] = set()
        interval = self.settings.watch_interval_ms / 1000
        while True:
            try:
                await self._follow_watched(primed)
            except Exception:  # a bug here must not end the feed: the next turn tries again
                log.exception("pyth: resubscribe failed")
            candidate = self._candidate
            if candidate is None:
                await asyncio.sleep(interval)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await candidate.answered.wait()
            if candidate.answered.is_set() and candidate is self._candidate:
                # make-before-break: the old stream closes only once the new one answered
                old, self._active, self._candidate = self._active, candidate, None
                await self._stop(old)

    async def _follow_watched(self, primed: set[str]) -> None:
        want = self._want()
        primed &= want  # a feed watched again later is primed again
        if want:
            self._idle = False
            await self._resubscribe(want, primed)
            return
        self._idle = True
        await self._stop(self._candidate)
        await self._stop(self._active)
        self._active = self._candidate = None

    async def _resubscribe(self, want: frozenset[str], primed: set[str]) -> None:
        if self._active is not None and self._active.ids == want:
            await self._stop(self._candidate)
            self._candidate = None
            return
        if self._candidate is not None and self._candidate.ids == want:
            return
        await self._stop(self._candidate)
        fresh = want - primed
        if fresh:
            primed |= fresh
            ticks = await self._latest(fresh, self.settings.connect_timeout_s)
            if ticks:
                self._deliver(ticks)
        stream = _Stream(want)
        stream.task = asyncio.get_running_loop().create_task(
            self._keep_streaming(stream), name=f"pyth-stream-{len(want)}"
        )
        self._candidate = stream

    async def _stop(self, stream: _Stream | None) -> None:
        if stream is None or stream.task is None:
            return
        stream.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream.task

    # -- one subscription's connection ------------------------------------------------------

    async def _keep_streaming(self, stream: _Stream) -> None:
        s = self.settings
        backoff = Backoff(s.backoff_initial_ms, s.backoff_max_ms, self._rng)
        first = True
        while True:
            if not first:
                self._counters["reconnects"] += 1
            first = False
            stream.state, stream.reason = "connecting", ""
            try:
                delay = await self._connect_and_read(stream, backoff)
            except Exception as exc:  # a bug here must cost a reconnect, never the feed
                log.exception("pyth stream failed unexpectedly")
                self._error("internal", f"{type(exc).__name__}")
                delay = backoff.next_s()
            if stream.state != "down":
                stream.state, stream.reason = "backoff", f"retry in {delay * 1000:.0f} ms"
            await asyncio.sleep(delay)

    async def _connect_and_read(self, stream: _Stream, backoff: Backoff) -> float:
        """One connection: open, read until it ends. Returns the wait before the next one."""
        assert self._client is not None
        self._counters["requests"] += 1
        try:
            resp = await self._client.open_stream(stream.ids)
        except FeedStatusError as exc:
            return self._on_status(stream, exc, backoff)
        except TimeoutError:
            self._error("timeout", "no answer within connect_timeout_s")
            return backoff.next_s()
        except (aiohttp.ClientError, OSError) as exc:
            self._error("connection", type(exc).__name__)
            return backoff.next_s()
        stream.state, stream.reason = "streaming", ""
        stream.delivered, stream.server_end = False, None
        stream.answered.set()
        if stream is self._active or self._active is None:
            self._streaming_since = self._clock()
        try:
            ended = await self._read(stream, resp)
        finally:
            resp.close()  # never back to the pool: the body was not read to its end
        if stream.delivered:
            backoff.reset()
        if ended == "server_end" and stream.delivered:
            return 0.0  # Hermes' own periodic end: come straight back
        return backoff.next_s()

    async def _read(self, stream: _Stream, resp: aiohttp.ClientResponse) -> str:
        decoder = SseDecoder(self.settings.max_event_bytes)
        idle = self.settings.idle_timeout_s
        loop = asyncio.get_running_loop()
        content = resp.content
        try:
            # the deadline moves on every complete line (events and keep-alives alike), so a
            # server trickling bytes that never finish a line is as dead as a silent one
            async with asyncio.timeout(idle) as deadline:
                while chunk := await content.readany():
                    lines = decoder.lines
                    for event in decoder.feed(chunk):
                        self._on_event(stream, event)
                    if decoder.lines != lines:
                        deadline.reschedule(loop.time() + idle)
        except TimeoutError:
            self._error("timeout", f"no complete line for {idle} s")
            return "idle"
        except EventTooLarge as exc:
            self._error("oversize", str(exc))
            return "oversize"
        except (aiohttp.ClientError, OSError) as exc:
            self._error("connection", f"stream cut: {type(exc).__name__}")
            return "cut"
        if stream.server_end is not None:
            self._counters["stream_ends"] += 1
            log.info("pyth stream ended by Hermes", extra={"reason": stream.server_end})
            return "server_end"
        self._error("eof", "stream ended without notice")
        return "eof"

    def _on_event(self, stream: _Stream, event: SseEvent) -> None:
        if event.type == "message":
            self._counters["events"] += 1
            ticks, malformed, unknown = self._parser.parse(event.data)
            if malformed:
                self._counters["errors_malformed"] += malformed
            if unknown:
                self._counters["errors_unknown_id"] += unknown
            if ticks:
                stream.delivered = True
                self._deliver(ticks)
        elif event.type == "error":
            text = event.data[:300].decode("utf-8", "replace")
            if text.startswith(_SERVER_ENDS):
                stream.server_end = text
            else:
                self._error("event", text)

    def _deliver(self, ticks: list[Tick]) -> None:
        assert self._push is not None
        try:
            self._push(ticks)
        except Exception:  # the runtime's failure is not the stream's: keep streaming
            log.exception("pyth: pushing ticks failed")
            self._bump("errors_push")
            return
        self._counters["ticks"] += len(ticks)
        now = self._clock()
        # Only prices the engine can take make the feed fresh: a publish_time further ahead of
        # our clock than the engine's skew is refused there (`future`), so it is no tick here.
        usable = [t.ts for t in ticks if t.ts <= now + FUTURE_SKEW_MS]
        if len(usable) < len(ticks):
            self._bump("errors_future")
            self._last_error = "publish_time ahead of the clock: prices refused as future"
        if not usable:
            return
        self.last_tick_ms = now
        newest = min(max(usable), now)
        if self._newest_ts is None or newest > self._newest_ts:
            self._newest_ts = newest

    def _on_status(self, stream: _Stream, exc: FeedStatusError, backoff: Backoff) -> float:
        status = exc.status
        text = self._redact(exc.text)
        self._bump(f"errors_http_{status}")
        self._last_error = self._redact(str(exc))
        if status in (401, 403):
            stream.state, stream.reason = "down", "unauthorized"
            log.error("pyth: Hermes refused the API key", extra={"status": status})
            return self.settings.backoff_max_ms / 1000
        if status == 429 and exc.retry_after_s is not None:
            backoff.next_s()  # the ceiling still grows, for a 429 without the header next
            log.warning("pyth: rate limited", extra={"retry_after_s": exc.retry_after_s})
            return exc.retry_after_s
        if status == 404:
            mints = [m for m, i in self.id_of.items() if i in text.lower()]
            log.warning(
                "pyth: Hermes does not know these feeds", extra={"text": text, "tokens": mints}
            )
        else:
            log.warning("pyth: Hermes answered an error", extra={"status": status, "text": text})
        return backoff.next_s()

    # -- snapshot -----------------------------------------------------------------------------

    async def _latest(self, ids: set[str] | frozenset[str], timeout_s: float) -> list[Tick]:
        self._counters["requests"] += 1
        try:
            if self._client is not None:
                body = await self._client.latest(ids, timeout_s, self.settings.max_event_bytes)
            else:
                async with aiohttp.ClientSession() as session:
                    client = self._new_client(session)
                    body = await client.latest(ids, timeout_s, self.settings.max_event_bytes)
        except FeedStatusError as exc:
            self._bump(f"errors_http_{exc.status}")
            self._last_error = self._redact(str(exc))
            return []
        except TimeoutError:
            self._error("timeout", "no /latest answer in time")
            return []
        except ResponseTooLarge as exc:
            self._error("oversize", str(exc))
            return []
        except (aiohttp.ClientError, OSError) as exc:
            self._error("connection", type(exc).__name__)
            return []
        ticks, malformed, unknown = self._parser.parse(body)
        self._counters["errors_malformed"] += malformed
        self._counters["errors_unknown_id"] += unknown
        return ticks

    def _new_client(self, session: aiohttp.ClientSession) -> HermesClient:
        s = self.settings
        return HermesClient(session, s.url, self._api_key, s.connect_timeout_s, self._clock)

    def _bump(self, counter: str, n: int = 1) -> None:
        self._counters[counter] = self._counters.get(counter, 0) + n

    def _redact(self, text: str) -> str:
        # a proxy or server echoing the request's Authorization header must not leak the key
        return text.replace(self._api_key, "<redacted>") if self._api_key else text

    def _error(self, kind: str, text: str) -> None:
        self._bump(f"errors_{kind}")
        self._last_error = f"{kind}: {self._redact(text)}"
        log.warning("pyth: %s", self._last_error)
