"""Hot standby against the real Redis: the lease (SET NX PX, compare-and-PEXPIRE renewal, a
fencing token INCRed on every acquisition), its lapse and takeover, and fencing: a write-through
carrying a stale token is refused by the write script, atomically, so nothing of it is written
(stream length and hashes unchanged), and the process is told to step down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from store_harness import StoreServers
from tradingd.adapters.cluster.lease import Lease
from tradingd.adapters.cluster.role import ClusterRole
from tradingd.adapters.store.embedded import EmbeddedRedis
from tradingd.adapters.store.records import Entry
from tradingd.adapters.store.redis import PROBE_MAX_S, WRITE_CHUNK, Fenced, RedisWriteThrough
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.stream_codec import WRITE_SCRIPT, Keys, write_args, write_keys
from tradingd.engine.model import Tick

from tests.polling import poll_until_async

LEASE_MS = 400


@pytest.fixture
async def r(store_servers: StoreServers) -> aioredis.Redis:
    client = aioredis.Redis.from_url(store_servers.redis_url)
    yield client
    await client.aclose()


class FakeFence:
    """The holder's side of fencing with a token set by the test."""

    lease_ms = 1000

    def __init__(self, token: str, acting: bool = True) -> None:
        self.token = token
        self.acting = acting
        self.reasons: list[str] = []

    def may_act(self) -> bool:
        return self.acting

    async def verified(self) -> bool:
        return self.acting

    def may_commit(self) -> bool:
        return self.acting

    def fenced(self, reason: str) -> None:
        self.reasons.append(reason)


def entries(start: int, n: int, agent: str = "a1") -> list[Entry]:
    return [
        Entry(
            (1_700_000_000_000 + start + i) << 20,
            "AgentSaved",
            f"{agent}-{start + i}",
            agent,
            b'{"x": %d}' % (start + i),
        )
        for i in range(n)
    ]


async def redis_state(r: aioredis.Redis, keys: Keys) -> tuple[int, dict, dict]:
    return (
        await r.xlen(keys.stream),
        await r.hgetall(keys.hash("agents")),
        await r.hgetall(keys.meta),
    )


def write_through(
    r: aioredis.Redis, keys: Keys, tmp_path: Path, fence: object
) -> RedisWriteThrough:
    spill = SpillFile(tmp_path / "spill" / "x.spill")
    return RedisWriteThrough(r, keys, spill, lambda up, reason: None, lambda: 7, fence=fence)


async def active_role(
    store_servers: StoreServers, namespace: str, name: str, stop: asyncio.Event
) -> tuple[ClusterRole, list[str]]:
    """A role that took the lease, renews it and acts; the reasons it lost the lease, if so."""
    role = ClusterRole(store_servers.redis_url, namespace, "active", LEASE_MS, name)
    assert await role.connect(stop)
    assert await role.wait_for_lease(stop)
    lost: list[str] = []
    role.start_renewing(lost.append)
    role.activated()
    return role, lost


async def test_acquire_renew_lapse_takeover(r: aioredis.Redis, namespace: str) -> None:
    a = Lease(r, namespace, "a", LEASE_MS)
    b = Lease(r, namespace, "b", LEASE_MS)
    assert await a.try_acquire()
    assert await r.get(f"{{{namespace}}}:lease") == f"{a.token}:a".encode()
    assert 0 < await r.pttl(f"{{{namespace}}}:lease") <= LEASE_MS
    assert not await b.try_acquire()  # held: no token spent on a failed take
    assert int(await r.get(f"{{{namespace}}}:fence")) == a.token
    # renewal extends it, by the holder only
    for _ in range(3):
        await asyncio.sleep(LEASE_MS / 3000)
        assert await a.renew()
        assert a.held()
    assert not await b.renew()  # b never held it
    # a stops renewing: the lease lapses and b takes it with a greater token
    taken = await poll_until_async(
        b.try_acquire, tries=200, timeout_s=5, interval_s=0.02, what="b takes the lapsed lease"
    )
    assert taken and b.token == a.token + 1
    assert not a.held()  # by a's own clock too
    assert not await a.renew()  # the compare fails: a cannot extend b's lease
    assert not await a.release()  # nor delete it
    assert await r.get(f"{{{namespace}}}:lease") == f"{b.token}:b".encode()
    assert await b.release()
    assert await r.get(f"{{{namespace}}}:lease") is None
    # the token only grows, takeover after takeover
    c = Lease(r, namespace, "c", LEASE_MS)
    assert await c.try_acquire() and c.token == b.token + 1


