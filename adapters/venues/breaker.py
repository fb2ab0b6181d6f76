"""A per-host circuit breaker for venue HTTP APIs: after repeated failures of a host, calls fail
at once (CircuitOpen) instead of waiting on it, and one trial call at a time probes recovery."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from tradingd.engine.errors import VenueError


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # calls go through; consecutive failures are counted
    OPEN = "open"  # calls fail at once until `reset_after_s` has passed
    HALF_OPEN = "half_open"  # one trial call goes through; its outcome closes or re-opens


class CircuitOpen(VenueError):
    """The host's breaker refused the call without sending it. Transient: try again after
    `retry_after_s` seconds. `reason` is "circuit_open", like SwapFailure's reason."""

    reason = "circuit_open"

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(
            f"circuit {name} is open: next trial in {retry_after_s:.1f} s",
            transient=True,
            details={"reason": self.reason, "breaker": name, "retry_after_s": retry_after_s},
        )
        self.retry_after_s: float | None = retry_after_s


class CircuitBreaker:
    """closed -> open after `failure_threshold` consecutive failures; open for `reset_after_s`,
    then half-open: one trial call; success closes, failure re-opens.

    Use: `check()` before each call (raises CircuitOpen), then `record_success()` or
    `record_failure()` with its outcome. Times are seconds on `clock` (monotonic by default).
    One event loop only (no locking)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_after_s <= 0:
            raise ValueError("reset_after_s must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive, since the last success
        self._opened_at: float | None = None
        # When the half-open trial was let through. A trial whose caller was cancelled never
        # reports; after `reset_after_s` another trial is allowed so the breaker cannot stick.
        self._trial_at: float | None = None

    @property
    def state(self) -> str:
        """ "closed", "open" or "half_open" (an open breaker whose wait has passed reads as
        half_open: the next `check()` lets a trial through)."""
        if self._state is BreakerState.OPEN and self._open_wait_s() <= 0:
            return BreakerState.HALF_OPEN.value
        return self._state.value

    def check(self) -> None:
        """Return when a call may go to the host; raise CircuitOpen (transient, with
        `retry_after_s`) when it may not: open and still waiting, or a half-open trial already
        in flight (then the wait is `reset_after_s`, after which a silent trial is given up)."""
        now = self._clock()
        if self._state is BreakerState.OPEN:
            wait = self._open_wait_s()
            if wait > 0:
                raise CircuitOpen(self.name, wait)
            self._state = BreakerState.HALF_OPEN
            self._trial_at = now
            return
        if self._state is BreakerState.HALF_OPEN:
            assert self._trial_at is not None
            wait = self._trial_at + self.reset_after_s - now
            if wait > 0:
                raise CircuitOpen(self.name, wait)
            self._trial_at = now  # the previous trial never reported: let another one go

    def record_success(self) -> None:
        """The call got an answer from a working host: close and forget past failures."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = None
        self._trial_at = None

    def record_failure(self) -> None:
        """The host failed the call (5xx, timeout, unreachable, garbage): count it; open at
        the threshold; a failed half-open trial re-opens for another `reset_after_s`."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._trial_at = None
        # already OPEN: a call let through before the breaker opened; the wait is not extended

    def health(self) -> dict[str, object]:
        """For the health endpoint and metrics: state, consecutive failures, when it opened
        (`clock` seconds, None when closed) and the seconds left until a trial (0 if none)."""
        return {
            "name": self.name,
            "state": self.state,
            "failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "opened_at": self._opened_at,
            "retry_after_s": max(self._open_wait_s(), 0.0)
            if self._state is BreakerState.OPEN
            else 0.0,
        }

    def _open_wait_s(self) -> float:
        assert self._opened_at is not None
        return self._opened_at + self.reset_after_s - self._clock()
