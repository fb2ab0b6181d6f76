"""One feed leader per source across agent shards (docs/cluster.md "Feed leaders").

With shards every process would otherwise poll or stream the same market-data services (Pyth
Hermes, DexScreener, an exchange's tickers, the synthetic walk) and publish the same ticks, so a
service's rate limit would be spent N times. For each source the shards compete for a lease,
`{<ns>:feed:<source>}:lease` (the hot standby's Lease: SET NX PX, a fencing counter, renewed every
lease_ms/3 from the event loop); only its holder runs the feed, and its ticks go to the tick
stream every shard applies (adapters/cluster/intake.py). The others follow: their `/health`
shows the source as `follower` with the leader's instance, and they try the lease every
lease_ms/3, so when the leader dies its source is led again within about lease_ms.

A leader must price what every shard holds, not only its own agents' tokens: each shard
writes its watched tokens to `{<ns>}:feed:watched:s<i>` (a set, rewritten every WATCH_INTERVAL_S,
expiring after WATCH_TTL_MS) and the feeds read the union (`watched()`).

A leader that lost its lease (its renewal found it gone, or by its own clock it was not renewed
within lease_ms: a stalled loop, a pause) stops its feed at once and drops any tick its feed
still pushes; it competes again like a follower.

A leader whose upstream keeps failing (the feed's health `down`, `stale` or `backoff` for
`handover_after_ms`: the service bans or rate-limits this host, or its network path is broken)
hands the source over: it releases the lease and sits out as long again, so another shard, whose
path may work, leads it; if every shard's fails, the lease rotates."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from tradingd.adapters.cluster.intake_stream import IntakeKeys
from tradingd.adapters.cluster.lease import Lease
from tradingd.adapters.transient import REDIS_FAILURES, raise_if_cancelled
from tradingd.engine.model import Tick

log = logging.getLogger("tradingd.cluster")
HANDED_OVER = "handed over"

WATCH_INTERVAL_S = 1.0
WATCH_TTL_MS = 10_000  # a dead shard's watched set goes after this
REQUEST_TIMEOUT_S = 2.0
FEED_RESTART_S = 1.0  # a leader's feed that ended (it raised) is run again after this
HANDOVER_AFTER_MS = 10_000  # a leader's upstream failing this long: another shard leads
FAILING = frozenset(("down", "stale", "backoff"))  # a feed's health: its upstream fails

Push = Callable[[list[Tick]], object]
RunFeed = Callable[[Push], Awaitable[None]]
Health = Callable[[], dict[str, Any]]


class FeedLeaders:
    """This shard's side of the feed leases: `lead(source, run, push)` runs `run(push)` only
    while this process holds the source's lease; `watched()` is every shard's watched tokens.

    `components` is the daemon's health registry: a followed source is reported there as
    `{"status": "follower", "leader": <instance>}` (it overrides the idle feed's own health in
    GET /health `components.feeds.<source>`)."""

    def __init__(
        self,
        redis_url: str,
        base: str,
        shard: int,
        shards: int,
        *,
        instance: str,
        lease_ms: int,
        local_watched: Callable[[], set[str]],
        components: dict[str, Any],
        handover_after_ms: int = HANDOVER_AFTER_MS,
    ) -> None:
        self.redis_url = redis_url
        self.base = base
        self.keys = IntakeKeys(base)
        self.shard = shard
        self.shards = shards
        self.instance = instance
        self.lease_ms = lease_ms
        self.local_watched = local_watched
        self.components = components
        self.handover_after_s = handover_after_ms / 1000
        self.handovers: dict[str, int] = {}  # source -> leases given up for a failing upstream
        self.leases: dict[str, Lease] = {}
        self.leaders: dict[str, str | None] = {}  # source -> the holder seen (this one's value)
        self.led: dict[str, int] = {}  # source -> leaderships this process took
        self.dropped: dict[str, int] = {}  # source -> tick batches pushed while not leading
        self._union: frozenset[str] = frozenset()
        self._stopped = False
        self.r: Any = None

    def watched_key(self, shard: int) -> str:
        return self.keys.feed_watched(shard)

    async def open(self) -> None:
        from tradingd.adapters.store.redis import client

        self.r = client(self.redis_url, REQUEST_TIMEOUT_S)

    async def close(self) -> None:
        """Stop competing and give up every lease held (the next shard leads at its next try,
        not after lease_ms)."""
        self._stopped = True
        for lease in self.leases.values():
            with contextlib.suppress(*REDIS_FAILURES):
                await lease.release()
        if self.r is not None:
            with contextlib.suppress(Exception):
                await self.r.aclose()

    # -- leading one source -------------------------------------------------------------------

    def leads(self, source: str) -> bool:
        """This process holds `source`'s lease by its own clock now."""
        lease = self.leases.get(source)
        return lease is not None and lease.held()

    def guarded(self, source: str, push: Push) -> Push:
        """`push`, passing a batch on only while this process leads `source`: a leader that
        lost its lease mid-poll publishes nothing more."""

        def guarded_push(ticks: list[Tick]) -> object:
            if self.leads(source):
                return push(ticks)
            self.dropped[source] = self.dropped.get(source, 0) + 1
            return None

        return guarded_push

    async def lead(
        self, source: str, run: RunFeed, push: Push, health: Health | None = None
    ) -> None:
        """Run the feed `run(push)` whenever this process holds `source`'s lease; follow
        otherwise; hand the lease over when `health()` (the feed's, GET /health's shape) says
        its upstream has failed for handover_after_ms. Returns only when cancelled or closed."""
        lease = Lease(self.r, f"{self.base}:feed:{source}", self.instance, self.lease_ms)
        self.leases[source] = lease
        self._follow(source, None)
        while not self._stopped:
            try:
                taken = await lease.try_acquire()
                if not taken:
                    self._follow(source, await lease.holder())
            except REDIS_FAILURES as exc:
                self._follow(source, None, reason=f"redis: {type(exc).__name__}")
                taken = False
            raise_if_cancelled()  # the Redis client may have lost our cancel (transient.py)
            if taken and await self._while_held(source, lease, run, push, health):
                await asyncio.sleep(self.handover_after_s)  # another shard's turn
            await asyncio.sleep(self.lease_ms / 3000)

    async def _while_held(
        self, source: str, lease: Lease, run: RunFeed, push: Push, health: Health | None
    ) -> bool:
        """Lead `source` until the lease is lost; True when it was handed over."""
        self.led[source] = self.led.get(source, 0) + 1
        self.leaders[source] = lease.value
        self.components.get("feeds", {}).pop(source, None)  # the feed's own health shows
        log.info(
            "cluster: feed leader",
            extra={"source": source, "shard": self.shard, "token": lease.token},
        )
        feed = asyncio.ensure_future(run(self.guarded(source, push)))
        try:
            reason = await self._hold(source, lease, feed, health)
        finally:
            feed.cancel()  # wait() neither raises the feed's error nor swallows our own cancel
            await asyncio.wait({feed}, timeout=REQUEST_TIMEOUT_S)
        handed = reason.startswith(HANDED_OVER)
        if handed:
            self.handovers[source] = self.handovers.get(source, 0) + 1
            with contextlib.suppress(*REDIS_FAILURES):
                await lease.release()
        log.warning("cluster: feed leadership lost", extra={"source": source, "reason": reason})
        self._follow(source, None, reason=reason)
        return handed

    async def _hold(
        self, source: str, lease: Lease, feed: asyncio.Future[None], health: Health | None
    ) -> str:
        """Renew `lease` every lease_ms/3 while `feed` runs; the reason it ended."""
        failing_since: float | None = None
        while True:
            done, _ = await asyncio.wait({feed}, timeout=self.lease_ms / 3000)
            if done:
                exc = feed.exception()
                log.error(
                    "cluster: feed ended while leading",
                    extra={"source": source, "error": repr(exc)[:300]},
                )
                with contextlib.suppress(*REDIS_FAILURES):
                    await lease.release()  # another shard may lead it meanwhile
                await asyncio.sleep(FEED_RESTART_S)
                return "the feed ended"
            if self._stopped:
                return "stopping"
            try:
                renewed = await lease.renew()
            except REDIS_FAILURES as exc:
                renewed = lease.held()
                if not renewed:
                    return f"not renewed within lease_ms ({type(exc).__name__})"
            raise_if_cancelled()
            if not renewed:
                return "the lease was gone or another's"
            if health is not None and self.shards > 1:
                status = health().get("status")
                now = time.monotonic()
                if status not in FAILING:
                    failing_since = None
                elif failing_since is None:
                    failing_since = now
                elif now - failing_since >= self.handover_after_s:
                    return f"{HANDED_OVER}: its upstream is {status} here"
            if not lease.held():
                return "not renewed within lease_ms"

    def _follow(self, source: str, holder: str | None, reason: str = "") -> None:
        self.leaders[source] = holder
        entry: dict[str, Any] = {"status": "follower", "leader": holder}
        if reason:
            entry["reason"] = reason
        self.components.setdefault("feeds", {})[source] = entry

    # -- the tokens every shard watches --------------------------------------------------------

    def watched(self) -> set[str]:
        """What a leader's feeds price: this shard's watched tokens and every other shard's
        (as last read, at most WATCH_INTERVAL_S old)."""
        return self.local_watched() | self._union

    async def share_watched(self) -> None:
        """Every WATCH_INTERVAL_S: write this shard's watched tokens, read every shard's."""
        failing = False
        while not self._stopped:
            try:
                self._union = frozenset(await self._exchange_watched(self.local_watched()))
                failing = False
            except REDIS_FAILURES as exc:
                if not failing:
                    log.warning(
                        "cluster: watched tokens not shared",
                        extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"},
                    )
                failing = True
            raise_if_cancelled()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def _exchange_watched(self, own: Iterable[str]) -> set[str]:
        key = self.watched_key(self.shard)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            tokens = sorted(own)
            if tokens:
                pipe.sadd(key, *tokens)
                pipe.pexpire(key, WATCH_TTL_MS)
            await pipe.execute()
        # not in the pipeline: Redis Cluster clients refuse a multi-key command pipelined
        union = await self.r.sunion([self.watched_key(i) for i in range(self.shards)])
        return {m.decode() if isinstance(m, bytes) else str(m) for m in union}


