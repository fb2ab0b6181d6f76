"""The recorder: every tick, signal and clock turn the daemon receives, written as replay files
(docs/replay-format.md) in arrival order, off the event loop, rotated by size and by UTC day.

The runtime's intake observers only enqueue (bounded; beyond the bound records are dropped and
counted); a writer task hands batches to one thread that encodes them and appends whole lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tradingd.adapters.feeds.record_files import MAX_MS, Cancel, Entry, RecordFiles
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine import events as ev
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Signal, Tick
from tradingd.engine.ports import ComponentHealth

log = logging.getLogger("tradingd.recorder")

CLOSE_TIMEOUT_S = 10.0  # shutdown waits this long for the last batch to reach the disk
DEGRADED_FOR_MS = 60_000  # health stays `degraded` this long after a record was dropped


class Recorder:
    """Records what the runtime receives into replay files under `path` (see
    record_files.RecordFiles for the names and the rotation).

    Wiring (the daemon's, adapters/app/recording.py): `on_ticks` to `runtime.tick_intake`,
    `on_signal` to `signal_intake`, `on_clock` to `clock_intake`, `on_cancel` to
    `cancel_intake`, `on_events` to the event
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
        rules_of: Callable[[str], InstrumentRules | None] | None = None,
    ) -> None:
        self.files = RecordFiles(path, max_bytes, rotate_daily, rules_of)
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

    def on_cancel(self, signal_id: str, now_ms: int) -> None:
        """A cancel of a signal's resting buys, recorded naming the signal's daemon id (the
        `ref` its record carries; a cancel of a signal the recording does not hold does
        nothing in a replay)."""
        self._pending_clock = None
        self._put(now_ms, Cancel(signal_id), 1)

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

    def _put(self, now_ms: int, payload: list[Tick] | Signal | Cancel | None, n: int) -> None:
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

    def _enqueue(self, ts: int, payload: list[Tick] | Signal | Cancel | None, n: int) -> None:
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
