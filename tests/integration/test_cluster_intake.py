"""The sharded intake (adapters/cluster/intake.py) against the real Redis, with a real engine and
runtime and a store whose `flushed()` the test controls: a client id is idempotent across the
cluster; an entry is acknowledged only once what it changed is durable; entries delivered and
never acknowledged (a crash) are read again first, and one already applied trades nothing twice;
a consumer the stream was trimmed past raises the alert `intake_gap`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from store_harness import StoreServers
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.cluster.intake import ShardIntake
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues import PAPER
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal, Tick

from tests.polling import poll_until_async

TOKEN = demo_mint(0)
AGENT = "agt_intake"


class ControlledStore:
    """`flushed()` waits for `durable` (set: returns at once) and counts its calls."""

    def __init__(self) -> None:
        self.durable = asyncio.Event()
        self.durable.set()
        self.calls = 0
        self.price_calls = 0  # waits that also covered the last prices and peaks

    async def flushed(self, timeout: float | None = None) -> None:
        self.calls += 1
        await self.durable.wait()

    async def flushed_with_prices(self, timeout: float | None = None) -> None:
        self.price_calls += 1
        await self.flushed(timeout)


class Node:
    """What ShardIntake uses of the daemon: engine, runtime, store, publish, spawn."""

    cluster = None  # no hot standby

    def __init__(self) -> None:
        self.engine = Engine(wall_clock_ms)
        paper = PaperVenue(self.engine.price_usd, wall_clock_ms, 0)
        self.runtime = Runtime(self.engine, {PAPER: paper})
        self.store = ControlledStore()
        self.alerts: list[ev.Alert] = []
        self.tasks: list[asyncio.Task[Any]] = []
        now = wall_clock_ms()
        self.runtime.push_ticks(
            [Tick(SOL_MINT, 150.0, now, decimals=9), Tick(TOKEN, 1.0, now, decimals=6)]
        )
        cfg = config_from_builtins(
            {
                "sizing": {"mode": "fixed", "amount": str(10**8)},
                "limits": {"max_positions_per_token": 10},
            }
        )
        self.runtime.apply(self.engine.create_agent, "a", "paper", cfg, "SOL", None, AGENT)
        self.runtime.apply(self.engine.deposit, AGENT, "SOL", 10 * 10**9)

    def publish(self, events: list[ev.Event]) -> None:
        self.alerts += [e for e in events if isinstance(e, ev.Alert)]

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    def positions(self) -> list[Any]:
        return list(self.engine.books[AGENT].positions.values())

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


def intake(node: Node, servers: StoreServers, ns: str, **kw: Any) -> ShardIntake:
    return ShardIntake(node, servers.redis_url, ns, 0, 1, dedupe_ms=60_000, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def started(node: Node, servers: StoreServers, ns: str) -> AsyncIterator[ShardIntake]:
    """An intake opened and started; at the end the node's tasks stopped, then the intake closed."""
    a = intake(node, servers, ns)
    await a.open()
    await a.start(None)
    try:
        yield a
    finally:
        await node.stop()
        await a.close()


async def until(
    get: Callable[[], Any],
    ok: Callable[[Any], bool],
    what: str,
    timeout_s: float = 5,
    interval_s: float = 0.01,
) -> None:
    """Polls a plain (not awaitable) value, letting the loop run between reads."""
    await poll_until_async(
        lambda: asyncio.sleep(0, get()), ok, timeout_s=timeout_s, interval_s=interval_s, what=what
    )


def buy(sid: str, client_id: str | None = None) -> Signal:
    now = wall_clock_ms()
    return Signal(
        id=sid, token=TOKEN, received_at=now, expires_at=now + 60_000, client_id=client_id
    )


@pytest.fixture
async def r(store_servers: StoreServers) -> Any:
    client = aioredis.Redis.from_url(store_servers.redis_url)
    yield client
    await client.aclose()


async def pending(r: aioredis.Redis, ns: str) -> int:
    return int((await r.xpending(f"{{{ns}}}:intake:signals", "s0"))["pending"])


async def no_pending(r: aioredis.Redis, ns: str, what: str) -> None:
    await poll_until_async(
        lambda: pending(r, ns), lambda n: n == 0, timeout_s=5, interval_s=0.01, what=what
    )


