"""Resting entries (issue 15) through the store against real Redis and Postgres: a resting buy and
its reserved quote come back after a crash from the Redis stream alone (writer behind), from
Postgres alone (stream drained), and from the spill file; one that ended (triggered, expired,
cancelled, its agent deleted) does not; and a recovered entry executes when a tick meets it,
its reservation moving to the order."""

from __future__ import annotations

import asyncio
import os
import signal as os_signal
from typing import Literal

import pytest
from store_harness import TOKENS, StoreNode, check_invariants, postgres_state, state_of
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.embedded import EmbeddedRedis
from tradingd.adapters.store.records import decoder, to_entries
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import EntryCondition, Fill, Order, Signal, Tick

DEPOSIT = 10 * 10**9
TOKEN = TOKENS[0]
TEN_MINUTES = 600_000


class HeldVenue:
    """Accepts orders and never answers: they stay in flight until the process 'dies'."""

    name = "paper"
    in_process = False

    async def execute(self, order: Order) -> Fill:
        await asyncio.Event().wait()
        raise AssertionError

    async def reconcile(self) -> list[Fill]:
        return []


async def settle(node: StoreNode) -> None:
    await node.runtime.wait_orders(5)
    await node.store.flushed()


class StepClock:
    """Wall clock plus an offset a test moves forward (no sleeping past an expiry)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return wall_clock_ms() + self.offset


def resting_signal(
    clock: StepClock | None,
    n: int,
    price: float,
    token: str = TOKEN,
    expires_in: int = TEN_MINUTES,
    kind: Literal["limit", "stop"] = "limit",
) -> Signal:
    now = clock() if clock else wall_clock_ms()
    return Signal(
        id=f"rest-{n}",
        token=token,
        received_at=now,
        expires_at=now + expires_in,
        client_id=f"rest-{n}",
        entry=EntryCondition(type=kind, price_usd=price),
    )


def tick(node: StoreNode, prices: dict[str, float]) -> None:
    now = node.engine.clock()
    node.runtime.push_ticks(
        Tick(t, p, now, decimals=9 if t == SOL_MINT else 6) for t, p in prices.items()
    )


def with_agent(node: StoreNode, agent: str = "alpha") -> None:
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, agent, "paper", config_from_builtins({}), "SOL", None, agent)
    rt.apply(e.deposit, agent, "SOL", DEPOSIT)
    tick(node, {SOL_MINT: 150.0, TOKEN: 1.0, TOKENS[1]: 2.0})


def rest(node: StoreNode, n: int, price: float, **kw: object) -> str:
    """Rest a buy (a limit at `price` unless kind="stop") for every agent; returns the signal
    id."""
    clock = node.engine.clock if isinstance(node.engine.clock, StepClock) else None
    record, _ = node.runtime.submit_signal(resting_signal(clock, n, price, **kw))  # type: ignore[arg-type]
    assert {x.status for x in record.executions.values()} == {"resting"}, record.executions
    return record.signal.id


def reserved(node: StoreNode, agent: str = "alpha") -> int:
    return node.engine.ledger.balance(agent, "SOL").reserved


def resting_amount(node: StoreNode, agent: str = "alpha") -> int:
    return sum(e.amount for e in node.engine.entries.values() if e.agent_id == agent)


async def postgres_entries(database_url: str, namespace: str) -> dict[str, tuple]:
    conn = await pg.connect(database_url, namespace)
    try:
        rows = await conn.fetch(
            "SELECT id, status, reason, order_id, doc IS NOT NULL AS has_doc FROM resting_entries"
        )
    finally:
        await conn.close()
    return {r["id"]: (r["status"], r["reason"], r["order_id"], r["has_doc"]) for r in rows}


async def test_a_resting_entry_and_its_reservation_recover_from_redis_with_the_writer_behind(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await node.store.pause_writer()
    with_agent(node)
    rest(node, 1, 0.8)
    rest(node, 2, 2.5, token=TOKENS[1], kind="stop")  # a breakout buy above 2.0
    await node.store.flushed()
    before = state_of(node)
    assert len(before["entries"]) == 2 and reserved(node) == resting_amount(node) > 0
    conn = await pg.connect(store_servers.database_url, namespace)
    assert await conn.fetchval("SELECT count(*) FROM resting_entries") == 0  # not written behind
    await conn.close()
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    assert reserved(again) == resting_amount(again) == resting_amount(node)
    check_invariants(again.engine, {"alpha": DEPOSIT})
    await again.stop()


async def test_a_resting_entry_recovers_from_postgres_alone_once_the_stream_is_drained(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with_agent(node)
    rest(node, 1, 0.8)
    await node.store.flushed()
    assert await node.store.writer.drain(10)
    assert await node.store.redis.xlen(node.store.keys.stream) == 0
    before = state_of(node)
    assert await postgres_state(store_servers.database_url, namespace) == before
    (entry_id,) = node.engine.entries
    assert await postgres_entries(store_servers.database_url, namespace) == {
        entry_id: ("resting", None, None, True)
    }
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert state_of(again) == before
    assert reserved(again) == resting_amount(again) > 0
    await again.stop()


async def test_the_redis_entries_hash_holds_what_rests_and_drops_what_ended(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with_agent(node)
    rest(node, 1, 0.8)
    cancelled = rest(node, 2, 0.7)
    node.runtime.cancel_resting(cancelled)
    await node.store.flushed()
    r, keys = node.store.redis, node.store.keys
    held = {
        k.decode(): decoder.decode(v).entry
        for k, v in (await r.hgetall(keys.hash("entries"))).items()
    }
    assert held == node.engine.entries and len(held) == 1
    await node.stop()


async def test_a_resting_entry_only_in_the_spill_file_recovers(tmp_path, store_servers, namespace):
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    try:
        node = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
        with_agent(node)
        await node.store.flushed()
        os.kill(own.pid, os_signal.SIGKILL)
        # Nothing has noticed yet: the buy rests, and its flush finds Redis gone and spills.
        rest(node, 1, 0.8)
        await node.store.flushed(timeout=5)
        assert node.store.write_through.spill.count > 0
        before = state_of(node)
        assert len(before["entries"]) == 1
        await node.crash()

        own.start()
        again = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
        assert state_of(again) == before
        assert reserved(again) == resting_amount(again) > 0
        await again.stop()
    finally:
        own.stop()


async def test_an_entry_cancelled_while_redis_is_down_stays_cancelled(
    tmp_path, store_servers, namespace
):
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    try:
        node = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
        with_agent(node)
        sid = rest(node, 1, 0.8)
        await node.store.flushed()
        os.kill(own.pid, os_signal.SIGKILL)
        assert len(node.runtime.cancel_resting(sid)) == 1
        await node.store.flushed(timeout=5)
        assert node.store.write_through.spill.count > 0
        await node.crash()

        own.start()
        again = await StoreNode(tmp_path, store_servers, namespace, redis_url=url).start()
        assert not again.engine.entries and reserved(again) == 0
        assert again.engine.signals[sid].executions["alpha"].reason == "cancelled"
        await again.stop()
    finally:
        own.stop()


def end_by(node: StoreNode, outcome: str, sid: str, clock: StepClock) -> None:
    if outcome == "triggered":
        tick(node, {TOKEN: 0.75})
    elif outcome == "expired":
        clock.offset += TEN_MINUTES + 1_000
        node.runtime.clock_turn()
    else:
        assert len(node.runtime.cancel_resting(sid)) == 1


@pytest.mark.parametrize("source", ["stream", "postgres"])
@pytest.mark.parametrize("outcome", ["triggered", "expired", "cancelled"])
async def test_an_ended_entry_does_not_come_back(
    tmp_path, store_servers, namespace, outcome, source
):
    clock = StepClock()
    node = StoreNode(tmp_path, store_servers, namespace, clock=clock)
    node.runtime.venues["paper"] = PaperVenue(node.engine.price_usd, clock)
    await node.start()
    if source == "stream":
        await node.store.pause_writer()
    with_agent(node)
    sid = rest(node, 1, 0.8)
    (entry_id,) = node.engine.entries
    end_by(node, outcome, sid, clock)
    await settle(node)
    assert not node.engine.entries
    if source == "postgres":
        assert await node.store.writer.drain(10)
        status, reason, order_id, has_doc = (
            await postgres_entries(store_servers.database_url, namespace)
        )[entry_id]
        assert (status, has_doc) == (outcome, True)  # kept as history, with its document
        assert (order_id is not None) == (outcome == "triggered")
        assert (
            reason == {"triggered": None, "expired": "expired", "cancelled": "cancelled"}[outcome]
        )
    before = state_of(node)
    await node.crash()

    again = StoreNode(tmp_path, store_servers, namespace, clock=clock)
    await again.start()
    assert not again.engine.entries
    assert state_of(again) == before
    check_invariants(again.engine, {"alpha": DEPOSIT})
    expect = (
        DEPOSIT
        if outcome != "triggered"
        else DEPOSIT - again.engine.trades["alpha"][0].quote_amount
    )
    assert again.engine.ledger.balance("alpha", "SOL").total == expect
    assert reserved(again) == 0
    await again.stop()


@pytest.mark.parametrize("source", ["stream", "postgres"])
async def test_a_deleted_agents_entries_do_not_come_back(
    tmp_path, store_servers, namespace, source
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    if source == "stream":
        await node.store.pause_writer()
    with_agent(node, "own1")
    rest(node, 1, 0.8)
    e, rt = node.engine, node.runtime
    rt.apply(e.delete_agent, "own1")
    rt.apply(e.create_agent, "own1", "paper", config_from_builtins({}), "SOL", None, "own1")
    await node.store.flushed()
    if source == "postgres":
        assert await node.store.writer.drain(10)
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert not again.engine.entries
    assert again.engine.ledger.balance("own1", "SOL").reserved == 0
    await again.stop()


@pytest.mark.parametrize("source", ["stream", "postgres"])
async def test_a_recovered_entry_executes_when_a_tick_meets_it(
    tmp_path, store_servers, namespace, source
):
    """After recovery a tick at the limit triggers the entry: the order takes its reservation
    (held in flight here), the entry that the tick does not meet keeps its own:
    reserved == resting + in flight."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    if source == "stream":
        await node.store.pause_writer()
    with_agent(node)
    rest(node, 1, 0.8)
    rest(node, 2, 0.5)
    await node.store.flushed()
    if source == "postgres":
        assert await node.store.writer.drain(10)
    amounts = {e.price_usd: e.amount for e in node.engine.entries.values()}
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace, venue=HeldVenue()).start()
    eng = again.engine
    assert len(eng.entries) == 2
    tick(again, {SOL_MINT: 150.0, TOKEN: 0.8})
    (order,) = eng.orders.values()
    (still,) = eng.entries.values()
    assert still.price_usd == 0.5 and order.amount_in == amounts[0.8]
    assert order.limit_price_usd == 0.8
    assert reserved(again) == order.amount_in + still.amount
    assert eng.signals["rest-1"].executions["alpha"].status == "pending"
    await again.store.flushed()
    await again.crash()

    # and the split survives one more crash: the order in flight, the other entry resting
    third = await StoreNode(tmp_path, store_servers, namespace).start()
    await settle(third)
    assert [t.side for t in third.engine.trades["alpha"]] == ["buy"]
    assert list(third.engine.entries) == [still.id]
    check_invariants(third.engine, {"alpha": DEPOSIT})
    await third.stop()


