"""The one ISO-8601 form of a time: what the REST API gives, the logs and the event log write."""

import json
import logging

from tradingd.adapters.app.logs import JsonFormatter
from tradingd.adapters.timestamps import iso_ms, iso_ms_or_none


def test_iso_ms_gives_utc_with_three_digits_of_milliseconds() -> None:
    assert iso_ms(1_795_780_800_123) == "2026-11-27T12:00:00.123Z"
    assert iso_ms(1_795_780_800_005) == "2026-11-27T12:00:00.005Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(999) == "1970-01-01T00:00:00.999Z"


def test_iso_ms_or_none_treats_zero_as_never() -> None:
    assert iso_ms_or_none(None) is None
    assert iso_ms_or_none(0) is None
    assert iso_ms_or_none(1_000) == "1970-01-01T00:00:01.000Z"


def test_log_lines_carry_the_same_form() -> None:
    record = logging.LogRecord("tradingd", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1_795_780_800.25
    record.msecs = 250.0
    assert json.loads(JsonFormatter().format(record))["ts"] == "2026-11-27T12:00:00.250Z"
