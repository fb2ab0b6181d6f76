"""The tests' one poll-until helper (tests/polling.py): returns the accepted value, stops at its
bound of tries or time, and fails showing the last value it saw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.polling import poll_until, poll_until_async


def counter() -> Callable[[], int]:
    calls = [0]

    def probe() -> int:
        calls[0] += 1
        return calls[0]

    return probe


def test_poll_until_returns_the_first_accepted_value() -> None:
    assert poll_until(counter(), lambda n: n >= 3, interval_s=0) == 3


def test_poll_until_takes_a_truthy_value_by_default() -> None:
    values = iter([0, [], {"ok": 1}])
    assert poll_until(lambda: next(values), interval_s=0) == {"ok": 1}


def test_poll_until_fails_after_its_tries_with_the_last_value_seen() -> None:
    with pytest.raises(AssertionError, match=r"positions: not reached in 4 tries .* last value: 4"):
        poll_until(counter(), lambda n: n > 10, tries=4, interval_s=0, what="positions")


def test_poll_until_stops_when_its_time_budget_is_spent() -> None:
    probe = counter()
    with pytest.raises(AssertionError, match="last value: 1$"):
        poll_until(probe, lambda n: n > 10, tries=1000, timeout_s=0, interval_s=0)
    assert probe() == 2  # one try was made, then the budget (none) stopped it


async def test_poll_until_async_awaits_a_probe_that_waits() -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for message in ("heartbeat", "prices", "trade"):
        queue.put_nowait(message)
    got = await poll_until_async(queue.get, lambda m: m == "trade", tries=3, interval_s=0)
    assert got == "trade" and queue.empty()


async def test_poll_until_async_takes_a_plain_probe_and_fails_with_the_last_value() -> None:
    assert await poll_until_async(counter(), lambda n: n == 2, interval_s=0) == 2
    with pytest.raises(AssertionError, match="clients: not reached in 3 tries.*last value: 3"):
        await poll_until_async(counter(), lambda n: n > 5, tries=3, interval_s=0, what="clients")
