"""Recovery against real Redis and Postgres: what survives a graceful restart, a crash (nothing
flushed at the end), a crash while the writer is behind, and what Postgres holds once drained."""

from __future__ import annotations

import asyncio

import pytest
from store_harness import TOKENS, StoreNode, normalized, state_of
from tradingd.adapters.store import DataDirLocked
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.recovery import StateBook
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Fill, Order, Signal, Tick

from tests.polling import poll_until_async

RICH_CONFIG = {
    "stop_loss": {"mode": "trailing", "trail_pct": 30},
    "take_profit": {
        "enabled": True,
        "levels": [{"gain_pct": 20, "sell_pct": 25}, {"gain_pct": 80, "sell_pct": 25}],
    },
    "dca": {
        "enabled": True,
        "levels": [{"drop_pct": -10, "buy_pct": 50}],
        "max_count": 2,
        "cooldown_s": 0,
    },
}


def signal(
    token: str, client_id: str | None = None, side: str = "buy", expires_in: int = 30_000
) -> Signal:
    now = wall_clock_ms()
    return Signal(
        id=f"sig-{client_id or now}-{token[:4]}",
        token=token,
        side=side,
        received_at=now,  # type: ignore[arg-type]
        expires_at=now + expires_in,
        client_id=client_id,
    )


async def redis_prices(node: StoreNode) -> set[str]:
    """The tokens whose last price Redis holds for this node."""
    assert node.store is not None and node.store.redis is not None
    held = await node.store.redis.hkeys(node.store.keys.prices)
    return {k.decode() if isinstance(k, bytes) else k for k in held}


def ticks(node: StoreNode, prices: dict[str, float]) -> None:
    now = wall_clock_ms()
    node.runtime.push_ticks(
        Tick(t, p, now, decimals=9 if t == SOL_MINT else 6) for t, p in prices.items()
    )


async def settle(node: StoreNode) -> None:
    await node.runtime.wait_orders(5)
    await node.store.flushed()


async def build_activity(node: StoreNode) -> None:
    """Agents, configs, deposits, open positions with exit state (peak, stop, take-profit taken,
    DCA count), a closed position, a paused agent, idempotent signal ids."""
    e, rt = node.engine, node.runtime
    rt.apply(
        e.create_agent, "alpha", "paper", config_from_builtins(RICH_CONFIG), "SOL", None, "alpha"
    )
    rt.apply(e.deposit, "alpha", "SOL", 50 * 10**9)
    rt.apply(e.create_agent, "beta", "paper", config_from_builtins({}), "SOL", None, "beta")
    rt.apply(e.update_config, "beta", config_from_builtins({"limits": {"max_open_positions": 3}}))
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0, TOKENS[1]: 2.0, TOKENS[2]: 3.0})
    for i, token in enumerate(TOKENS):
        rt.apply(e.on_signal, signal(token, client_id=f"client-{i}"))
    await settle(node)
    ticks(node, {TOKENS[0]: 1.3})  # take-profit level 1 sells 25%, peak moves up
    await settle(node)
    ticks(node, {TOKENS[1]: 1.75})  # DCA level 1
    await settle(node)
    pos2 = next(p for p in e.positions.values() if p.token == TOKENS[2] and p.status == "open")
    rt.apply(e.close_position, pos2.id, 100.0)
    await settle(node)
    rt.apply(e.set_agent_status, "beta", "paused")
    await node.store.flushed()


def positions_with(node: StoreNode, **fields: object) -> list[object]:
    return [
        p
        for p in node.engine.positions.values()
        if all(getattr(p, k) == v for k, v in fields.items())
    ]


