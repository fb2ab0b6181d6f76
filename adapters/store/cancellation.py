"""Cancellation that redis-py can hide: a loop that treats TimeoutError as an outage must still
end when its task is being cancelled."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task has a cancel pending. redis-py can turn a
    cancellation that races its read timeout into a TimeoutError, which the store loops catch as
    an outage; without this check a pending cancel would never end them."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
