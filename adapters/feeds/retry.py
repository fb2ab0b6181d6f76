"""Waiting after a failed request, for every feed: exponential backoff with full jitter (each
wait uniform between zero and a cap that doubles per failed attempt, as the AWS Architecture
Blog's "Exponential Backoff And Jitter" recommends for many clients reconnecting to one server),
and the reading of a 429's Retry-After header (RFC 9110 §10.2.3: delta seconds or an HTTP date)."""

from __future__ import annotations

import email.utils
import random

MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is taken as this: never wait for days


class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in
    [0, min(max_ms, initial_ms × 2^n)] ms. `reset` after a success."""

    def __init__(self, initial_ms: int, max_ms: int, rng: random.Random) -> None:
        self.initial_ms = initial_ms
        self.max_ms = max(max_ms, initial_ms)
        self.rng = rng
        self.attempt = 0

    def ceiling_ms(self) -> int:
        """The cap of the next wait, ms."""
        return min(self.max_ms, self.initial_ms << min(self.attempt, 40))

    def next_s(self) -> float:
        """The next wait, seconds; each call is one more failed attempt."""
        ceiling = self.ceiling_ms()
        self.attempt += 1
        return self.rng.uniform(0, ceiling) / 1000

    def reset(self) -> None:
        """After a success: the next wait starts from `initial_ms` again."""
        self.attempt = 0


def retry_after_s(value: str | None, now_ms: int) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) as seconds from `now_ms` (epoch ms),
    within 0..MAX_RETRY_AFTER_S; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_ms / 1000
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