class FeedLeaderCollector:
    """tradingd_feed_leader{source}: 1 while this shard leads the source, else 0;
    tradingd_feed_leaderships_total{source}: leaderships taken; tick batches dropped by a
    leader that had lost its lease."""

    def __init__(self, leaders: FeedLeaders) -> None:
        self.leaders = leaders

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        lead = GaugeMetricFamily(
            "tradingd_feed_leader", "1 while this shard leads the feed source", labels=["source"]
        )
        taken = CounterMetricFamily(
            "tradingd_feed_leaderships", "Feed leases this shard took", labels=["source"]
        )
        dropped = CounterMetricFamily(
            "tradingd_feed_ticks_dropped_not_leader",
            "Tick batches a feed pushed after this shard lost its lease (not published)",
            labels=["source"],
        )
        handed = CounterMetricFamily(
            "tradingd_feed_handovers",
            "Feed leases this shard gave up because the feed's upstream kept failing here",
            labels=["source"],
        )
        for source in sorted(self.leaders.leases):
            lead.add_metric([source], int(self.leaders.leads(source)))
            taken.add_metric([source], self.leaders.led.get(source, 0))
            dropped.add_metric([source], self.leaders.dropped.get(source, 0))
            handed.add_metric([source], self.leaders.handovers.get(source, 0))
        yield lead
        yield taken
        yield dropped
        yield handed
