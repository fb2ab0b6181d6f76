"""Reconnect waits: exponential backoff with full jitter (each wait uniform between zero and a
cap that doubles per failed attempt), as the AWS Architecture Blog's "Exponential Backoff And
Jitter" recommends for many clients reconnecting to one server."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in
    [0, min(max_ms, initial_ms × 2^n)] ms. `reset` after a healthy stream."""

    def __init__(self, initial_ms: int, max_ms: int, rng: random.Random) -> None:
        self.initial_ms = initial_ms
        self.max_ms = max(max_ms, initial_ms)
        self.rng = rng
        self.attempt = 0

    def ceiling_ms(self) -> int:
        return min(self.max_ms, self.initial_ms * 2 ** min(self.attempt, 40))

    def next_s(self) -> float:
        ceiling = self.ceiling_ms()
        self.attempt += 1
        return self.rng.uniform(0, ceiling) / 1000

    def reset(self) -> None:
        self.attempt = 0
