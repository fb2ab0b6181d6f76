"""Pretty logs (adapters/app/log_pretty.py): trading events as sentences with names, symbols and
decimal units, rendered one line per record by rich, colour only on a terminal."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator

import pytest
from tradingd.adapters.app.event_log import EventLog
from tradingd.adapters.app.log_pretty import PrettyFormatter, TradeText
from tradingd.adapters.app.logs import RedactSecrets
from tradingd.engine import events as ev

from tests.unit.harness import TOKENS, Clock, Harness

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (INFO |WARNING) ")


@pytest.fixture
def trading_log() -> Iterator[io.StringIO]:
    """The trading logger writing pretty lines (colourless) into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(PrettyFormatter(color=False))
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tradingd.trading")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def round_trip() -> Harness:
    h = Harness(Clock())
    h.sol()
    h.agent({})
    h.tick(TOKENS[0], 0.0000202)
    h.signal(TOKENS[0])
    h.settle()
    h.tick(TOKENS[0], 0.0000101)
    h.settle()
    return h


def test_a_stopped_out_round_trip_reads_as_sentences(trading_log: io.StringIO):
    h = round_trip()
    log = EventLog(write=lambda _: pytest.fail("pretty lines go through logging"))
    log.describe = TradeText(h.engine).describe
    log(h.events())
    log.flush()
    lines = trading_log.getvalue().splitlines()
    assert len(lines) == 4 and all(LINE.match(line) for line in lines)
    assert not [line for line in lines if "{" in line or '"' in line]
    token = TOKENS[0][:4] + "…" + TOKENS[0][-4:]  # no symbol given: the short mint
    position = next(iter(h.engine.positions.values()))
    bought = f"{position.original_amount / 10**6:,.6f}".rstrip("0").rstrip(".")
    amount = r"\d{1,3}(,\d{3})*(\.\d+)?"
    assert re.search(
        rf" a bought {bought} {token} for {amount} SOL at \$0\.0000\d+ \(signal:t\)"
        rf"  position={position.id}$",
        lines[0],
    )
    assert re.search(
        rf" a exit stop_loss on {token} at \$0\.0000101, stop \$0\.0000138734: selling {bought} ",
        lines[1],
    )
    assert re.search(rf" a sold {bought} {token} for {amount} SOL at .* \(stop_loss\)", lines[2])
    assert re.search(
        rf" a closed {token} position \(stop_loss\), realized PnL -{amount} SOL", lines[3]
    )


def test_symbols_come_from_the_position_and_unknown_agents_keep_atomic_units():
    h = round_trip()
    text = TradeText(h.engine)
    position = next(iter(h.engine.positions.values()))
    position.symbol = "BONK"
    assert text.token(TOKENS[0], 500_520_000, position.id) == "500.52 BONK"
    assert text.quote(position.agent_id, 100_000_000) == "0.1 SOL"
    assert text.quote("agt_gone", 7) == "7 (atomic quote units)"
    assert text.agent("agt_gone") == "agt_gone"
    level, message, fields = text.describe(ev.HaltChanged(ts=0, buys=True, flatten=True))  # type: ignore[misc]
    assert (level, message, fields) == (
        logging.WARNING,
        "halt changed: buys halted, flattening",
        {},
    )


def test_alert_details_named_like_record_attributes_do_not_break_logging(
    trading_log: io.StringIO,
):
    h = round_trip()
    alert = ev.Alert(ts=0, code="c", message="feed stale", details={"msg": "x", "token": "T"})
    level, message, fields = TradeText(h.engine).describe(alert)  # type: ignore[misc]
    logging.getLogger("tradingd.trading").log(level, message, extra=fields)
    (line,) = trading_log.getvalue().splitlines()
    assert line.endswith("WARNING feed stale  code=c  detail_msg=x  token=T")


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("tradingd.daemon", logging.ERROR, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_generic_records_show_local_time_level_message_and_fields():
    rec = record("store unavailable", reason="connection refused", agent="alpha")
    line = PrettyFormatter(color=False).format(rec)
    clock = time.strftime("%H:%M:%S", time.localtime(rec.created))
    assert (
        line
        == f"{clock}.{int(rec.msecs):03d} ERROR   alpha store unavailable  reason=connection refused"
    )


def test_colour_only_when_asked():
    rec = record("x", agent="alpha")
    assert "\x1b[" not in PrettyFormatter(color=False).format(rec)
    assert "\x1b[" in PrettyFormatter(color=True).format(rec)


def test_fields_that_name_a_secret_are_redacted_even_without_the_filter():
    line = PrettyFormatter(color=False).format(record("x", api_key="tdk_abc", wallet_id="w1"))
    assert "tdk_abc" not in line and "api_key=[redacted]" in line and "wallet_id=w1" in line


def test_a_full_queue_drops_and_says_so_in_pretty_lines_too(trading_log: io.StringIO):
    h = round_trip()
    log = EventLog(limit=2)
    log.describe = TradeText(h.engine).describe
    log(h.events())
    log.flush()
    lines = trading_log.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("WARNING trading log lines dropped (queue full)  dropped=2")
