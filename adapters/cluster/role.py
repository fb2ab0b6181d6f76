"""This process's role in a hot-standby pair: standby (waiting for the lease), active (holding it,
intake open) or stepped down (lost it: acts no more and exits with STEPPED_DOWN_EXIT).

The daemon (adapters/app/daemon.py) binds the control port as a standby, waits here for the
lease, then runs the ordinary start-up (store recovery, resumed orders, feeds, clock) and calls
`activated()` when intake opens. From the moment the lease is taken it is renewed every
lease_ms/3 from the event loop. The lease is lost, and `on_lost` runs at once, when a renewal
finds it gone or another's, or when the write-through is fenced by Redis.

When by this process's own monotonic clock the lease was not renewed within lease_ms (its loop
stalled, Redis was slow, or the process was paused), it acts on nothing from that moment and
asks Redis: a lease still holding this process's value (its fencing token) was nobody else's
meanwhile, so it is renewed and the process acts again; gone, another's, or not confirmed within
lease_ms, it is lost. `may_act()` is the instant check (venue calls, intake); `verified()` waits
for such a re-verification (the write-through, adapters/store/redis.py Fence)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from tradingd.adapters.cluster.lease import Lease
from tradingd.adapters.http.errors import NotReady
from tradingd.adapters.store.key_migration import (
    legacy_lease,
    legacy_names,
    rename_legacy_keys,
)
from tradingd.adapters.transient import REDIS_FAILURES, raise_if_cancelled

log = logging.getLogger("tradingd.cluster")
STEPPED_DOWN_EXIT = 3  # `tradingd run` lost its lease: systemd restarts it, as a standby
Role = Literal["standby", "active", "stepped_down"]
ROLES: tuple[Role, ...] = ("standby", "active", "stepped_down")
CONNECT_RETRY_S = 0.5


class Standby(NotReady):
    """A write or signal sent to a process that does not hold the lease. A NotReady: not
    logged per request (a load balancer probes a standby's /health/ready all day)."""

    code = "standby"
    status = 503


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterRole:
    def __init__(
        self,
        redis_url: str,
        namespace: str,
        wanted: Literal["active", "standby"],
        lease_ms: int = 3000,
        instance: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.wanted = wanted
        self.lease_ms = lease_ms
        self.instance = instance or instance_id()
        self.role: Role = "standby"
        self.lease: Lease | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.lost_reason = ""
        self.takeovers = 0  # leases this process took (0 or 1 in its life)
        self.takeover_seconds: float | None = None  # lease taken -> intake open
        self.acquired_at = 0.0
        self.previous_holder: str | None = None
        self._redis: Any = None
        self._renewing: asyncio.Task[None] | None = None
        # set while a lapse by this process's clock is re-verified with Redis: True when the
        # lease was still this process's (renewed), False when it was lost
        self._verifying: asyncio.Future[bool] | None = None
        self._verify_task: asyncio.Task[None] | None = None
        self.lapses = 0  # lapses by this process's clock that Redis confirmed were still ours

    @property
    def poll_s(self) -> float:
        """How often a standby asks for the lease: a tenth of it, 50..500 ms."""
        return min(0.5, max(0.05, self.lease_ms / 10_000))

    # -- standby ----------------------------------------------------------------------------

    async def connect(self, stop: asyncio.Event) -> bool:
        """A Redis client of its own (renewals never queue behind a write-through batch),
        retried until Redis answers or `stop` is set."""
        from tradingd.adapters.store.redis import client

        self._redis = client(self.redis_url, timeout=max(0.2, self.lease_ms / 3000))
        self.lease = Lease(self._redis, self.namespace, self.instance, self.lease_ms)
        warned = False
        while not stop.is_set():
            try:
                await self._redis.ping()
                # an old version's lease (and keys) under their names before hash tags: taken
                # over by name, so its holder steps down instead of acting beside this one
                names = legacy_names(self.namespace)
                await rename_legacy_keys(self._redis, names, legacy_lease(self.namespace))
                return True
            except REDIS_FAILURES as exc:
                if not warned:
                    log.warning("cluster: redis unreachable, retrying", extra={"reason": str(exc)})
                    warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CONNECT_RETRY_S)
        return False

    async def wait_for_lease(self, stop: asyncio.Event) -> bool:
        """Poll for the lease until taken (True) or `stop` is set (False). A standby gives an
        active started at the same moment one lease period to take it first."""
        assert self.lease is not None
        if self.wanted == "standby":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.lease_ms / 1000)
        logged = False
        while not stop.is_set():
            try:
                if await self.lease.try_acquire():
                    self.acquired_at = time.monotonic()
                    log.warning(
                        "cluster: lease taken; recovering and opening intake",
                        extra={
                            "fencing_token": self.lease.token,
                            "instance": self.instance,
                            "previous_holder": self.previous_holder,
                        },
                    )
                    return True
                holder = await self.lease.holder()
                if holder is not None:
                    self.previous_holder = holder
                if not logged:
                    log.info(
                        "cluster: standby, the lease is held",
                        extra={"holder": holder, "lease_ms": self.lease_ms},
                    )
                    logged = True
            except REDIS_FAILURES as exc:
                log.warning("cluster: lease poll failed", extra={"reason": str(exc)[:200]})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
        return False

    # -- active -----------------------------------------------------------------------------

    def start_renewing(self, on_lost: Callable[[str], None]) -> None:
        self.on_lost = on_lost
        self._renewing = asyncio.get_running_loop().create_task(
            self._renew_loop(), name="cluster-lease"
        )

    async def _renew_loop(self) -> None:
        lease = self.lease
        assert lease is not None
        interval = self.lease_ms / 3000
        while self.role != "stepped_down":
            await asyncio.sleep(interval)
            raise_if_cancelled()  # a cancel lost in the Redis client or wait_for (3.11)
            if not lease.held():
                if not await asyncio.shield(self._reverification()):
                    return
                continue
            try:
                ok = await asyncio.wait_for(lease.renew(), interval)
            except (*REDIS_FAILURES, TimeoutError) as exc:
                reason = str(exc)[:200] or type(exc).__name__  # a timeout has no text
                log.warning("cluster: lease renewal failed", extra={"reason": reason})
                continue  # retried; the own-clock check above ends it at lease_ms
            if not ok:
                holder = None
                with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                    holder = await asyncio.wait_for(lease.holder(), interval)
                self.lost(f"the lease is gone or another's (holder {holder})")
                return

    def _reverification(self) -> asyncio.Future[bool]:
        """The re-verification of a lapse by this process's clock: the one under way, or a new
        one (whichever notices first starts it: the renewal loop, a write, a venue call)."""
        if self._verifying is None:
            loop = asyncio.get_running_loop()
            self._verifying = loop.create_future()
            self._verify_task = loop.create_task(self._reverify(), name="cluster-lease-verify")
        return self._verifying

    async def _reverify(self) -> None:
        """The lease lapsed by this process's own clock: act on nothing until Redis says whether
        it is still this process's. A renewal only succeeds on the exact value this process set
        (its token), which no one else can have taken meanwhile; a lease that expired in Redis
        too is taken again only while the fencing counter is still this process's token (no one
        took it since). Then it acts again, with the same token. Another's, or not confirmed
        within lease_ms: lost, at once."""
        lease = self.lease
        assert lease is not None and self._verifying is not None
        stalled = time.monotonic()
        log.warning(
            "cluster: lease lapsed by this process's clock (loop or redis stalled); acting on "
            "nothing until redis confirms it",
            extra={"fencing_token": lease.token, "lease_ms": self.lease_ms},
        )
        deadline = stalled + self.lease_ms / 1000
        reason = "redis did not confirm it within lease_ms"
        ok = False
        try:
            while not ok and time.monotonic() < deadline:
                try:
                    ok = await asyncio.wait_for(
                        lease.renew(), max(0.01, deadline - time.monotonic())
                    )
                except (*REDIS_FAILURES, TimeoutError) as exc:
                    said = str(exc)[:120] or type(exc).__name__
                    reason = f"redis did not confirm it within lease_ms ({said})"
                    await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
                if not ok and await lease.retake():
                    ok = True  # it had expired and nobody took it since: taken again
                elif not ok:
                    reason = "it is gone or another's"
                    break
        finally:
            verifying, self._verifying = self._verifying, None
            verifying.set_result(ok)
        if not ok:
            self.lost(f"the lease was not renewed within lease_ms and {reason}")
            return
        self.lapses += 1
        log.warning(
            "cluster: lease confirmed still held after a lapse; acting again",
            extra={
                "fencing_token": lease.token,
                "stalled_ms": round((time.monotonic() - stalled) * 1000),
            },
        )

    def activated(self) -> None:
        """Intake is open: the takeover is complete."""
        if self.role != "standby":
            return
        self.role = "active"
        self.takeovers += 1
        self.takeover_seconds = round(time.monotonic() - self.acquired_at, 3)
        log.warning(
            "cluster: active, intake open",
            extra={
                "takeover_seconds": self.takeover_seconds,
                "fencing_token": self.lease.token if self.lease else 0,
            },
        )

    # -- fencing (adapters/store/redis.py Fence) --------------------------------------------

    @property
    def token(self) -> str:
        return str(self.lease.token) if self.lease is not None and self.lease.token else ""

    def may_act(self) -> bool:
        """Held by this process's own clock too, now (no wait)."""
        return self.role != "stepped_down" and self.lease is not None and self.lease.held()

    async def verified(self) -> bool:
        """Whether this process may act, waiting while a lapse by its clock is re-verified
        with Redis (at most lease_ms)."""
        if self.may_act():
            return True
        if self.role == "stepped_down" or self.lease is None or not self.lease.value:
            return False
        return await asyncio.shield(self._reverification())

    def may_commit(self) -> bool:
        """The write-behind may go on committing to Postgres: until the lease is lost for good.
        It only moves what Redis accepted, idempotently, so a lapse being re-verified does not
        stop it."""
        return self.role != "stepped_down"

    @property
    def verifying(self) -> bool:
        return self._verifying is not None

    def fenced(self, reason: str) -> None:
        self.lost(f"fenced: {reason}")

    def lost(self, reason: str) -> None:
        """Stop acting at once: called once, synchronously, then `on_lost` (the daemon)."""
        if self.role == "stepped_down":
            return
        self.role = "stepped_down"
        self.lost_reason = reason
        log.error(
            "cluster: lease lost, stepping down",
            extra={"reason": reason, "fencing_token": self.lease.token if self.lease else 0},
        )
        if self.on_lost is not None:
            self.on_lost(reason)

    # -- reading ----------------------------------------------------------------------------

    @property
    def acting(self) -> bool:
        return self.role == "active" and self.may_act()

    def health(self) -> dict[str, Any]:
        lease = self.lease
        held = lease is not None and lease.held() and self.role != "stepped_down"
        out: dict[str, Any] = {
            "role": self.role,
            "instance": self.instance,
            "lease": {
                "held": held,
                "expires_in_ms": lease.expires_in_ms() if held and lease else 0,
                "lease_ms": self.lease_ms,
            },
            "fencing_token": lease.token if lease is not None else 0,
            "takeover_seconds": self.takeover_seconds,
            "verifying": self.verifying,
            "lapses": self.lapses,
        }
        if self.lost_reason:
            out["lost_reason"] = self.lost_reason
        return out

    async def close(self, release: bool) -> None:
        for task in (self._renewing, self._verify_task):
            if task is not None:
                task.cancel()
                # bounded: a task that lost its cancel must not hold the shutdown
                await asyncio.wait({task}, timeout=self.lease_ms / 1000)
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: it was logged where it happened
        if release and self.lease is not None and self.role != "stepped_down":
            try:
                if await self.lease.release():
                    log.info("cluster: lease released")
            except REDIS_FAILURES as exc:
                log.warning("cluster: lease release failed", extra={"reason": str(exc)[:200]})
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


class ClusterCollector:
    """tradingd_cluster_* series, read at scrape time."""

    def __init__(self, role: ClusterRole) -> None:
        self.role = role

    def collect(self) -> Iterator[Any]:
        g = GaugeMetricFamily(
            "tradingd_cluster_role", "1 for this process's role in the pair", labels=["role"]
        )
        for name in ROLES:
            g.add_metric([name], 1.0 if self.role.role == name else 0.0)
        yield g
        lease = self.role.lease
        yield GaugeMetricFamily(
            "tradingd_cluster_fencing_token",
            "Fencing token of the lease this process took (0: none)",
            value=float(lease.token if lease else 0),
        )
        yield CounterMetricFamily(
            "tradingd_cluster_takeovers",
            "Leases this process took and opened intake with",
            value=float(self.role.takeovers),
        )
        yield CounterMetricFamily(
            "tradingd_cluster_lease_lapses",
            "Lapses of the lease by this process's clock (a stalled loop or a slow Redis) that "
            "Redis confirmed were still its own",
            value=float(self.role.lapses),
        )
