"""A record Postgres refuses never stalls the write-behind: poison entries put straight into the
stream (past every validation) land in `dead_letters` with their error, an alert goes out, the
metric counts them, and every other entry of the same batch and after it reaches Postgres."""

from __future__ import annotations

import asyncio

import msgspec
from store_harness import StoreNode, postgres_state, state_of
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.records import Entry
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine import events as ev
from tradingd.engine.config import config_from_builtins

DRAIN_S = 15.0


async def test_poison_entries_are_dead_lettered_and_the_rest_drains(
    tmp_path, store_servers, namespace
):
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    alerts: list[ev.Alert] = []
    node.runtime.event_subscribers.append(
        lambda evs: alerts.extend(e for e in evs if isinstance(e, ev.Alert))
    )
    e, rt, store = node.engine, node.runtime, node.store
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    await store.flushed()
    assert await store.writer.drain(DRAIN_S)

    await store.pause_writer()  # what follows reaches the writer as one batch
    rt.apply(e.deposit, "alpha", "SOL", 10**9)
    now = wall_clock_ms()
    poison = [
        # the attack: a NUL in a name (jsonb refuses \u0000)
        Entry(
            store.ids.next(),
            "AgentRenamed",
            "alpha",
            "alpha",
            msgspec.json.encode(ev.AgentRenamed(ts=now, agent_id="alpha", name="evil\x00")),
        ),
        # a NUL in a text column of the stage table
        Entry(
            store.ids.next(),
            "AgentPaused",
            "alpha\x00",
            "alpha",
            msgspec.json.encode(ev.AgentPaused(ts=now, agent_id="alpha")),
        ),
    ]
    store.write_through.enqueue(poison)
    rt.apply(e.deposit, "alpha", "SOL", 2 * 10**9)
    rt.apply(e.create_agent, "beta", "paper", config_from_builtins({}), "SOL", None, "beta")
    await store.flushed()
    store.resume_writer()

    assert await store.writer.drain(DRAIN_S), "the write-behind stalled on the poison entries"
    assert await postgres_state(store_servers.database_url, namespace) == state_of(node)

    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        rows = await conn.fetch(
            "SELECT id, type, key, payload, error, sqlstate FROM dead_letters ORDER BY id"
        )
        kept = await conn.fetchval(
            "SELECT count(*) FROM events WHERE id = ANY($1)", [p.id for p in poison]
        )
    finally:
        await conn.close()
    assert [r["id"] for r in rows] == [p.id for p in poison]
    assert [bytes(r["payload"]) for r in rows] == [p.payload for p in poison]
    assert rows[1]["key"] == "alpha\\u0000"
    assert all(r["sqlstate"].startswith("22") and r["error"] for r in rows)
    assert kept == 0

    for _ in range(50):  # the status loop refreshes lag once a second
        if node.components["postgres"].get("lag_entries") == 0:
            break
        await asyncio.sleep(0.1)
    assert node.components["postgres"]["status"] == "ok"
    assert node.components["postgres"]["lag_entries"] == 0
    dead = [a for a in alerts if a.code == "write_behind_dead_letter"]
    assert sum(a.details["count"] for a in dead) == 2
    assert store.dead_letters == 2
    await node.stop()


async def test_dead_letters_survive_a_restart_and_are_not_retried(
    tmp_path, store_servers, namespace
):
    """Entries refused before a crash are re-read from the stream after it and salvaged again
    (idempotently): the new process drains too."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    store = node.store
    await store.pause_writer()
    poison = Entry(
        store.ids.next(),
        "AgentRenamed",
        "alpha",
        "alpha",
        msgspec.json.encode(ev.AgentRenamed(ts=wall_clock_ms(), agent_id="alpha", name="x\x00")),
    )
    store.write_through.enqueue([poison])
    await store.flushed()
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert await again.store.writer.drain(DRAIN_S)
    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        assert await conn.fetchval("SELECT array_agg(id) FROM dead_letters") == [poison.id]
    finally:
        await conn.close()
    await again.stop()


async def test_an_entry_refused_in_the_entity_upsert_step_is_dead_lettered_too(
    tmp_path, store_servers, namespace
):
    """Stage and events insert accept it; the agent-config upsert cannot cast its
    `apply_to_open`. The failed transaction must be rolled back so the batch can be salvaged
    (it was kept open: the salvage then failed as "transaction in error state", taken for an
    outage, and the stream grew for good; a tester's finding)."""
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    e, rt, store = node.engine, node.runtime, node.store
    rt.apply(e.create_agent, "alpha", "paper", config_from_builtins({}), "SOL", None, "alpha")
    await store.flushed()
    assert await store.writer.drain(DRAIN_S)

    await store.pause_writer()
    rt.apply(e.deposit, "alpha", "SOL", 10**9)
    now = wall_clock_ms()
    poison = Entry(
        store.ids.next(),
        "AgentConfigUpdated",
        "alpha",
        "alpha",
        b'{"ts":%d,"agent_id":"alpha","config":{},"apply_to_open":"maybe"}' % now,
    )
    store.write_through.enqueue([poison])
    rt.apply(e.deposit, "alpha", "SOL", 2 * 10**9)
    await store.flushed()
    store.resume_writer()

    assert await store.writer.drain(DRAIN_S), "the write-behind stalled on the poison entry"
    assert await postgres_state(store_servers.database_url, namespace) == state_of(node)
    conn = await pg.connect(store_servers.database_url, namespace)
    try:
        dead = await conn.fetch("SELECT id, sqlstate FROM dead_letters")
    finally:
        await conn.close()
    assert [r["id"] for r in dead] == [poison.id]
    assert dead[0]["sqlstate"].startswith("22")
    assert node.components["postgres"]["status"] == "ok"
    await node.stop()
