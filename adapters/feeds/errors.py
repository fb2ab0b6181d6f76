"""What a feed's HTTP request can end in besides a good answer, for every feed (Pyth Hermes,
DexScreener): a status other than 200, or a body past the configured bound."""

from __future__ import annotations

import aiohttp
from tradingd.adapters.feeds.retry import retry_after_s

# A service's error answer is short text (Hermes: `Price ids not found: 0x…`); a proxy's HTML page
# is cut here.
ERROR_TEXT_BYTES = 512


class FeedStatusError(Exception):
    """The service (or a proxy before it) answered `status` instead of 200. `text`: the body's
    first bytes, printable; `retry_after_s`: its Retry-After header in seconds, if any."""

    def __init__(self, status: int, text: str, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}: {text}" if text else f"HTTP {status}")
        self.status = status
        self.text = text
        self.retry_after_s = retry_after_s


class ResponseTooLarge(Exception):
    """The body passed the configured bound (reading stopped there)."""


async def status_error(resp: aiohttp.ClientResponse, now_ms: int) -> FeedStatusError:
    """The error for a non-200 answer: its first ERROR_TEXT_BYTES as printable text and its
    Retry-After (seconds from `now_ms`, epoch ms). The caller releases the response."""
    try:
        raw = await resp.content.read(ERROR_TEXT_BYTES)
    except (aiohttp.ClientError, OSError):
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    text = "".join(c if c.isprintable() else " " for c in text)
    return FeedStatusError(
        resp.status, text, retry_after_s(resp.headers.get("Retry-After"), now_ms)
    )


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, or ResponseTooLarge as soon as it passes `max_bytes` (a declared
    Content-Length over it is refused before reading)."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise ResponseTooLarge(f"Content-Length {resp.content_length} > {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(f"body passed {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)
