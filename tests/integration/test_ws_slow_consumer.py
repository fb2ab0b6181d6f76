"""Slow WebSocket consumers: a client that stops reading is closed with `slow_consumer` / 1013,
its seq gap-free up to that alert, while another keeps receiving every message in order; prices for a lagging client are folded
into one pending batch instead of filling its queue.

The stalled client is a raw socket with a tiny receive buffer that simply stops reading; its
route shrinks the server side's send buffers too, so back-pressure shows after a few KiB."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from test_ws_stack import Stack
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.config import config_from_builtins

from tests.polling import poll_until_async

SMALL_BUFFER = 4096
TEXT, CLOSE = 0x1, 0x8


class RawWs:
    """Just enough RFC 6455 to stall on purpose and read the backlog afterwards."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, key: str) -> RawWs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def send_json(self, obj: Any) -> None:
        self.send(TEXT, msgspec.json.encode(obj))

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), 5)

    async def read_to_close(self, limit: int = 100_000) -> tuple[list[dict[str, Any]], int]:
        """All text messages up to the close frame, and the close code."""
        messages: list[dict[str, Any]] = []
        for _ in range(limit):
            opcode, payload = await self.frame()
            if opcode == TEXT:
                messages.append(msgspec.json.decode(payload))
            elif opcode == CLOSE:
                self.send(CLOSE, payload[:2])
                return messages, struct.unpack("!H", payload[:2])[0]
        raise AssertionError("no close frame")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    stack = Stack(queue_size=32, max_lag_ms=300, price_interval_ms=10)

    async def tight(request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket")  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        request.transport.set_write_buffer_limits(high=SMALL_BUFFER)  # type: ignore[union-attr]
        return await stack.hub.handle(request)

    stack.app.router.add_get("/v1/ws-tight", tight)
    await stack.start()
    yield stack
    await stack.stop()


async def stalled_client(stack: Stack, channels: list[str]) -> RawWs:
    assert stack.client is not None and stack.client.server.port is not None
    raw = await RawWs.connect(stack.client.server.port, "/v1/ws-tight", stack.read_key)
    raw.send_json({"op": "subscribe", "channels": channels})
    return raw


async def test_stalled_client_is_closed_as_slow_consumer_while_another_gets_everything(
    stack: Stack,
) -> None:
    stack.create_agent("agt-a")
    good = await stack.connect()
    await good.subscribe(["agents"])
    raw = await stalled_client(stack, ["agents"])
    await poll_until_async(lambda: len(stack.hub.clients), lambda n: n == 2, what="clients")
    n = 400
    config = config_from_builtins({"signals": {"types": [f"type-{i}" for i in range(20)]}})

    async def flood() -> None:
        for _ in range(n):
            stack.runtime.apply(stack.engine.update_config, "agt-a", config)
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    received = [await good.recv_type("agent") for _ in range(n)]  # the Reader checks seq: no gap
    await flooding
    assert all(m["data"]["event"] == "config_updated" for m in received)
    await poll_until_async(lambda: stack.hub.slow_consumers, lambda n: n == 1, what="cut")
    assert len(stack.hub.clients) == 1

    messages, code = await raw.read_to_close()
    raw.close()
    assert code == 1013
    assert messages[-1]["type"] == "alert" and messages[-1]["data"]["code"] == "slow_consumer"
    assert messages[0]["type"] == "snapshot"
    assert len(messages) < n  # it was cut off, not served
    # what it was sent, the alert included, has no gap: the cut is announced, not hidden
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    await good.ws.send_json({"op": "ping"})
    assert (await good.recv_type("pong"))["seq"] == n + 2


async def test_lagging_client_gets_prices_folded_latest_per_token_not_queued(stack: Stack) -> None:
    tokens = [demo_mint(f"FOLD-{i}") for i in range(100)]
    raw = await stalled_client(stack, ["prices"])
    await poll_until_async(
        lambda: len(stack.hub.by_channel["prices"]), lambda n: n == 1, what="prices subscribers"
    )
    (client,) = stack.hub.clients
    outbox = client.outbox
    last: dict[str, float] = {}
    for round_ in range(60):  # ~10 KiB per batch: the socket stalls after a few
        stack.prices(*[(t, 1.0 + round_ + i / 1000) for i, t in enumerate(tokens)])
        last = {t: 1.0 + round_ + i / 1000 for i, t in enumerate(tokens)}
        # Each round waits for its own price flush to reach the client (taken by the writer, or
        # queued/folded while the socket is stalled), not for a guessed interval to pass.
        written = outbox.seq
        await poll_until_async(
            lambda: (outbox.seq, outbox.queue[-1].ticks if outbox.queue else None),
            lambda got, price=last[tokens[-1]], written=written: (
                got[0] > written
                or (
                    got[1] is not None
                    and (tick := got[1].get(tokens[-1])) is not None
                    and tick.price_usd == price
                )
            ),
            interval_s=0.001,
            what=f"round {round_} at the client",
        )
        assert len(outbox.queue) <= 1  # one pending batch at most, never a backlog
    assert stack.hub.slow_consumers == 0 and stack.hub.dropped == 0

    seen: dict[str, float] = {}
    seqs: list[int] = []
    for _ in range(1000):
        opcode, payload = await raw.frame()
        assert opcode == TEXT
        msg = msgspec.json.decode(payload)
        seqs.append(msg["seq"])
        if msg["type"] == "prices":
            seen.update({t["token"]: t["price_usd"] for t in msg["data"]["ticks"]})
        if seen == last:
            break
    raw.close()
    assert seen == last
    assert seqs == list(range(1, len(seqs) + 1))  # folded, never dropped: no gap
    assert len(seqs) < 60  # fewer messages than flushes: the folding happened
