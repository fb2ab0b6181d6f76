"""The trading log: one JSON line per fill, exit, failure and close, written off the signal path."""

from __future__ import annotations

import json
import logging

import pytest
from tradingd.adapters.app.event_log import EventLog

from tests.unit.harness import TOKENS, Clock, Harness


@pytest.fixture(autouse=True)
def info_level():
    logger = logging.getLogger("tradingd.trading")
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(logging.NOTSET)


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


def capture(**kw) -> tuple[EventLog, list[str]]:
    out: list[str] = []
    return EventLog(write=out.append, **kw), out


def lines(out: list[str]) -> list[dict]:
    return [json.loads(line) for chunk in out for line in chunk.splitlines()]


def test_a_stopped_out_round_trip_logs_fills_exit_and_close():
    log, out = capture()
    log(round_trip().events())
    assert not out  # queued only: nothing is formatted on the engine's path
    log.flush()
    docs = lines(out)
    assert [(d["msg"], d.get("reason", d.get("exit_reason"))) for d in docs] == [
        ("order filled", "signal:t"),
        ("exit triggered", "stop_loss"),
        ("order filled", "stop_loss"),
        ("position closed", "stop_loss"),
    ]
    assert all(isinstance(d.get("amount", ""), str) for d in docs)
    assert {d["logger"] for d in docs} == {"tradingd.trading"} and docs[0]["ts"].endswith("Z")


def test_a_dca_line_keeps_the_log_level_and_names_the_dca_level():
    # the attack: {"level": 0, "msg": "dca triggered"} - the DCA level index replaced the level
    h = Harness(Clock())
    h.sol()
    h.agent({"dca": {"enabled": True, "levels": [{"drop_pct": -10, "buy_pct": 50}]}})
    h.tick(TOKENS[0], 1.0)
    h.signal(TOKENS[0])
    h.settle()
    h.tick(TOKENS[0], 0.85)
    h.settle()
    log, out = capture()
    log(h.events())
    log.flush()
    (dca,) = [d for d in lines(out) if d["msg"] == "dca triggered"]
    assert dca["level"] == "info" and dca["dca_level"] == 0


def test_a_full_queue_drops_and_says_so():
    log, out = capture(limit=2)
    log(round_trip().events())
    log.flush()
    docs = lines(out)
    assert docs[0]["msg"] == "trading log lines dropped (queue full)" and docs[0]["dropped"] == 2
    assert len(docs) == 3


def test_flush_writes_at_most_a_chunk():
    log, out = capture()
    log(round_trip().events())
    log.flush(2)
    assert len(lines(out)) == 2 and len(log.queue) == 2


def test_level_above_info_keeps_only_failures_and_alerts():
    logging.getLogger("tradingd.trading").setLevel(logging.WARNING)
    log, out = capture()
    log(round_trip().events())
    log.flush()
    assert lines(out) == []
