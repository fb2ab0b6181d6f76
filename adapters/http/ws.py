"""The WebSocket stream `GET /v1/ws`: auth, subscriptions, snapshots and fan-out.

The engine never waits for a client: runtime subscribers only append pre-encoded payloads to
bounded per-client queues and one writer task per client drains its own. Each payload is encoded
once and shared; only the small envelope (`type`, `seq`, `ts`) is written per client. A client
whose queue stays full past `[ws] max_lag_ms` is told `slow_consumer` and closed with 1013."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from adapters.http import ws_wire as wire
from adapters.http.auth import bearer_key
from adapters.http.errors import error_response
from engine.assets import is_mint
from engine.model import Tick

log = logging.getLogger("tradingd.ws")

PRICES, SNAPSHOT, PONG, HEARTBEAT, ERROR = b"prices", b"snapshot", b"pong", b"heartbeat", b"error"
TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the server is overloaded, try again later
WRITER_LIMIT = 16 * 1024  # bytes written before the writer checks transport back-pressure
_MISSING: Any = object()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def envelope(type_: bytes, seq: int, ts: int, data: bytes) -> bytes:
    return b'{"type":"%b","seq":%d,"ts":%d,"data":%b}' % (type_, seq, ts, data)


class Filter:
    """One channel's filter: ids to admit, or None for all."""

    __slots__ = ("agents", "tokens")

    def __init__(self, agents: frozenset[str] | None, tokens: frozenset[str] | None) -> None:
        self.agents = agents
        self.tokens = tokens

    def admits(self, agent_id: str | None, token: str | None) -> bool:
        return (self.agents is None or agent_id is None or agent_id in self.agents) and (
            self.tokens is None or token is None or token in self.tokens
        )


class Item:
    """A queued message; a `prices` item may still absorb later ticks until it is written."""

    __slots__ = ("type", "seq", "ts", "data", "ticks")

    def __init__(self, type_: bytes, seq: int, ts: int, data: bytes | None, ticks: dict[str, Tick] | None = None):
        self.type, self.seq, self.ts, self.data, self.ticks = type_, seq, ts, data, ticks


class PriceBatch:
    __slots__ = ("ticks", "data")

    def __init__(self, ticks: dict[str, Tick], data: bytes) -> None:
        self.ticks, self.data = ticks, data


