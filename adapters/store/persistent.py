"""The persistent store of one daemon: Redis write-through, Postgres write-behind, recovery, and
outage handling, put together in start-up order.

open(): lock the data dir -> start/attach the servers -> migrate -> recover the engine's state ->
subscribe to the runtime -> resume orders that were in flight. close() flushes Redis, drains the
writer (bounded), and stops the embedded servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.dead_letter import DeadLetter, printable
from tradingd.adapters.store.embedded import EmbeddedServers
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.store.history import HistoryReader
from tradingd.adapters.store.key_migration import (
    legacy_lease,
    legacy_names,
    rename_legacy_keys,
)
from tradingd.adapters.store.lock import DataDirLock
from tradingd.adapters.store.records import EntryIds, PositionSaved, to_entries, with_records
from tradingd.adapters.store.recovery import StateBook, build_snapshot
from tradingd.adapters.store.redis import Fence, Keys, RedisWriteThrough, client
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.writer import WriteBehind
from tradingd.adapters.transient import is_transient, raise_if_cancelled
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.model import Tick
from tradingd.engine.snapshot import EngineSnapshot, restore

log = logging.getLogger("tradingd.store")
IDLE_IN_TRANSACTION_MS = 10_000  # a hot standby writer's idle-in-transaction bound (least)
STATUS_INTERVAL_S = 1.0
EMBEDDED_CHECK_S = 1.0  # how often the embedded servers are checked for having exited
TASK_STOP_TIMEOUT_S = 5.0  # a cancelled store task must end within this at shutdown
PEAK_CHECKPOINT_S = 0.25
DEAD_LETTERS_IN_ALERT = 10  # entries named in one alert; the table holds them all


class PersistentStore:
    kind = "persistent"

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        *,
        redis_url: str | None,
        database_url: str | None,
        namespace: str = "tradingd",
        pause_buys_without_redis: bool = True,
        publish: Any = None,
        stage_mode: pg.StageMode = "copy",
        lock: bool = True,
        startup_timeout: float = 30.0,
        history_read_timeout: float = 2.0,
        fence: Fence | None = None,
    ) -> None:
        self.engine = engine
        # Hot standby (adapters/cluster): every write-through carries the fencing token, the
        # writer commits only while the lease is held; no spill (see redis.py).
        self.fence = fence
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.database_url = database_url
        self.namespace = pg.check_schema(namespace)
        self.pause_buys_without_redis = pause_buys_without_redis
        self.publish = publish  # callable(list[Event]): alerts to every runtime subscriber
        self.stage_mode = stage_mode
        self.startup_timeout = startup_timeout
        self.history_read_timeout = history_read_timeout
        self.history: HistoryReader | None = None  # history that left memory, from Postgres
        self.keys = Keys(namespace)
        self.ids = EntryIds()
        self.lock = DataDirLock(data_dir) if lock else None
        self.servers: EmbeddedServers | None = None
        self.components: dict[str, dict[str, Any]] = {
            "redis": {"status": "starting"},
            "postgres": {"status": "starting"},
        }
        self.recovered: EngineSnapshot | None = None
        self.write_through: RedisWriteThrough | None = None
        self.writer: WriteBehind | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ticked: set[str] = set()
        self._peaks: dict[str, tuple[float, float | None]] = {}
        self._restarting: asyncio.Future[str] | None = None

    # -- start-up ---------------------------------------------------------------------------

    async def open(self) -> EngineSnapshot:
        if self.lock is not None:
            self.lock.acquire()
        try:
            return await self._open()
        except BaseException:
            await self._abort()
            raise

    async def _open(self) -> EngineSnapshot:
        loop = asyncio.get_running_loop()
        if not self.redis_url or not self.database_url:
            self.servers = EmbeddedServers(self.data_dir)
            started = time.monotonic()
            redis_url, database_url = await loop.run_in_executor(None, self.servers.start)
            log.info(
                "embedded redis and postgres up",
                extra={
                    "seconds": round(time.monotonic() - started, 3),
                    "data_dir": str(self.data_dir),
                },
            )
            self.redis_url = self.redis_url or redis_url
            self.database_url = self.database_url or database_url
        assert self.redis_url and self.database_url
        await self._retry("postgres", lambda: pg.migrate(self.database_url, self.namespace))  # type: ignore[arg-type]
        self.redis = client(self.redis_url)
        await self._retry("redis", self.redis.ping)
        names = legacy_names(self.namespace)
        await rename_legacy_keys(self.redis, names, legacy_lease(self.namespace))
        conn = await self._retry("postgres", lambda: pg.connect(self.database_url, self.namespace))  # type: ignore[arg-type]
        with collector_paused():
            try:
                book = StateBook()
                limits = pg.RecoveryLimits.of_engine(self.engine)
                rows = await pg.load_rows(conn, limits)
                book.load_rows(rows)
            finally:
                await conn.close()
            spill = SpillFile(self.data_dir / "store" / f"{self.namespace}.spill")
            snap, max_id, spilled = await build_snapshot(book, self.redis, self.keys, spill, limits)
            self.ids.advance_past(max_id)
            restore(self.engine, snap)
        self.history = HistoryReader(self.database_url, self.namespace, self.history_read_timeout)
        self.history.signals_before_window = bool(rows["signals_older"][0]["older"]) or (
            len(rows["signals"]) >= limits.signals
        )
        self.recovered = snap
        self.write_through = RedisWriteThrough(
            self.redis,
            self.keys,
            spill,
            self._redis_status,
            lambda: self.engine.id_seq,
            fence=self.fence,
        )
        self.writer = WriteBehind(
            self.redis,
            self.keys,
            self.database_url,
            self.namespace,
            on_status=self._pg_status,
            on_dead_letters=self._dead_letters,
            mode=self.stage_mode,
        )
        if self.fence is not None:
            self.writer.may_act = self.fence.may_commit
            # A frozen or cut-off process's open transaction is ended this long after it went
            # idle, freeing the row locks its successor's writer waits on (without it: until the
            # process wakes, or TCP gives up, hours). Well above the idle time a staged batch
            # waits for the previous one's commit under load.
            self.writer.idle_in_transaction_ms = max(
                IDLE_IN_TRANSACTION_MS, 2 * self.fence.lease_ms
            )
        await self.writer.ensure_group()
        self._spawn(self.write_through.run(), "store-write-through")
        self._spawn(self.writer.run(), "store-write-behind")
        self._spawn(self._status_loop(), "store-status")
        if self.servers is not None:
            self._spawn(self._embedded_loop(self.servers), "store-embedded")
        self._spawn(self._peak_loop(), "store-peaks")
        self._peaks = {
            p.id: (p.peak_price_usd, p.stop_gain_pct)
            for p in snap.positions
            if p.status != "closed"
        }
        self.components["redis"] = {"status": "ok"}
        self.components["postgres"] = {"status": "ok"}
        log.info(
            "state recovered",
            extra={
                "agents": len(snap.agents),
                "open_positions": sum(p.status != "closed" for p in snap.positions),
                "orders_in_flight": len(snap.orders),
                "signals": len(snap.signals),
                "spilled": len(spilled),
            },
        )
        return snap

    async def _retry(self, what: str, attempt: Any) -> Any:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                return await attempt()
            except (OSError, ConnectionError, TimeoutError, Exception) as exc:  # noqa: B014
                if time.monotonic() > deadline or not is_transient(exc):
                    raise StoreUnavailable(
                        f"{what} unreachable at start-up: {exc!s}"[:300]
                    ) from exc
                await asyncio.sleep(0.25)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_log_death)
        self._tasks.append(task)

    # -- the runtime's subscribers (synchronous: encode and enqueue only) ------------------

    def on_events(self, events: list[ev.Event]) -> None:
        assert self.write_through is not None
        full = with_records(events, self.engine)
        peaks = self._peaks
        for e in full:
            position = getattr(e, "position", None)
            if position is not None:
                if position.status == "closed":
                    peaks.pop(position.id, None)
                else:
                    peaks[position.id] = (position.peak_price_usd, position.stop_gain_pct)
        self.write_through.enqueue(to_entries(full, self.ids))

    def on_ticks(self, ticks: list[Tick]) -> None:
        assert self.write_through is not None
        self.write_through.enqueue_ticks(ticks)
        for t in ticks:
            self._ticked.add(t.token)

    def checkpoint_peaks(self) -> int:
        """Record positions whose peak (and so ratcheted stop) moved since last written. The
        engine keeps peaks lazily, without an event per tick; this runs every
        PEAK_CHECKPOINT_S and at shutdown, so a crash loses at most that much peak history."""
        if not self._ticked or self.write_through is None:
            return 0
        tokens, self._ticked = self._ticked, set()
        records: list[ev.Event] = []
        now = self.engine.clock()
        positions = self.engine.positions
        # the open positions only (the closed ones kept in memory are never looked at): this
        # also runs before a shard acknowledges each read of tick entries
        for p in [positions[pid] for pid in self._peaks if pid in positions]:
            if p.token in tokens and p.status in ("open", "closing"):
                self.engine.refresh(p)
                if self._peaks.get(p.id) != (p.peak_price_usd, p.stop_gain_pct):
                    records.append(PositionSaved(ts=now, position=p))
        if records:
            self.on_events(records)
        return len(records)

    async def _peak_loop(self) -> None:
        while True:
            await asyncio.sleep(PEAK_CHECKPOINT_S)
            self.checkpoint_peaks()

    @property
    def pending_writes(self) -> int:
        """Entries enqueued and not yet durable in Redis; 0 while Redis is down (the fsync'd
        spill file takes them: nothing is gained by waiting on Redis then)."""
        wt = self.write_through
        return wt.pending if wt is not None and wt.up else 0

    async def flushed(self, timeout: float | None = 5.0) -> None:
        """Resolves once every event enqueued so far is durable (Redis, or the fsync'd spill
        file while Redis is down). The REST signal handler awaits it before answering 202."""
        if self.write_through is not None:
            await self.write_through.flushed(timeout)

    async def flushed_with_prices(self, timeout: float | None = 5.0) -> None:
        """`flushed`, with the last prices and the peaks the ticks moved: those ride with the
        next flush and the peak checkpoint; this writes them now and waits for them."""
        if self.write_through is not None:
            self.checkpoint_peaks()
            await self.write_through.prices_flushed(timeout)

    async def pause_writer(self) -> None:
        """Stop writing behind (tests, maintenance): the stream keeps everything meanwhile."""
        for task in [t for t in self._tasks if t.get_name() == "store-write-behind"]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._tasks.remove(task)
        if self.writer is not None:
            await self.writer.close()

    def resume_writer(self) -> None:
        if self.writer is not None and not any(
            t.get_name() == "store-write-behind" for t in self._tasks
        ):
            self.writer.stopped = False
            self._spawn(self.writer.run(), "store-write-behind")

    # -- health -----------------------------------------------------------------------------

    def write_behind_lag(self) -> dict[str, float]:
        w = self.writer
        return {
            "entries": w.lag_entries if w else 0,
            "seconds": round(w.lag_seconds, 3) if w else 0.0,
        }

    def writer_backlog(self) -> int:
        """Entries in the stream Postgres may lack (from the last lag refresh)."""
        return self.writer.lag_entries if self.writer else 0

    @property
    def buys_paused(self) -> bool:
        return (
            self.pause_buys_without_redis
            and self.write_through is not None
            and not self.write_through.up
        )

    def _redis_status(self, up: bool, reason: str) -> None:
        self.components["redis"] = {"status": "ok"} if up else {"status": "down", "reason": reason}
        if self.pause_buys_without_redis:
            _set_store_pause(self.engine, None if up else "store_unavailable")
        self._alert("redis", up, reason)

    def _pg_status(self, up: bool, reason: str) -> None:
        self.components["postgres"] = (
            {"status": "ok"} if up else {"status": "down", "reason": reason}
        )
        self._alert("postgres", up, reason)

    def _alert(self, component: str, up: bool, reason: str) -> None:
        if self.publish is None:
            return
        code = "store_recovered" if up else "store_degraded"
        message = f"{component} is back" if up else f"{component} is down: {reason}"
        details = {"component": component, "buys_paused": self.buys_paused}
        self.publish(
            [ev.Alert(ts=self.engine.clock(), code=code, message=message, details=details)]
        )

    def _dead_letters(self, letters: list[DeadLetter]) -> None:
        """Entries Postgres refused (the writer drained past them): an alert names them."""
        if self.publish is None:
            return
        details = {
            "count": len(letters),
            "entries": [
                {"id": d.entry.id, "type": printable(d.entry.type, 100), "error": d.error}
                for d in letters[:DEAD_LETTERS_IN_ALERT]
            ],
            "table": "dead_letters",
        }
        message = f"postgres refused {len(letters)} stream entries; moved to dead_letters"
        self.publish(
            [
                ev.Alert(
                    ts=self.engine.clock(),
                    code="write_behind_dead_letter",
                    message=message,
                    details=details,
                )
            ]
        )

    @property
    def dead_letters(self) -> int:
        """Stream entries moved to the dead_letters table since start."""
        return self.writer.dead_lettered if self.writer else 0

    async def _embedded_loop(self, servers: EmbeddedServers) -> None:
        """The embedded servers are this process's own: one that exited (killed, crashed, an
        out-of-memory kill) is started again on its data dir, so the write-through's probe
        finds Redis back and replays the spill, and the write-behind finds Postgres back. Before,
        a killed embedded Redis stayed down, and buys paused, until the daemon was restarted."""
        loop = asyncio.get_running_loop()
        parts = (("redis", servers.redis), ("postgres", servers.postgres))
        while True:
            await asyncio.sleep(EMBEDDED_CHECK_S)
            for name, server in parts:
                if await loop.run_in_executor(None, server.alive):
                    continue
                log.error("embedded server exited: starting it again", extra={"server": name})
                before = server.url
                # Shielded: a stop meanwhile waits for the start instead of racing it (_abort).
                self._restarting = loop.run_in_executor(None, server.start)
                try:
                    url = await asyncio.shield(self._restarting)
                except StoreUnavailable as exc:
                    log.error(
                        "embedded server did not start again",
                        extra={"server": name, "error": str(exc)},
                    )
                    continue
                if url != before:  # a TCP port (a data dir path too long for a socket)
                    log.error(
                        "embedded server back at another address: restart tradingd",
                        extra={"server": name, "url_before": before, "url": url},
                    )
                else:
                    log.warning("embedded server started again", extra={"server": name})

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            assert self.writer is not None and self.write_through is not None
            # Before the lag is asked: that waits on Redis, which may hang (a stopped server).
            self.components["redis"]["spilled"] = self.write_through.spill.count
            with contextlib.suppress(Exception):
                await self.writer.refresh_lag()
            raise_if_cancelled()  # the suppress above may have swallowed our cancel
            pgc = self.components["postgres"]
            pgc["lag_entries"], pgc["lag_seconds"] = (
                self.writer.lag_entries,
                round(self.writer.lag_seconds, 3),
            )

    # -- shutdown ---------------------------------------------------------------------------

    async def close(self, drain_timeout: float = 10.0) -> None:
        wt, writer = self.write_through, self.writer
        if wt is not None and wt.fenced:  # lost the lease: flush and drain nothing
            await self._abort()
            return
        self.checkpoint_peaks()
        try:
            if wt is not None:
                with contextlib.suppress(StoreUnavailable):
                    await wt.flushed(timeout=drain_timeout)
                if wt.pending:  # neither Redis nor the spill file took them (never acknowledged)
                    log.error(
                        "stopped with writes neither in redis nor in the spill file: lost",
                        extra={"entries": wt.pending, "reason": wt.reason},
                    )
            if writer is not None and wt is not None and wt.up:
                drained = await writer.drain(drain_timeout)
                if not drained:
                    log.warning(
                        "write-behind not drained at shutdown; the stream keeps the rest",
                        extra={"entries": writer.lag_entries},
                    )
        finally:
            await self._abort()

    async def _abort(self) -> None:
        for part in (self.write_through, self.writer):
            if part is not None:
                part.stopped = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that swallowed its cancel must not hang the shutdown.
            _done, stuck = await asyncio.wait(self._tasks, timeout=TASK_STOP_TIMEOUT_S)
            if stuck:
                log.error(
                    "store tasks did not stop when cancelled",
                    extra={"tasks": sorted(t.get_name() for t in stuck)},
                )
        self._tasks.clear()
        if self._restarting is not None:  # an embedded server being started again
            await asyncio.wait({self._restarting}, timeout=60)
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await self.writer.close()
        if self.history is not None:
            await self.history.close()
        redis = getattr(self, "redis", None)
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        if self.servers is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.servers.stop)
            self.servers = None
        if self.lock is not None:
            self.lock.release()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while recovery runs. Recovery allocates millions of
    objects that either live on (agents, positions, orders) or die by reference count
    (superseded entries; records hold no cycles), and the collector would walk the growing heap
    again and again for nothing: recovering 1,000 agents, 10,000 positions and 65,000 stream
    entries took 1.1-2.3 s with it off against 1.8-2.7 s with it on (four alternating runs on
    a busy 2-core machine). The daemon freezes the recovered heap right after
    (daemon.tune_gc)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _set_store_pause(engine: Engine, reason: str | None) -> None:
    # Separate from halted_buys (the operator's kill switch): see docs/persistence.md.
    if reason is None:
        engine.resume_buys()
    else:
        engine.pause_buys(reason)


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("store task died", exc_info=task.exception(), extra={"task": task.get_name()})
