"""The fake Binance's 24h ticker statistics and its market-data WebSocket, in the wire format
of web-socket-streams.md (binance-spot-api-docs): raw streams at `/ws` and `/ws/<streamName>`,
combined streams at `/stream?streams=a/b` (events wrapped `{"stream": .., "data": ..}`), the
SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY requests, and the
`<symbol>@ticker` (24hrTicker), `<symbol>@miniTicker` and `!miniTicker@arr` (24hrMiniTicker)
streams. `!ticker@arr` was retired on 2026-03-26 (CHANGELOG.md) and is never fed."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.binance_records import fmt

if TYPE_CHECKING:
    from tests.fakes.binance import FakeBinance

DAY_MS = 86_400_000
BOOK_QTY = Decimal("10")  # the quantity shown at the best bid and ask


@dataclass
class _Stats:
    """A symbol's rolling statistics since the fake started (standing in for the 24h window)."""

    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    last_qty: Decimal = Decimal(0)
    first_id: int = -1
    last_id: int = -1
    count: int = 0


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    combined: bool
    streams: list[str] = field(default_factory=list)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class TickerStreams:
    """Owned by a `FakeBinance`; tests reach it as `fake.ws`. Knobs: `interval_s` (also push
    every subscribed ticker every so many seconds, as the real 1000 ms update speed does;
    None: only on `set_price`), `spread_ticks` (best bid/ask = last -/+ this many ticks)."""

    def __init__(self, fake: FakeBinance) -> None:
        self._fake = fake
        self.conns: list[_Conn] = []
        self.stats: dict[str, _Stats] = {}
        self.interval_s: float | None = None
        self.spread_ticks = 0
        self.connections_opened = 0
        self.controls: list[dict[str, object]] = []  # every request message received
        self._next_trade_id = 0

    # -- statistics -----------------------------------------------------------------------------

    def reset_stats(self) -> None:
        self.stats = {mid: _Stats(p, p, p) for mid, p in self._fake.prices.items()}

    def record_price(self, market_id: str, price: Decimal) -> None:
        st = self.stats.setdefault(market_id, _Stats(price, price, price))
        st.high, st.low = max(st.high, price), min(st.low, price)

    def record_trade(self, market_id: str, price: Decimal, qty: Decimal) -> None:
        self.record_price(market_id, price)
        st = self.stats[market_id]
        self._next_trade_id += 1
        st.first_id = self._next_trade_id if st.first_id < 0 else st.first_id
        st.last_id, st.count = self._next_trade_id, st.count + 1
        st.volume += qty
        st.quote_volume += qty * price
        st.last_qty = qty

    def _numbers(self, market_id: str) -> dict[str, Decimal]:
        price = self._fake.prices[market_id]
        st = self.stats.setdefault(market_id, _Stats(price, price, price))
        tick = self._fake.markets[market_id].tick * self.spread_ticks
        change = price - st.open
        pct = (change * 100 / st.open).quantize(Decimal("0.001")) if st.open else Decimal(0)
        avg = st.quote_volume / st.volume if st.volume else price
        return {"last": price, "open": st.open, "high": st.high, "low": st.low,
                "change": change, "pct": pct, "avg": avg, "bid": price - tick,
                "ask": price + tick, "volume": st.volume, "quote_volume": st.quote_volume,
                "last_qty": st.last_qty}  # fmt: skip

    def rest_ticker(self, market_id: str) -> dict[str, object]:
        """`GET /api/v3/ticker/24hr` FULL entry (rest-api.md)."""
        n, st, now = self._numbers(market_id), self.stats[market_id], self._fake.now_ms()
        return {
            "symbol": market_id, "priceChange": fmt(n["change"]),
            "priceChangePercent": f"{n['pct']:f}", "weightedAvgPrice": fmt(n["avg"]),
            "prevClosePrice": fmt(n["open"]), "lastPrice": fmt(n["last"]),
            "lastQty": fmt(n["last_qty"]), "bidPrice": fmt(n["bid"]), "bidQty": fmt(BOOK_QTY),
            "askPrice": fmt(n["ask"]), "askQty": fmt(BOOK_QTY), "openPrice": fmt(n["open"]),
            "highPrice": fmt(n["high"]), "lowPrice": fmt(n["low"]), "volume": fmt(n["volume"]),
            "quoteVolume": fmt(n["quote_volume"]), "openTime": now - DAY_MS, "closeTime": now,
            "firstId": st.first_id, "lastId": st.last_id, "count": st.count,
        }  # fmt: skip

    def ticker_event(self, market_id: str) -> dict[str, object]:
        """The `<symbol>@ticker` payload (event "24hrTicker")."""
        n, st, now = self._numbers(market_id), self.stats[market_id], self._fake.now_ms()
        return {
            "e": "24hrTicker", "E": now, "s": market_id, "p": fmt(n["change"]),
            "P": f"{n['pct']:f}", "w": fmt(n["avg"]), "x": fmt(n["open"]), "c": fmt(n["last"]),
            "Q": fmt(n["last_qty"]), "b": fmt(n["bid"]), "B": fmt(BOOK_QTY), "a": fmt(n["ask"]),
            "A": fmt(BOOK_QTY), "o": fmt(n["open"]), "h": fmt(n["high"]), "l": fmt(n["low"]),
            "v": fmt(n["volume"]), "q": fmt(n["quote_volume"]), "O": now - DAY_MS, "C": now,
            "F": st.first_id, "L": st.last_id, "n": st.count,
        }  # fmt: skip

    def mini_event(self, market_id: str) -> dict[str, object]:
        """The `<symbol>@miniTicker` payload (event "24hrMiniTicker")."""
        n = self._numbers(market_id)
        return {"e": "24hrMiniTicker", "E": self._fake.now_ms(), "s": market_id,
                "c": fmt(n["last"]), "o": fmt(n["open"]), "h": fmt(n["high"]),
                "l": fmt(n["low"]), "v": fmt(n["volume"]), "q": fmt(n["quote_volume"])}  # fmt: skip

    # -- pushing --------------------------------------------------------------------------------

    def push(self, market_id: str) -> None:
        """Queue this symbol's events to every connection subscribed to one of its streams."""
        for conn in self.conns:
            for stream in conn.streams:
                payload = self._payload(stream, market_id)
                if payload is not None:
                    conn.queue.put_nowait(_frame(conn, stream, payload))

    def _payload(self, stream: str, market_id: str) -> object | None:
        stream = stream.lower()
        if stream == market_id.lower() + "@ticker":
            return self.ticker_event(market_id)
        if stream == market_id.lower() + "@miniticker":
            return self.mini_event(market_id)
        if stream == "!miniticker@arr":
            return [self.mini_event(market_id)]
        return None

    def subscribed(self, stream: str) -> bool:
        return any(stream.lower() in {s.lower() for s in c.streams} for c in self.conns)

    async def wait_subscribed(self, stream: str, timeout_s: float = 3.0) -> None:
        """Return once a connection is subscribed to `stream` (e.g. "btcusdt@miniTicker")."""
        for _ in range(int(timeout_s / 0.01) + 1):
            if self.subscribed(stream):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no subscription to {stream} in {timeout_s} s: {self.controls}")

    async def drop_all(self, abrupt: bool = False) -> int:
        """Close every connection (1001 going away; `abrupt`: cut the TCP connection)."""
        conns = list(self.conns)
        for conn in conns:
            if abrupt and conn.request.transport is not None:
                conn.request.transport.abort()
            else:
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"")
        return len(conns)

    # -- server ---------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._serve)
        app.router.add_get("/ws/{name}", self._serve)
        app.router.add_get("/stream", self._serve)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0)  # the server pings every 20 s
        await ws.prepare(request)
        conn = _Conn(ws, request, combined=request.path.startswith("/stream"))
        named = request.query.get("streams", "").split("/") if conn.combined else [request.match_info.get("name", "")]  # fmt: skip
        conn.streams.extend(s for s in named if "@" in s)
        self.conns.append(conn)
        self.connections_opened += 1
        tasks = [asyncio.create_task(self._writer(conn))]
        if self.interval_s:
            tasks.append(asyncio.create_task(self._every(conn, self.interval_s)))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.queue.put_nowait(json.dumps(self._control(conn, msg.data)))
        finally:
            self.conns.remove(conn)
            conn.queue.put_nowait(None)
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return ws

    async def _writer(self, conn: _Conn) -> None:
        """One writer per connection keeps the events in the order they were queued."""
        while (text := await conn.queue.get()) is not None:
            if conn.ws.closed:
                return
            await conn.ws.send_str(text)

    async def _every(self, conn: _Conn, interval_s: float) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(interval_s)
            for stream in list(conn.streams):
                for market_id in self._fake.prices:
                    payload = self._payload(stream, market_id)
                    if payload is not None:
                        conn.queue.put_nowait(_frame(conn, stream, payload))

    def _control(self, conn: _Conn, text: str) -> dict[str, object]:
        """Answer one request message (web-socket-streams.md "Live Subscribing")."""
        try:
            doc = json.loads(text)
        except ValueError:
            return {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}
        if not isinstance(doc, dict) or "method" not in doc:
            return {"code": 2, "msg": "Invalid request: missing field `method` at line 1 column 1"}  # fmt: skip
        self.controls.append(doc)
        method, params, rid = doc["method"], doc.get("params") or [], doc.get("id")
        if method == "SUBSCRIBE":
            conn.streams.extend(s for s in params if s not in conn.streams)
            return {"result": None, "id": rid}
        if method == "UNSUBSCRIBE":
            gone = {p.lower() for p in params}
            conn.streams[:] = [s for s in conn.streams if s.lower() not in gone]
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.streams), "id": rid}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                return {"code": 0, "msg": "Unknown property", "id": rid}
            if method == "GET_PROPERTY":
                return {"result": conn.combined, "id": rid}
            conn.combined = bool(params[1])
            return {"result": None, "id": rid}
        return {"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 28"}  # fmt: skip


def _frame(conn: _Conn, stream: str, payload: object) -> str:
    return json.dumps({"stream": stream, "data": payload} if conn.combined else payload)
