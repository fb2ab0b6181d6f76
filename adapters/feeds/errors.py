"""What a feed's HTTP request can end in besides a good answer, for every feed (Pyth Hermes,
DexScreener): a status other than 200, or a body past the configured bound."""

from __future__ import annotations


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
