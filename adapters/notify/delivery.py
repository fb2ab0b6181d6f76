"""One channel's bounded queue and the task that empties it.

`offer` is called by the runtime subscriber (notices.py): an append to a deque, O(1). When the
queue holds `queue_max` notices the OLDEST is dropped and counted: a channel that comes back
after an outage shows the latest state first, and the next message says how many were dropped.

The sender sends one request at a time (a batch of text notices, or one webhook notice) with the
channel's timeout, and retries a transient failure (timeout, connection error, 408, 429, 5xx)
after exponential backoff with jitter (a random 50-100 % of the step), or after a 429's retry_after (capped at
max_retry_after_s), at most max_retries times; then the batch counts as failed. Any other answer
(400, 401, 403, 404) fails at once. Nothing here can block the event loop or the engine: a
channel that hangs only fills (and drops from) its own queue."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from itertools import islice
from typing import Any

import aiohttp
from tradingd.adapters.notify.config import ChannelSettings
from tradingd.adapters.notify.notices import Notice
from tradingd.adapters.notify.wire import MAX_BATCH, Outcome, Request, Wire, wire_for
from tradingd.adapters.timestamps import iso_ms

log = logging.getLogger("tradingd.notify")


class ChannelStats:
    """Counts since start: notices sent, failed (given up on), dropped (queue full or left at
    shutdown), and retried requests; the last error (short text, no secret)."""

    __slots__ = ("sent", "failed", "dropped", "retries", "last_error", "last_sent_ms")

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self.last_error = ""
        self.last_sent_ms = 0


class ChannelSender:
    def __init__(
        self, settings: ChannelSettings, wire: Wire | None = None, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.wire = wire or wire_for(settings)
        self.queue: deque[Notice] = deque()
        self.limit = settings.queue_max
        self.stats = ChannelStats()
        self._dropped_unsaid = 0  # dropped since the last message that said so
        self._wake = asyncio.Event()
        self._rng = rng or random.Random()
        self.busy = False  # a batch is being sent (taken off the queue)
        self.failing = False  # the last batch failed

    # -- the trading side: O(1), never awaits ---------------------------------------------

    def offer(self, notice: Notice) -> None:
        queue = self.queue
        if len(queue) >= self.limit:
            queue.popleft()
            self.stats.dropped += 1
            self._dropped_unsaid += 1
        queue.append(notice)
        if not self._wake.is_set():
            self._wake.set()

    # -- the sender task ------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.queue and not self.busy

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.send_next(session)

    async def send_next(self, session: aiohttp.ClientSession) -> None:
        """Send the notices at the head of the queue as one request (with its retries)."""
        self.busy = True
        try:
            batch = list(islice(self.queue, MAX_BATCH))
            dropped, self._dropped_unsaid = self._dropped_unsaid, 0
            batch_id = uuid.uuid4().hex
            try:
                request = self.wire.request(batch, dropped, batch_id)
            except Exception:  # a notice that cannot be written (an alert's odd details): skip it
                log.exception("notification could not be written", extra={"channel": self.name})
                self.queue.popleft()
                self.stats.failed += 1
                self._dropped_unsaid += dropped
                return
            for _ in range(request.notices):  # they leave the queue now: a drop cannot hit them
                self.queue.popleft()
            try:
                ok = await self._deliver(session, batch, dropped, batch_id, request)
            except asyncio.CancelledError:  # stopped mid-send (shutdown): counted as dropped
                self.stats.dropped += request.notices
                raise
            if ok:
                self.stats.sent += request.notices
                self.stats.last_sent_ms = time.time_ns() // 1_000_000
            else:
                self.stats.failed += request.notices
            self.failing = not ok
        finally:
            self.busy = False

    async def _deliver(
        self,
        session: aiohttp.ClientSession,
        batch: list[Notice],
        dropped: int,
        batch_id: str,
        request: Request,
    ) -> bool:
        s = self.settings
        attempt = 0
        while True:
            outcome = await self._attempt(session, request)
            if outcome.ok:
                return True
            self.stats.last_error = outcome.reason
            if not outcome.retry or attempt >= s.max_retries:
                log.warning(
                    "notification not delivered",
                    extra={
                        "channel": self.name,
                        "kind": s.kind,
                        "notices": request.notices,
                        "attempts": attempt + 1,
                        "reason": outcome.reason,
                    },
                )
                return False
            delay = self._delay(attempt, outcome)
            self.stats.retries += 1
            log.info(
                "notification retry",
                extra={"channel": self.name, "attempt": attempt + 1, "reason": outcome.reason,
                       "wait_s": round(delay, 3)},
            )  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1
            request = self.wire.request(batch[: request.notices], dropped, batch_id)

    def _delay(self, attempt: int, outcome: Outcome) -> float:
        s = self.settings
        if outcome.retry_after_s is not None:
            return min(outcome.retry_after_s, s.max_retry_after_s)
        ceiling = min(s.backoff_max_ms, s.backoff_initial_ms * 2**attempt) / 1000
        return ceiling * (0.5 + 0.5 * self._rng.random())  # jitter: half to all of it

    async def _attempt(self, session: aiohttp.ClientSession, request: Request) -> Outcome:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with session.post(
                request.url, data=request.body, headers=request.headers, timeout=timeout,
                allow_redirects=False,
            ) as resp:  # fmt: skip
                body = await resp.content.read(64 * 1024)
                return self.wire.outcome(resp.status, resp.headers, body)
        except TimeoutError:
            return Outcome(False, True, None, "timeout")
        except aiohttp.ClientConnectionError:
            return Outcome(False, True, None, "connection failed")
        except aiohttp.ClientError as exc:  # its text may carry the URL (a token): the type only
            return Outcome(False, True, None, type(exc).__name__)
        except Exception as exc:  # a bad URL or body: not retried; the task goes on
            return Outcome(False, False, None, type(exc).__name__)

    def health(self) -> dict[str, Any]:
        st = self.stats
        status = "failing" if self.failing else ("sending" if self.busy else "ok")
        out: dict[str, Any] = {
            "kind": self.settings.kind,
            "status": status,
            "queued": len(self.queue),
            "sent": st.sent,
            "failed": st.failed,
            "dropped": st.dropped,
            "retries": st.retries,
        }
        if st.last_sent_ms:
            out["last_sent_at"] = iso_ms(st.last_sent_ms)
        if st.last_error:
            out["last_error"] = st.last_error
        return out
