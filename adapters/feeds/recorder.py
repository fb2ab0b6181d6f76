"""The recorder: every tick, signal and clock turn the daemon receives, written as replay files
(docs/replay-format.md) in arrival order, off the event loop, rotated by size and by UTC day.

The runtime's intake observers only enqueue (bounded; beyond the bound records are dropped and
counted); a writer task hands batches to one thread that encodes them and appends whole lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import msgspec
from tradingd.adapters.feeds.replay import (
    ClockRecord,
    Record,
    ReplayFormatError,
    SignalRecord,
    TickRecord,
    parse_line,
)
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine import events as ev
from tradingd.engine.assets import is_mint
from tradingd.engine.model import Signal, Tick
from tradingd.engine.ports import ComponentHealth

log = logging.getLogger("tradingd.recorder")

MAX_MS = 2**53  # the replay format's bound on a timestamp
CLOSE_TIMEOUT_S = 10.0  # shutdown waits this long for the last batch to reach the disk
DEGRADED_FOR_MS = 60_000  # health stays `degraded` this long after a record was dropped
_MINT_CACHE = 100_000  # mints known valid (is_mint decodes base58: cached, bounded)

# What the intake observers enqueue: (record ts, payload): a batch of ticks, a signal, or None
# for a clock turn. Records are built and encoded in the writer thread, not on the loop.
Entry = tuple[int, list[Tick] | Signal | None]


def file_name(stem: str, suffix: str, ms: int, n: int = 0) -> str:
    """`<stem>-YYYY-MM-DDTHHMMSSZ<suffix>` for a file started at `ms` (epoch ms, UTC); the `n`th
    file of the same second adds `_NNNNNN`, which sorts after it (`.` < `_`)."""
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(ms // 1000))
    return f"{stem}-{stamp}{f'_{n:06d}' if n else ''}{suffix}"


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and x >= 0 and math.isfinite(x) else None


class RecordFiles:
    """The files of one recording, used by the writer thread only: appends encoded lines to the
    current file, and starts a new one when a line would take it past `max_bytes`, or (with
    `rotate_daily`) when a record's UTC day differs from the file's. `base` gives the directory
    and the names: `dir/ticks.jsonl` -> `dir/ticks-2026-11-30T201500Z.jsonl`, ..."""

    def __init__(self, base: Path, max_bytes: int, rotate_daily: bool) -> None:
        self.dir = base.parent
        self.stem = base.stem or "record"
        self.suffix = base.suffix or ".jsonl"
        self.max_bytes = max_bytes
        self.rotate_daily = rotate_daily
        self.path: Path | None = None
        self.bytes = 0  # of the current file
        self.files = 0
        self.unrecordable = 0  # ticks or signals no replay could read (not a mint, ...)
        self._file: BinaryIO | None = None
        self._day = -1
        self._encoder = msgspec.json.Encoder()
        self._mints: set[str] = set()

    def prepare(self) -> None:
        """Create the directory (0700). Raises OSError."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(self, entries: list[Entry]) -> tuple[int, int]:
        """Encode and append `entries`, whole lines only; returns (records, bytes) written.
        Raises OSError (the current file is then closed: the next write starts a new one, so a
        line cut by the error can only be the last line of a file)."""
        buf = bytearray()
        records = total = 0
        try:
            for record in self._records(entries):
                start = len(buf)
                self._encoder.encode_into(record, buf, -1)
                buf += b"\n"
                size = len(buf) - start
                if self._file is None or self._rotate_due(record.ts, size):
                    self._flush(buf[:start])
                    del buf[:start]
                    self._open(record.ts)
                self.bytes += size
                total += size
                records += 1
            self._flush(buf)
        except OSError:
            self._close_after_error()
            raise
        return records, total

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _rotate_due(self, ms: int, size: int) -> bool:
        if self.rotate_daily and ms // 86_400_000 != self._day:
            return True
        return self.bytes > 0 and self.bytes + size > self.max_bytes

    def _flush(self, data: bytes | bytearray) -> None:
        if data and self._file is not None:
            self._file.write(data)
            self._file.flush()

    def _open(self, ms: int) -> None:
        self.close()
        self.prepare()  # again: an operator may have moved the directory away
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        for n in range(1_000_000):
            path = self.dir / file_name(self.stem, self.suffix, ms, n)
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:  # a restart or a rotation within the same second
                continue
            break
        else:  # pragma: no cover - a million files of one second
            raise FileExistsError(f"no free file name for {self.stem} at {iso_ms(ms)}")
        self._file = os.fdopen(fd, "ab")
        self.path, self.bytes, self._day = path, 0, ms // 86_400_000
        self.files += 1

    def _close_after_error(self) -> None:
        path, empty = self.path, self.bytes == 0
        with contextlib.suppress(OSError):
            self.close()
        self._file = None
        if empty and path is not None:  # a failing disk must not leave a trail of empty files
            with contextlib.suppress(OSError):
                path.unlink()

    # -- domain -> records ------------------------------------------------------------------

    def _records(self, entries: list[Entry]) -> Iterator[Record]:
        for ms, payload in entries:
            if payload is None:
                yield ClockRecord(ts=ms)
            elif isinstance(payload, list):
                for tick in payload:
                    record = self._tick_record(ms, tick)
                    if record is None:
                        self.unrecordable += 1
                    else:
                        yield record
            else:
                signal_record = self._signal_record(ms, payload)
                if signal_record is None:
                    self.unrecordable += 1
                else:
                    yield signal_record

    def _mint(self, token: str) -> bool:
        if token in self._mints:
            return True
        if not is_mint(token):
            return False
        if len(self._mints) >= _MINT_CACHE:
            self._mints.clear()
        self._mints.add(token)
        return True

    def _tick_record(self, ms: int, t: Tick) -> TickRecord | None:
        """The tick as received at `ms`; None for one no replay could read (the engine refuses
        such ticks too, or they come from a source the replay format cannot name)."""
        if not (
            t.price_usd > 0
            and math.isfinite(t.price_usd)
            and 0 <= t.ts <= MAX_MS
            and (t.decimals is None or 0 <= t.decimals <= 18)
            and self._mint(t.token)
        ):
            return None
        created = t.pair_created_at
        return TickRecord(
            ts=ms,
            token=t.token,
            price_usd=t.price_usd,
            tick_ts=None if t.ts == ms else t.ts,
            decimals=t.decimals,
            source=t.source,
            liquidity_usd=_finite_or_none(t.liquidity_usd),
            confidence=_finite_or_none(t.confidence),
            conf_usd=_finite_or_none(t.conf_usd),
            market_cap_usd=_finite_or_none(t.market_cap_usd),
            fdv_usd=_finite_or_none(t.fdv_usd),
            volume_24h_usd=_finite_or_none(t.volume_24h_usd),
            pair_created_at=created if created is not None and 0 <= created <= MAX_MS else None,
        )

    def _signal_record(self, ms: int, s: Signal) -> SignalRecord | None:
        """The signal as applied at `ms`: its expiry kept (`expires_in_ms` from `ms`), its client
        id as the record `id`. Checked by decoding it back (signals are rare): None if a replay
        would refuse the line."""
        record = SignalRecord(
            ts=ms,
            token=s.token,
            id=s.client_id,
            side=s.side,
            type=s.type,
            strength=s.strength,
            symbol=s.symbol,
            source=s.source,
            reason=s.reason,
            expires_in_ms=max(1, s.expires_at - ms),
            decimals=s.decimals,
        )
        try:
            parse_line(self._encoder.encode(record))
        except ReplayFormatError:
            return None
        return record


