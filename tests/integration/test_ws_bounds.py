"""WebSocket bounds per connection: a client repeating subscribe/unsubscribe without reading is
cut with `slow_consumer` / 1013 and a gap-free seq while the bytes queued for it stay under
`[ws] max_queue_bytes`; subscribes beyond `subscribes_per_s` are refused with `rate_limited`;
subscribes inside `snapshot_interval_ms` are answered by one snapshot."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_ws_slow_consumer import SMALL_BUFFER, RawWs
from test_ws_stack import Stack
from tradingd.adapters.feeds.synthetic import demo_mint

MAX_QUEUE_BYTES = 128 * 1024
PAIRS = 2000


def tight_route(stack: Stack) -> None:
    """`/v1/ws-tight`: the server side's send buffers shrunk, so a client that does not read
    stalls the writer after a few KiB instead of after the kernel's megabytes."""

    async def tight(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket")  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        request.transport.set_write_buffer_limits(high=SMALL_BUFFER)  # type: ignore[union-attr]
        return await stack.hub.handle(request)

    stack.app.router.add_get("/v1/ws-tight", tight)


@pytest.fixture
async def big_state() -> AsyncIterator[Stack]:
    """300 priced tokens and 20 agents: each snapshot is tens of KiB."""
    stack = Stack(max_queue_bytes=MAX_QUEUE_BYTES)
    tight_route(stack)
    await stack.start()
    for i in range(20):
        stack.create_agent(f"agt-{i}")
    stack.prices(*[(demo_mint(f"BIG-{i}"), 1.0 + i) for i in range(300)])
    yield stack
    await stack.stop()


async def test_subscribe_flood_without_reading_is_cut_gap_free_after_a_slow_consumer_alert(
    big_state: Stack,
) -> None:
    stack = big_state
    assert stack.client is not None and stack.client.server.port is not None
    raw = await RawWs.connect(stack.client.server.port, "/v1/ws-tight", stack.read_key)
    for _ in range(PAIRS):
        raw.send_json({"op": "subscribe", "channels": ["prices", "agents"]})
        raw.send_json({"op": "unsubscribe"})
    await raw.writer.drain()
    try:
        messages, code = await raw.read_to_close()
    finally:
        raw.close()
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    if code != 1000:  # the contract: gap-free, or a 1013 close announced by the alert
        assert code == 1013
        assert messages[-1]["type"] == "alert"
        assert messages[-1]["data"]["code"] == "slow_consumer"
    assert 0 < stack.hub.peak_queued_bytes <= MAX_QUEUE_BYTES
    assert stack.hub.subscriptions.snapshots < 2 * 20  # never one per subscribe


async def test_subscribes_beyond_the_rate_are_refused_with_rate_limited() -> None:
    stack = await Stack(subscribes_per_s=0.01, subscribe_burst=2, snapshot_interval_ms=0).start()
    try:
        reader = await stack.connect()
        await reader.subscribe(["agents"])
        await reader.subscribe(["alerts"])
        await reader.ws.send_json({"op": "subscribe", "channels": ["prices"]})
        refused = await reader.recv()
        assert refused["type"] == "error"
        assert refused["data"]["code"] == "rate_limited"
        assert refused["data"]["details"]["retry_after_ms"] > 0
        (client,) = stack.hub.clients
        assert set(client.subs) == {"agents", "alerts"}  # the refused one changed nothing
    finally:
        await stack.stop()


async def test_subscribes_inside_the_snapshot_interval_share_one_snapshot() -> None:
    stack = await Stack(snapshot_interval_ms=2000).start()
    try:
        reader = await stack.connect()
        first = await reader.subscribe(["agents"])
        assert first["data"]["subscription"]["channels"] == ["agents"]
        await reader.ws.send_json({"op": "subscribe", "channels": ["positions"]})
        await reader.ws.send_json({"op": "subscribe", "channels": ["trades"]})
        await reader.ws.send_json({"op": "ping"})
        pong = await reader.recv()
        assert pong["type"] == "pong"  # no snapshot yet: the interval has not ended
        merged = await reader.recv()
        assert merged["type"] == "snapshot"
        assert merged["data"]["subscription"]["channels"] == ["positions", "trades"]
        assert stack.hub.subscriptions.snapshots == 2
    finally:
        await stack.stop()
