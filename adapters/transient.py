"""The one map from library exceptions to ours, at the edge: which failures of the network,
Redis, Postgres and the venues are transient (the same operation may succeed when tried again),
and the exception families each store client catches. Every adapter asks here; nothing else
keeps its own list (httpx's `map_exceptions` is the model)."""

from __future__ import annotations

import asyncpg
from redis import exceptions as redis_errors
from tradingd.engine.errors import VenueError

ExceptionTypes = tuple[type[BaseException], ...]

# A failure of the way to a server, not of what was asked: a refused, reset or lost connection, a
# timeout, a server not accepting connections yet (start-up, recovery). Worth another try.
TRANSIENT: ExceptionTypes = (
    OSError,  # ConnectionError and TimeoutError (asyncio's too) are OSErrors
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)

# Everything the Redis client raises when Redis fails a command or cannot be reached.
REDIS_FAILURES: ExceptionTypes = (redis_errors.RedisError, OSError)

# Postgres did not answer a read: down, unreachable, too slow, or it refused the query. A reader
# reports these as StoreUnavailable.
POSTGRES_OUTAGES: ExceptionTypes = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

# SQLSTATE classes 22 (data exception: bad text, bad JSON, a cast out of range) and 23
# (integrity constraint: a NULL where a row needs a value), and a client-side encoding failure
# of a record: the same entry fails the same way on every attempt. Never transient.
DATA_ERRORS: ExceptionTypes = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    UnicodeError,
)

# Everything that means "Postgres failed this batch" to the writer: data errors (above) and
# outages. InternalClientError is asyncpg's own state machine broken by a connection lost
# mid-operation ("another operation is in progress"): the connection is dropped and remade.
POSTGRES_FAILURES: ExceptionTypes = (
    *POSTGRES_OUTAGES,
    asyncpg.InternalClientError,
    ConnectionError,
    UnicodeError,
)


def is_transient(exc: BaseException) -> bool:
    """True when the operation that raised `exc` may succeed if tried again unchanged: a
    VenueError says so itself (`transient`); a library error does when it is a connection
    failure or a timeout (TRANSIENT). Anything else (a rejection, a bug) is False."""
    if isinstance(exc, VenueError):
        return exc.transient
    return isinstance(exc, TRANSIENT)


def is_data_error(exc: BaseException) -> bool:
    """True when Postgres (or the driver) refused a batch for what one of its records holds."""
    return isinstance(exc, DATA_ERRORS)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task has a cancel pending. redis-py's asyncio client
    can finish a command and return normally when the task was cancelled during it (measured
    here with redis 8.1 on Python 3.11: ~70 % of cancels during a GET were lost; redis-py issues
    #2028, #2551), or turn the cancel into a TimeoutError or ConnectionError that a loop catches
    as an outage: a loop over Redis calls checks after each call, or it never ends."""
    import asyncio

    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