class Recorder:
    """Records what the runtime receives into replay files under `path` (see RecordFiles).

    Wiring (the daemon's, adapters/app/recording.py): `on_ticks` to `runtime.tick_intake`,
    `on_signal` to `signal_intake`, `on_clock` to `clock_intake`, `on_events` to the event
    subscribers; `run()` as a task; `close()` at shutdown; `publish_health` (optional) receives
    `health()` each time it may have changed. At most `max_queue` records wait for
    the disk; more are dropped (counted, logged once per burst). A clock turn is written when it
    is `clock_gap_ms` (epoch ms) after the last one written, or when it moved something (events
    followed it before any other intake): the ones left out changed nothing a replay could see
    within that gap."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        rotate_daily: bool = True,
        max_queue: int = 100_000,
        clock_gap_ms: int = 1000,
        publish_health: Callable[[ComponentHealth], None] | None = None,
    ) -> None:
        self.files = RecordFiles(path, max_bytes, rotate_daily)
        self.publish_health = publish_health  # called with health() whenever it may change
        self.max_queue = max_queue
        self.clock_gap_ms = clock_gap_ms
        self.records = 0  # written
        self.bytes = 0  # written, every file
        self.dropped = 0
        self.write_errors = 0
        self._queue: deque[Entry] = deque()
        self._queued = 0  # records enqueued and not yet written (the batch being written too)
        self._last_ts = 0
        self._clock_written = -(2**62)
        self._pending_clock: int | None = None
        self._burst = 0  # records dropped in the current burst
        self._last_drop_ms: int | None = None
        self._last_error: str | None = None
        self._wake = asyncio.Event()
        self._writing: asyncio.Future[tuple[int, int]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Recorder(path={str(self.files.dir / self.files.stem)!r})"

    # -- intake observers (the event loop: enqueue only) -----------------------------------

    def on_ticks(self, ticks: list[Tick], now_ms: int) -> None:
        self._pending_clock = None
        self._put(now_ms, ticks, len(ticks))

    def on_signal(self, signal: Signal, now_ms: int) -> None:
        self._pending_clock = None
        self._put(now_ms, signal, 1)

    def on_clock(self, now_ms: int) -> None:
        if now_ms - self._clock_written >= self.clock_gap_ms:
            self._pending_clock = None
            self._put_clock(now_ms)
        else:
            self._pending_clock = now_ms

    def on_events(self, events: list[ev.Event]) -> None:
        """Events after a clock turn left out: it moved something (an exit on a deadline), so
        it is written after all, still before any later intake."""
        if self._pending_clock is not None:
            now_ms, self._pending_clock = self._pending_clock, None
            self._put_clock(now_ms)

    def _put_clock(self, now_ms: int) -> None:
        self._clock_written = now_ms
        self._put(now_ms, None, 1)

    def _put(self, now_ms: int, payload: list[Tick] | Signal | None, n: int) -> None:
        if self._closed:
            self.dropped += n
            return
        # Records never go back in time (a replay refuses that), even if the wall clock does.
        ts = self._last_ts = min(max(now_ms, self._last_ts), MAX_MS)
        room = self.max_queue - self._queued
        if n > room:
            if isinstance(payload, list) and room > 0:
                self._enqueue(ts, payload[:room], room)
            self._drop(n - max(room, 0), ts)
            return
        if self._burst:
            self._end_burst()
        self._enqueue(ts, payload, n)

    def _enqueue(self, ts: int, payload: list[Tick] | Signal | None, n: int) -> None:
        self._queue.append((ts, payload))
        self._queued += n
        self._wake.set()

    def _drop(self, n: int, ts: int) -> None:
        first = not self._burst
        self._burst += n  # logged once, with the count, when the burst ends (or at close)
        self.dropped += n
        self._last_drop_ms = ts
        if first:
            self._publish()

    def _end_burst(self) -> None:
        log.warning(
            "recorder dropped records: the queue was full (the disk is slower than the intake)",
            extra={"dropped": self._burst, "dropped_total": self.dropped},
        )
        self._burst = 0

    # -- the writer -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory now (0700), so a bad path fails start-up. Raises OSError."""
        self.files.prepare()

    async def run(self) -> None:
        """Hand queued records to the writer thread, one batch at a time, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_queued()

    async def _write_queued(self) -> None:
        if not self._queue:
            return
        entries = list(self._queue)
        self._queue.clear()
        n = sum(len(p) if isinstance(p, list) else 1 for _, p in entries)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tradingd-recorder")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self.files.write, entries)
        fut.add_done_callback(lambda f: self._written(f, n))
        self._writing = fut
        with contextlib.suppress(OSError):  # counted and logged in _written
            await asyncio.shield(fut)  # a cancelled writer task leaves the write to finish

    def _written(self, fut: asyncio.Future[tuple[int, int]], n: int) -> None:
        try:
            self._settle(fut, n)
        finally:
            self._publish()

    def _settle(self, fut: asyncio.Future[tuple[int, int]], n: int) -> None:
        self._queued -= n
        exc = None if fut.cancelled() else fut.exception()
        if exc is None and not fut.cancelled():
            records, size = fut.result()
            self.records += records
            self.bytes += size
            if self._last_error is not None:
                log.info("recorder writes again", extra={"path": str(self.files.path)})
                self._last_error = None
            return
        self.write_errors += 1
        self.dropped += n
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "cancelled"
        if self._last_error is None:  # once per run of failures
            log.error(
                "recorder cannot write: records lost",
                extra={"reason": reason, "records": n, "dir": str(self.files.dir)},
            )
        self._last_error = reason

    async def close(self) -> None:
        """Stop taking records, write what is queued (bounded by CLOSE_TIMEOUT_S) and close the
        file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._burst:
            self._end_burst()
        try:
            await asyncio.wait_for(self._drain(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "recorder: the last records did not reach the disk in time",
                extra={"queued": self._queued, "timeout_s": CLOSE_TIMEOUT_S},
            )
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        log.info("recorder closed", extra=self.counters())

    async def _drain(self) -> None:
        if self._writing is not None:
            with contextlib.suppress(OSError):
                await self._writing
        await self._write_queued()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.files.close)
        else:
            self.files.close()

    # -- what it reports --------------------------------------------------------------------

    def _publish(self) -> None:
        if self.publish_health is not None:
            try:
                self.publish_health(self.health())
            except Exception:  # a broken health sink must not stop the recording
                log.exception("recorder health sink failed")

    def counters(self) -> Mapping[str, int]:
        """Monotonic counts since start (metrics): records and bytes written, records dropped
        (queue full or lost to a write error), unrecordable ticks/signals, write errors, files."""
        return {
            "records": self.records,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "unrecordable": self.files.unrecordable,
            "write_errors": self.write_errors,
            "files": self.files.files,
        }

    def health(self) -> ComponentHealth:
        """{"status": "ok" | "degraded" (records dropped within the last minute of record time)
        | "error" (the last write failed), "reason", "path": the current file or None, "bytes":
        its size, "records": written since start, "dropped": since start, "queued"}
        (GET /health `components.feeds.record`)."""
        status, reason = "ok", ""
        if self._last_error is not None:
            status, reason = "error", f"write failed: {self._last_error}"
        elif self._last_drop_ms is not None and self._last_ts - self._last_drop_ms < (
            DEGRADED_FOR_MS
        ):
            status = "degraded"
            reason = f"queue full: records dropped, the last at {iso_ms(self._last_drop_ms)}"
        path = self.files.path
        return {
            "status": status,
            "reason": reason,
            "path": None if path is None else str(path),
            "bytes": self.files.bytes,
            "records": self.records,
            "dropped": self.dropped,
            "queued": self._queued,
        }
