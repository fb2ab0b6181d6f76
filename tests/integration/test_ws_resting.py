"""Resting entries on the WebSocket `/v1/ws` of a real in-process Daemon (the whole control
port): `entry` messages on the `signals` channel when a buy rests and when it ends, filtered by
agents and tokens, and the snapshot's `entries`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from http_harness import ADMIN, SOL, TOKEN, TOKEN2, Api, serve
from test_ws_stack import Reader

from tests.polling import poll_until_async

ENTRY_FIELDS = {
    "id",
    "agent_id",
    "signal_id",
    "token",
    "symbol",
    "type",
    "price_usd",
    "amount",
    "quote",
    "quote_decimals",
    "created_at",
    "expires_at",
}


@asynccontextmanager
async def socket(api: Api) -> AsyncIterator[Reader]:
    ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        yield Reader(ws)
    finally:
        await ws.close()


async def rest(api: Api, token: str = TOKEN, price: float = 0.9) -> str:
    """A limit buy at `price` resting for every agent; its signal id."""
    body = {
        "token": token,
        "entry": {"type": "limit", "price_usd": price},
        "expires_at": api.daemon.runtime.clock() + 3_600_000,
    }
    status, doc = await api.call("POST", "/v1/signals", body)
    assert status == 202, doc
    return str(doc["signal_id"])


def entry_messages(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["data"] for d in got if d["type"] == "entry"]


async def test_a_resting_buy_streams_a_rested_entry_message(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await client.subscribe(["signals"])
        signal_id = await rest(api)
        got = await client.until(lambda d: d["type"] == "entry")
        (msg,) = entry_messages(got)
        assert (msg["outcome"], msg["reason"], msg["order_id"]) == ("rested", "", None)
        assert set(msg["entry"]) == ENTRY_FIELDS
        assert (msg["entry"]["agent_id"], msg["entry"]["signal_id"]) == (agent_id, signal_id)
        listed = await api.ok("GET", f"/v1/agents/{agent_id}/entries")
        assert listed["items"] == [msg["entry"]]  # the REST entry, field for field


async def test_a_triggered_entry_streams_its_order(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await client.subscribe(["signals"])
        signal_id = await rest(api)
        await api.prices((TOKEN, 0.85))
        await api.settle()
        got = await client.until(
            lambda d: d["type"] == "entry" and d["data"]["outcome"] != "rested"
        )
        ended = entry_messages(got)[-1]
        assert ended["outcome"] == "triggered" and ended["order_id"]
        assert ended["price_usd"] == 0.85 and ended["entry"]["signal_id"] == signal_id
        record = await api.ok("GET", f"/v1/signals/{signal_id}")
        assert record["executions"][0]["order_id"] == ended["order_id"]


async def test_a_cancelled_entry_streams_a_cancelled_message(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        signal_id = await rest(api)
        await client.subscribe(["signals"])
        await api.ok("DELETE", f"/v1/signals/{signal_id}")
        got = await client.until(lambda d: d["type"] == "entry")
        (msg,) = entry_messages(got)
        assert (msg["outcome"], msg["reason"]) == ("cancelled", "cancelled")
        assert msg["entry"]["signal_id"] == signal_id


async def test_an_expired_entry_streams_an_expired_message(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await client.subscribe(["signals"])
        body = {
            "token": TOKEN,
            "entry": {"type": "limit", "price_usd": 0.5},
            "expires_at": api.daemon.runtime.clock() + 200,
        }
        signal_id = (await api.ok("POST", "/v1/signals", body))["signal_id"]

        async def expired() -> bool:
            await api.prices((TOKEN, 1.0))  # a tick past the expiry ends it
            doc = await api.ok("GET", f"/v1/signals/{signal_id}")
            return bool(doc["executions"][0]["status"] == "skipped")

        await poll_until_async(expired, tries=200, interval_s=0.02, what="entry expiry")
        got = await client.until(
            lambda d: d["type"] == "entry" and d["data"]["outcome"] != "rested"
        )
        ended = entry_messages(got)[-1]
        assert (ended["outcome"], ended["reason"], ended["order_id"]) == (
            "expired",
            "expired",
            None,
        )


async def test_an_entry_ended_by_deleting_its_agent_is_streamed(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await rest(api)
        await client.subscribe(["signals"])
        await api.ok("DELETE", f"/v1/agents/{agent_id}")
        got = await client.until(lambda d: d["type"] == "entry")
        (msg,) = entry_messages(got)
        assert (msg["outcome"], msg["reason"]) == ("cancelled", "agent_deleted")
        assert msg["entry"]["quote_decimals"] == 9  # known without the agent


async def test_snapshot_lists_the_resting_entries_of_the_subscription(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        agent_id = await api.agent({"limits": {"max_positions_per_token": 5}})
        await api.prices((SOL, 150.0), (TOKEN, 1.0), (TOKEN2, 1.0))
        on_token = await rest(api, TOKEN)
        await rest(api, TOKEN2)
        snap = await client.subscribe(["signals"], tokens=[TOKEN])
        entries = snap["data"]["entries"]
        assert [e["signal_id"] for e in entries] == [on_token]
        assert entries[0]["agent_id"] == agent_id and set(entries[0]) == ENTRY_FIELDS


async def test_snapshot_without_resting_entries_has_an_empty_list(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        snap = await client.subscribe(["positions"])
        assert snap["data"]["entries"] == []


async def test_entry_messages_follow_the_token_filter(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0), (TOKEN2, 1.0))
        await client.subscribe(["signals"], tokens=[TOKEN2])
        await rest(api, TOKEN)  # another token: not shown
        other = await rest(api, TOKEN2)
        got = await client.until(lambda d: d["type"] == "entry")
        assert [m["entry"]["signal_id"] for m in entry_messages(got)] == [other]


async def test_entry_messages_follow_the_agent_filter(tmp_path):
    async with serve(tmp_path) as api, socket(api) as client:
        first = await api.agent()
        second = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await client.subscribe(["signals"], agents=[second])
        await rest(api)
        got = await client.until(lambda d: d["type"] == "entry")
        await client.quiet(0.2)
        agents = [m["entry"]["agent_id"] for m in entry_messages(client.seen)]
        assert agents == [second] and first not in agents
        assert got[-1]["data"]["entry"]["agent_id"] == second
