"""Bounds on the control port's TCP connections, below aiohttp: a cap on open connections and a
header-read timeout (aiohttp's own `keepalive_timeout` closes idle keep-alive connections).

Each accepted connection is wrapped in a ConnectionGuard that forwards everything to aiohttp's
RequestHandler and watches only the start of the stream: the first request's headers (up to the
blank line) must arrive within `header_timeout_s` of the accept, or the connection is answered
408 and closed. At the cap, the oldest connection still sending its first headers is cut to
admit the new one, so a slowloris flood evicts itself while a prompt client (a `/health/live`
probe) gets in; when every open connection is past its headers, the new one is closed at once."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

import msgspec

log = logging.getLogger("tradingd.http")

# File descriptors kept for everything that is not a control-port connection (store clients,
# log and spill files, the event loop, the listening socket): a quarter of the limit, at least 64.
FD_RESERVE_MIN = 64
CAP_WARNING_INTERVAL_S = 60.0
_TIMEOUT_BODY = msgspec.json.encode(
    {
        "error": {
            "code": "request_timeout",
            "message": "request headers not received in time",
            "details": {},
        }
    }
)
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (when finite); the soft limit
    in force afterwards, in file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the fd limit", extra={"soft": soft, "reason": repr(exc)})
    return soft


def connection_cap(configured: int, fd_limit: int) -> int:
    """The cap in force: `[http] max_connections`, lowered so the connections leave a reserve
    of file descriptors (a quarter of `fd_limit`, at least FD_RESERVE_MIN)."""
    reserve = max(FD_RESERVE_MIN, fd_limit // 4)
    return max(1, min(configured, fd_limit - reserve))


class ConnectionLimits:
    """The protocol factory given to `loop.create_server`: admits, evicts and counts connections.
    `factory` builds the real protocol (aiohttp's `runner.server`)."""

    def __init__(self, factory: Callable[[], Any], cap: int, header_timeout_s: float) -> None:
        self.factory = factory
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.awaiting_headers: dict[ConnectionGuard, None] = {}  # oldest first
        self.refused = 0  # closed at the accept: the cap was reached, nothing to evict
        self.evicted = 0  # cut while sending headers, to admit a newer connection
        self.header_timeouts = 0
        self._warned_at: float | None = None

    def __call__(self) -> ConnectionGuard:
        return ConnectionGuard(self)

    def admit(self, guard: ConnectionGuard) -> bool:
        if self.open >= self.cap:
            self._warn_at_cap()
            if not self.awaiting_headers:
                self.refused += 1
                return False
            oldest = next(iter(self.awaiting_headers))
            self.evicted += 1
            oldest.cut(None)
        self.open += 1
        self.awaiting_headers[guard] = None
        return True

    def release(self, guard: ConnectionGuard) -> None:
        self.awaiting_headers.pop(guard, None)
        self.open -= 1

    def _warn_at_cap(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._warned_at is None or now - self._warned_at >= CAP_WARNING_INTERVAL_S:
            self._warned_at = now
            log.warning(
                "control port at its connection cap",
                extra={
                    "cap": self.cap,
                    "refused": self.refused,
                    "evicted": self.evicted,
                    "header_timeouts": self.header_timeouts,
                },
            )


class ConnectionGuard(asyncio.Protocol):
    """One connection: forwards to the aiohttp protocol, times the first request's headers."""

    __slots__ = ("limits", "inner", "transport", "timer", "tail", "counted")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, for a blank line split across reads
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass
        if not self.limits.admit(self):
            transport.abort()
            return
        self.counted = True
        self.transport = transport
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.limits.header_timeout_s, self._header_timeout)
        self.inner = self.limits.factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            seen = self.tail + data  # a copy only until the first request's headers are in
            # the blank line ending the headers; a bare-LF one too, which the parser may accept
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._headers_received()
            else:
                self.tail = seen[-2:]
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self.counted:
            self.counted = False
            self.limits.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def cut(self, response: bytes | None) -> None:
        """Close now (a 408 first when `response` is given); the slot is free at once."""
        self._stop_timer()
        if self.counted:
            self.counted = False
            self.limits.release(self)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if response is None:
            transport.abort()
        else:
            transport.write(response)
            transport.close()  # a few hundred bytes: the kernel buffer takes them at once

    def _headers_received(self) -> None:
        self._stop_timer()
        self.limits.awaiting_headers.pop(self, None)
        self.tail = b""

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _header_timeout(self) -> None:
        self.timer = None
        self.limits.header_timeouts += 1
        self.cut(REQUEST_TIMEOUT_RESPONSE)
