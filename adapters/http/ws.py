"""The WebSocket stream `GET /v1/ws` (API.md): connections, auth, subscriptions, snapshots,
heartbeats and the closing of slow consumers.

The engine never waits for a client: fan-out (ws_dispatch.py) appends shared, pre-encoded
payloads to per-client outboxes (ws_outbox.py) bounded in messages and bytes, each drained by
its own writer task. A client whose queue reaches a bound, or whose oldest queued message waits
past `[ws] max_lag_ms`, is sent `slow_consumer` (best effort) and closed with 1013: its stream is
gap-free up to that alert, and it never slows the core or the other clients. Subscribes and
their snapshots are bounded per connection (ws_subscriptions.py). Revoking a key closes its
connections with `key_revoked` and 1008, whether through the API or the key file (checked every
second while clients are connected)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web
from tradingd.adapters.http import ws_wire as wire
from tradingd.adapters.http.auth import RELOAD_CHECK_S, ApiKey, KeyStore, bearer_key
from tradingd.adapters.http.codec import validation_error
from tradingd.adapters.http.connections import WS_AUTH_PENDING
from tradingd.adapters.http.errors import error_response
from tradingd.adapters.http.strict_json import check_body
from tradingd.adapters.http.token_view import token_out
from tradingd.adapters.http.ws_client import Client
from tradingd.adapters.http.ws_dispatch import Dispatcher
from tradingd.adapters.http.ws_events import ALERT
from tradingd.adapters.http.ws_outbox import Counters, envelope
from tradingd.adapters.http.ws_subscriptions import Subscriptions
from tradingd.adapters.timestamps import wall_clock_ms as now_ms
from tradingd.engine.core import Engine
from tradingd.engine.errors import ValidationError

if TYPE_CHECKING:
    from tradingd.adapters.app.settings import Settings

log = logging.getLogger("tradingd.ws")

PONG, HEARTBEAT, ERROR = b"pong", b"heartbeat", b"error"
TRY_AGAIN_LATER = 1013  # RFC 6455 close code registry: overloaded, try again later
# Bytes written before the writer waits for the transport to drain: small, so a stalled
# client's backlog stays in its bounded queue (where it is counted) rather than in buffers.
WRITER_LIMIT = 16 * 1024


class WsHub:
    """The clients of `GET /v1/ws` and the fan-out to them. The daemon subscribes
    `dispatch.on_events` / `dispatch.on_ticks` to the runtime and awaits `close_all` at
    shutdown; `keys` authenticate clients and revoke their connections."""

    def __init__(self, engine: Engine, settings: Settings, keys: KeyStore) -> None:
        self.keys = keys
        self.settings = settings.ws
        self.max_msg_size: int = settings.http.max_body_bytes
        self.close_timeout_s = max(2.0, self.settings.max_lag_ms / 1000)
        self.clients: set[Client] = set()
        self.by_channel: dict[str, set[Client]] = {c: set() for c in wire.CHANNELS}
        self.counters = Counters()
        self.slow_consumers = 0  # clients closed with 1013
        self.revoked = 0  # clients closed because their key was revoked
        self._ids = 0
        registry = settings.tokens
        self.dispatch = Dispatcher(
            engine,
            self.by_channel,
            self.settings.price_interval_ms,
            lambda token, watched: token_out(engine, registry, token, watched),
            self.settings.token_interval_ms,
        )
        self.subscriptions = Subscriptions(
            engine, self.dispatch, self.by_channel, self.settings, self._arm, self._error
        )
        self._key_check: asyncio.TimerHandle | None = None
        self._keys_seen = -1
        self._closed = False
        self._closers: set[asyncio.Task[None]] = set()

    # -- figures for the metrics ------------------------------------------------------------

    @property
    def sent(self) -> int:
        return self.counters.sent

    @property
    def dropped(self) -> int:
        return self.counters.dropped

    @property
    def queued(self) -> int:
        return sum(len(c.outbox.queue) for c in self.clients)

    @property
    def queued_bytes(self) -> int:
        return sum(c.outbox.queued_bytes for c in self.clients)

    @property
    def peak_queued_bytes(self) -> int:
        """The most bytes one client's queue ever held (bounded by `[ws] max_queue_bytes`,
        or one larger message alone)."""
        return self.counters.peak_bytes

    # -- a connection -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/ws. A bad key in the header is refused with an HTTP error, before the upgrade."""
        key = None
        if "Authorization" in request.headers:
            key = self._authenticate(bearer_key(request.headers["Authorization"]))
            if key is None:
                return error_response(401, "unauthorized", "missing or unknown API key")
            if not _can_read(key):
                return error_response(
                    403, "forbidden", "the key lacks the read scope", {"scope": "read"}
                )
        ws = web.WebSocketResponse(
            max_msg_size=self.max_msg_size,
            compress=False,
            writer_limit=WRITER_LIMIT,
            timeout=self.close_timeout_s,
        )
        if not ws.can_prepare(request).ok:
            return error_response(400, "websocket_required", "GET /v1/ws needs a WebSocket upgrade")
        if self._closed:
            return error_response(503, "unavailable", "shutting down")
        await ws.prepare(request)
        self._ids += 1
        client = Client(
            self._ids,
            ws,
            request.transport,
            self.settings,
            self.counters,
            self.subscriptions.limiter(),
            self._overflow,
        )
        if key is None:
            request[WS_AUTH_PENDING] = True  # evictable at the connection cap meanwhile
            key = await self._authorize_first_message(client)
            if key is None:
                return ws
            request[WS_AUTH_PENDING] = False
        client.key_id = key.id
        self._open(client)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(client, msg.data)
        finally:
            await self._closed_by_peer_or_us(client)
        return ws

    def _authenticate(self, raw: str | None) -> ApiKey | None:
        return self.keys.authenticate(raw) if raw else None

    async def _authorize_first_message(self, client: Client) -> Any:
        try:
            async with asyncio.timeout(self.settings.auth_timeout_s):
                msg = await client.ws.receive()
        except TimeoutError:
            return await self._refuse(client, "auth_timeout", "no auth message in time")
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        try:
            op = wire.op_decoder.decode(msg.data)
            check_body(_as_bytes(msg.data))  # the body rules of REST: no duplicate key, no C0
        except (msgspec.DecodeError, ValidationError):
            op = None
        if not isinstance(op, wire.Auth):
            return await self._refuse(
                client, "unauthorized", 'authenticate first: {"op": "auth", "key": ...}'
            )
        key = self._authenticate(op.key)
        if key is None:
            return await self._refuse(client, "unauthorized", "unknown API key")
        if not _can_read(key):
            return await self._refuse(client, "forbidden", "the key lacks the read scope")
        return key

    async def _refuse(self, client: Client, code: str, message: str) -> None:
        frame = envelope(
            ERROR,
            client.outbox.next_seq(),
            now_ms(),
            wire.encode(wire.ErrorOut(code=code, message=message)),
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.ws.send_frame(frame, WSMsgType.TEXT)
            await client.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=code.encode())
        return None

    def _open(self, client: Client) -> None:
        self.clients.add(client)
        client.writer = asyncio.get_running_loop().create_task(
            self._write(client), name=f"ws-writer-{client.id}"
        )
        self._arm(client, "heartbeat", self.settings.heartbeat_s, self._heartbeat)
        if self._key_check is None:
            self._key_check = asyncio.get_running_loop().call_later(
                RELOAD_CHECK_S, self._check_keys
            )
        log.info("ws client connected", extra={"client": client.id, "key_id": client.key_id})

    async def _write(self, client: Client) -> None:
        try:
            await client.outbox.drain_to(client.ws)
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-write
            log.info("ws write stopped", extra={"client": client.id, "reason": repr(exc)})

    async def _closed_by_peer_or_us(self, client: Client) -> None:
        self._forget(client)
        client.outbox.close()
        if client.closer is not None:
            await asyncio.shield(client.closer)
        if client.writer is not None:
            client.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.writer
        log.info("ws client gone", extra={"client": client.id, "seq": client.outbox.seq})

    def _forget(self, client: Client) -> None:
        self.clients.discard(client)
        for subscribers in self.by_channel.values():
            subscribers.discard(client)
        client.subs.clear()  # fan-out jobs already holding this client now skip it
        client.pending.clear()
        for timer in client.timers.values():
            timer.cancel()
        client.timers.clear()

    # -- what the client asks -----------------------------------------------------------------

    def _on_message(self, client: Client, raw: str | bytes) -> None:
        try:
            op = wire.op_decoder.decode(raw)
            check_body(_as_bytes(raw))  # the body rules of REST: no duplicate key, no C0
        except msgspec.ValidationError as exc:
            failed = validation_error(exc)
            return self._error(client, "validation_error", failed.message, {"path": failed.path})
        except msgspec.DecodeError as exc:
            return self._error(client, "malformed_json", str(exc))
        except ValidationError as exc:
            return self._error(client, "validation_error", exc.message, {"path": exc.path})
        if isinstance(op, wire.Subscribe):
            self.subscriptions.subscribe(client, op)
        elif isinstance(op, wire.Unsubscribe):
            self.subscriptions.unsubscribe(client, op)
        elif isinstance(op, wire.Ping):
            client.outbox.push(PONG, now_ms(), b"{}")
        # a repeated auth op on an authenticated connection changes nothing

    def _error(
        self, client: Client, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        data = wire.encode(wire.ErrorOut(code=code, message=message, details=details or {}))
        client.outbox.push(ERROR, now_ms(), data)

    def _heartbeat(self, client: Client) -> None:
        client.outbox.push(HEARTBEAT, now_ms(), b"{}")
        self._arm(client, "heartbeat", self.settings.heartbeat_s, self._heartbeat)

    def _arm(self, client: Client, name: str, delay: float, callback: Any) -> None:
        def fire() -> None:
            client.timers.pop(name, None)
            callback(client)

        client.timers[name] = asyncio.get_running_loop().call_later(delay, fire)

    # -- slow consumers and closing -------------------------------------------------------------

    def _overflow(self, client: Client, reason: str) -> None:
        """A push found the client's queue at a bound (`reason`): cut it as a slow consumer."""
        self.slow_consumers += 1
        log.warning(
            "ws slow consumer closed",
            extra={
                "client": client.id,
                "key_id": client.key_id,
                "reason": reason,
                "queued": len(client.outbox.queue),
                "queued_bytes": client.outbox.queued_bytes,
            },
        )
        message = f"queue bound reached ({reason}): reconnect and subscribe again"
        self._cut(client, "slow_consumer", message, TRY_AGAIN_LATER, b"slow consumer")

    def _cut(self, client: Client, code: str, message: str, close_code: int, reason: bytes) -> None:
        """Drop what waits, send an alert `code` right after the last message written (so its
        seq leaves no gap) and close with `close_code`."""
        client.outbox.close()
        if client.writer is not None:
            client.writer.cancel()
        data = wire.encode(wire.AlertOut(code=code, message=message))
        frame = envelope(ALERT, client.outbox.next_seq(), now_ms(), data)
        self._start_close(client, frame, close_code, reason, drain=False)

    # -- revoked keys ---------------------------------------------------------------------------

    def close_key(self, key_id: str) -> int:
        """Close every connection opened with `key_id` (the key was revoked); how many."""
        closing = [c for c in self.clients if c.key_id == key_id]
        for client in closing:
            self._revoked(client)
        return len(closing)

    def _revoked(self, client: Client) -> None:
        self.revoked += 1
        log.info(
            "ws client closed: key revoked", extra={"client": client.id, "key_id": client.key_id}
        )
        self._cut(
            client,
            "key_revoked",
            "the API key was revoked",
            WSCloseCode.POLICY_VIOLATION,
            b"key revoked",
        )

    def _check_keys(self) -> None:
        """Every RELOAD_CHECK_S while clients are connected: a key revoked in the key file by
        another process (`tradingd keys revoke`) closes its connections."""
        self._key_check = None
        keys = self.keys
        if self._closed or not self.clients:
            return
        keys.refresh()
        if keys.generation != self._keys_seen:
            self._keys_seen = keys.generation
            for client in [c for c in self.clients if not keys.is_live(c.key_id)]:
                self._revoked(client)
        self._key_check = asyncio.get_running_loop().call_later(RELOAD_CHECK_S, self._check_keys)

    def _start_close(
        self, client: Client, frame: bytes | None, code: int, reason: bytes, drain: bool
    ) -> None:
        self._forget(client)
        client.closer = closer = asyncio.get_running_loop().create_task(
            self._send_and_close(client, frame, code, reason, drain), name=f"ws-close-{client.id}"
        )
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _send_and_close(
        self, client: Client, frame: bytes | None, code: int, reason: bytes, drain: bool
    ) -> None:
        """Best effort within close_timeout_s; else the transport is cut, dropping whatever a dead
        peer left unread, so neither the task nor the socket lingers."""
        try:
            async with asyncio.timeout(self.close_timeout_s):
                if drain and client.writer is not None:
                    await client.writer  # a finished outbox: returns once its queue is written
                if frame is not None:
                    await client.ws.send_frame(frame, WSMsgType.TEXT)
                await client.ws.close(code=code, message=reason)
            if client.ws.close_code != WSCloseCode.ABNORMAL_CLOSURE:
                return  # the peer answered the close
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        if client.transport is not None:
            client.transport.abort()

    async def close_all(self) -> None:
        """Shutdown: close every connection with 1001 (going away). Idempotent."""
        self._closed = True
        if self._key_check is not None:
            self._key_check.cancel()
            self._key_check = None
        self.dispatch.run()  # whatever the engine published reaches the queues, then is written
        self.dispatch.close()
        for client in list(self.clients):
            client.outbox.finish()
            self._start_close(client, None, WSCloseCode.GOING_AWAY, b"server shutdown", drain=True)
        if self._closers:  # these, and slow consumers still being closed
            await asyncio.gather(*self._closers, return_exceptions=True)


def _can_read(key: ApiKey) -> bool:
    return "read" in key.scopes or "admin" in key.scopes


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data
