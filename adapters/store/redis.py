"""Redis write-through: every entry the engine's transitions produce is XADDed to the stream and
the entities it changes are written to hashes, all of one loop iteration in one atomic script
call (stream_codec.WRITE_SCRIPT), so the hashes are always exactly the state after the stream's
last entry.

While Redis is down, batches go to the spill file instead (fsync'd); when Redis answers again,
the spill is replayed in order before anything newer, then normal flushing resumes.
`flushed()` resolves once everything enqueued before the call is durable in one of the two.

With a fence (hot standby, adapters/cluster) every script call carries the fencing token and
Redis refuses the batch unless the lease is still held under it (stream_codec.WRITE_SCRIPT):
the write-through then stops for good and reports `Fenced`; nothing of the batch is durable. A
fenced write-through never spills: the spill file is this machine's, a standby taking over
could not see it, so a batch Redis did not take stays unacknowledged until Redis answers (or
the lease is lost and the process steps down)."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.store.records import Entry, parse_stream_id
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.stream_codec import (
    FENCED,
    WRITE_SCRIPT,
    Keys,
    write_args,
    write_keys,
)
from tradingd.adapters.transient import REDIS_FAILURES, raise_if_cancelled
from tradingd.engine.model import Tick

log = logging.getLogger("tradingd.store.redis")
StatusCallback = Callable[[bool, str], None]  # (up, reason)
WRITE_CHUNK = 5000  # entries per script call: bounds one call's argument and Redis' busy time
PROBE_INTERVAL_S = 0.25
# A Redis that answers PING but refuses the replay (out of memory, a failed RDB save with
# stop-writes-on-bgsave-error) is asked again after a doubling wait up to this: every such ask
# reads and decodes the whole spill file (28 % of a core every 0.25 s with 30 MB spilled).
PROBE_MAX_S = 4.0
TICK_FLUSH_S = 0.1  # last prices are written at least this often when no event flush carries them


class Fenced(StoreUnavailable):
    """This process no longer holds the lease: Redis refused its write (or it knows by its own
    clock that the lease has lapsed). Nothing of the batch was written."""

    code = "fenced"


class Fence(Protocol):
    """The lease holder's side of fencing (adapters/cluster/role.py ClusterRole)."""

    lease_ms: int  # the lease's TTL

    @property
    def token(self) -> str: ...  # the fencing token of the lease held ("" before)

    def may_act(self) -> bool: ...  # the lease is held, by this process's own clock too

    async def verified(self) -> bool: ...  # may_act, waiting out a lapse being re-verified

    def may_commit(self) -> bool: ...  # the write-behind may go on (until the lease is lost)

    def fenced(self, reason: str) -> None: ...  # stop acting at once


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster: `?cluster=true` (or 1, yes) in its query, e.g.
    `redis://10.0.0.5:7000/0?cluster=true` (any node: the client discovers the others)."""
    query = parse_qs(urlsplit(url).query)
    return any(v.lower() in ("1", "true", "yes") for v in query.get("cluster", []))


def client(url: str, timeout: float = 2.0) -> aioredis.Redis:
    """A Redis client for `url`, or a Redis Cluster client when the URL says so
    (`is_cluster_url`): every key one call touches shares its namespace's hash tag
    (stream_codec.hash_tag), so the same commands and scripts run on both."""
    if is_cluster_url(url):
        from redis.asyncio.cluster import RedisCluster

        parts = urlsplit(url)
        rest = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "cluster"])
        cluster: Any = RedisCluster.from_url(
            urlunsplit(parts._replace(query=rest)),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        return cast(aioredis.Redis, cluster)
    # No hidden retries: an outage must surface at once so the store can spill.
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def raw_stream_reader(r: aioredis.Redis) -> aioredis.Redis:
    """A client on `r`'s server(s) whose XREADGROUP replies come back raw (the write-behind
    reads them positionally instead of redis-py building a dict per entry)."""
    from redis.asyncio.cluster import RedisCluster

    raw: Any
    if isinstance(r, RedisCluster):
        node = r.get_default_node()
        kwargs = node.connection_kwargs
        raw = RedisCluster(
            host=node.host,
            port=node.port,
            socket_timeout=kwargs.get("socket_timeout"),
            socket_connect_timeout=kwargs.get("socket_connect_timeout"),
        )
    else:
        raw = aioredis.Redis(connection_pool=r.connection_pool)
    raw.set_response_callback("XREADGROUP", _raw_xreadgroup)
    return cast(aioredis.Redis, raw)


def _raw_xreadgroup(response: Any, **options: Any) -> Any:
    return response


async def last_stream_id(r: aioredis.Redis, keys: Keys) -> int:
    try:
        info = await r.xinfo_stream(keys.stream)
    except ResponseError:  # no such key
        return 0
    return parse_stream_id(info["last-generated-id"])


class RedisWriteThrough:
    def __init__(
        self,
        r: aioredis.Redis,
        keys: Keys,
        spill: SpillFile,
        on_status: StatusCallback,
        seq_of: Callable[[], int],
        fence: Fence | None = None,
    ) -> None:
        self.redis = r
        self.fence = fence
        self.fenced = False
        self.keys = keys
        self.spill = spill
        self.on_status = on_status
        self._seq_of = seq_of
        self.up = True
        self.reason = ""
        self._buf: list[Entry] = []
        self._ticks: dict[str, Tick] = {}
        self._enqueued = 0
        self._durable = 0
        # Price marks: a waiter for the last prices counts as one entry, taken by the next flush
        # (flushes are sequential), so `flushed` covers the prices pending or being written.
        self._marks = 0
        self._writing_ticks = False
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._wake = asyncio.Event()
        self._tick_encode = msgspec.json.Encoder().encode
        self.flushes = 0
        self.stopped = False
        self._probed = 0.0
        self._probe_wait = PROBE_INTERVAL_S  # doubles while Redis answers but refuses writes
        self._spill_failing = False  # the spill file refused the last batch (logged once)
        self._kept = False  # a batch that failed to write waits in `_buf` (see _unwritten)
        self._scheduled = False
        self._tick_timer: asyncio.TimerHandle | None = None
        self._keys = write_keys(keys) if fence is None else [*write_keys(keys), keys.lease]
        # EVALSHA, loading the script on NOSCRIPT (a restarted Redis has forgotten it)
        self._script = r.register_script(WRITE_SCRIPT)

    # -- producer side (synchronous, from event subscribers) --------------------------------

    def enqueue(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.type == "PriceEvicted":  # a pending last price must not bring it back
                self._ticks.pop(e.key, None)
        self._buf.extend(entries)
        self._enqueued += len(entries)
        self._schedule()

    def enqueue_ticks(self, ticks: list[Tick]) -> None:
        """Last prices ride along with the next event flush, or go alone after at most
        TICK_FLUSH_S: a price-only pipeline per tick batch would sit in front of signals."""
        for t in ticks:
            self._ticks[t.token] = t
        if self._tick_timer is None and not self._scheduled:
            self._tick_timer = asyncio.get_running_loop().call_later(
                TICK_FLUSH_S, self._wake_flusher
            )

    def _schedule(self) -> None:
        # Wake the flusher one loop iteration later: the order tasks this transition started run
        # first (a paper fill completes in that step), so packing the pipeline never sits
        # between a signal and its trade; the pipeline then also carries their events.
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._wake_flusher)

    def _wake_flusher(self) -> None:
        self._scheduled = False
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        self._wake.set()

    async def flushed(self, timeout: float | None = None) -> None:
        target = self._enqueued
        if self._durable >= target:
            return
        if self.fenced:
            raise Fenced("this process lost its lease: nothing more is written")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise StoreUnavailable("the store did not make the write durable in time") from None

    async def prices_flushed(self, timeout: float | None = None) -> None:
        """`flushed`, and the last prices enqueued so far are durable too (asked for now
        instead of within TICK_FLUSH_S)."""
        if self._ticks or self._writing_ticks:
            self._marks += 1
            self._enqueued += 1
            self._schedule()
        await self.flushed(timeout)

    @property
    def pending(self) -> int:
        return self._enqueued - self._durable

    # -- the flusher task -------------------------------------------------------------------

    async def run(self) -> None:
        while not self.stopped:
            raise_if_cancelled()
            if not self.up:  # until the next ask is due (a write meanwhile spills at once)
                left = self._probed + self._probe_wait - time.monotonic()
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, left))
                except TimeoutError:
                    pass
            elif not self.spill.count:
                await self._wake.wait()
            # else a spill left by a stop during an outage: flush_once replays it now, not at
            # the first new write, which on an idle daemon may come much later (Postgres and
            # the write-behind lag knew nothing of it meanwhile).
            self._wake.clear()
            await self.flush_once()

    async def flush_once(self) -> None:
        batch, self._buf = self._buf, []
        ticks, self._ticks = self._ticks, {}
        marks, self._marks = self._marks, 0
        upto = self._durable + len(batch) + marks
        # Down, Redis is asked again at most every `_probe_wait` from the end of the last ask
        # (a hung Redis takes the socket timeout to answer): the flushes between spill at once.
        # Up with a spill left (a start after an outage), it is replayed first.
        # Redis counts as back only once it took a write: one that answers PING but refuses
        # writes (out of memory, say) is not reported up and down again at every ask.
        returning = False
        if (self.up and self.spill.count) or (
            not self.up and time.monotonic() - self._probed >= self._probe_wait
        ):
            returning = await self._try_return()
            self._probed = time.monotonic()
            if self.fenced:
                return
        skipped = 0  # entries of a retried batch Redis already held (see _unwritten)
        if self.up or returning:
            try:
                self._writing_ticks = bool(ticks)
                if self._kept and batch:  # a failed write may have landed in part (or whole)
                    batch, skipped = await self._unwritten(batch)
                # A script call even with nothing left to write: returning, Redis must take a
                # write to count as back; after a skip, the fence is checked before the skipped
                # entries are acknowledged as this process's.
                await self._write(batch, ticks, force=returning or skipped > 0)
                self._kept = False
                self._done(upto)
                self._probe_wait = PROBE_INTERVAL_S
                self._mark_up()
                return
            except Fenced as exc:
                self._fence(str(exc))
                return
            except REDIS_FAILURES as exc:
                if returning:  # it answers but refuses: wait longer each time
                    self._back_off()
                self._went_down(exc)
            finally:
                self._writing_ticks = False
        marks += skipped  # durable already, acknowledged with the rest (never before the fence)
        if self.fence is not None:  # no spill: kept, in order, until Redis takes it
            self._keep(batch, ticks, marks)
            return
        if batch:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.spill.append, batch)
            except OSError as exc:  # a full disk, say: nothing acknowledged, tried again
                self._keep(batch, ticks, marks)
                if not self._spill_failing:
                    self._spill_failing = True
                    log.error(
                        "spill file refused a write: writes wait in memory, unacknowledged",
                        extra={"path": str(self.spill.path), "error": str(exc)[:200]},
                    )
                return
            self._spill_failing = False
        self._done(upto)

    def _keep(self, batch: list[Entry], ticks: dict[str, Tick], marks: int) -> None:
        """Put a batch not written back in front of the buffer, in order (its waiters wait)."""
        self._kept = True
        self._buf[:0] = batch
        self._marks += marks
        for token, tick in ticks.items():
            self._ticks.setdefault(token, tick)

    async def _unwritten(self, batch: list[Entry]) -> tuple[list[Entry], int]:
        """(`batch` without the entries Redis already holds, how many those were): a failed
        write of several script calls (or one whose reply was lost) may have landed in part,
        and writing those again would be refused (XADD of an id not above the last). They are
        a prefix. That they are this process's own is proven by the fenced call that follows
        (no other holder can have written while its token still holds; without a fence, one
        process owns the namespace): the caller acknowledges them only after it."""
        last = await last_stream_id(self.redis, self.keys)
        n = 0
        while n < len(batch) and batch[n].id <= last:
            n += 1
        return batch[n:], n

    async def _write(self, batch: list[Entry], ticks: dict[str, Tick], force: bool = False) -> None:
        """One script call per WRITE_CHUNK entries, the last prices with the last chunk. Each
        call is atomic; a batch larger than a chunk is durable once every call returned.
        `force`: one call even with nothing to write (it checks the fence and writes the id
        seq: a Redis refusing writes refuses it)."""
        if not batch and not ticks and not force:
            return
        seq = self._seq_of()
        token = await self._token()
        last = max(0, len(batch) - 1) // WRITE_CHUNK * WRITE_CHUNK
        for start in range(0, last + 1, WRITE_CHUNK):
            chunk = batch[start : start + WRITE_CHUNK]
            prices = {k: self._tick_encode(t) for k, t in ticks.items()} if start == last else None
            try:
                await self._script(keys=self._keys, args=write_args(chunk, seq, prices, token))
            except ResponseError as exc:
                if str(exc).startswith(FENCED):
                    raise Fenced(f"redis refused the write: {exc!s}"[:200]) from None
                raise
        self.flushes += 1

    async def _token(self) -> str:
        """The fencing token to write with ("" without a fence). A lease that lapsed by this
        process's clock is waited for while Redis is asked whether it is still ours (a stalled
        loop); raises Fenced, sending nothing, when it is not (a paused process wakes up
        here)."""
        fence = self.fence
        if fence is None:
            return ""
        if self.fenced or not await fence.verified():
            raise Fenced("the lease is not held (lapsed by this process's clock)")
        return fence.token

    def _fence(self, reason: str) -> None:
        """Refused for good: stop flushing, fail every waiter (nothing they wait for will be
        durable), and have the fence's owner step down."""
        self.fenced = True
        self.stopped = True
        self._buf.clear()
        self._ticks.clear()
        waiters, self._waiters = self._waiters, collections.deque()
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(Fenced("this process lost its lease: the write was refused"))
                fut.exception()  # retrieved: a waiter that timed out earlier leaves no warning
        log.error("write-through fenced: nothing more is written", extra={"reason": reason})
        if self.fence is not None:
            self.fence.fenced(reason)

    def _done(self, upto: int) -> None:
        self._durable = upto
        waiters = self._waiters
        while waiters and waiters[0][0] <= upto:
            _, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _went_down(self, exc: BaseException) -> None:
        if self.up:
            self.up = False
            # A reply refusing the write (out of memory, a failed save) is not "unreachable".
            what = "refused the write" if isinstance(exc, ResponseError) else "unreachable"
            self.reason = f"redis {what}: {exc!s}"[:200]
            if self.fence is None:
                log.error(
                    "redis down: spilling to the local file",
                    extra={"reason": self.reason, "spill": str(self.spill.path)},
                )
            else:  # a cluster role: nothing spills (a standby elsewhere could not read it)
                log.error(
                    "redis down: writes wait in memory, unacknowledged, until it is back",
                    extra={"reason": self.reason},
                )
            self.on_status(False, self.reason)

    async def _try_return(self) -> bool:
        """Replay the spill file (in order, skipping what Redis already has). True when Redis
        answered and holds every spilled entry: the caller's write then tells whether it is
        back. The file is read in a worker thread (it may hold a long outage's entries)."""
        loop = asyncio.get_running_loop()
        try:
            await self.redis.ping()
        except REDIS_FAILURES as exc:  # down: asked again soon, cheaply
            self._probe_wait = PROBE_INTERVAL_S
            self._went_down(exc)
            return False
        if not self.spill.count:
            return True
        try:
            spilled = await loop.run_in_executor(None, self.spill.read)
        except OSError as exc:  # the file, not Redis: its entries must go first, so wait
            self._back_off()
            log.error(
                "spill file unreadable: redis is not written until it is",
                extra={"path": str(self.spill.path), "error": str(exc)[:200]},
            )
            return False
        try:
            if spilled:
                last = await last_stream_id(self.redis, self.keys)
                todo = [e for e in spilled if e.id > last]
                started = time.monotonic()
                token = await self._token()
                for i in range(0, len(todo), WRITE_CHUNK):
                    chunk = todo[i : i + WRITE_CHUNK]
                    await self._script(keys=self._keys, args=write_args(chunk, None, None, token))
                log.info(
                    "spill replayed into redis",
                    extra={"entries": len(todo), "seconds": round(time.monotonic() - started, 3)},
                )
        except Fenced as exc:
            self._fence(str(exc))
            return False
        except REDIS_FAILURES as exc:  # it answers but refuses: wait longer each time
            self._back_off()
            self._went_down(exc)
            return False
        try:
            await loop.run_in_executor(None, self.spill.clear)
        except OSError as exc:  # Redis holds it all: a later replay skips these ids
            self.spill.count = 0
            log.error(
                "spill file replayed but not emptied",
                extra={"path": str(self.spill.path), "error": str(exc)[:200]},
            )
        return True

    def _back_off(self) -> None:
        """Redis answered but refused (or the spill file did): ask again after twice the wait."""
        self._probe_wait = min(self._probe_wait * 2, PROBE_MAX_S)

    def _mark_up(self) -> None:
        if not self.up:
            self.up = True
            self.reason = ""
            log.info("redis back: write-through resumed")
            self.on_status(True, "")