async def test_state_survives_graceful_restart(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await build_activity(node)
    before = state_of(node)
    assert positions_with(node, tp_done=1) and positions_with(node, dca_count=1)
    assert positions_with(node, status="closed")
    await node.stop()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    await again.stop()


async def test_state_survives_crash(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await build_activity(node)
    before = state_of(node)
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    await again.stop()


async def test_signal_ids_stay_idempotent_after_restart(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await build_activity(node)
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    trades = sum(len(t) for t in again.engine.trades.values())
    record, duplicate = again.runtime.apply(
        again.engine.on_signal, signal(TOKENS[0], client_id="client-0")
    )
    await settle(again)
    assert duplicate and record.signal.id == "sig-client-0-" + TOKENS[0][:4]
    assert sum(len(t) for t in again.engine.trades.values()) == trades
    await again.stop()


async def test_recovery_when_the_writer_was_behind(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await node.store.pause_writer()
    await build_activity(node)
    before = state_of(node)
    conn = await pg.connect(store_servers.database_url, namespace)
    assert await conn.fetchval("SELECT count(*) FROM events") == 0  # Postgres has nothing yet
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    assert await again.store.writer.drain(10)
    assert normalized(await postgres_only(conn)) == before
    await conn.close()
    await again.stop()


async def postgres_only(conn) -> object:
    book = StateBook()
    limits = pg.RecoveryLimits.of_engine()
    book.load_rows(await pg.load_rows(conn, limits))
    return book.snapshot([], 0, limits)


async def test_postgres_equals_memory_after_the_writer_drains(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await build_activity(node)
    assert await node.store.writer.drain(10)
    conn = await pg.connect(store_servers.database_url, namespace)
    assert normalized(await postgres_only(conn)) == state_of(node)
    assert await conn.fetchval("SELECT count(*) FROM agent_configs WHERE agent_id = 'beta'") == 2
    events = await conn.fetchval("SELECT count(*) FROM events")
    assert events == await conn.fetchval("SELECT count(DISTINCT id) FROM events") > 0
    await conn.close()
    assert await node.store.redis.xlen(node.store.keys.stream) == 0  # trimmed once written
    await node.stop()


async def test_redis_hashes_hold_the_hot_state(tmp_path, store_servers, namespace):
    from tradingd.adapters.store.records import decoder

    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await build_activity(node)
    r, keys = node.store.redis, node.store.keys
    positions = {
        k.decode(): decoder.decode(v).position
        for k, v in (await r.hgetall(keys.hash("positions"))).items()
    }
    live = {p.id: p for p in node.engine.positions.values() if p.status != "closed"}
    assert positions == {pid: node.engine.refresh(p) for pid, p in live.items()}
    agents = {
        k.decode(): decoder.decode(v).agent
        for k, v in (await r.hgetall(keys.hash("agents"))).items()
    }
    assert agents == node.engine.agents
    balances = await r.hgetall(keys.hash("balances"))
    assert {decoder.decode(v).total for v in balances.values()} == {
        b.total for aid in node.engine.agents for b in node.engine.ledger.balances(aid) if b.total
    }
    await node.stop()


class HeldVenue:
    """Accepts orders and never answers: they stay in flight until the process 'dies'."""

    name = "paper"
    in_process = False  # the Venue port: orders go through `execute`, never settled inline

    async def execute(self, order: Order) -> Fill:
        await asyncio.Event().wait()
        raise AssertionError

    async def reconcile(self) -> list[Fill]:
        return []


async def test_in_flight_buy_is_executed_once_after_a_crash(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace, venue=HeldVenue()).start()
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    rt.apply(e.deposit, "alpha", "SOL", 10**10)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0})
    rt.apply(e.on_signal, signal(TOKENS[0], client_id="held"))
    await node.store.flushed()
    assert len(e.orders) == 1
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    await settle(again)
    assert not again.engine.orders
    assert [t.side for t in again.engine.trades["alpha"]] == ["buy"]
    bal = again.engine.ledger.balance("alpha", "SOL")
    assert bal.reserved == 0 and bal.total == 10**10 - again.engine.trades["alpha"][0].quote_amount
    await again.stop()


async def test_in_flight_buy_past_its_expiry_fails_and_releases_the_reservation(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace, venue=HeldVenue()).start()
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    rt.apply(e.deposit, "alpha", "SOL", 10**10)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0})
    record, _ = rt.apply(e.on_signal, signal(TOKENS[0], client_id="short", expires_in=200))
    await node.store.flushed()
    await node.crash()

    def a_minute_later() -> int:  # the restart comes after the signal's expiry, no sleeping
        return wall_clock_ms() + 60_000

    again = await StoreNode(tmp_path, store_servers, namespace, clock=a_minute_later).start()
    await settle(again)
    bal = again.engine.ledger.balance("alpha", "SOL")
    assert (bal.total, bal.reserved) == (10**10, 0)
    assert not again.engine.trades["alpha"] and not again.engine.positions
    assert again.engine.signals[record.signal.id].executions["alpha"].status == "failed"
    await again.stop()


class BuysOnlyVenue(PaperVenue):
    """Fills buys; holds sells forever (a sell in flight at the crash)."""

    in_process = False  # every order goes through execute(), which can hold it

    async def execute(self, order: Order) -> Fill:
        if order.side == "sell":
            await asyncio.Event().wait()
        return await super().execute(order)


async def test_in_flight_sell_is_executed_once_after_a_crash(tmp_path, store_servers, namespace):
    node = StoreNode(tmp_path, store_servers, namespace)
    node.runtime.venues["paper"] = BuysOnlyVenue(node.engine.price_usd, wall_clock_ms)
    await node.start()
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    rt.apply(e.deposit, "alpha", "SOL", 10**10)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0})
    rt.apply(e.on_signal, signal(TOKENS[0]))
    (position,) = await poll_until_async(lambda: list(e.positions.values()), what="the buy filled")
    rt.apply(e.close_position, position.id, 100.0)
    await node.store.flushed()
    assert e.positions[position.id].status == "closing"
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    await settle(again)
    assert again.engine.positions[position.id].status == "closed"
    assert [t.side for t in again.engine.trades["alpha"]] == ["buy", "sell"]
    await again.stop()