async def test_a_poison_entry_record_is_dead_lettered_and_the_resting_entries_drain(
    tmp_path, store_servers, namespace
):
    """An EntryEnded Postgres refuses (a NUL in its reason) shares a batch with real entries:
    it goes to dead_letters, the others reach resting_entries, and Postgres alone recovers
    exactly what rests."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with_agent(node)
    await node.store.flushed()
    assert await node.store.writer.drain(10)
    store = node.store
    await store.pause_writer()  # what follows reaches the writer as one batch
    rest(node, 1, 0.8)
    cancelled = rest(node, 2, 0.7)
    node.runtime.cancel_resting(cancelled)
    poison = ev.EntryEnded(
        ts=node.engine.clock(),
        entry_id="ent_poison",
        agent_id="alpha",
        signal_id="rest-x",
        token=TOKEN,
        outcome="cancelled",
        reason="evil\x00",
    )
    (bad,) = to_entries([poison], store.ids)
    store.write_through.enqueue([bad])
    rest(node, 3, 0.6)
    await store.flushed()
    store.resume_writer()

    assert await store.writer.drain(15), "the write-behind stalled on the poison entry"
    assert await postgres_state(store_servers.database_url, namespace) == state_of(node)
    rows = await postgres_entries(store_servers.database_url, namespace)
    assert "ent_poison" not in rows
    assert sorted(s for s, *_ in rows.values()) == ["cancelled", "resting", "resting"]
    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        assert await conn.fetchval("SELECT array_agg(id) FROM dead_letters") == [bad.id]
    finally:
        await conn.close()
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert len(again.engine.entries) == 2 and reserved(again) == resting_amount(again)
    await again.stop()


async def test_a_resting_entrys_token_decimals_recover_when_its_signal_left_the_window(
    tmp_path, store_servers, namespace
):
    """Only the signal named the token's decimals; recovery loads the dedupe window's signals,
    and this one is outside it: the decimals still come back with the entry (as the buy it
    places needs them)."""
    from tradingd.adapters.store.recovery import StateBook

    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with_agent(node)
    unpriced = TOKENS[2]
    now = wall_clock_ms()
    sig = Signal(
        id="rest-dec",
        token=unpriced,
        received_at=now,
        expires_at=now + TEN_MINUTES,
        decimals=8,
        entry=EntryCondition(type="limit", price_usd=0.5),
    )
    record, _ = node.runtime.submit_signal(sig)
    assert record.executions["alpha"].status == "resting"
    await node.store.flushed()
    assert await node.store.writer.drain(10)
    await node.stop()

    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        past_every_signal = pg.RecoveryLimits(
            closed_positions=10, trades=10, signals=10, signals_after=now + 1
        )
        book = StateBook()
        book.load_rows(await pg.load_rows(conn, past_every_signal))
    finally:
        await conn.close()
    snap = book.snapshot([], 0, past_every_signal)
    assert not snap.signals and [e.signal_id for e in snap.entries] == ["rest-dec"]
    assert snap.decimals[unpriced] == 8


async def test_a_recovered_entry_can_be_cancelled_and_its_quote_is_released(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    with_agent(node)
    sid = rest(node, 1, 0.8)
    await node.store.flushed()
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    (entry,) = again.runtime.cancel_resting(sid)
    assert entry.signal_id == sid and not again.engine.entries and reserved(again) == 0
    await again.store.flushed()
    await again.crash()

    third = await StoreNode(tmp_path, store_servers, namespace).start()
    assert not third.engine.entries and reserved(third) == 0
    assert third.engine.signals[sid].executions["alpha"].reason == "cancelled"
    await third.stop()
