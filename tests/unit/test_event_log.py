"""The trading log: one line per fill, exit, failure and close, written off the signal path."""

from __future__ import annotations

import logging

from adapters.event_log import EventLog
from tests.unit.harness import TOKENS, Clock, Harness


def round_trip() -> Harness:
    h = Harness(Clock())
    h.sol()
    h.agent({})
    h.tick(TOKENS[0], 1.0)
    h.signal(TOKENS[0])
    h.settle()
    h.tick(TOKENS[0], 0.5)
    h.settle()
    return h


def test_a_stopped_out_round_trip_logs_fills_exit_and_close(caplog):
    caplog.set_level(logging.INFO, "tradingd.trading")
    log = EventLog()
    log(round_trip().events())
    assert not caplog.records  # queued only: nothing is formatted on the engine's path
    log.flush()
    lines = [
        (r.getMessage(), getattr(r, "reason", getattr(r, "exit_reason", None)))
        for r in caplog.records
    ]
    assert lines == [
        ("order filled", "signal:t"),
        ("exit triggered", "stop_loss"),
        ("order filled", "stop_loss"),
        ("position closed", "stop_loss"),
    ]
    assert all(isinstance(getattr(r, "amount", ""), str) for r in caplog.records)


def test_a_full_queue_drops_and_says_so(caplog):
    caplog.set_level(logging.INFO, "tradingd.trading")
    log = EventLog(limit=2)
    log(round_trip().events())
    log.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages[0] == "trading log lines dropped (queue full)" and caplog.records[0].dropped == 2
    )
    assert len(messages) == 3
