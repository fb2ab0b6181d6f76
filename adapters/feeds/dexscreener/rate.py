"""Pacing of DexScreener requests: one gate every request passes (a token bucket at
`max_requests_per_min`, signal fetches ahead of the polling queue, a Retry-After pause shared by
all) and the poller's exponential backoff with jitter.

Not aiolimiter: its leaky bucket has neither priorities nor a pause that a 429 can set for every
waiter, and those two are most of what is needed here."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

FETCH = 0  # a signal waits on this price: served first
POLL = 1


class RequestGate:
    """At most `per_min` requests a minute, spaced evenly (a bucket of one token refilled every
    60/per_min s: no burst, so no 60 s window, however placed, holds more than `per_min` + 1).
    Waiters are served by priority (FETCH before POLL), then in arrival order. `pause(s)` holds
    every request, waiting or not yet asked, for `s` seconds (a 429's Retry-After).

    `monotonic`: seconds; the timers are set relative to it, so any steady clock serves
    (time.monotonic, which health() may read outside the event loop too)."""

    def __init__(self, per_min: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        if per_min < 1:
            raise ValueError("per_min must be >= 1")
        self.spacing_s = 60.0 / per_min
        self._monotonic = monotonic
        self._next_at = -float("inf")  # when the next request may go
        self._paused_until = -float("inf")
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._paused_until - self._monotonic())

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (a longer pause already set stays)."""
        self._paused_until = max(self._paused_until, self._monotonic() + seconds)
        self._dispatch()

    async def acquire(self, priority: int = POLL) -> None:
        """Return when this request may be sent. Cancelling a waiter gives its turn to the
        next one."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        self._dispatch()
        try:
            await fut
        except asyncio.CancelledError:
            self._dispatch()  # a cancelled head must not hold the others back
            raise

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters = self._waiters
        while waiters:
            if waiters[0][2].done():  # cancelled while waiting
                heapq.heappop(waiters)
                continue
            now = self._monotonic()
            at = max(self._next_at, self._paused_until)
            if at > now:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(at - now, self._dispatch)
                return
            _, _, fut = heapq.heappop(waiters)
            fut.set_result(None)
            self.granted += 1
            # from now, not from `at`: a late timer must not let a catch-up burst through
            self._next_at = now + self.spacing_s
