"""Slowloris against the real `tradingd run` process: half-sent requests are cut after
`[http] header_timeout_s`, idle keep-alive connections after `keepalive_timeout_s`, and a flood
of half-sent requests larger than the daemon's file-descriptor limit leaves `/health/live`
answering (the oldest half-sent connections are evicted at the connection cap).

Every flood is bounded in connections and in time; only 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from raw_conn import Conn, read_until_closed

HALF_SENT = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n"  # no blank line
CONNECT_TIMEOUT_S = 5.0
FLOOD_DEADLINE_S = 60.0
ANSWER_TIMEOUT_S = 10.0


async def flood(port: int, n: int) -> list[Conn]:
    """Open up to `n` connections that each send a request without its final blank line; stops
    early at the deadline or at the first connect that fails or hangs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLOOD_DEADLINE_S
    conns: list[Conn] = []
    for _ in range(n):
        if loop.time() > deadline:
            break
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            break
        writer.write(HALF_SENT)
        conns.append((reader, writer))
    return conns


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.transport.abort()


async def get(port: int, path: str) -> tuple[int | None, bytes]:
    """One GET on a fresh connection: (status, body), or (None, b"") if no answer in time."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            raw = await reader.read(-1)
            writer.close()
    except (OSError, TimeoutError):
        return None, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head else None), body


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def short_timeouts(
    tmp_path_factory: pytest.TempPathFactory, daemon_starter: Callable[..., Any]
) -> Iterator[Any]:
    config = "[http]\nheader_timeout_s = 1.0\nkeepalive_timeout_s = 1.0\n"
    daemon = daemon_starter(tmp_path_factory.mktemp("short-timeouts"), config_text=config)
    yield daemon
    daemon.stop()


async def test_half_sent_requests_are_answered_408_and_closed_after_the_header_timeout(
    short_timeouts: Any,
) -> None:
    conns = await flood(short_timeouts.port, 200)
    assert len(conns) == 200
    try:
        got = await asyncio.gather(*(read_until_closed(c, 30.0) for c in conns))
    finally:
        close_all(conns)
    assert all(g is not None for g in got), f"{sum(g is None for g in got)} still open"
    head, _, body = got[0].partition(b"\r\n\r\n")  # type: ignore[union-attr]
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
    short_timeouts: Any,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts.port)
    try:
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        assert await read_until_closed((reader, writer), 30.0) == b""
    finally:
        writer.transport.abort()


async def test_health_live_answers_during_a_half_sent_flood_larger_than_the_fd_limit(
    daemon_factory: Callable[..., Any],
) -> None:
    # 1,024 descriptors: 2,000 half-sent requests would exhaust them without a cap.
    daemon = daemon_factory(max_open_files=1024)
    conns: list[Conn] = []
    try:
        conns = await flood(daemon.port, 2000)
        assert len(conns) == 2000
        fds_under_attack = open_fds(daemon.pid)
        status, body = await get(daemon.port, "/health/live")
        assert status == 200, status
        assert json.loads(body) == {"status": "ok"}
        assert fds_under_attack < 1024
        # the connections left open are within the cap; the oldest were cut
        evicted = await asyncio.gather(*(read_until_closed(c, 0.5) for c in conns[:100]))
        assert all(e is not None for e in evicted)
    finally:
        close_all(conns)
