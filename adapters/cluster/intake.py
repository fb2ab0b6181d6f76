"""Sharded intake through Redis Streams (docs/cluster.md "Shards").

Any shard takes `POST /v1/signals` and `POST /v1/prices`. It builds the signal (or the ticks)
exactly as a single process does and appends it to a stream shared by every shard, under the base
namespace `ns`: `{ns}:intake:signals`, `{ns}:intake:ticks` (the ticks of one push as one entry). The
client `id` of a signal is made idempotent across the cluster in the same script: `SET
{ns}:signal_client:<id> <signal id>|<received_at> NX PX <dedupe window>`, and a repeat appends nothing.

Every shard, the receiving one too, reads both streams through its own consumer group `s<i>`
(consumer `s<i>`, so a restarted shard, or its standby, reads its pending entries first), applies
each entry through the runtime as a single process would (its own agents only: it holds only
those), waits until what it changed is durable (store.flushed), then XACKs and, for a signal,
reports `RPUSH {ns}:intake:result:<signal id> <shard>:<agents matched>`. The receiving shard answers
once every shard reported, or after `[cluster] intake_timeout_ms` with those that did.

Order: entry ids are `<G>-<S>`, G from one counter shared by both streams (`{ns}:intake:seq`) and S
the stream's own (`<stream>:seq`), both INCRed in the script that appends. Every shard applies
the entries of both streams in G order, the order they were received in, so a tick and a signal
apply in the same order on every shard (and as in one process). S numbers a stream's entries
without holes: a consumer that sees S jump (the stream was trimmed past what it had read, MAXLEN
~ `[cluster] intake_maxlen`) raises the alert `intake_gap`; S also gives the lag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client.core import GaugeMetricFamily
from tradingd.adapters.cluster.intake_stream import (
    APPEND,
    SIGNALS,
    STREAMS,
    TICKS,
    IntakeKeys,
    Published,
    Results,
    entry_seq,
    text,
)
from tradingd.adapters.cluster.shards import refuse_another_count
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.store.key_migration import rename_legacy_keys
from tradingd.adapters.transient import REDIS_FAILURES, raise_if_cancelled
from tradingd.engine import events as ev
from tradingd.engine.errors import TradingdError
from tradingd.engine.model import Signal, Tick

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.cluster")

READ_COUNT = 100  # entries per XREADGROUP per stream
BLOCK_MS = 500
RETRY_S = 0.5
IDLE_S = 0.05  # how often a consumer that may not act looks again
URL_TTL_S = 1.0  # a shard's registered control URL is read again after this
POLL_FIRST_S = 0.001
POLL_MAX_S = 0.02
REQUEST_TIMEOUT_S = 2.0
FEED_QUEUE = 1000  # feed batches waiting for the stream; the oldest is dropped beyond it

_signal = msgspec.json.Decoder(Signal)
_ticks = msgspec.json.Decoder(list[Tick])


class ShardIntake:
    """One shard's side of the intake streams: appending what its control port receives,
    consuming what every shard received, and the lag of its consumer group."""

    def __init__(
        self,
        daemon: Daemon,
        redis_url: str,
        base: str,
        shard: int,
        shards: int,
        *,
        dedupe_ms: int,
        timeout_ms: int = 5000,
        maxlen: int = 100_000,
    ) -> None:
        self.daemon = daemon
        self.redis_url = redis_url
        self.keys = IntakeKeys(base)
        self.shard = shard
        self.shards = shards
        self.group = f"s{shard}"
        self.dedupe_ms = dedupe_ms
        self.timeout_ms = timeout_ms
        self.maxlen = maxlen
        self.r: Any = None
        self.reader: Any = None
        self._append: Any = None
        self.delivered: dict[str, int] = dict.fromkeys(STREAMS, 0)  # S last read with '>'
        self.lag: dict[str, int] = dict.fromkeys(STREAMS, 0)  # not yet delivered to the group
        self.pending: dict[str, int] = dict.fromkeys(STREAMS, 0)  # delivered, not yet acked
        self.applied: dict[str, int] = dict.fromkeys(STREAMS, 0)  # entries applied (this life)
        self.gaps: dict[str, int] = dict.fromkeys(STREAMS, 0)  # entries lost to trimming
        self._stopped = False
        # The daemon's own feeds' ticks, published in order by one task (feed_push).
        self._feed_ticks: asyncio.Queue[list[Tick]] = asyncio.Queue(FEED_QUEUE)
        self.feed_dropped = 0
        self._urls: dict[int, tuple[float, str | None]] = {}  # shard -> (read at, its URL)
        # position id -> the shard holding it, where that is not the shard its id names: read
        # once at start (only `tradingd cluster reshard` changes it, on a stopped cluster)
        self.moved_positions: dict[str, int] = {}
        self.forward_token = ""  # the cluster's, read at open: marks requests shards forward

    # -- start and stop ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check this shard counts as many shards as the cluster (the first shard
        records the count), and make sure this shard's consumer group exists on both streams
        (created at the streams' end, MKSTREAM, the first time). Before the control port takes
        work. Raises ShardCountMismatch."""
        from tradingd.adapters.store.redis import client

        # Requests' calls time out (a 503, never a hung request); the blocking reads have a
        # client of their own whose timeout outlasts BLOCK_MS.
        self.r = client(self.redis_url, REQUEST_TIMEOUT_S)
        self.reader = client(self.redis_url, BLOCK_MS / 1000 + 5)
        self._append = self.r.register_script(APPEND)
        await rename_legacy_keys(self.r, self.keys.legacy())
        await self._rename_legacy_claims()
        if not await self.r.set(self.keys.count, self.shards, nx=True):
            recorded = await self.r.get(self.keys.count)
            refuse_another_count(self.keys.count, recorded or b"0", self.shards)
        for name in STREAMS:
            stream = self.keys.stream(name)
            try:
                await self.r.xgroup_create(stream, self.group, id="$", mkstream=True)
                log.info("cluster: intake group created", extra={"stream": stream})
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            for group in await self.r.xinfo_groups(stream):
                if text(group["name"]) == self.group:
                    self.delivered[name] = entry_seq(group["last-delivered-id"])[1]
        await self.r.set(self.keys.forward_token, secrets.token_urlsafe(32), nx=True)
        self.forward_token = text(await self.r.get(self.keys.forward_token) or b"")
        async for pid, shard in self.r.hscan_iter(self.keys.moved_positions, count=1000):
            self.moved_positions[text(pid)] = int(shard)

    async def _rename_legacy_claims(self) -> None:
        """The client-id claims and results under their names before hash tags, renamed with
        their TTLs (a tester's finding: after an upgrade in place a client id sent again within
        the dedupe window was claimed anew and got a signal id no shard knew)."""
        base = self.keys.base
        for old_part, name_of in (
            (":signal_client:", self.keys.client),
            (":intake:result:", self.keys.result),
        ):
            batch: dict[str, str] = {}
            async for raw in self.r.scan_iter(match=f"{base}{old_part}*", count=1000):
                old = text(raw)
                batch[old] = name_of(old[len(base) + len(old_part) :])
                if len(batch) >= 500:
                    await rename_legacy_keys(self.r, batch)
                    batch = {}
            await rename_legacy_keys(self.r, batch)

    async def record_halt(self, buys: bool) -> None:
        """The operator halted (or resumed) buys on the whole cluster: recorded, so a shard
        that was down meanwhile follows it when it starts (a tester's finding: it came back
        trading). Raises StoreUnavailable."""
        await self._call(self.r.set(self.keys.halt, "1" if buys else "0"))

    async def _follow_recorded_halt(self) -> None:
        """At start: this shard's halt as the cluster's last one says — halted if it says so;
        lifted if it says so and this shard's halt is the operator's (an account breaker's trip
        is this shard's own and stays)."""
        recorded = await self.r.get(self.keys.halt)
        if recorded is None:
            return
        buys = text(recorded) == "1"
        engine, runtime = self.daemon.engine, self.daemon.runtime
        if buys and not engine.halted_buys:
            runtime.apply(engine.set_halt, True, False)
            log.warning("cluster: buys halted, as the cluster was while this shard was down")
        elif not buys and engine.halted_buys and engine.breakers.tripped is None:
            runtime.apply(engine.set_halt, False, False)
            log.warning("cluster: halt lifted, as on the cluster while this shard was down")

    async def start(self, url: str | None) -> None:
        """Follow the cluster's halt, register this shard's control URL, start consuming."""
        await self._follow_recorded_halt()
        if url:
            await self.r.hset(self.keys.shards, str(self.shard), url)
        self.daemon.spawn(self.consume(), "cluster-intake")
        self.daemon.spawn(self._publish_feed_ticks(), "cluster-intake-feeds")
        self.daemon.spawn(self.lag_loop(), "cluster-intake-lag")

    async def close(self) -> None:
        self._stopped = True
        for client in (self.r, self.reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    # -- the receiving side -----------------------------------------------------------------

    async def publish_signal(self, signal: Signal) -> Published:
        """Append `signal` unless its client id was seen in the dedupe window (then the first
        one's id and receipt)."""
        keys = [self.keys.stream(SIGNALS), self.keys.seq, self.keys.stream_seq(SIGNALS)]
        args: list[Any] = [self.maxlen, msgspec.json.encode(signal)]
        if signal.client_id is not None:
            keys.append(self.keys.client(signal.client_id))
            args += [f"{signal.id}|{signal.received_at}", self.dedupe_ms]
        added, value = await self._call(self._append(keys=keys, args=args))
        if added:
            return Published(signal.id, signal.received_at, False)
        first, _, at = text(value).partition("|")
        return Published(first, int(at or 0), True)

    async def forget_client(self, signal: Signal) -> None:
        """Every shard refused the signal (invalid): its client id may be sent again."""
        if signal.client_id is None:
            return
        key = self.keys.client(signal.client_id)
        value = f"{signal.id}|{signal.received_at}".encode()
        if await self._call(self.r.get(key)) == value:
            await self._call(self.r.delete(key))

    async def publish_ticks(self, ticks: list[Tick]) -> None:
        if not ticks:  # nothing to apply: no entry (a tester saw `{"ticks": []}` append one)
            return
        keys = [self.keys.stream(TICKS), self.keys.seq, self.keys.stream_seq(TICKS)]
        await self._call(self._append(keys=keys, args=[self.maxlen, msgspec.json.encode(ticks)]))

    def feed_push(self, ticks: list[Tick]) -> None:
        """A feed of this process pushed `ticks`: queued for the tick stream (every shard,
        this one too, applies them from there). Never blocks the feed."""
        if not ticks:
            return
        if self._feed_ticks.full():
            self._feed_ticks.get_nowait()
            self.feed_dropped += 1
            if self.feed_dropped in (1, 10, 100) or self.feed_dropped % 1000 == 0:
                log.warning(
                    "cluster: feed ticks dropped: the tick stream is not taking them",
                    extra={"dropped": self.feed_dropped},
                )
        self._feed_ticks.put_nowait(list(ticks))

    async def _publish_feed_ticks(self) -> None:
        while not self._stopped:
            raise_if_cancelled()
            ticks = await self._feed_ticks.get()
            try:
                await self.publish_ticks(ticks)
            except StoreUnavailable as exc:
                raise_if_cancelled()
                log.warning("cluster: feed ticks not published", extra={"reason": exc.message})
                await asyncio.sleep(RETRY_S)

    async def _call(self, call: Any) -> Any:
        """A Redis call made for a request: a failure is a 503 store_unavailable."""
        try:
            return await call
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"the intake stream is unavailable: {str(exc)[:200]}") from None

    async def results(self, signal_id: str, wait: bool) -> Results:
        """What the shards reported for `signal_id`: waiting (if `wait`) up to intake_timeout_ms
        for every shard."""
        key = self.keys.result(signal_id)
        deadline = time.monotonic() + self.timeout_ms / 1000
        interval = POLL_FIRST_S
        while True:
            raw = await self._call(self.r.lrange(key, 0, -1))
            matched, answered, errors = 0, set(), []
            for item in raw:
                shard, _, rest = text(item).partition(":")
                if not shard.isdigit() or int(shard) in answered:
                    continue
                answered.add(int(shard))
                if rest.isdigit():
                    matched += int(rest)
                else:
                    path, _, message = rest.removeprefix("error:").partition(" ")
                    errors.append((path, message))
            if len(answered) >= self.shards or not wait or time.monotonic() >= deadline:
                pending = [i for i in range(self.shards) if i not in answered]
                return Results(matched, sorted(answered), pending, errors)
            await asyncio.sleep(interval)
            interval = min(POLL_MAX_S, interval * 2)

    async def owner_url(self, shard: int) -> str | None:
        """The control URL shard `shard` registered, read again after URL_TTL_S (a standby
        that took the shard over registers its own; meanwhile its old URL does not answer
        anyway); None if it never did. Raises StoreUnavailable when Redis does not answer (a
        503, not a 421 without the owner's URL)."""
        if self.r is None:  # not opened (a standby): no registry to read yet
            return None
        now = time.monotonic()
        cached = self._urls.get(shard)
        if cached is not None and now - cached[0] < URL_TTL_S:
            return cached[1]
        raw = await self._call(self.r.hget(self.keys.shards, str(shard)))
        url = None if raw is None else text(raw)
        self._urls[shard] = (now, url)
        return url

    async def shard_urls(self) -> dict[int, str]:
        """Every shard's registered control URL (raises StoreUnavailable)."""
        raw = await self._call(self.r.hgetall(self.keys.shards))
        return {int(text(k)): text(v) for k, v in raw.items() if text(k).isdigit()}

    # -- the consuming side -----------------------------------------------------------------

    async def consume(self) -> None:
        """Pending entries first (this shard's, from before a crash), then new ones, forever;
        a Redis or store failure is retried from the pending entries."""
        while not self._stopped:
            raise_if_cancelled()
            if not self._acting():
                # Nothing to apply until this process may act again (its lease confirmed,
                # intake open). An await, not a spin: a tester's shard paused past its lease
                # spun here at 100 % CPU, starving the task that confirms the lease or steps
                # down, and ignored SIGTERM.
                await asyncio.sleep(IDLE_S)
                continue
            try:
                await self._consume_pending()
                await self._consume_new()
            except asyncio.CancelledError:
                raise
            except (*REDIS_FAILURES, TradingdError) as exc:
                raise_if_cancelled()
                log.warning("cluster: intake consumer retrying", extra={"reason": str(exc)[:200]})
                await asyncio.sleep(RETRY_S)

    def _acting(self) -> bool:
        """Intake open, and (hot standby) this process still holds its shard's lease."""
        daemon = self.daemon
        cluster = daemon.cluster
        return (
            not self._stopped
            and daemon.runtime.accepting
            and (cluster is None or cluster.may_act())
        )

    async def _read(self, ids: dict[str, str], block: int | None) -> dict[str, list[Any]]:
        streams = {self.keys.stream(name): ids[name] for name in STREAMS}
        resp = await self.reader.xreadgroup(
            self.group, self.group, streams, count=READ_COUNT, block=block
        )
        out: dict[str, list[Any]] = {name: [] for name in STREAMS}
        by_key = {self.keys.stream(name): name for name in STREAMS}
        for key, entries in resp or []:
            out[by_key[text(key)]] = entries
        return out

    async def _consume_pending(self) -> None:
        """Re-read what this group was delivered and never acked, in G order."""
        while self._acting():
            raise_if_cancelled()
            got = await self._read(dict.fromkeys(STREAMS, "0"), None)
            batch = [(name, e) for name in STREAMS for e in got[name]]
            if not batch:
                return
            batch.sort(key=lambda item: entry_seq(item[1][0]))
            await self._apply(batch, redelivered=True)

    async def _consume_new(self) -> None:
        buffers: dict[str, deque[Any]] = {name: deque() for name in STREAMS}
        full = dict.fromkeys(STREAMS, False)
        while self._acting():
            raise_if_cancelled()
            if not any(buffers.values()) or any(full[n] and not buffers[n] for n in STREAMS):
                block = BLOCK_MS if not any(buffers.values()) else None
                got = await self._read(dict.fromkeys(STREAMS, ">"), block)
                for name in STREAMS:
                    self._check_gap(name, got[name])
                    buffers[name].extend(got[name])
                    full[name] = len(got[name]) >= READ_COUNT
            batch: list[tuple[str, Any]] = []
            while len(batch) < READ_COUNT:
                # An entry of one stream waits while the other may still hold an older one.
                if any(full[n] and not buffers[n] for n in STREAMS):
                    break
                heads = [(entry_seq(buffers[n][0][0]), n) for n in STREAMS if buffers[n]]
                if not heads:
                    break
                name = min(heads)[1]
                batch.append((name, buffers[name].popleft()))
            if batch:
                await self._apply(batch, redelivered=False)

    def _check_gap(self, name: str, entries: list[Any]) -> None:
        for entry_id, _fields in entries:
            s = entry_seq(entry_id)[1]
            expected = self.delivered[name] + 1
            if s > expected:
                self._gap(name, s - expected)
            self.delivered[name] = max(self.delivered[name], s)

    def _gap(self, name: str, lost: int) -> None:
        self.gaps[name] += lost
        log.error(
            "cluster: intake entries lost to trimming before this shard read them",
            extra={"stream": self.keys.stream(name), "lost": lost},
        )
        self.daemon.publish(
            [
                ev.Alert(
                    ts=self.daemon.engine.clock(),
                    code="intake_gap",
                    message=f"shard {self.shard} lost {lost} {name} entries: the stream was "
                    "trimmed ([cluster] intake_maxlen) past what it had read",
                    details={"stream": name, "lost": lost, "shard": self.shard},
                )
            ]
        )

    async def _apply(self, batch: list[tuple[str, Any]], redelivered: bool) -> None:
        """Apply the entries in order, wait until durable, then ack and report."""
        runtime = self.daemon.runtime
        reports: list[tuple[str, str]] = []
        acks: dict[str, list[Any]] = {name: [] for name in STREAMS}
        for name, (entry_id, fields) in batch:
            if not self._acting():
                break  # shutting down or stepped down: unacked, read again by whoever goes on
            payload = (fields or {}).get(b"d")
            acks[name].append(entry_id)
            if payload is None:  # trimmed while pending: what it held is gone
                self._gap(name, 1)
                continue
            if name == SIGNALS:
                reports.append(self._apply_signal(payload))
            else:
                try:
                    runtime.push_ticks(_ticks.decode(payload))
                except (msgspec.DecodeError, TradingdError) as exc:
                    log.error("cluster: tick entry refused", extra={"reason": str(exc)[:200]})
                except Exception:  # a bug: logged, and the stream goes on past the entry
                    log.exception("cluster: tick entry failed", extra={"entry": str(entry_id)})
                await runtime.cascade_settled()
            self.applied[name] += 1
        if not any(acks.values()):
            return
        store = self.daemon.store
        if store is not None:  # acknowledged means durable: the events, and a tick's prices
            if acks[TICKS]:  # and the peaks it moved (a single process writes those later)
                await store.flushed_with_prices()
            else:
                await store.flushed()
        pipe = self.r.pipeline(transaction=False)
        for name, ids in acks.items():
            if ids:
                pipe.xack(self.keys.stream(name), self.group, *ids)
        ttl = max(1, self.dedupe_ms // 1000)
        for signal_id, value in reports:
            if signal_id == "?":
                continue  # undecodable: nobody waits for it
            key = self.keys.result(signal_id)
            pipe.rpush(key, f"{self.shard}:{value}")
            pipe.expire(key, ttl)
        await pipe.execute()
        if redelivered:
            log.info("cluster: pending intake entries applied", extra={"entries": len(batch)})

    def _apply_signal(self, payload: bytes) -> tuple[str, str]:
        try:
            signal = _signal.decode(payload)
        except msgspec.DecodeError as exc:
            log.error("cluster: signal entry refused", extra={"reason": str(exc)[:200]})
            return "?", "error:undecodable"
        try:
            record, _duplicate = self.daemon.runtime.submit_signal(signal)
        except TradingdError as exc:
            path = str(exc.details.get("path", "$"))[:100]
            return signal.id, f"error:{path} {exc.message[:300]}"
        except Exception:  # a bug: logged, and the stream goes on past the entry
            log.exception("cluster: signal entry failed", extra={"signal_id": signal.id})
            return signal.id, "error:$ internal error"
        return signal.id, str(record.agents_matched)

    # -- lag --------------------------------------------------------------------------------

    async def refresh_lag(self) -> None:
        for name in STREAMS:
            stream = self.keys.stream(name)
            info = await self.r.xinfo_stream(stream)
            last = entry_seq(info["last-generated-id"])[1]
            for group in await self.r.xinfo_groups(stream):
                if text(group["name"]) == self.group:
                    delivered = entry_seq(group["last-delivered-id"])[1]
                    self.lag[name] = max(0, last - delivered)
                    self.pending[name] = int(group["pending"])

    async def lag_loop(self) -> None:
        while not self._stopped:
            raise_if_cancelled()
            try:
                await self.refresh_lag()
            except REDIS_FAILURES:
                raise_if_cancelled()
            await asyncio.sleep(1.0)

    async def health(self) -> dict[str, Any]:
        if self.r is not None:  # not yet open while a standby
            with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                await asyncio.wait_for(self.refresh_lag(), 0.5)
        return {
            "shards": self.shards,
            "shard": self.shard,
            "intake": {
                name: {
                    "lag": self.lag[name],
                    "pending": self.pending[name],
                    "applied": self.applied[name],
                    "lost": self.gaps[name],
                }
                for name in STREAMS
            },
        }


class IntakeCollector:
    """tradingd_cluster_intake_lag{stream}: entries of the stream this shard has not yet
    applied and acked (not yet delivered + delivered and pending), as of the last refresh."""

    def __init__(self, intake: ShardIntake) -> None:
        self.intake = intake

    def collect(self) -> Iterator[Any]:
        g = GaugeMetricFamily(
            "tradingd_cluster_intake_lag",
            "Intake stream entries this shard has not yet applied and acknowledged",
            labels=["stream"],
        )
        for name in STREAMS:
            g.add_metric([name], float(self.intake.lag[name] + self.intake.pending[name]))
        yield g
        lost = GaugeMetricFamily(
            "tradingd_cluster_intake_lost",
            "Intake stream entries trimmed before this shard read them (alert intake_gap)",
            labels=["stream"],
        )
        for name in STREAMS:
            lost.add_metric([name], float(self.intake.gaps[name]))
        yield lost
