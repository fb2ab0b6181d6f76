"""Raw TCP connections to the daemon's control port, for the connection-bound tests."""

from __future__ import annotations

import asyncio

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def read_until_closed(conn: Conn, timeout: float) -> bytes | None:
    """What the server sent before closing, or None if it was still open after `timeout`."""
    reader, _ = conn
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                got += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass  # a reset is a close too
    return got
