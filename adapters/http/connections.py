"""Bounds on the control port's TCP connections, below aiohttp: a cap on open connections, a
header-read timeout and a body-read timeout (aiohttp's own `keepalive_timeout` closes idle
keep-alive connections).

Each accepted connection is wrapped in a ConnectionGuard that forwards everything to aiohttp's
RequestHandler and watches its state:

- the first request's headers must arrive within `header_timeout_s` of the accept, or the
  connection is answered 408 and closed;
- a request's body must arrive within `body_timeout_s` of the end of its headers, or the
  connection is answered 408 (if no response has started) and closed;
- at the cap, the longest-unused connection that is *evictable* is cut to admit the new one.
  Evictable: still sending a request's headers or body, idle between requests (keep-alive), or a
  WebSocket still in its auth window (the ws handler marks the request with WS_AUTH_PENDING).
  Protected: a request whose headers and body are in and whose response is being made, and an
  authenticated WebSocket. So a new connection is admitted whenever some connection is not doing
  work for an authenticated or complete request; when none is, the new one is closed at once.

The guard reads a few of aiohttp's RequestHandler fields (`_messages`, `_current_request`,
`_request_in_progress`, `_request_count`), as protocol_errors.py subclasses it: aiohttp offers no
public view of a connection's state."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

import msgspec
from aiohttp import web

log = logging.getLogger("tradingd.http")

# File descriptors kept for everything that is not a control-port connection (store clients,
# log and spill files, the event loop, the listening socket): a quarter of the limit, at least 64.
FD_RESERVE_MIN = 64
CAP_WARNING_INTERVAL_S = 60.0
# Request key the WebSocket handler sets (True) while the client has not authenticated yet.
WS_AUTH_PENDING = "tradingd.ws_auth_pending"


def _timeout_response(message: str) -> bytes:
    body = msgspec.json.encode(
        {"error": {"code": "request_timeout", "message": message, "details": {}}}
    )
    return (
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    )


REQUEST_TIMEOUT_RESPONSE = _timeout_response("request headers not received in time")
BODY_TIMEOUT_RESPONSE = _timeout_response("request body not received in time")


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
    `factory` builds the real protocol (aiohttp's `runner.server`); timeouts in seconds."""

    def __init__(
        self,
        factory: Callable[[], Any],
        cap: int,
        header_timeout_s: float,
        body_timeout_s: float,
    ) -> None:
        self.factory = factory
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        # every open connection, least recently given a request first
        self.connections: dict[ConnectionGuard, None] = {}
        self.refused = 0  # closed at the accept: the cap was reached, nothing to evict
        self.evicted = 0  # cut while evictable, to admit a newer connection
        self.header_timeouts = 0
        self.body_timeouts = 0
        self._warned_at: float | None = None

    @property
    def open(self) -> int:
        return len(self.connections)

    def __call__(self) -> ConnectionGuard:
        return ConnectionGuard(self)

    def admit(self, guard: ConnectionGuard) -> bool:
        if len(self.connections) >= self.cap:
            self._warn_at_cap()
            victim = next((g for g in self.connections if g.evictable()), None)
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            victim.cut(None)
        self.connections[guard] = None
        return True

    def touch(self, guard: ConnectionGuard) -> None:
        """A new request on `guard`: it becomes the most recently used connection."""
        if guard in self.connections:
            del self.connections[guard]
            self.connections[guard] = None

    def release(self, guard: ConnectionGuard) -> None:
        self.connections.pop(guard, None)

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
                    "body_timeouts": self.body_timeouts,
                },
            )


class ConnectionGuard(asyncio.Protocol):
    """One connection: forwards to the aiohttp protocol, times the first request's headers and
    every request's body, and tells whether it may be evicted."""

    __slots__ = ("limits", "inner", "transport", "timer", "body", "body_timer", "counted")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None  # the first request's headers
        self.body: Any = None  # the payload stream of a request whose body is still arriving
        self.body_timer: asyncio.TimerHandle | None = None
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
        inner = self.inner
        if inner is None:
            return
        requests = inner._request_count
        inner.data_received(data)
        if inner._request_count != requests:  # one or more requests' headers are in
            self._stop_timer()
            if self.counted:
                self.limits.touch(self)
        if self.body is not None and self.body.is_eof():
            self._body_received()
        if self.body is None and inner._messages:
            payload = inner._messages[-1][1]  # only the last parsed request can be incomplete
            if not payload.is_eof():
                self.body = payload
                loop = asyncio.get_running_loop()
                self.body_timer = loop.call_later(self.limits.body_timeout_s, self._body_timeout)

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
        self._body_received()
        if self.counted:
            self.counted = False
            self.limits.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def evictable(self) -> bool:
        """Sending headers or a body, idle between requests, or a WebSocket not yet
        authenticated; not a complete request being answered, nor an authenticated WebSocket."""
        if self.body is not None or self.inner is None:
            return True
        inner = self.inner
        if inner._messages:  # a complete request waiting for its handler
            return False
        request = inner._current_request
        if request is not None:
            return bool(request.get(WS_AUTH_PENDING, False))
        return not inner._request_in_progress  # in progress: its response is being written

    def cut(self, response: bytes | None) -> None:
        """Close now (`response` first, when given); the slot is free at once. A handler still
        reading the body gets a 408 HTTPException (no error log), not a connection reset."""
        self._stop_timer()
        if self._handler_reading_body() and self.body.exception() is None:
            self.body.set_exception(web.HTTPRequestTimeout())
        self._body_received()
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

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _body_received(self) -> None:
        self.body = None
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _header_timeout(self) -> None:
        self.timer = None
        self.limits.header_timeouts += 1
        self.cut(REQUEST_TIMEOUT_RESPONSE)

    def _body_timeout(self) -> None:
        self.body_timer = None
        self.limits.body_timeouts += 1
        answer = (
            self._handler_reading_body() and self.inner._current_request.writer.output_size == 0
        )
        # otherwise the response is out (aiohttp is draining the body) or another request is
        # being answered first: nothing may be written in between, the connection is just closed
        self.cut(BODY_TIMEOUT_RESPONSE if answer else None)

    def _handler_reading_body(self) -> bool:
        """A handler is running for the request whose body is still arriving."""
        request = self.inner._current_request if self.inner is not None else None
        return self.body is not None and request is not None and request.content is self.body
