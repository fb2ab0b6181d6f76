"""Waiting in tests for something another task, thread or process does: poll a probe until its
value is accepted, bounded both by a number of tries and by a time budget, and fail with the
last value seen (what the test got, not only that it waited).

One helper for blocking code (REST clients of a daemon subprocess) and one for async code; the
async one also takes a probe that itself waits (a WebSocket receive), then with no pause between
tries. Imported as `tests.polling` from unit/, integration/ and e2e/ alike."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TRIES = 500
TIMEOUT_S = 10.0
INTERVAL_S = 0.01


def _accepted(value: object) -> bool:
    return bool(value)


def _failure(what: str, tries: int, timeout_s: float, value: object) -> AssertionError:
    shown = repr(value)
    if len(shown) > 2000:
        shown = shown[:2000] + "..."
    return AssertionError(
        f"{what}: not reached in {tries} tries (budget {timeout_s} s); last value: {shown}"
    )


def poll_until(
    probe: Callable[[], T],
    accept: Callable[[T], object] = _accepted,
    *,
    tries: int = TRIES,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    what: str = "condition",
) -> T:
    """Call `probe()` until `accept(value)` is true (by default: the value is truthy), pausing
    `interval_s` between tries; return the accepted value. Raises AssertionError naming `what`
    and the last value once `tries` probes were made or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    made = 0
    while True:
        value = probe()
        made += 1
        if accept(value):
            return value
        if made >= tries or time.monotonic() >= deadline:
            raise _failure(what, made, timeout_s, value)
        time.sleep(interval_s)


async def poll_until_async(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    accept: Callable[[T], object] = _accepted,
    *,
    tries: int = TRIES,
    timeout_s: float = TIMEOUT_S,
    interval_s: float = INTERVAL_S,
    what: str = "condition",
) -> T:
    """As `poll_until`, on the running loop: `probe` may be a plain function or return an
    awaitable (awaited each try, e.g. the next WebSocket message; pass `interval_s=0` then).
    Returns the accepted value; raises AssertionError with the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    made = 0
    while True:
        got: Awaitable[T] | T = probe()
        value = await got if inspect.isawaitable(got) else got
        made += 1
        if accept(value):
            return value
        if made >= tries or loop.time() >= deadline:
            raise _failure(what, made, timeout_s, value)
        await asyncio.sleep(interval_s)
