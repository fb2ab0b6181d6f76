"""A fake Pyth Hermes on 127.0.0.1: `/v2/updates/price/latest` and `/v2/updates/price/stream` in
the exact wire format of ../shared/contracts/pyth-hermes.md, with controllable prices and the
contract's faults, recording every request and stream so tests can check reconnects, backoff
and make-before-break resubscribes. `BlackHole` is a TCP server that accepts and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

STREAM_PATH = "/v2/updates/price/stream"
LATEST_PATH = "/v2/updates/price/latest"
HEX = frozenset("0123456789abcdef")
KEEPALIVE = b":\n\n"  # axum's keep-alive: an empty comment, then the blank line
END_24H = b"event:error\ndata:Connection timeout reached (24h)\n\n"


@dataclass
class FeedPrice:
    """A feed's current price as Hermes sends it. `price` as an int or float is sent as a JSON
    number (a fault: the wire has a string)."""

    price: str | int | float
    conf: str = "0"
    expo: int = -8
    publish_time: int = field(default_factory=lambda: int(time.time()))
    prev_publish_time: int | None = None
    slot: int | None = 138886135


@dataclass
class SeenRequest:
    path: str
    ids: list[str]  # as asked, normalised (lowercase, no 0x)
    query: str  # the raw query string
    authorization: str | None
    at: float  # time.monotonic()
    status: int = 200


@dataclass
class SeenStream:
    number: int
    ids: frozenset[str]
    opened_at: float  # time.monotonic() when the 200 went out
    closed_at: float | None = None


@dataclass
class _Failure:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    path: str | None
    remaining: int


class _Conn:
    def __init__(self, seen: SeenStream, resp: web.StreamResponse, request: web.Request) -> None:
        self.seen = seen
        self.resp = resp
        self.request = request
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()


def _norm(feed_id: str) -> str:
    feed_id = feed_id.lower()
    return feed_id[2:] if feed_id.startswith("0x") else feed_id


class FakeHermes:
    """Start with `await fake.start()` (returns the base URL), stop with `await fake.close()`.

    Stream modes for the next stream connections (`stream_mode`): "normal" (events when
    `publish` is called, keep-alives every `keepalive_s`), "trickle" (200, then `data:{` and one
    space every 20 ms, forever), "huge_line" (a `huge_line_bytes` data line, then normal),
    "firehose" (writes `firehose_payload` `firehose_repeat` times as fast as the reader takes
    it, then ends the stream)."""

    def __init__(
        self,
        api_key: str | None = None,
        keepalive_s: float = 15.0,
        binary_hex_per_feed: int = 32,
    ) -> None:
        self.api_key = api_key
        self.keepalive_s = keepalive_s
        self.binary_hex_per_feed = binary_hex_per_feed
        self.feeds: dict[str, FeedPrice] = {}
        self.requests: list[SeenRequest] = []
        self.streams: list[SeenStream] = []
        self.modes: list[str] = []  # queued modes, one per next stream connection
        self.huge_line_bytes = 10 * 1024 * 1024
        self.firehose_payload = b""
        self.firehose_repeat = 0
        self._failures: list[_Failure] = []
        # time.perf_counter() when the last queued item was handed to a stream's socket
        self.last_write_at = 0.0
        self._conns: list[_Conn] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- control ------------------------------------------------------------------------------

    def set_price(self, feed_id: str, price: str | int | float, **kw: object) -> None:
        self.feeds[_norm(feed_id)] = FeedPrice(price, **kw)  # type: ignore[arg-type]

    def fail_next(
        self,
        n: int,
        status: int,
        body: str | bytes = b"",
        *,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
        path: str | None = None,
    ) -> None:
        """The next `n` requests (to `path`, or any) answer `status` with `body`."""
        raw = body.encode() if isinstance(body, str) else body
        self._failures.append(_Failure(status, raw, content_type, headers or {}, path, n))

    def clear_failures(self) -> None:
        """Answer normally again: the failures still pending are dropped."""
        self._failures.clear()

    def stream_mode(self, *modes: str) -> None:
        self.modes.extend(modes)

    @property
    def open_streams(self) -> list[SeenStream]:
        return [c.seen for c in self._conns]

    def stream_requests(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == STREAM_PATH]

    def event(self, ids: frozenset[str] | list[str], extra: list[dict[str, object]] = ()) -> bytes:  # type: ignore[assignment]
        """One SSE event carrying the known feeds among `ids` (plus raw `extra` entries)."""
        return b"data:" + self.update_json(ids, extra) + b"\n\n"

    def update_json(
        self,
        ids: frozenset[str] | list[str],
        extra: list[dict[str, object]] = (),  # type: ignore[assignment]
    ) -> bytes:
        known = [i for i in sorted(ids) if i in self.feeds]
        parsed: list[dict[str, object]] = [self._entry(i, self.feeds[i]) for i in known]
        parsed.extend(extra)
        blob = "504e4155" + "0" * (2000 + self.binary_hex_per_feed * len(parsed))
        doc = {"binary": {"encoding": "hex", "data": [blob]}, "parsed": parsed}
        return msgspec.json.encode(doc)

    @staticmethod
    def _entry(feed_id: str, p: FeedPrice) -> dict[str, object]:
        price = {"price": p.price, "conf": p.conf, "expo": p.expo, "publish_time": p.publish_time}
        return {
            "id": feed_id,
            "price": price,
            "ema_price": dict(price),
            "metadata": {
                "slot": p.slot,
                "proof_available_time": p.publish_time + 1 if p.slot is not None else None,
                "prev_publish_time": p.prev_publish_time,
            },
        }

    async def publish(self) -> int:
        """Send every open stream one event with its feeds' current prices; returns how many."""
        for conn in self._conns:
            conn.queue.put_nowait(self.event(conn.seen.ids))
        await asyncio.sleep(0)
        return len(self._conns)

    async def send_raw(self, data: bytes) -> None:
        """Write `data` as is to every open stream."""
        for conn in self._conns:
            conn.queue.put_nowait(data)
        await asyncio.sleep(0)

    async def end_streams_24h(self) -> None:
        """Hermes' periodic end: `event:error` Connection timeout reached (24h), then EOF."""
        await self.send_raw(END_24H)
        for conn in self._conns:
            conn.queue.put_nowait(None)
        await asyncio.sleep(0)

    async def cut_mid_event(self) -> None:
        """Write the first half of an event's data line, then drop the TCP connections."""
        for conn in list(self._conns):
            line = self.event(conn.seen.ids)
            with contextlib.suppress(ConnectionError):
                await conn.resp.write(line[: len(line) // 2])
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    async def wait_for(self, predicate: object, timeout_s: float = 10.0) -> None:
        """Poll `predicate()` (every 5 ms) until true; TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.005)

    # -- server -------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get(STREAM_PATH, self._stream)
        app.router.add_get(LATEST_PATH, self._latest)
        # handler_cancellation: a client that goes away ends its handler at once, so
        # `closed_at` is the time of the disconnect (make-before-break checks rely on it)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, max_line_size=65536
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        for conn in self._conns:
            conn.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def _check(self, request: web.Request) -> tuple[SeenRequest, web.Response | None]:
        auth = request.headers.get("Authorization")
        ids = request.query.getall("ids[]", [])
        seen = SeenRequest(
            request.path, [_norm(i) for i in ids], request.query_string, auth, time.monotonic()
        )
        self.requests.append(seen)
        refusal = self._refusal(request, seen, ids)
        if refusal is not None:
            seen.status = refusal.status
        return seen, refusal

    def _refusal(
        self, request: web.Request, seen: SeenRequest, ids: list[str]
    ) -> web.Response | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.path in (None, request.path):
                failure.remaining -= 1
                return web.Response(
                    status=failure.status,
                    body=failure.body,
                    content_type=failure.content_type,
                    headers=failure.headers,
                )
        if self.api_key is not None and seen.authorization != f"Bearer {self.api_key}":
            return web.Response(status=401)
        bad = "Failed to deserialize query string. Error: "
        if not ids:
            return web.Response(status=400, text=bad + "missing field `ids`")
        for flag in ("parsed", "ignore_invalid_price_ids", "allow_unordered", "benchmarks_only"):
            if request.query.get(flag, "true") not in ("true", "false"):
                return web.Response(
                    status=400, text=bad + f"{flag}: provided string was not `true` or `false`"
                )
        for i in seen.ids:
            if len(i) != 64 or not set(i) <= HEX:
                return web.Response(status=400, text=bad + "Invalid String length")
        unknown = [i for i in seen.ids if i not in self.feeds]
        if unknown and request.query.get("ignore_invalid_price_ids") != "true":
            listed = ", ".join("0x" + i for i in unknown)
            return web.Response(status=404, text=f"Price ids not found: {listed}")
        return None

    async def _latest(self, request: web.Request) -> web.Response:
        seen, refusal = self._check(request)
        if refusal is not None:
            return refusal
        return web.Response(body=self.update_json(seen.ids), content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        seen, refusal = self._check(request)
        if refusal is not None:
            return refusal
        mode = self.modes.pop(0) if self.modes else "normal"
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        record = SeenStream(len(self.streams), frozenset(seen.ids), time.monotonic())
        self.streams.append(record)
        conn = _Conn(record, resp, request)
        self._conns.append(conn)
        try:
            if mode == "trickle":
                await resp.write(b"data:{")
                while True:
                    await asyncio.sleep(0.02)
                    await resp.write(b" ")
            if mode == "huge_line":
                await self._huge_line(resp)
            if mode == "firehose":
                for _ in range(self.firehose_repeat):
                    await resp.write(self.firehose_payload)
                return resp
            await self._pump(conn)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            record.closed_at = time.monotonic()
            self._conns.remove(conn)
        return resp

    async def _huge_line(self, resp: web.StreamResponse) -> None:
        chunk = b"x" * 65536
        await resp.write(b"data:")
        for _ in range(self.huge_line_bytes // len(chunk)):
            await resp.write(chunk)
        await resp.write(b"\n\n")

    async def _pump(self, conn: _Conn) -> None:
        while True:
            try:
                async with asyncio.timeout(self.keepalive_s):
                    item = await conn.queue.get()
            except TimeoutError:
                await conn.resp.write(KEEPALIVE)
                continue
            if item is None:
                return
            await conn.resp.write(item)
            self.last_write_at = time.perf_counter()


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    async def close(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
