"""One answer to "is this failure transient?" for venue, Redis, Postgres and network errors."""

from __future__ import annotations

import asyncpg
import pytest
from redis import exceptions as redis_errors
from tradingd.adapters.transient import is_data_error, is_transient
from tradingd.adapters.venues.paper import PaperRejected
from tradingd.engine.errors import TradingdError, VenueError


def test_a_venue_error_is_part_of_the_one_error_hierarchy() -> None:
    exc = VenueError("route not found", transient=True)
    assert isinstance(exc, TradingdError) and exc.code == "venue_error"
    assert exc.message == "route not found"


@pytest.mark.parametrize(
    "exc",
    [
        VenueError("timed out", transient=True),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
        redis_errors.ConnectionError("redis refused"),
        redis_errors.TimeoutError("redis slow"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.InterfaceError("connection closed"),
    ],
)
def test_connection_failures_and_timeouts_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        VenueError("rejected"),
        PaperRejected("no price"),
        redis_errors.ResponseError("WRONGTYPE"),
        asyncpg.DataError("bad json"),
        ValueError("a bug"),
    ],
)
def test_rejections_and_bugs_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_record_postgres_refuses_is_a_data_error_and_an_outage_is_not() -> None:
    assert is_data_error(asyncpg.DataError("bad json"))
    assert is_data_error(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"))
    assert not is_data_error(asyncpg.InterfaceError("connection closed"))
    assert not is_data_error(OSError("unreachable"))
