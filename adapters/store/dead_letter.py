"""Stream entries Postgres refuses for what they hold, and the one place that tells those apart
from outages.

A batch that fails for a data reason (`transient.is_data_error`) can never succeed unchanged, and retrying
it would stall the write-behind for good. `salvage` writes it in halves, recursively, until
every entry that fails alone is isolated; those go to the `dead_letters` table (migration 0003)
byte for byte with the error, and everything else is written. Any other failure is treated as
the server's (connection lost, shutdown, timeout, lock or serialization conflicts, a schema
problem): the whole batch is retried later and nothing is dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec
from tradingd.adapters.http.text_rule import CONTROL
from tradingd.adapters.store.postgres import BatchWriter
from tradingd.adapters.store.records import Entry
from tradingd.adapters.transient import DATA_ERRORS

MAX_ERROR_CHARS = 500


class DeadLetter(msgspec.Struct, frozen=True):
    entry: Entry
    error: str  # printable, at most MAX_ERROR_CHARS
    sqlstate: str | None


def printable(text: str, limit: int | None = None) -> str:
    """`text` storable in a Postgres `text` column and safe in a log line: control characters
    as `\\uXXXX`, lone surrogates as backslash escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if limit is None else text[:limit]


def dead_letter(entry: Entry, exc: BaseException) -> DeadLetter:
    return DeadLetter(
        entry,
        printable(f"{type(exc).__name__}: {exc}", MAX_ERROR_CHARS),
        getattr(exc, "sqlstate", None),
    )


async def salvage(
    writer: BatchWriter, batch: Sequence[Entry], exc: BaseException
) -> list[DeadLetter]:
    """Write `batch`, which failed as a whole with the data error `exc`, in halves until each
    failing entry stands alone; returns those entries (written: everything else). k bad entries
    in n cost about 2·k·log2(n) transactions. Transient errors propagate: the caller retries the
    whole batch later, which is harmless (writes are idempotent)."""
    if len(batch) == 1:
        return [dead_letter(batch[0], exc)]
    dead: list[DeadLetter] = []
    mid = len(batch) // 2
    parts: list[Sequence[Entry]] = [batch[mid:], batch[:mid]]  # a stack: oldest half first
    while parts:
        part = parts.pop()
        try:
            await writer.write(part)
        except DATA_ERRORS as again:
            if len(part) == 1:
                dead.append(dead_letter(part[0], again))
            else:
                mid = len(part) // 2
                parts += [part[mid:], part[:mid]]
    return dead


async def write_dead_letters(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Idempotent on the entry id (a batch salvaged twice keeps its first error)."""
    if not letters:
        return
    rows = [
        (
            d.entry.id,
            printable(d.entry.type, 200),
            printable(d.entry.key, 1000),
            printable(d.entry.agent, 1000) or None,
            d.entry.payload,
            d.error,
            d.sqlstate,
        )
        for d in letters
    ]
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO dead_letters (id, type, key, agent_id, payload, error, sqlstate)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING""",
            rows,
        )