async def test_a_second_store_on_the_same_data_dir_is_refused(tmp_path, store_servers, namespace):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with pytest.raises(DataDirLocked, match="in use by another tradingd"):
        await StoreNode(tmp_path, store_servers, namespace).start()
    await node.stop()


async def trailing_position(tmp_path, store_servers, namespace, price: float) -> StoreNode:
    """A node whose agent holds one position in TOKENS[0], bought at `price`, with a 20 %
    trailing stop (its peak moves with new highs, without an event)."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    e, rt = node.engine, node.runtime
    config = config_from_builtins({"stop_loss": {"mode": "trailing", "trail_pct": 20}})
    rt.apply(e.create_agent, "alpha", "paper", config, "SOL", None, "alpha")
    rt.apply(e.deposit, "alpha", "SOL", 10**10)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: price})
    rt.apply(e.on_signal, signal(TOKENS[0]))
    await settle(node)
    return node


async def test_peaks_moved_by_ticks_alone_survive_a_crash(tmp_path, store_servers, namespace):
    node = await trailing_position(tmp_path, store_servers, namespace, 1.0)
    for price in (1.1, 1.25, 1.4, 1.3):  # new highs: no event, the peak is kept lazily
        ticks(node, {TOKENS[0]: price})
    assert node.store.checkpoint_peaks() == 1
    await node.store.flushed()
    before = state_of(node)
    assert before["positions"][0]["peak_price_usd"] == 1.4
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    await again.stop()


async def test_flushed_with_prices_makes_a_ticks_prices_and_peaks_durable_at_once(
    tmp_path, store_servers, namespace
):
    """What an agent shard waits for before it acknowledges a tick entry of the intake: the
    last prices and the peaks the tick moved are durable when `flushed_with_prices` returns (a
    tester killed a shard right after its ack and it came back with the old peak and price)."""
    node = await trailing_position(tmp_path, store_servers, namespace, 0.5)
    await node.store.flushed()
    ticks(node, {TOKENS[0]: 0.61})  # a new high: no event, the peak is kept lazily
    await node.store.flushed_with_prices()  # no wait for the tick timer or the checkpoint
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    (position,) = [p for p in again.engine.positions.values() if p.status == "open"]
    assert again.engine.refresh(position).peak_price_usd == 0.61
    assert again.engine.price_usd(TOKENS[0]) == 0.61
    await again.stop()


async def test_evicted_prices_do_not_come_back_after_a_crash(tmp_path, store_servers, namespace):
    import base58

    node = await StoreNode(tmp_path, store_servers, namespace).start()
    node.engine.max_priced_tokens = 10
    node.engine.max_price_age_ms = 300
    flood = [base58.b58encode(bytes([i]) * 32).decode() for i in range(1, 21)]
    node.runtime.push_ticks(Tick(t, 1.0, wall_clock_ms(), decimals=6) for t in flood[:10])
    # written through (the evictions below must delete them), then only the newer ten: waits
    # for what Redis holds, not for the write-through's flush interval to pass
    await poll_until_async(lambda: redis_prices(node), lambda got: got == set(flood[:10]))
    await asyncio.sleep(0.35)  # too old to buy on now: evictable, being unwatched
    ticks(node, dict.fromkeys(flood[10:], 2.0))
    assert set(node.engine.prices) == set(flood[10:])
    await node.store.flushed()
    await poll_until_async(lambda: redis_prices(node), lambda got: got == set(flood[10:]))
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert set(again.engine.prices) == set(flood[10:])
    await again.stop()


@pytest.mark.parametrize("source", ["postgres", "stream"])
async def test_a_recreated_agent_starts_empty_after_every_restart(
    tmp_path, store_servers, namespace, source
):
    """Issue 17 item 1 through the store: an agent deleted and created again with the same id
    starts with no balance, positions or trades — after one restart and after the next, whether
    recovery reads the deletion from Postgres (written behind, stream trimmed) or the stream."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    e, rt = node.engine, node.runtime
    if source == "stream":
        await node.store.pause_writer()
    rt.apply(e.create_agent, "own1", "paper", config_from_builtins({}), "SOL", None, "own1")
    rt.apply(e.deposit, "own1", "SOL", 5 * 10**9)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0})
    rt.apply(e.on_signal, signal(TOKENS[0], client_id="own1-buy"))
    await settle(node)
    (p,) = positions_with(node, agent_id="own1", status="open")
    rt.apply(e.close_position, p.id, 100.0)
    await settle(node)
    assert e.trades["own1"] and e.ledger.balance("own1", "SOL").total > 0
    rt.apply(e.delete_agent, "own1")
    rt.apply(e.create_agent, "own1", "paper", config_from_builtins({}), "SOL", None, "own1")
    await node.store.flushed()
    if source == "postgres":
        assert await node.store.writer.drain(10)
        assert await node.store.redis.xlen(node.store.keys.stream) == 0
    await node.stop()

    for _restart in range(2):
        again = await StoreNode(tmp_path, store_servers, namespace).start()
        eng = again.engine
        assert eng.ledger.balance("own1", "SOL").total == 0
        assert not eng.trades["own1"] and not eng.agent_positions["own1"]
        assert not [q for q in eng.positions.values() if q.agent_id == "own1"]
        await again.stop()


