"""The one form of a point in time given to clients and written to logs: ISO-8601 UTC with
milliseconds, "2026-11-24T12:00:00.123Z" (what the REST API has always given)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # times cluster (a log burst, a page of trades): the formatted second is cached
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso_ms(ms: int) -> str:
    """Epoch milliseconds (UTC) -> "2026-11-24T12:00:00.123Z" (always three digits of
    milliseconds, a literal Z). Raises OverflowError/OSError for a time the platform cannot
    represent (beyond year 9999 or far before 1970 on some platforms)."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


def ms_of_iso(text: str) -> int:
    """The inverse of iso_ms: "2026-11-24T12:00:00.123Z" -> epoch milliseconds (UTC). Raises
    ValueError for another form."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (at - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms_or_none(ms: int | None) -> str | None:
    """Like iso_ms; None, and 0 (the "never" of stored records), give None."""
    return iso_ms(ms) if ms else None


def iso_now() -> str:
    """The current wall-clock time in the iso_ms form."""
    return iso_ms(time.time_ns() // 1_000_000)


def wall_clock_ms() -> int:
    """The wall clock, epoch ms: the clock the daemon injects into the engine and the adapters
    (tests and replays inject their own)."""
    return time.time_ns() // 1_000_000