class Client:
    __slots__ = ("id", "key_id", "ws", "transport", "queue", "capacity", "seq", "wake", "subs",
                 "price_item", "full_since", "writer", "timers", "evicting", "closer")

    def __init__(self, cid: int, ws: web.WebSocketResponse, transport: Any, capacity: int) -> None:
        self.id = cid
        self.key_id: str | None = None
        self.ws = ws
        self.transport = transport
        self.queue: deque[Item] = deque()
        self.capacity = capacity
        self.seq = 0
        self.wake = asyncio.Event()
        self.subs: dict[str, Filter] = {}
        self.price_item: Item | None = None
        self.full_since: float | None = None  # loop time the queue became full
        self.writer: asyncio.Task[None] | None = None
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.evicting = False
        self.closer: asyncio.Task[None] | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class WsHub:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.settings = daemon.settings.ws
        self.max_msg_size = daemon.settings.http.max_body_bytes
        self.close_timeout_s = max(2.0, self.settings.max_lag_ms / 1000)
        self.clients: set[Client] = set()
        self.by_channel: dict[str, set[Client]] = {c: set() for c in wire.CHANNELS}
        self.sent = 0  # messages written
        self.dropped = 0  # messages dropped on a full queue (each leaves a seq gap)
        self.slow_consumers = 0  # clients closed with 1013
        self._ids = 0
        self._pending: dict[str, Tick] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._closed = False
        daemon.runtime.event_subscribers.append(self.on_events)
        daemon.runtime.tick_subscribers.append(self.on_ticks)
        daemon.cleanups.append(self.close_all)
        if getattr(daemon, "hub", None) is None:
            daemon.hub = self

    @property
    def queued(self) -> int:
        return sum(len(c.queue) for c in self.clients)

    # -- the connection ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/ws. Header auth fails with a plain HTTP error, before the upgrade."""
        key = None
        if "Authorization" in request.headers:
            key = self._authenticate(bearer_key(request.headers["Authorization"]))
            if key is None:
                return error_response(401, "unauthorized", "missing or unknown API key")
            if not _can_read(key):
                return error_response(403, "forbidden", "the key lacks the read scope", {"scope": "read"})
        ws = web.WebSocketResponse(max_msg_size=self.max_msg_size, compress=False, writer_limit=WRITER_LIMIT,
                                   timeout=self.close_timeout_s)
        if not ws.can_prepare(request).ok:
            return error_response(400, "websocket_required", "GET /v1/ws needs a WebSocket upgrade")
        if self._closed:
            return error_response(503, "unavailable", "shutting down")
        await ws.prepare(request)
        self._ids += 1
        client = Client(self._ids, ws, request.transport, self.settings.queue_size)
        if key is None:
            key = await self._authorize_first_message(client)
            if key is None:
                return ws
        client.key_id = key.id
        self._open(client)
        try:
            await self._read(client)
        finally:
            await self._close(client)
        return ws

    def _authenticate(self, raw: str | None) -> Any:
        keys = self.daemon.keys
        return keys.authenticate(raw) if keys is not None and raw else None

    async def _authorize_first_message(self, client: Client) -> Any:
        ws = client.ws
        try:
            async with asyncio.timeout(self.settings.auth_timeout_s):
                msg = await ws.receive()
        except TimeoutError:
            return await self._refuse(client, "auth_timeout", "no auth message in time")
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        try:
            op = wire.op_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            return await self._refuse(client, "unauthorized", f"expected {{\"op\": \"auth\"}} first: {exc}")
        if not isinstance(op, wire.Auth):
            return await self._refuse(client, "unauthorized", "authenticate first: {\"op\": \"auth\", \"key\": ...}")
        key = self._authenticate(op.key)
        if key is None:
            return await self._refuse(client, "unauthorized", "unknown API key")
        if not _can_read(key):
            return await self._refuse(client, "forbidden", "the key lacks the read scope")
        return key

    async def _refuse(self, client: Client, code: str, message: str) -> None:
        data = wire.encode(wire.ErrorOut(code=code, message=message))
        with contextlib.suppress(Exception):
            await client.ws.send_frame(envelope(ERROR, client.next_seq(), now_ms(), data), WSMsgType.TEXT)
            await client.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=code.encode())
        return None

    def _open(self, client: Client) -> None:
        self.clients.add(client)
        client.writer = asyncio.get_running_loop().create_task(self._write(client), name=f"ws-writer-{client.id}")
        self._arm(client, "heartbeat", self.settings.heartbeat_s, self._heartbeat)
        log.info("ws client connected", extra={"client": client.id, "key_id": client.key_id})

    async def _read(self, client: Client) -> None:
        async for msg in client.ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                self._on_message(client, msg.data)
            elif msg.type is WSMsgType.ERROR:
                log.info("ws client error", extra={"client": client.id, "reason": str(client.ws.exception())})
                break

    async def _close(self, client: Client) -> None:
        self._forget(client)
        if client.closer is not None:
            await asyncio.shield(client.closer)
        if client.writer is not None:
            client.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client.writer
        log.info("ws client gone", extra={"client": client.id, "seq": client.seq})

    def _forget(self, client: Client) -> None:
        self.clients.discard(client)
        for subscribers in self.by_channel.values():
            subscribers.discard(client)
        for timer in client.timers.values():
            timer.cancel()
        client.timers.clear()

    # -- client operations ------------------------------------------------------------------

    def _on_message(self, client: Client, raw: str | bytes) -> None:
        try:
            op = wire.op_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return self._error(client, "validation_error", str(exc))
        except msgspec.DecodeError as exc:
            return self._error(client, "malformed_json", str(exc))
        if isinstance(op, wire.Subscribe):
            self._subscribe(client, op)
        elif isinstance(op, wire.Unsubscribe):
            self._unsubscribe(client, op)
        elif isinstance(op, wire.Ping):
            self._push(client, PONG, now_ms(), b"{}")
        # a repeated auth op on an authenticated connection changes nothing

    def _error(self, client: Client, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        self._push(client, ERROR, now_ms(), wire.encode(wire.ErrorOut(code=code, message=message, details=details or {})))

    def _subscribe(self, client: Client, op: wire.Subscribe) -> None:
        bad = [t for t in op.tokens or () if not is_mint(t)]
        if bad:
            return self._error(client, "validation_error", f"not a base58 32-byte mint address: {bad[0][:60]!r}",
                               {"path": "$.tokens"})
        agents = frozenset(op.agents) if op.agents is not None else None
        tokens = frozenset(op.tokens) if op.tokens is not None else None
        for channel in op.channels:
            old = client.subs.get(channel)
            if old is not None:  # a second subscribe widens the channel's filter
                agents_c = None if old.agents is None or agents is None else old.agents | agents
                tokens_c = None if old.tokens is None or tokens is None else old.tokens | tokens
                client.subs[channel] = Filter(agents_c, tokens_c)
            else:
                client.subs[channel] = Filter(agents, tokens)
            self.by_channel[channel].add(client)
        self._push(client, SNAPSHOT, now_ms(), self._snapshot(op, agents, tokens))

    def _unsubscribe(self, client: Client, op: wire.Unsubscribe) -> None:
        for channel in op.channels if op.channels is not None else wire.CHANNELS:
            old = client.subs.get(channel)
            if old is None:
                continue
            if op.agents is None and op.tokens is None:
                new: Filter | None = None
            else:  # narrow an explicit filter; an "all" filter stays all
                agents = old.agents - frozenset(op.agents) if old.agents is not None and op.agents else old.agents
                tokens = old.tokens - frozenset(op.tokens) if old.tokens is not None and op.tokens else old.tokens
                new = None if agents == frozenset() or tokens == frozenset() else Filter(agents, tokens)
            if new is None:
                del client.subs[channel]
                self.by_channel[channel].discard(client)
            else:
                client.subs[channel] = new

    def _snapshot(self, op: wire.Subscribe, agents: frozenset[str] | None, tokens: frozenset[str] | None) -> bytes:
        engine = self.daemon.engine
        wanted = Filter(agents, tokens)
        agent_ids = [a for a in engine.agents if agents is None or a in agents]
        positions = [
            wire.position_out(engine.refresh(p))
            for aid in agent_ids
            for p in engine.agent_positions.get(aid, {}).values()
            if p.status in ("open", "closing") and wanted.admits(p.agent_id, p.token)
        ]
        balances = [wire.balance_out(aid, b) for aid in agent_ids for b in engine.ledger.balances(aid)]
        prices = [wire.tick_out(t) for tok, t in engine.prices.items() if tokens is None or tok in tokens]
        return wire.encode(wire.SnapshotOut(
            subscription=wire.SubscriptionOut(channels=list(op.channels), agents=op.agents, tokens=op.tokens),
            halted=engine.halted_buys, agents=[wire.agent_out(engine.agents[a]) for a in agent_ids],
            positions=positions, balances=balances, prices=prices,
        ))

    # -- fan-out (runtime subscribers: synchronous, enqueue only) ---------------------------

    def on_events(self, events: list[Any]) -> None:
        if not self.clients:
            return
        engine = self.daemon.engine
        for event in events:
            route = wire.ROUTES.get(type(event))
            if route is None:
                continue
            routed = route(event, engine)
            subscribers = self.by_channel[routed.channel]
            data: bytes | None = None
            for client in tuple(subscribers):
                if client.subs[routed.channel].admits(routed.agent_id, routed.token):
                    if data is None:
                        data = wire.encode(routed.data)
                    self._push(client, routed.type, event.ts, data)

    def on_ticks(self, ticks: list[Tick]) -> None:
        if not self.by_channel["prices"]:
            return
        pending = self._pending
        for tick in ticks:
            pending[tick.token] = tick
        if self._flush is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_flush + self.settings.price_interval_ms / 1000 - loop.time())
            self._flush = loop.call_later(delay, self._flush_prices)

    def _flush_prices(self) -> None:
        self._flush = None
        self._last_flush = asyncio.get_running_loop().time()
        ticks, self._pending = self._pending, {}
        ts = now_ms()
        batches: dict[frozenset[str] | None, PriceBatch | None] = {}
        for client in tuple(self.by_channel["prices"]):
            key = client.subs["prices"].tokens
            batch = batches.get(key, _MISSING)
            if batch is _MISSING:
                batch = batches[key] = _price_batch(ticks, key)
            if batch is not None:
                self._push_prices(client, batch, ts)

    def _push_prices(self, client: Client, batch: PriceBatch, ts: int) -> None:
        item = client.price_item
        if item is None:
            client.price_item = self._push(client, PRICES, ts, batch.data, batch.ticks)
            return
        # A prices message is still waiting: fold these ticks into it (latest per token).
        if item.data is not None:
            item.ticks = dict(item.ticks or {})
            item.data = None
        assert item.ticks is not None
        item.ticks.update(batch.ticks)
        item.ts = ts

    def _push(self, client: Client, type_: bytes, ts: int, data: bytes, ticks: dict[str, Tick] | None = None) -> Item | None:
        """Queue one message; on a full queue drop it (its seq is spent: the client sees a gap)."""
        if client.evicting:
            return None
        item = Item(type_, client.next_seq(), ts, data, ticks)
        queue = client.queue
        if len(queue) >= client.capacity:
            self.dropped += 1
            self._note_full(client)
            return None
        queue.append(item)
        if len(queue) >= client.capacity:
            self._note_full(client)
        client.wake.set()
        return item

    def _note_full(self, client: Client) -> None:
        now = asyncio.get_running_loop().time()
        if client.full_since is None:
            client.full_since = now
        lag = self.settings.max_lag_ms / 1000
        if now - client.full_since >= lag:
            self._evict(client)
        elif "lag" not in client.timers:
            self._arm(client, "lag", client.full_since + lag - now, self._check_lag)

    def _check_lag(self, client: Client) -> None:
        if client.full_since is not None:
            self._note_full(client)

    def _heartbeat(self, client: Client) -> None:
        self._push(client, HEARTBEAT, now_ms(), b"{}")
        self._arm(client, "heartbeat", self.settings.heartbeat_s, self._heartbeat)

    def _arm(self, client: Client, name: str, delay: float, callback: Any) -> None:
        def fire() -> None:
            client.timers.pop(name, None)
            callback(client)

        client.timers[name] = asyncio.get_running_loop().call_later(delay, fire)

    # -- the writer -------------------------------------------------------------------------

    async def _write(self, client: Client) -> None:
        ws, queue = client.ws, client.queue
        try:
            while True:
                if not queue:
                    client.wake.clear()
                    await client.wake.wait()
                    continue
                item = queue.popleft()
                if len(queue) < client.capacity:
                    client.full_since = None
                if item is client.price_item:
                    client.price_item = None
                    if item.data is None:
                        item.data = wire.encode(wire.PricesOut(ticks=[wire.tick_out(t) for t in (item.ticks or {}).values()]))
                assert item.data is not None
                await ws.send_frame(envelope(item.type, item.seq, item.ts, item.data), WSMsgType.TEXT)
                self.sent += 1
        except (ConnectionError, RuntimeError) as exc:  # the peer went away mid-write
            log.info("ws write stopped", extra={"client": client.id, "reason": repr(exc)})

    # -- closing ----------------------------------------------------------------------------

    def _evict(self, client: Client) -> None:
        if client.evicting:
            return
        client.evicting = True
        self.slow_consumers += 1
        self._forget(client)
        if client.writer is not None:
            client.writer.cancel()
        log.warning("ws slow consumer closed", extra={"client": client.id, "key_id": client.key_id,
                                                       "queued": len(client.queue), "seq": client.seq})
        client.queue.clear()
        alert = wire.encode(wire.AlertOut(code="slow_consumer", message="queue full for longer than max_lag_ms"))
        frame = envelope(wire.ALERT, client.next_seq(), now_ms(), alert)
        client.closer = asyncio.get_running_loop().create_task(
            self._send_and_close(client, frame, TRY_AGAIN_LATER, b"slow consumer"), name=f"ws-evict-{client.id}")

    async def _send_and_close(self, client: Client, frame: bytes | None, code: int, reason: bytes) -> None:
        """Best effort within `close_timeout_s`; then the transport is cut so nothing waits on it."""
        try:
            async with asyncio.timeout(self.close_timeout_s):
                if frame is not None:
                    await client.ws.send_frame(frame, WSMsgType.TEXT)
                await client.ws.close(code=code, message=reason)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if client.transport is not None and not client.transport.is_closing():
                client.transport.abort()

    async def close_all(self) -> None:
        """Shutdown: close every connection with 1001 (going away); idempotent."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        clients = [c for c in self.clients if not c.evicting]
        for client in clients:
            client.evicting = True
            self._forget(client)
            if client.writer is not None:
                client.writer.cancel()
            client.closer = asyncio.get_running_loop().create_task(
                self._send_and_close(client, None, WSCloseCode.GOING_AWAY, b"server shutdown"))
        closers = [c.closer for c in clients if c.closer is not None]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)


def _can_read(key: Any) -> bool:
    return "read" in key.scopes or "admin" in key.scopes


def _price_batch(ticks: dict[str, Tick], tokens: frozenset[str] | None) -> PriceBatch | None:
    if tokens is not None:
        ticks = {t: ticks[t] for t in tokens if t in ticks} if len(tokens) < len(ticks) else {
            t: v for t, v in ticks.items() if t in tokens}
    if not ticks:
        return None
    return PriceBatch(ticks, wire.encode(wire.PricesOut(ticks=[wire.tick_out(t) for t in ticks.values()])))