async def test_a_recorded_swap_survives_a_crash_in_redis_and_in_postgres(
    tmp_path, store_servers, namespace
):
    """The signed swap of an order in flight (SwapSubmitted) comes back with the order after a
    crash, from Redis, and from Postgres alone once the writer drained: a restart can resolve
    that signature instead of signing another swap."""
    from tradingd.engine.model import SwapSubmission

    node = await StoreNode(tmp_path, store_servers, namespace, venue=HeldVenue()).start()
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    rt.apply(e.deposit, "alpha", "SOL", 10**10)
    ticks(node, {SOL_MINT: 150.0, TOKENS[0]: 1.0})
    rt.apply(e.on_signal, signal(TOKENS[0], client_id="swap"))
    (order_id,) = e.orders
    swap = SwapSubmission(signature="5" * 88, last_valid_block_height=302_500_150,
                          transaction="AQID", slippage_bps=150, in_amount=496_955_720,
                          quoted_out=745_433_580_000, min_out=738_000_000_000, attempt=2,
                          signed_at=wall_clock_ms(), prior_fees=5_000)  # fmt: skip
    rt.apply(e.on_swap_submitted, order_id, swap)
    await node.store.flushed()
    assert await node.store.writer.drain(10)
    await node.crash()

    # Connected before the next node starts: its crash leaves its writer's transaction open (a
    # kill -9 in-process), and connecting (schema checks) would wait behind it.
    conn = await pg.connect(store_servers.database_url, namespace)
    again = await StoreNode(tmp_path, store_servers, namespace, venue=HeldVenue()).start()
    assert again.engine.orders[order_id].swap == swap
    await again.crash()
    async with asyncio.timeout(30):
        (restored,) = (await postgres_only(conn)).orders
    await conn.close()
    assert restored.id == order_id and restored.swap == swap


async def test_a_store_task_that_swallows_its_cancel_does_not_hang_the_shutdown(
    tmp_path, store_servers, namespace
):
    """A store task whose cancel is swallowed (redis-py can turn the cancel of a command in
    flight into a connection error, which a broad `except` then eats: a CI run hung on it) is
    waited for at most TASK_STOP_TIMEOUT_S at close, then left: the shutdown ends."""
    import asyncio
    import time

    from tradingd.adapters.store import persistent

    node = await StoreNode(tmp_path, store_servers, namespace).start()
    cancels: list[int] = []
    done = asyncio.Event()

    async def stubborn() -> None:
        for _ in range(1_000):  # 10 s at most: past the shutdown's bound, then it ends
            if done.is_set():
                return
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancels.append(1)  # swallowed, as a broad except would

    node.store._spawn(stubborn(), "stubborn")
    started = time.monotonic()
    await node.stop()
    elapsed = time.monotonic() - started
    done.set()
    assert cancels and elapsed < persistent.TASK_STOP_TIMEOUT_S + 2, elapsed