async def test_client_id_is_idempotent_and_the_result_is_every_shards(
    store_servers: StoreServers, namespace: str
) -> None:
    node = Node()
    async with started(node, store_servers, namespace) as a:
        first = await a.publish_signal(buy("sig_1", "prov-1"))
        again = await a.publish_signal(buy("sig_2", "prov-1"))
        assert (first.duplicate, again.duplicate) == (False, True)
        assert again.signal_id == "sig_1" and again.received_at == first.received_at
        result = await a.results("sig_1", wait=True)
        assert (result.agents_matched, result.answered, result.pending) == (1, [0], [])
        assert len(node.positions()) == 1  # sig_2 never reached the stream


async def test_ack_only_after_durable(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    node = Node()
    node.store.durable.clear()  # the write-through has not confirmed yet
    async with started(node, store_servers, namespace) as a:
        await a.publish_signal(buy("sig_d"))
        await until(node.positions, lambda found: len(found) == 1, "the signal applied")
        assert node.store.calls >= 1
        assert await pending(r, namespace) == 1  # applied, not yet durable: not acked
        assert (await a.results("sig_d", wait=False)).answered == []
        node.store.durable.set()
        await no_pending(r, namespace, "the entry acked once durable")
        assert (await a.results("sig_d", wait=False)).answered == [0]


async def test_pending_entries_are_read_again_first_and_trade_once(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    node = Node()
    a = intake(node, store_servers, namespace)
    await a.open()
    # Delivered to this group (as to a process killed before it applied it) but never acked.
    await a.publish_signal(buy("sig_lost"))
    got = await r.xreadgroup("s0", "s0", {f"{{{namespace}}}:intake:signals": ">"}, count=10)
    assert len(got[0][1]) == 1
    await a.publish_signal(buy("sig_new"))  # not yet delivered
    b: ShardIntake | None = None
    try:
        await a.start(None)
        await no_pending(r, namespace, "the pending entry and the new one applied and acked")
        opened = [p.signal_id for p in sorted(node.positions(), key=lambda p: p.seq)]
        assert opened == ["sig_lost", "sig_new"]  # the pending one first
        # Applied, then killed before it was durable and acked: delivered again at restart.
        node.store.durable.clear()
        await a.publish_signal(buy("sig_again"))
        await until(node.positions, lambda found: len(found) == 3, "sig_again applied")
        await node.stop()  # the crash: nothing more acked
        await a.close()
        assert await pending(r, namespace) == 1
        node.store.durable.set()
        b = intake(node, store_servers, namespace)  # the restart, over the recovered engine
        await b.open()
        await b.start(None)
        await no_pending(r, namespace, "the pending entry acked after the restart")
        assert sorted(p.signal_id for p in node.positions()) == [
            "sig_again",
            "sig_lost",
            "sig_new",
        ]  # sig_again once: the engine knew its id
        assert (await b.results("sig_again", wait=False)).agents_matched == 1
    finally:
        await node.stop()
        await a.close()
        if b is not None:
            await b.close()


async def test_a_consumer_the_stream_was_trimmed_past_raises_intake_gap(
    store_servers: StoreServers, namespace: str
) -> None:
    node = Node()
    a = intake(node, store_servers, namespace, maxlen=100)
    await a.open()  # the group exists; nothing is read while 1,000 pushes arrive
    now = wall_clock_ms()
    for i in range(1000):
        await a.publish_ticks([Tick(TOKEN, 1.0 + i / 10_000, now, decimals=6, source="t")])
    await a.start(None)
    try:
        await until(
            lambda: node.alerts,
            lambda alerts: any(x.code == "intake_gap" for x in alerts),
            "the intake_gap alert",
        )
        gap = next(x for x in node.alerts if x.code == "intake_gap")
        assert gap.details["stream"] == "ticks" and gap.details["lost"] >= 800
        await poll_until_async(
            a.health,
            lambda h: h["intake"]["ticks"]["lag"] == 0 and h["intake"]["ticks"]["pending"] == 0,
            timeout_s=5,
            interval_s=0.02,
            what="the rest of the stream applied",
        )
        health = await a.health()
        assert health["intake"]["ticks"]["lost"] == gap.details["lost"]
        assert health["intake"]["ticks"]["applied"] + gap.details["lost"] == 1000
    finally:
        await node.stop()
        await a.close()


async def test_redis_unreachable_is_a_503_for_the_request(
    store_servers: StoreServers, namespace: str
) -> None:
    from tradingd.adapters.cluster.intake_stream import APPEND
    from tradingd.adapters.store.errors import StoreUnavailable

    node = Node()
    a = intake(node, store_servers, namespace)
    await a.open()
    good = a.r
    a.r = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    a._append = a.r.register_script(APPEND)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await a.publish_signal(buy("sig_x", "prov-x"))
        assert caught.value.status == 503
        with pytest.raises(StoreUnavailable):
            await a.publish_ticks([Tick(TOKEN, 1.0, wall_clock_ms(), decimals=6, source="t")])
    finally:
        await a.r.aclose()
        a.r = good
        await a.close()


async def test_both_streams_apply_in_the_order_received_past_one_read(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """More entries than one read takes (READ_COUNT per stream), unevenly mixed: the consumer
    applies them in the order they were appended, across the two streams."""
    import random

    from tradingd.adapters.cluster.intake import READ_COUNT

    node = Node()
    seen: list[str] = []
    submit, push = node.runtime.submit_signal, node.runtime.push_ticks

    def on_signal(signal: Signal) -> Any:
        seen.append(signal.id)
        return submit(signal)

    def on_ticks(ticks: list[Tick]) -> Any:
        seen.append(ticks[0].source)
        return push(ticks)

    node.runtime.submit_signal = on_signal  # type: ignore[method-assign]
    node.runtime.push_ticks = on_ticks  # type: ignore[method-assign]
    a = intake(node, store_servers, namespace)
    await a.open()
    rnd = random.Random(3)
    sent: list[str] = []
    now = wall_clock_ms()
    for i in range(READ_COUNT * 5):
        # runs of one kind longer than a read, then short alternations
        kind = "t" if (i // (READ_COUNT + 30)) % 2 == 0 or rnd.random() < 0.3 else "s"
        if kind == "t":
            sent.append(f"t{i}")
            await a.publish_ticks([Tick(TOKEN, 1.0, now, decimals=6, source=f"t{i}")])
        else:
            sent.append(f"sig_{i}")
            await a.publish_signal(buy(f"sig_{i}"))
    await a.start(None)
    try:
        await until(
            lambda: len(seen),
            lambda n: n >= len(sent),
            "every entry applied",
            timeout_s=20,
            interval_s=0.02,
        )
        assert seen == sent
    finally:
        await node.stop()
        await a.close()


async def test_a_feeds_ticks_go_through_the_stream_in_order(
    store_servers: StoreServers, namespace: str
) -> None:
    node = Node()
    async with started(node, store_servers, namespace) as a:
        now = wall_clock_ms()
        for i in range(1, 51):  # as a live feed pushes: a sync call, never awaited
            a.feed_push([Tick(TOKEN, 1.0 + i / 100, now + i, decimals=6, source="pyth")])
        await until(
            lambda: a.applied["ticks"],
            lambda n: n == 50,
            "the feed's 50 pushes applied from the stream",
        )
        assert node.engine.prices[TOKEN].price_usd == 1.5  # the last, and none refused
        assert node.runtime.ticks_rejected == {}


async def test_a_tick_entry_is_acked_only_once_its_prices_and_peaks_are_durable(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """A tick entry waits for the store's prices-and-peaks flush before its XACK (the prices
    and peaks it moved are otherwise written up to a checkpoint later: a shard killed right
    after the ack came back with the old peak); a signal-only read waits for the events."""
    node = Node()
    node.store.durable.clear()
    async with started(node, store_servers, namespace) as a:
        a.feed_push([Tick(TOKEN, 1.25, wall_clock_ms(), decimals=6, source="pyth")])
        await until(lambda: a.applied["ticks"], lambda n: n == 1, "the tick applied")
        ticks_pending = await r.xpending(f"{{{namespace}}}:intake:ticks", "s0")
        assert int(ticks_pending["pending"]) == 1  # applied, its prices not yet durable
        assert node.store.price_calls == 1
        node.store.durable.set()
        await poll_until_async(
            lambda: r.xpending(f"{{{namespace}}}:intake:ticks", "s0"),
            lambda p: int(p["pending"]) == 0,
            timeout_s=5,
            interval_s=0.01,
            what="the tick entry acked once durable",
        )
        await a.publish_signal(buy("sig_p"))
        await no_pending(r, namespace, "the signal acked")
        assert node.store.price_calls == 1  # a signal-only read waits for the events alone


async def test_no_ticks_append_no_entry(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """`POST /v1/prices {"ticks": []}` on a shard appends nothing (a tester saw an empty entry
    and the global order counter move)."""
    node = Node()
    async with started(node, store_servers, namespace) as a:
        before = (
            await r.xlen(f"{{{namespace}}}:intake:ticks"),
            await r.get(f"{{{namespace}}}:intake:seq"),
        )
        await a.publish_ticks([])
        after = (
            await r.xlen(f"{{{namespace}}}:intake:ticks"),
            await r.get(f"{{{namespace}}}:intake:seq"),
        )
        assert after == before


async def test_a_shard_with_another_shard_count_is_refused(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """The first shard records the cluster's shard count; one started with another count is
    refused at start-up (a tester's: `--shards 3` joined a 2-shard cluster, its agents were
    unreachable and its results filled another shard's place)."""
    from tradingd.adapters.cluster.intake import ShardIntake
    from tradingd.adapters.cluster.shards import ShardCountMismatch

    url = store_servers.redis_url
    first = ShardIntake(Node(), url, namespace, 0, 2, dedupe_ms=60_000)  # type: ignore[arg-type]
    same = ShardIntake(Node(), url, namespace, 1, 2, dedupe_ms=60_000)  # type: ignore[arg-type]
    other = ShardIntake(Node(), url, namespace, 2, 3, dedupe_ms=60_000)  # type: ignore[arg-type]
    try:
        await first.open()
        await same.open()
        with pytest.raises(ShardCountMismatch, match="runs 2 shards"):
            await other.open()
        assert int(await r.get(f"{{{namespace}}}:shard_count")) == 2
    finally:
        for intake in (first, same, other):
            await intake.close()


class LapsedRole:
    """A hot-standby role whose lease lapsed by its own clock and is being re-verified:
    `may_act()` False until `confirmed`. Counts the calls: a consumer spinning on it without
    awaiting would call it without end (then it raises, and the consumer dies)."""

    def __init__(self) -> None:
        self.confirmed = False
        self.calls = 0

    def may_act(self) -> bool:
        self.calls += 1
        if self.calls > 10_000:
            raise AssertionError("the consumer spins on may_act() without awaiting")
        return self.confirmed


async def test_a_consumer_that_may_not_act_waits_without_spinning_then_applies(
    store_servers: StoreServers, namespace: str
) -> None:
    """A tester's HIGH: a shard paused past its lease spun in the consumer at 100 % CPU, never
    letting the lease be re-verified, and ignored SIGTERM."""
    node = Node()
    role = LapsedRole()
    node.cluster = role  # type: ignore[assignment]
    async with started(node, store_servers, namespace) as a:
        await a.publish_signal(buy("sig_lapsed"))
        turns = 0
        for _ in range(30):  # the loop keeps turning: other tasks run meanwhile
            await asyncio.sleep(0.01)
            turns += 1
        assert turns == 30 and role.calls < 1_000 and node.positions() == []
        consumer = next(t for t in node.tasks if "consume" in repr(t.get_coro()))
        assert not consumer.done()
        role.confirmed = True  # the lease confirmed: the entry applies
        await until(node.positions, lambda found: len(found) == 1, "the signal applied")


async def test_a_client_id_claimed_before_the_upgrade_is_still_a_duplicate(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """A tester's MEDIUM: after an upgrade in place, a client id sent again within the dedupe
    window was claimed anew under the hash-tagged name (a new signal id no shard knew)."""
    await r.set(f"{namespace}:signal_client:c-old", "sig_old|1796000000000", px=60_000)
    node = Node()
    async with started(node, store_servers, namespace) as a:
        again = await a.publish_signal(buy("sig_new", "c-old"))
        assert again.duplicate and again.signal_id == "sig_old"
        assert again.received_at == 1796000000000
    assert await r.exists(f"{namespace}:signal_client:c-old") == 0
    assert 0 < await r.pttl(f"{{{namespace}}}:signal_client:c-old") <= 60_000


async def test_a_shard_starting_follows_the_clusters_last_halt(
    store_servers: StoreServers, namespace: str, r: aioredis.Redis
) -> None:
    """A tester's finding: a shard down while the halt was sent came back trading. The halt is
    recorded; a starting shard follows it (halted; lifted only over the operator's halt)."""
    await r.set(f"{{{namespace}}}:halt", "1")
    node = Node()
    async with started(node, store_servers, namespace):
        assert node.engine.halted_buys
    await r.set(f"{{{namespace}}}:halt", "0")
    async with started(node, store_servers, namespace):
        assert not node.engine.halted_buys