async def test_stale_token_writes_nothing(
    r: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    old = Lease(r, namespace, "old", LEASE_MS)
    assert await old.try_acquire()
    fence_old = FakeFence(str(old.token))
    wt_old = write_through(r, keys, tmp_path / "old", fence_old)
    wt_old.enqueue(entries(0, 5))
    await wt_old.flush_once()
    await wt_old.flushed(1)  # the holder's batch is durable
    before = await redis_state(r, keys)
    assert before[0] == 5 and len(before[1]) == 5
    # the old holder loses the lease (it paused); a new one takes it
    await r.delete(keys.lease)
    new = Lease(r, namespace, "new", LEASE_MS)
    assert await new.try_acquire() and new.token == old.token + 1
    # the stale process still believes it may act: Redis itself refuses its batch
    wt_old.enqueue(entries(5, 50))
    await wt_old.flush_once()
    assert await redis_state(r, keys) == before  # stream length and hashes unchanged
    assert wt_old.fenced and wt_old.stopped
    assert fence_old.reasons and "FENCED" in fence_old.reasons[0]
    with pytest.raises(Fenced):
        await wt_old.flushed(1)
    # the new holder's token is accepted, with last prices riding along
    wt_new = write_through(r, keys, tmp_path / "new", FakeFence(str(new.token)))
    wt_new.enqueue(entries(100, 3))
    wt_new.enqueue_ticks([Tick(token="MINT1", price_usd=1.5, ts=1_700_000_000_000)])
    await wt_new.flush_once()
    await wt_new.flushed(1)
    length, agents, _ = await redis_state(r, keys)
    assert length == 8 and len(agents) == 8
    assert await r.hexists(keys.prices, "MINT1")


def test_fence_token_is_the_last_argument() -> None:
    args = write_args(entries(0, 1), 3, {"MINT1": b"{}"}, "12")
    assert len(args) == 5 and args[4] == "12"
    assert len(write_args(entries(0, 1), 3, {"MINT1": b"{}"})) == 4  # no fence: no check


async def test_lapsed_by_own_clock_sends_nothing(
    r: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    """A process that knows (by its own clock) it lost the lease does not even send the batch,
    though Redis would still accept it (the key has not expired yet)."""
    keys = Keys(namespace)
    lease = Lease(r, namespace, "me", LEASE_MS)
    assert await lease.try_acquire()
    fence = FakeFence(str(lease.token), acting=False)
    wt = write_through(r, keys, tmp_path, fence)
    wt.enqueue(entries(0, 4))
    await wt.flush_once()
    assert await r.xlen(keys.stream) == 0
    assert wt.fenced and fence.reasons


async def test_no_fence_no_check(r: aioredis.Redis, namespace: str, tmp_path: Path) -> None:
    """Without a cluster role nothing changes: no lease key is needed to write."""
    keys = Keys(namespace)
    spill = SpillFile(tmp_path / "s" / "x.spill")
    wt = RedisWriteThrough(r, keys, spill, lambda up, reason: None, lambda: 1)
    wt.enqueue(entries(0, 2))
    await wt.flush_once()
    assert await r.xlen(keys.stream) == 2


async def test_role_steps_down_when_lease_is_taken(
    store_servers: StoreServers, r: aioredis.Redis, namespace: str
) -> None:
    stop = asyncio.Event()
    active, lost = await active_role(store_servers, namespace, "active-1", stop)
    assert active.acting and active.token == str(active.lease.token)
    # renewals keep it well past lease_ms
    await asyncio.sleep(3 * LEASE_MS / 1000)
    assert active.acting and not lost
    standby = ClusterRole(store_servers.redis_url, namespace, "standby", LEASE_MS, "standby-1")
    assert await standby.connect(stop)
    waiting = asyncio.ensure_future(standby.wait_for_lease(stop))
    await asyncio.sleep(2 * LEASE_MS / 1000)
    assert not waiting.done()  # held and renewed: the standby waits
    # someone else's lease replaces it (an operator, a partition healed late): step down
    await r.set(f"{{{namespace}}}:lease", b"999:intruder", px=LEASE_MS)
    await poll_until_async(lambda: lost, tries=200, timeout_s=5, interval_s=0.02, what="lost")
    assert active.role == "stepped_down" and not active.may_act()
    assert "another" in lost[0]
    health = active.health()
    assert health["role"] == "stepped_down" and health["lease"]["held"] is False
    await r.delete(f"{{{namespace}}}:lease")
    assert await asyncio.wait_for(waiting, 5)
    assert int(standby.token) > active.lease.token
    stop.set()
    await active.close(release=True)
    await standby.close(release=False)


async def test_role_steps_down_when_paused(
    store_servers: StoreServers, r: aioredis.Redis, namespace: str
) -> None:
    """Own clock: a process whose loop did not run for longer than the lease (a SIGSTOP, a
    long GC pause) acts on nothing from the moment it wakes; the standby took the lease
    meanwhile, so Redis says it is another's and the process steps down at once, without
    asking again and again until lease_ms is over."""
    stop = asyncio.Event()
    role, lost = await active_role(store_servers, namespace, "paused-1", stop)
    await asyncio.sleep(0.05)
    import time

    import redis

    time.sleep(LEASE_MS / 1000 + 0.1)  # the whole loop stalls, as a paused process does
    # meanwhile (the loop still stalled) the standby takes the lease that expired in Redis too
    with redis.Redis.from_url(store_servers.redis_url) as other:
        token = other.incr(f"{{{namespace}}}:fence")
        assert other.set(f"{{{namespace}}}:lease", f"{token}:standby-1", nx=True, px=10 * LEASE_MS)
    assert not role.may_act()  # known at once, before the renewal task even runs
    calls = await evalsha_calls(r)
    await poll_until_async(lambda: lost, tries=200, timeout_s=5, interval_s=0.02, what="lost")
    assert "another" in lost[0]
    assert await evalsha_calls(r) - calls <= 4  # one renewal, one retake refused: no flood
    await role.close(release=True)


async def test_a_lease_expired_in_redis_and_untaken_is_taken_again(
    store_servers: StoreServers, r: aioredis.Redis, namespace: str
) -> None:
    """A lone active (no standby) stalled past the lease: the key expired in Redis too, but the
    fencing counter still holds its token, so nobody took it since: it takes the lease again
    with the same token and acts again instead of stepping down with nobody to take over."""
    import time

    stop = asyncio.Event()
    role, lost = await active_role(store_servers, namespace, "alone-1", stop)
    token = role.token
    time.sleep(LEASE_MS / 1000 + 0.2)
    assert not role.may_act() and await r.get(f"{{{namespace}}}:lease") is None  # expired there too
    await poll_until_async(role.may_act, tries=200, timeout_s=5, interval_s=0.02, what="back")
    assert role.token == token and role.lapses == 1 and not lost
    assert (await r.get(f"{{{namespace}}}:lease")).decode() == f"{token}:alone-1"
    stop.set()
    await role.close(release=True)


async def evalsha_calls(r: aioredis.Redis) -> int:
    stats = await r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_data_dir_lock_says_each_process_needs_its_own(tmp_path: Path) -> None:
    """An active and its standby on one machine: one data dir each (the lock says so)."""
    from tradingd.adapters.store.errors import DataDirLocked
    from tradingd.adapters.store.lock import DataDirLock

    first = DataDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(DataDirLocked) as refused:
            DataDirLock(tmp_path).acquire()
        assert "each need their own data dir" in refused.value.message
        assert "--data-dir" in refused.value.message
    finally:
        first.release()


async def test_a_fenced_writer_commits_and_acks_nothing(
    tmp_path: Path, store_servers: StoreServers, namespace: str
) -> None:
    """The write-behind of a process that lost its lease commits nothing to Postgres and leaves
    the stream's entries pending (the new holder's writer takes them over)."""
    import asyncpg
    from store_harness import TOKENS, StoreNode
    from tradingd.engine.config import config_from_builtins

    node = await StoreNode(tmp_path, store_servers, namespace).start()
    store = node.store
    assert store is not None and store.writer is not None
    acting = [True]
    store.writer.may_act = lambda: acting[0]
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "a", "paper", config_from_builtins({}), "USDC", None, "a")
    await node.settle()
    assert await store.writer.drain(10)  # while it holds the lease, it writes
    conn = await asyncpg.connect(store_servers.database_url)
    try:
        events = f'SELECT count(*) FROM "{namespace}".events'
        before = await conn.fetchval(events)
        assert before > 0
        acting[0] = False  # the lease is lost
        rt.apply(e.deposit, "a", "USDC", 10**9)
        node.tick(TOKENS[0], 1.0)
        await node.settle()
        keys = Keys(namespace)
        length = await poll_until_async(
            lambda: store.redis.xlen(keys.stream),
            lambda n: n > 0,
            tries=100,
            timeout_s=5,
            what="the new entries in the stream",
        )
        await poll_until_async(
            lambda: store.writer.stopped,
            tries=200,
            timeout_s=5,
            interval_s=0.05,
            what="the writer stopped by the fence",
        )
        assert await conn.fetchval(events) == before  # nothing committed
        pending = await store.redis.xpending(keys.stream, store.writer.GROUP)
        assert await store.redis.xlen(keys.stream) >= length  # nothing trimmed
        assert pending["pending"] > 0  # read, never acknowledged
    finally:
        await conn.close()
        await node.crash()


async def test_a_lapse_redis_confirms_is_survived(
    store_servers: StoreServers, r: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    """A loop stall past lease_ms by the process's own clock while Redis still holds its lease
    (a long transition, a slow Redis; here Redis' TTL is stretched to stand for it): nothing is
    acted on until Redis confirms the lease is still this process's, then it acts again with
    the same token. A write made meanwhile waits for the answer instead of being fenced, and is
    written; the process does not step down."""
    import time

    stop = asyncio.Event()
    role, lost = await active_role(store_servers, namespace, "stalled-1", stop)
    token = role.token
    keys = Keys(namespace)
    wt = write_through(r, keys, tmp_path, role)
    await r.pexpire(keys.lease, 30 * LEASE_MS)  # Redis still holds it after the stall
    time.sleep(LEASE_MS / 1000 + 0.1)  # the whole loop stalls past the lease by its clock
    assert not role.may_act() and not role.acting  # nothing is acted on from here
    wt.enqueue(entries(0, 3))
    await wt.flush_once()  # waits while Redis is asked, then writes with the same token
    assert await r.xlen(keys.stream) == 3 and not wt.fenced
    assert role.may_act() and role.acting and role.token == token
    assert role.lapses == 1 and not lost
    health = role.health()
    assert health["role"] == "active" and health["lapses"] == 1 and not health["verifying"]
    stop.set()
    await role.close(release=True)


async def test_a_lapse_redis_denies_steps_down_and_writes_nothing(
    store_servers: StoreServers, r: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    """The same stall, but another process took the lease meanwhile: the write made after the
    stall is refused without being sent and the process steps down."""
    import time

    stop = asyncio.Event()
    role, lost = await active_role(store_servers, namespace, "stalled-2", stop)
    keys = Keys(namespace)
    wt = write_through(r, keys, tmp_path, role)
    time.sleep(LEASE_MS / 1000 + 0.1)
    await r.set(keys.lease, b"999:other", px=30 * LEASE_MS)  # taken while this one stalled
    wt.enqueue(entries(0, 3))
    await wt.flush_once()
    assert await r.xlen(keys.stream) == 0 and wt.fenced
    assert role.role == "stepped_down" and lost and "another" in lost[0]
    stop.set()
    await role.close(release=False)


async def test_a_writer_connection_ends_its_idle_transaction(store_servers: StoreServers) -> None:
    """A hot standby's write-behind connects with an idle-in-transaction bound: a transaction a
    frozen process left open is ended by Postgres, freeing the row locks the new active's writer
    would otherwise wait on until the old process woke (found by a tester: 10 s of lag on the
    new active while the old one stayed paused)."""
    import asyncpg
    from tradingd.adapters.store import postgres as pg

    conn = await pg.connect(store_servers.database_url, "public", idle_in_transaction_ms=500)
    try:
        assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "500ms"
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1")
        await asyncio.sleep(1.0)  # idle inside the transaction past the bound
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await conn.execute("SELECT 1")
    finally:
        await conn.close()
    plain = await pg.connect(store_servers.database_url, "public")
    try:  # without a role nothing changes: the server's default (0, off)
        assert await plain.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
    finally:
        await plain.close()


class OwnRedis:
    """A Redis of the test's own (it changes server settings), an admin client and one for the
    write-through; `kept` leaves a batch kept in memory by a cluster role, Redis refusing it."""

    def __init__(self, tmp_path: Path) -> None:
        self.server = EmbeddedRedis(tmp_path / "own")
        url = self.server.start()
        self.admin = aioredis.Redis.from_url(url)
        self.r = aioredis.Redis.from_url(url)

    async def kept(self, wt: RedisWriteThrough, batch: list[Entry]) -> asyncio.Future[None]:
        """Returns the batch's waiter (wt.flushed)."""
        await self.admin.config_set("maxmemory", 1)  # noeviction, the default: refused
        wt.enqueue(batch)
        waiter = asyncio.ensure_future(wt.flushed(10))
        await wt.flush_once()
        assert not wt.up and wt.pending == len(batch) and not waiter.done()
        await self.admin.config_set("maxmemory", 0)
        return waiter

    async def close(self) -> None:
        await self.admin.aclose()
        await self.r.aclose()
        self.server.stop()


@pytest.fixture
async def own(tmp_path: Path) -> OwnRedis:
    redis = OwnRedis(tmp_path)
    yield redis
    await redis.close()


async def write_as(admin: aioredis.Redis, keys: Keys, batch: list[Entry], token: str) -> None:
    """Write `batch` as a holder of `token` would (the write-through's script)."""
    script = admin.register_script(WRITE_SCRIPT)
    await script(keys=[*write_keys(keys), keys.lease], args=write_args(batch, None, None, token))


async def test_a_fenced_writer_against_a_redis_refusing_writes_is_down_once_not_flapping(
    namespace: str, tmp_path: Path, own: OwnRedis
) -> None:
    """A cluster role keeps unwritten batches in memory (nothing spills): a Redis answering
    PING but refusing writes (out of memory) used to be reported up at every ask and down at
    the write that followed, 8 times a second (a tester's finding). It is down once, asked with
    a doubling wait, and up once it takes the kept batch."""
    admin, keys = own.admin, Keys(namespace)
    statuses: list[bool] = []
    await admin.set(keys.lease, "5:me")
    spill = SpillFile(tmp_path / "spill" / "x.spill")
    wt = RedisWriteThrough(
        own.r, keys, spill, lambda up, _: statuses.append(up), lambda: 7, fence=FakeFence("5")
    )
    task = asyncio.create_task(wt.run())
    try:
        wt.enqueue(entries(0, 3))
        await wt.flushed(5)
        await admin.config_set("maxmemory", 1)  # noeviction, the default: writes refused
        wt.enqueue(entries(3, 3))
        await poll_until_async(lambda: statuses, lambda s: s == [False], what="down")
        await admin.config_resetstat()
        await asyncio.sleep(3.0)
        asks = (await admin.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
        assert statuses == [False], statuses
        assert asks <= 5, f"{asks} asks in 3 s (every 0.25 s would be 12)"
        assert spill.count == 0  # a cluster role never spills

        await admin.config_set("maxmemory", 0)
        await wt.flushed(10)  # the kept batch, written once Redis takes it
        assert statuses == [False, True]
        length, agents, _ = await redis_state(admin, keys)
        assert length == 6 and len(agents) == 6
    finally:
        wt.stopped = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_kept_batch_that_landed_in_part_is_written_from_where_redis_stopped(
    namespace: str, tmp_path: Path, own: OwnRedis
) -> None:
    """A batch of several script calls whose first landed before the write failed (or one
    whose reply was lost) is kept whole by a cluster role; written again from its start, the
    stream refused the ids it already held and the role stayed down for good (a tester's
    finding). The retry now skips what Redis holds."""
    keys = Keys(namespace)
    await own.admin.set(keys.lease, "5:me")
    wt = write_through(own.r, keys, tmp_path, FakeFence("5"))
    wt.enqueue(entries(0, 2))
    await wt.flush_once()
    await wt.flushed(1)
    big = entries(2, WRITE_CHUNK + 1000)
    waiter = await own.kept(wt, big)
    await write_as(own.admin, keys, big[:WRITE_CHUNK], "5")  # the first call had landed

    await asyncio.sleep(PROBE_MAX_S)  # the next ask is due
    await wt.flush_once()
    await waiter
    assert wt.up and wt.pending == 0
    ids = [e[0] for e in await own.admin.xrange(keys.stream)]
    assert len(ids) == 2 + len(big) and len(set(ids)) == len(ids)
    assert await own.admin.hlen(keys.hash("agents")) == 2 + len(big)


async def test_a_kept_batch_is_never_acknowledged_by_a_process_that_lost_the_lease(
    namespace: str, tmp_path: Path, own: OwnRedis
) -> None:
    """A (token 5) keeps a batch Redis refused; B takes the lease (token 6) and writes later
    ids. A's retry must not count its batch as already in Redis from the stream's last id
    alone (a tester's finding: acknowledged, none of it in Redis): the fenced call refuses."""
    keys = Keys(namespace)
    await own.admin.set(keys.lease, "5:a")
    wt = write_through(own.r, keys, tmp_path, FakeFence("5"))  # A still believes it holds it
    wt.enqueue(entries(0, 2))
    await wt.flush_once()
    await wt.flushed(1)
    waiter = await own.kept(wt, entries(2, 3))
    await own.admin.set(keys.lease, "6:b")
    await write_as(own.admin, keys, entries(100, 2, "b"), "6")

    await asyncio.sleep(PROBE_MAX_S)
    await wt.flush_once()
    with pytest.raises(Fenced):
        await waiter
    assert wt.fenced and not wt.up
    held = {k.decode() for k in await own.admin.hkeys(keys.hash("agents"))}
    assert not held & {f"a1-{i}" for i in (2, 3, 4)}
