"""A channel's wait before a retry: exponential from backoff_initial_ms, capped at
backoff_max_ms, each wait a random 50-100 % of its step (jitter); a 429's retry_after instead,
capped at max_retry_after_s."""

from __future__ import annotations

import random

import msgspec
from tradingd.adapters.notify.config import ChannelSettings
from tradingd.adapters.notify.delivery import ChannelSender
from tradingd.adapters.notify.wire import Outcome

SETTINGS = {"name": "c", "kind": "discord", "url": "http://127.0.0.1:1/api/webhooks/1/t",
            "backoff_initial_ms": 100, "backoff_max_ms": 1000, "max_retry_after_s": 60}  # fmt: skip
FAILED = Outcome(False, retry=True, reason="HTTP 500")


def sender(seed: int) -> ChannelSender:
    return ChannelSender(msgspec.convert(SETTINGS, ChannelSettings), rng=random.Random(seed))


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    for seed in range(50):
        s = sender(seed)
        for attempt, step in enumerate((0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0)):
            delay = s._delay(attempt, FAILED)
            assert step / 2 <= delay <= step, (seed, attempt, delay)


def test_jitter_spreads_the_waits_of_channels_failing_together() -> None:
    delays = {round(sender(seed)._delay(3, FAILED), 6) for seed in range(20)}
    assert len(delays) > 10


def test_a_429_waits_its_retry_after_capped() -> None:
    s = sender(0)
    assert s._delay(0, Outcome(False, True, 7.5, "HTTP 429")) == 7.5
    assert s._delay(0, Outcome(False, True, 86_400.0, "HTTP 429")) == 60.0
