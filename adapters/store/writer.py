"""The write-behind writer: stream -> Postgres through a consumer group.

Batches close at `batch_max` entries or `linger_ms` after their first entry. A batch is written in
one transaction, then XACKed, then the stream is trimmed below its first unacknowledged entry, so
the stream always holds every entry Postgres may lack. After a restart the consumer first re-reads
its own pending entries; entries another consumer left pending longer than `claim_idle_ms` are
taken over with XAUTOCLAIM. Writes are idempotent (entry ids, versioned upserts), so a batch
written twice is harmless. While Postgres is down the batch is retried with backoff and the
stream grows; lag (entries, age of the oldest) is what /health and the metrics show. A batch
Postgres refuses for what a record holds is salvaged instead (dead_letter.py): the bad entries
go to `dead_letters`, the rest is written, the batch is acknowledged and the stream drains."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.dead_letter import (
    DeadLetter,
    printable,
    salvage,
    write_dead_letters,
)
from tradingd.adapters.store.records import SEQ_BITS, Entry, parse_stream_id
from tradingd.adapters.store.redis import raw_stream_reader
from tradingd.adapters.store.stream_codec import (
    ACK_SCRIPT,
    Keys,
    ack_args,
    entries_from_reply,
    entry_from_fields,
)
from tradingd.adapters.transient import POSTGRES_FAILURES, is_data_error, raise_if_cancelled

log = logging.getLogger("tradingd.store.writer")
StatusCallback = Callable[[bool, str], None]
BatchObserver = Callable[[list[Entry], int], None]  # entries, commit time (epoch ms)
DeadLetterCallback = Callable[[list[DeadLetter]], None]
PG_ERRORS = POSTGRES_FAILURES  # data errors and outages, told apart by is_data_error


class WriteBehind:
    GROUP = "pg-writer"

    def __init__(
        self,
        r: aioredis.Redis,
        keys: Keys,
        database_url: str,
        schema: str,
        *,
        on_status: StatusCallback,
        on_dead_letters: DeadLetterCallback | None = None,
        mode: pg.StageMode = "copy",
        batch_max: int = 5000,
        linger_ms: int = 20,
        claim_idle_ms: int = 30_000,
        consumer: str | None = None,
    ) -> None:
        self.redis = r
        # XREADGROUP replies come back raw: entries_from_reply reads them positionally
        # instead of redis-py building a dict per entry.
        self._raw = raw_stream_reader(r)
        self._ack_script = r.register_script(ACK_SCRIPT)  # EVALSHA, loaded again on NOSCRIPT
        self.keys = keys
        self.url = database_url
        self.schema = schema
        self.on_status = on_status
        self.on_dead_letters = on_dead_letters
        self.dead_lettered = 0  # entries moved to dead_letters since start
        self.mode = mode
        self.batch_max = batch_max
        self.linger_ms = linger_ms
        self.claim_idle_ms = claim_idle_ms
        self.consumer = consumer or f"writer-{socket.gethostname()}"
        self.up = True
        self.reason = ""
        self.written = 0
        self.batches = 0
        self.observers: list[BatchObserver] = []
        self.lag_entries = 0
        self.lag_seconds = 0.0
        # Two connections: one batch's stage step runs on one while the previous batch's
        # entity upserts and commit run on the other.
        self._writers: list[pg.BatchWriter | None] = [None, None]
        self._turn = 0
        self._own_pending = True
        self._pending_from = "0"  # own pending entries are re-read after this id
        self._last_claim = time.monotonic()
        self._batch: list[Entry] = []
        self._acking: asyncio.Future[None] | None = None
        self.stopped = False
        # Hot standby (adapters/cluster): False once this process lost its lease. The writer
        # only writes what Redis accepted (idempotently), but a fenced process commits and
        # acknowledges nothing more: the new holder's writer takes the stream over.
        self.may_act: Callable[[], bool] | None = None
        # Hot standby: Postgres ends a transaction of this writer left idle this long (ms), so
        # a frozen process cannot hold the row locks its successor's writer needs.
        self.idle_in_transaction_ms: int | None = None

    # -- loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read -> write -> ack, pipelined. The next batch is read (and parsed) while Postgres
        writes the current one; a batch is staged (COPY, events insert) on one connection while
        the previous one upserts its entities and commits on the other. Entity upserts and
        commits run strictly one batch after the other, in order, so no two transactions ever
        hold entity rows at once; a batch is acknowledged only after its own commit."""
        backoff = 0.05
        ahead: asyncio.Future[list[Entry]] | None = None
        committing: asyncio.Future[None] | None = None
        committing_batch: list[Entry] = []
        retry: collections.deque[list[Entry]] = collections.deque()
        try:
            while not self.stopped:
                raise_if_cancelled()
                if committing is not None and committing.done():
                    exc = None if committing.cancelled() else committing.exception()
                    committing = None
                    if exc is not None:
                        if not isinstance(exc, PG_ERRORS):
                            raise exc
                        if is_data_error(exc) and await self._salvage(committing_batch, exc):
                            backoff = 0.05
                            continue  # self._batch, if staged, is staged again
                        retry.append(committing_batch)  # idempotent: any order is fine
                        self._pg_failed(exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 2.0)
                        continue
                    backoff = 0.05
                if not self._batch:
                    if retry:
                        self._batch = retry.popleft()
                    else:
                        if ahead is None:
                            ahead = asyncio.ensure_future(self._next_batch())
                        if committing is not None:
                            await asyncio.wait(
                                (ahead, committing), return_when=asyncio.FIRST_COMPLETED
                            )
                            if not ahead.done():
                                continue  # the commit finished first: settle it
                        task, ahead = ahead, None
                        try:
                            self._batch = await task
                        except RedisError as exc:
                            self._redis_failed()
                            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                                await self.ensure_group()
                            else:
                                await asyncio.sleep(0.25)  # the write-through reports outages
                            continue
                        if not self._batch:
                            continue
                if ahead is None and not retry:
                    ahead = asyncio.ensure_future(self._next_batch())
                try:
                    writer = await self._next_writer()
                    await writer.stage(self._batch)  # overlaps the previous batch's commit
                except PG_ERRORS as exc:
                    if committing is not None:
                        await asyncio.wait((committing,))  # settled at the top of the loop
                        if committing.exception() is not None:
                            continue
                    if is_data_error(exc) and await self._salvage(self._batch, exc):
                        self._batch = []
                        backoff = 0.05
                        continue
                    self._pg_failed(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                if committing is not None:
                    await asyncio.wait((committing,))
                    if committing.cancelled() or committing.exception() is not None:
                        continue  # the top of the loop fails both connections: this batch too
                committing_batch = self._batch
                committing = asyncio.ensure_future(self._commit(writer, self._batch))
                self._batch = []
        finally:
            for task in (ahead, committing, self._acking):
                if task is not None and not task.done():
                    task.cancel()
            for task in (ahead, committing, self._acking):
                if task is not None:
                    await asyncio.gather(task, return_exceptions=True)

    def _redis_failed(self) -> None:
        # What was delivered before the error comes back from "0" (idempotent if written twice).
        self._own_pending = True
        self._pending_from = "0"

    async def _ack_or_reread(self, batch: list[Entry], prev: asyncio.Future[None] | None) -> None:
        if prev is not None:
            await asyncio.wait((prev,))  # one ack at a time, in commit order
        if self._fenced():
            return  # left pending: the new holder's writer re-reads it (idempotent)
        try:
            await self._ack(batch)
        except RedisError:
            self._redis_failed()  # unacked entries are read again and rewritten, idempotently

    async def drain(self, timeout: float) -> bool:
        """Wait until the stream holds no unacknowledged entry (graceful shutdown, tests); the
        `run` task does the writing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.refresh_lag()
            if self.lag_entries == 0 and not self._batch:
                return True
            await asyncio.sleep(0.02)
        return False

    # -- redis side -------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, start: str, count: int, block: int | None) -> list[Entry]:
        res = await self._raw.xreadgroup(
            self.GROUP, self.consumer, {self.keys.stream: start}, count=count, block=block
        )
        if not res:
            return []
        # one stream: RESP3 answers {stream: messages}, RESP2 [[stream, messages]]
        messages = next(iter(res.values())) if isinstance(res, dict) else res[0][1]
        return entries_from_reply(messages)

    async def _next_batch(self) -> list[Entry]:
        if self._own_pending:
            batch = await self._read(self._pending_from, self.batch_max, None)
            if batch:
                self._pending_from = batch[-1].stream_id
                return batch
            self._own_pending = False
        if time.monotonic() - self._last_claim > self.claim_idle_ms / 1000:
            self._last_claim = time.monotonic()
            claimed = await self._claim()
            if claimed:
                return claimed
        batch = await self._read(">", self.batch_max, 1000)
        if batch and len(batch) < self.batch_max and self.linger_ms:
            await asyncio.sleep(self.linger_ms / 1000)
            batch += await self._read(">", self.batch_max - len(batch), None)
        return batch

    async def _claim(self) -> list[Entry]:
        res = await self.redis.xautoclaim(
            self.keys.stream,
            self.GROUP,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch_max,
        )
        messages = res[1] if len(res) > 1 else []
        entries = [entry_from_fields(sid, fields) for sid, fields in messages if fields]
        if entries:
            log.warning("reclaimed stale stream entries", extra={"entries": len(entries)})
        return entries

    async def _ack(self, batch: list[Entry]) -> None:
        """Acknowledge `batch` and trim the stream below its first unacknowledged entry, in
        one script call (stream_codec.ACK_SCRIPT)."""
        await self._ack_script(keys=[self.keys.stream], args=ack_args(self.GROUP, batch))

    async def refresh_lag(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.keys.stream)
        pipe.xrange(self.keys.stream, count=1)
        length, first = await pipe.execute()
        self.lag_entries = int(length)
        if first:
            oldest_ms = parse_stream_id(first[0][0]) >> SEQ_BITS
            self.lag_seconds = max(0.0, time.time() - oldest_ms / 1000)
        else:
            self.lag_seconds = 0.0

    # -- postgres side ----------------------------------------------------------------------

    async def _next_writer(self) -> pg.BatchWriter:
        i, self._turn = self._turn, self._turn ^ 1
        writer = self._writers[i]
        if writer is None:
            conn = await pg.connect(
                self.url, self.schema, timeout=5, idle_in_transaction_ms=self.idle_in_transaction_ms
            )
            writer = self._writers[i] = pg.BatchWriter(conn, self.mode)
        return writer

    def _fenced(self) -> bool:
        if self.may_act is None or self.may_act():
            return False
        if not self.stopped:
            log.error("write-behind fenced: the lease is lost, nothing more is committed")
        self.stopped = True
        self._drop_connections()  # rolls back what is staged
        return True

    async def _commit(self, writer: pg.BatchWriter, batch: list[Entry]) -> None:
        if self._fenced():
            return
        await writer.finish()
        committed = time.time_ns() // 1_000_000
        self.written += len(batch)
        self.batches += 1
        for obs in self.observers:
            obs(batch, committed)
        self._pg_ok()
        self._acking = asyncio.ensure_future(self._ack_or_reread(batch, self._acking))

    async def _salvage(self, batch: list[Entry], exc: BaseException) -> bool:
        """Write a batch refused for a data reason without its bad entries, dead-letter those and
        acknowledge it all. False if Postgres failed otherwise meanwhile (an outage: the caller
        retries the whole batch)."""
        self._drop_connections()  # the other one may hold the next batch staged: restaged later
        if self._fenced():
            return True
        try:
            writer = await self._next_writer()
            letters = await salvage(writer, batch, exc)
            await write_dead_letters(writer.conn, letters)
        except PG_ERRORS as again:
            self._pg_failed(again)
            return False
        bad = {d.entry.id for d in letters}
        written = [e for e in batch if e.id not in bad]
        committed = time.time_ns() // 1_000_000
        self.written += len(written)
        self.batches += 1
        self.dead_lettered += len(letters)
        for obs in self.observers:
            obs(written, committed)
        if letters:
            log.error(
                "postgres refused stream entries for their data: moved to dead_letters",
                extra={
                    "entries": [d.entry.id for d in letters],
                    "types": sorted({printable(d.entry.type, 100) for d in letters}),
                    "error": letters[0].error,
                    "batch": len(batch),
                },
            )
            if self.on_dead_letters is not None:
                self.on_dead_letters(letters)
        self._pg_ok()
        self._acking = asyncio.ensure_future(self._ack_or_reread(batch, self._acking))
        return True

    def _drop_connections(self) -> None:
        writers, self._writers = self._writers, [None, None]
        for writer in writers:
            if writer is not None:
                writer.conn.terminate()  # rolls back a staged batch too

    def _pg_failed(self, exc: BaseException) -> None:
        self._drop_connections()
        if self.up:
            self.up = False
            self.reason = f"postgres unreachable: {exc!s}"[:200]
            log.error(
                "postgres down: the stream keeps everything until it returns",
                extra={"reason": self.reason},
            )
            self.on_status(False, self.reason)

    def _pg_ok(self) -> None:
        if not self.up:
            self.up = True
            self.reason = ""
            log.info("postgres back: draining the stream")
            self.on_status(True, "")

    async def close(self) -> None:
        writers, self._writers = self._writers, [None, None]
        for writer in writers:
            if writer is not None:
                await writer.conn.close(timeout=2)
        if not hasattr(self._raw, "connection_pool"):  # a Redis Cluster's: its own client
            with contextlib.suppress(Exception):
                await self._raw.aclose()
