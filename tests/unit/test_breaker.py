"""CircuitBreaker on an injected clock: closed -> open after the threshold of consecutive
failures, open refuses with the time left, half-open lets one trial through, whose outcome closes
or re-opens it."""

from __future__ import annotations

import pytest
from tradingd.adapters.transient import is_transient
from tradingd.adapters.venues.breaker import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, threshold: int = 3, reset_after_s: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(
        "api.jup.ag", failure_threshold=threshold, reset_after_s=reset_after_s, clock=clock
    )


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.check()
        b.record_failure()


def test_a_new_breaker_is_closed_and_lets_calls_through(clock: Clock) -> None:
    b = breaker(clock)
    b.check()
    assert b.state == "closed"


def test_failures_below_the_threshold_keep_it_closed(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 2)
    b.check()
    assert b.state == "closed"


def test_the_threshold_of_consecutive_failures_opens_it(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    assert b.state == "open"


def test_a_success_resets_the_count_of_consecutive_failures(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 2)
    b.record_success()
    fail(b, 2)
    assert b.state == "closed"


def test_an_open_breaker_refuses_with_the_seconds_until_half_open(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    with pytest.raises(CircuitOpen) as refused:
        b.check()
    assert refused.value.retry_after_s == 20.0
    assert refused.value.reason == "circuit_open"


def test_circuit_open_is_a_transient_venue_error(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    with pytest.raises(CircuitOpen) as refused:
        b.check()
    assert is_transient(refused.value)


def test_after_reset_after_s_it_reads_half_open(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    assert b.state == "half_open"


def test_half_open_lets_one_trial_through_and_refuses_the_next(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.check()  # the trial
    with pytest.raises(CircuitOpen):
        b.check()


def test_a_successful_trial_closes_it(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.check()
    b.record_success()
    assert b.state == "closed"
    assert b.health()["failures"] == 0


def test_a_failed_trial_reopens_it_for_another_reset_period(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.check()
    b.record_failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpen) as refused:
        b.check()
    assert refused.value.retry_after_s == 30.0


def test_a_trial_that_never_reports_is_replaced_after_reset_after_s(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 30
    b.check()  # its caller is cancelled and never reports
    clock.now += 30
    b.check()  # a new trial goes through
    assert b.state == "half_open"


def test_a_late_failure_while_open_does_not_extend_the_wait(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 10
    b.record_failure()  # a call let through before it opened
    with pytest.raises(CircuitOpen) as refused:
        b.check()
    assert refused.value.retry_after_s == 20.0


def test_health_reports_state_failures_and_opening_time(clock: Clock) -> None:
    b = breaker(clock)
    fail(b, 3)
    clock.now += 5
    health = b.health()
    assert health["state"] == "open"
    assert health["failures"] == 3
    assert health["opened_at"] == 1000.0
    assert health["retry_after_s"] == 25.0


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)
