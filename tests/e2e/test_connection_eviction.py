"""Attacks that fill `[http] max_connections` with connections that are past their first
request's headers, against the real `tradingd run` process: keep-alive connections idle between
requests, unauthenticated WebSockets in their auth window, and requests whose body trickles in.
At the cap each of them is evicted to admit a new connection, so `/health/live` keeps answering;
an authenticated WebSocket is not evicted. A body that does not arrive within
`[http] body_timeout_s` of its headers is answered 408 and its connection closed.

Every attack is bounded: ATTACKERS connections (1.5 times the cap) for about ATTACK_S seconds,
each reconnecting at most every RECONNECT_S; only 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from raw_conn import Conn, read_until_closed

CAP = 200
ATTACKERS = 300
RAMP_S = 3.0  # attackers connect before the first probe
PROBES = 10
PROBE_INTERVAL_S = 0.5
RECONNECT_S = 0.3
ANSWER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 2.0
KEEP_ALIVE_GET = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
WS_UPGRADE = (
    b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def slow_post_head(key: str | None, length: int = 60000) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST /v1/signals HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory, daemon_starter: Callable[..., Any]
) -> Iterator[Any]:
    config = f"[http]\nmax_connections = {CAP}\nbody_timeout_s = {BODY_TIMEOUT_S}\n"
    daemon = daemon_starter(tmp_path_factory.mktemp("capped"), config_text=config)
    yield daemon
    daemon.stop()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def probe(port: int) -> int | None:
    """GET /health/live on a fresh connection: the status, or None (reset, or no answer)."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                status, body = await read_response(reader)
            finally:
                writer.transport.abort()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None
    return status if json.loads(body) == {"status": "ok"} else -status


Behaviour = Callable[[Conn, asyncio.Event], Awaitable[None]]


async def attacker(port: int, behave: Behaviour, stop: asyncio.Event) -> None:
    """Connect, `behave` until the server closes or `stop`, reconnect: until `stop`."""
    while not stop.is_set():
        try:
            conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(RECONNECT_S)
            continue
        try:
            await behave(conn, stop)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            conn[1].transport.abort()
        await asyncio.sleep(RECONNECT_S)


async def probes_under_attack(daemon: Any, behave: Behaviour) -> list[int | None]:
    """ATTACKERS attackers for RAMP_S, then PROBES probes while they go on; then all stop."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(attacker(daemon.port, behave, stop)) for _ in range(ATTACKERS)]
    try:
        await asyncio.sleep(RAMP_S)
        statuses = []
        for _ in range(PROBES):
            statuses.append(await probe(daemon.port))
            await asyncio.sleep(PROBE_INTERVAL_S)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return statuses


def reached_cap(daemon: Any) -> bool:
    return any(line.get("msg") == "control port at its connection cap" for line in daemon.logs())


def errors_logged(daemon: Any) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("level") in ("error", "critical")]


async def stop_or_sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def keep_alive(conn: Conn, stop: asyncio.Event) -> None:
    """A request every second on one keep-alive connection (well under keepalive_timeout_s)."""
    reader, writer = conn
    while not stop.is_set():
        writer.write(KEEP_ALIVE_GET)
        await asyncio.wait_for(read_response(reader), ANSWER_TIMEOUT_S)
        await stop_or_sleep(stop, 1.0)


async def unauthenticated_ws(conn: Conn, stop: asyncio.Event) -> None:
    """Upgrade to a WebSocket and never authenticate; held until the server closes it."""
    reader, writer = conn
    writer.write(WS_UPGRADE)
    await asyncio.wait_for(read_until_closed(conn, 30.0), 31.0)


def slow_body(key: str) -> Behaviour:
    sent = itertools.count()

    async def behave(conn: Conn, stop: asyncio.Event) -> None:
        """A POST whose 60,000-byte body comes a byte every 0.5 s, half of them with a key."""
        reader, writer = conn
        writer.write(slow_post_head(key if next(sent) % 2 else None))
        while not stop.is_set() and not reader.at_eof():
            writer.write(b" ")
            await stop_or_sleep(stop, 0.5)

    return behave


async def test_health_live_answers_while_keep_alive_connections_fill_the_cap(
    capped: Any,
) -> None:
    statuses = await probes_under_attack(capped, keep_alive)
    assert reached_cap(capped)
    assert statuses == [200] * PROBES
    assert errors_logged(capped) == []


async def test_health_live_answers_while_unauthenticated_websockets_fill_the_cap(
    capped: Any,
) -> None:
    url = capped.base_url.replace("http", "ws") + "/v1/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"op": "auth", "key": capped.admin_key})
        await ws.send_json({"op": "ping"})
        assert (await ws.receive(timeout=ANSWER_TIMEOUT_S)).type is aiohttp.WSMsgType.TEXT
        statuses = await probes_under_attack(capped, unauthenticated_ws)
        # the authenticated WebSocket, the oldest connection, was not evicted
        await ws.send_json({"op": "ping"})
        msg = await ws.receive(timeout=ANSWER_TIMEOUT_S)
        while msg.type is aiohttp.WSMsgType.TEXT and '"pong"' not in msg.data:
            msg = await ws.receive(timeout=ANSWER_TIMEOUT_S)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
    assert reached_cap(capped)
    assert statuses == [200] * PROBES
    assert errors_logged(capped) == []


async def test_health_live_answers_while_trickled_bodies_fill_the_cap(capped: Any) -> None:
    statuses = await probes_under_attack(capped, slow_body(capped.admin_key))
    assert reached_cap(capped)
    assert statuses == [200] * PROBES
    assert errors_logged(capped) == []


async def test_a_body_trickled_past_the_body_timeout_is_answered_408_and_closed(
    capped: Any,
) -> None:
    conn = await asyncio.open_connection("127.0.0.1", capped.port)
    reader, writer = conn
    stop = asyncio.Event()

    async def trickle() -> None:
        writer.write(slow_post_head(capped.admin_key))
        for _ in range(120):  # 60 s at most, far less than the 60,000 bytes the body needs
            if stop.is_set() or writer.is_closing():
                return
            writer.write(b" ")
            await stop_or_sleep(stop, 0.5)

    sender = asyncio.create_task(trickle())
    try:
        got = await read_until_closed(conn, 20.0)
    finally:
        stop.set()
        await sender
        writer.transport.abort()
    assert got is not None, "still open"
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_an_unauthenticated_body_trickled_past_the_body_timeout_is_closed(
    capped: Any,
) -> None:
    conn = await asyncio.open_connection("127.0.0.1", capped.port)
    reader, writer = conn
    writer.write(slow_post_head(None) + b" ")
    try:
        status, _ = await asyncio.wait_for(read_response(reader), ANSWER_TIMEOUT_S)
        assert status == 401
        # aiohttp drains an unread body after the response, for at most the body timeout
        closed = False
        for _ in range(12):  # 6 s at most of trickling
            writer.write(b" ")
            try:
                closed = await asyncio.wait_for(reader.read(1), 0.5) == b""
            except TimeoutError:
                continue
            except ConnectionError:
                closed = True
            if closed:
                break
        assert closed, "still open"
    finally:
        writer.transport.abort()
