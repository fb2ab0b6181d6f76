"""Outages under load, against servers these tests own (so they can kill them): Redis killed and
restarted -> buys pause, exits keep running, events spill and are replayed, nothing is lost;
Postgres stopped and started -> the stream grows and drains, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal as os_signal

import redis.asyncio as aioredis
from store_harness import TOKENS, StoreNode, check_invariants, postgres_state, state_of
from tradingd.adapters.store.embedded import EmbeddedPostgres, EmbeddedRedis
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Signal, Tick

from tests.polling import poll_until_async

DEPOSIT = 100 * 10**9


class Load:
    """Ticks on every token and a buy signal now and then, until stopped."""

    def __init__(self, node: StoreNode) -> None:
        self.node = node
        self.prices = {t: 1.0 for t in TOKENS}
        self.rng = random.Random(3)
        self.n = 0
        self.skipped: dict[str, int] = {}

    def signal(self) -> str:
        self.n += 1
        now = wall_clock_ms()
        sig = Signal(
            id=f"load-{self.n}",
            token=self.rng.choice(TOKENS),
            received_at=now,
            expires_at=now + 30_000,
            client_id=f"load-{self.n}",
        )
        record, _ = self.node.runtime.apply(self.node.engine.on_signal, sig)
        for x in record.executions.values():
            if x.status == "skipped":
                self.skipped[x.reason] = self.skipped.get(x.reason, 0) + 1
        return sig.id

    async def run(self) -> None:
        while True:
            now = wall_clock_ms()
            for t in TOKENS:
                self.prices[t] *= 1 + self.rng.uniform(-0.01, 0.011)
            self.node.runtime.push_ticks(
                [Tick(SOL_MINT, 150.0, now, decimals=9)]
                + [Tick(t, p, now, decimals=6) for t, p in self.prices.items()]
            )
            if self.rng.random() < 0.3:
                self.signal()
            await asyncio.sleep(0.003)


async def start_node(node: StoreNode) -> tuple[StoreNode, list[ev.Alert]]:
    await node.start()
    alerts: list[ev.Alert] = []
    node.runtime.event_subscribers.append(
        lambda evs: alerts.extend(e for e in evs if isinstance(e, ev.Alert))
    )
    e, rt = node.engine, node.runtime
    if "alpha" not in e.agents:
        config = {
            "sizing": {"amount": "1000000000"},
            "limits": {"max_open_positions": 1000, "max_positions_per_token": 1000},
            "stop_loss": {"mode": "trailing", "trail_pct": 3},
        }
        rt.apply(
            e.create_agent, "alpha", "paper", config_from_builtins(config), "SOL", None, "alpha"
        )
        rt.apply(e.deposit, "alpha", "SOL", DEPOSIT)
    return node, alerts


async def until_at_least(probe, floor: int, what: str) -> None:
    await poll_until_async(probe, lambda n: n >= floor, tries=1000, what=what)


async def until_status(node: StoreNode, component: str, status: str) -> None:
    await poll_until_async(
        lambda: node.components[component]["status"],
        lambda s: s == status,
        tries=1000,
        what=f"{component} {status}",
    )


def buys(node: StoreNode) -> int:
    return sum(t.side == "buy" for t in node.engine.trades["alpha"])


def sells(node: StoreNode) -> int:
    return sum(t.side == "sell" for t in node.engine.trades.get("alpha", []))


async def test_redis_killed_and_restarted_under_load(tmp_path, store_servers, namespace):
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    try:
        await redis_outage(tmp_path, store_servers, namespace, own, url)
    finally:
        own.stop()


async def redis_outage(tmp_path, store_servers, namespace, own: EmbeddedRedis, url: str) -> None:
    node, alerts = await start_node(StoreNode(tmp_path, store_servers, namespace, redis_url=url))
    load = Load(node)
    task = asyncio.create_task(load.run())
    try:
        await until_at_least(lambda: len(node.engine.positions), 5, "positions")
        os.kill(own.pid, os_signal.SIGKILL)
        await until_status(node, "redis", "down")
        assert node.engine.buys_paused_reason == "store_unavailable"
        sells_before = sells(node)
        skipped_before = load.skipped.get("store_unavailable", 0)
        await poll_until_async(
            lambda: (load.skipped.get("store_unavailable", 0), sells(node)),
            lambda got: got[0] > skipped_before and got[1] > sells_before,
            tries=1000,
            what="(buys refused, sells) while redis is down",
        )
        await node.store.flushed(timeout=5)  # acknowledged through the fsync'd spill file
        assert node.store.write_through.spill.count > 0

        own.start()
        await poll_until_async(
            lambda: (node.components["redis"]["status"], node.engine.buys_paused_reason),
            lambda got: got == ("ok", None),
            tries=1000,
            what="(redis status, buys paused) after restart",
        )
        assert node.store.write_through.spill.count == 0
        bought = buys(node)
        await until_at_least(lambda: buys(node), bought + 1, "buys resumed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await node.runtime.wait_orders(5)
    node.store.checkpoint_peaks()
    await node.store.flushed()
    assert [a.code for a in alerts if a.details.get("component") == "redis"] == [
        "store_degraded",
        "store_recovered",
    ]
    check_invariants(node.engine, {"alpha": DEPOSIT})
    before = state_of(node)
    assert await node.store.writer.drain(15)
    assert await postgres_state(store_servers.database_url, namespace) == before
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
    assert state_of(again) == before
    await again.stop()


async def test_postgres_stopped_and_started_under_load(tmp_path, store_servers, namespace):
    own = EmbeddedPostgres(tmp_path / "own")
    db = own.start()
    try:
        await postgres_outage(tmp_path, store_servers, namespace, own, db)
    finally:
        own.stop()


async def postgres_outage(
    tmp_path, store_servers, namespace, own: EmbeddedPostgres, db: str
) -> None:
    node, alerts = await start_node(StoreNode(tmp_path, store_servers, namespace, database_url=db))
    load = Load(node)
    task = asyncio.create_task(load.run())
    try:
        await until_at_least(lambda: len(node.engine.positions), 5, "positions")
        await asyncio.get_running_loop().run_in_executor(None, own.stop)
        await until_status(node, "postgres", "down")
        bought = buys(node)
        await until_at_least(lambda: buys(node), bought + 1, "buys go on")
        await node.store.writer.refresh_lag()
        assert node.store.writer_backlog() > 0  # the stream holds what Postgres lacks
        await asyncio.get_running_loop().run_in_executor(None, own.start)
        await until_status(node, "postgres", "ok")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await node.runtime.wait_orders(5)
    node.store.checkpoint_peaks()
    await node.store.flushed()
    assert [a.code for a in alerts if a.details.get("component") == "postgres"] == [
        "store_degraded",
        "store_recovered",
    ]
    check_invariants(node.engine, {"alpha": DEPOSIT})
    assert await node.store.writer.drain(15)
    assert await postgres_state(db, namespace) == state_of(node)
    await node.stop()


async def test_a_spill_left_at_stop_is_replayed_at_start_without_waiting_for_a_write(
    tmp_path, store_servers, namespace
):
    """A daemon stopped while Redis was down leaves its spill file; started again with Redis
    up, the spill goes to Redis (and on to Postgres) at once, not at the first new write: until
    then Postgres lacked it and /health said nothing (a tester's finding: ten minutes)."""
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    try:
        node, _ = await start_node(StoreNode(tmp_path, store_servers, namespace, redis_url=url))
        await node.store.flushed(timeout=5)
        os.kill(own.pid, os_signal.SIGKILL)
        node.runtime.apply(node.engine.deposit, "alpha", "SOL", 7)  # spilled
        await node.store.flushed(timeout=10)
        await until_status(node, "redis", "down")
        assert node.store.write_through.spill.count > 0
        await node.crash()

        own.start()
        again = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
        await poll_until_async(
            lambda: again.store.write_through.spill.count,
            lambda n: n == 0,
            tries=500,
            what="the spill replayed with no new write",
        )
        assert await again.store.writer.drain(15)
        assert await postgres_state(store_servers.database_url, namespace) == state_of(again)
        assert again.engine.ledger.balance("alpha", "SOL").total == DEPOSIT + 7
        await again.stop()
    finally:
        own.stop()


async def test_a_redis_that_answers_but_refuses_writes_is_asked_less_and_less_often(
    tmp_path, store_servers, namespace
):
    """Redis answering PING but refusing writes (here: out of memory, maxmemory below its use;
    a failed RDB save with stop-writes-on-bgsave-error looks the same): every ask
    reads the whole spill file, so the asks back off to PROBE_MAX_S instead of coming every
    0.25 s (a tester's finding: 28 % of a core with 30 MB spilled). Once Redis takes writes
    again the spill is replayed and nothing is lost."""
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    admin = aioredis.from_url(url)
    try:
        node, _ = await start_node(StoreNode(tmp_path, store_servers, namespace, redis_url=url))
        await node.store.flushed(timeout=5)
        await admin.config_set("maxmemory", 1)  # the default policy, noeviction, refuses writes
        node.runtime.apply(node.engine.deposit, "alpha", "SOL", 7)  # refused, so spilled
        await node.store.flushed(timeout=10)
        await until_status(node, "redis", "down")
        assert node.store.write_through.spill.count > 0
        await admin.config_resetstat()
        await asyncio.sleep(3.0)
        stats = await admin.info("commandstats")
        asks = stats.get("cmdstat_ping", {}).get("calls", 0)
        assert 1 <= asks <= 5, f"{asks} asks in 3 s (every 0.25 s would be 12)"

        await admin.config_set("maxmemory", 0)
        await poll_until_async(
            lambda: node.store.write_through.spill.count,
            lambda n: n == 0,
            tries=1000,
            what="the spill replayed once Redis takes writes",
        )
        await until_status(node, "redis", "ok")
        assert await node.store.writer.drain(15)
        assert await postgres_state(store_servers.database_url, namespace) == state_of(node)
        assert node.engine.ledger.balance("alpha", "SOL").total == DEPOSIT + 7
        await node.stop()
    finally:
        await admin.aclose()
        own.stop()
