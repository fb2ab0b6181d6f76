"""One WebSocket client's outgoing side: a bounded queue of pre-encoded payloads, the
connection's `seq`, price coalescing, and the writer that drains the queue onto the socket.

Pushing never blocks and never encodes per client: the payload bytes are shared by every client
that receives them and only the envelope (`type`, `seq`, `ts`) is formatted at write time. A push
onto a full queue is dropped but still spends its `seq`, so the client sees the gap."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import msgspec
from aiohttp import WSMsgType, web

from adapters.http import ws_wire as wire
from engine.model import Tick

log = logging.getLogger("tradingd.ws")

PRICES = b"prices"


def envelope(type_: bytes, seq: int, ts: int, data: bytes) -> bytes:
    return b'{"type":"%b","seq":%d,"ts":%d,"data":%b}' % (type_, seq, ts, data)


class PriceBatch:
    """Ticks of one flush for one token filter, encoded once for every client sharing it."""

    __slots__ = ("ticks", "data")

    def __init__(self, ticks: dict[str, Tick], data: bytes) -> None:
        self.ticks, self.data = ticks, data

    @classmethod
    def of(cls, ticks: dict[str, Tick], tokens: frozenset[str] | None) -> PriceBatch | None:
        if tokens is not None:
            if len(tokens) < len(ticks):
                ticks = {t: ticks[t] for t in tokens if t in ticks}
            else:
                ticks = {t: v for t, v in ticks.items() if t in tokens}
        return cls(ticks, encode_prices(ticks)) if ticks else None


def encode_prices(ticks: dict[str, Tick]) -> bytes:
    return wire.encode(wire.PricesOut(ticks=[wire.tick_out(t) for t in ticks.values()]))


class Item(msgspec.Struct, gc=False):
    """A queued message. A `prices` item keeps absorbing ticks (latest per token) until written:
    then `data` is None and `ticks` is this client's own merged copy. Untracked by the cyclic GC
    (it holds bytes and a dict of frozen ticks, never a cycle): thousands are made per second."""

    type: bytes
    seq: int
    ts: int
    data: bytes | None
    ticks: dict[str, Tick] | None


class Counters:
    """Totals across every client of a hub, read by the metrics."""

    __slots__ = ("sent", "dropped")

    def __init__(self) -> None:
        self.sent = 0
        self.dropped = 0


class Outbox:
    def __init__(
        self, capacity: int, counters: Counters, on_full: Callable[[Outbox], None]
    ) -> None:
        self.capacity = capacity
        self.counters = counters
        self.on_full = on_full  # called on each push that finds or leaves the queue full
        self.queue: deque[Item] = deque()
        self.seq = 0
        self.full_since: float | None = None  # loop time the queue last became full
        self.closed = False
        self._price_item: Item | None = None
        self._wake = asyncio.Event()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def push(
        self, type_: bytes, ts: int, data: bytes, ticks: dict[str, Tick] | None = None
    ) -> Item | None:
        if self.closed:
            return None
        item = Item(type_, self.next_seq(), ts, data, ticks)
        queue = self.queue
        if len(queue) >= self.capacity:
            self.counters.dropped += 1
            self._full()
            return None
        queue.append(item)
        if len(queue) >= self.capacity:
            self._full()
        self._wake.set()
        return item

    def push_prices(self, batch: PriceBatch, ts: int) -> None:
        item = self._price_item
        if item is None:
            self._price_item = self.push(PRICES, ts, batch.data, batch.ticks)
            return
        if item.data is not None:  # first fold: stop sharing the batch, keep a private copy
            item.ticks = dict(item.ticks or {})
            item.data = None
        assert item.ticks is not None
        item.ticks.update(batch.ticks)
        item.ts = ts

    def _full(self) -> None:
        if self.full_since is None:
            self.full_since = asyncio.get_running_loop().time()
        self.on_full(self)

    def close(self) -> None:
        """Take nothing more and drop what waits (the client is gone or being cut off)."""
        self.closed = True
        self.queue.clear()
        self._price_item = None
        self._wake.set()

    def finish(self) -> None:
        """Take nothing more; the writer returns once what waits is written (graceful close)."""
        self.closed = True
        self._wake.set()

    async def drain_to(self, ws: web.WebSocketResponse) -> None:
        """The writer task: one per client, the only code that awaits its socket. Returns when
        the outbox is closed and empty."""
        queue, counters = self.queue, self.counters
        while True:
            if not queue:
                if self.closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            item = queue.popleft()
            if len(queue) < self.capacity:
                self.full_since = None
            if item is self._price_item:
                self._price_item = None
                if item.data is None:
                    item.data = encode_prices(item.ticks or {})
            assert item.data is not None
            await ws.send_frame(envelope(item.type, item.seq, item.ts, item.data), WSMsgType.TEXT)
            counters.sent += 1
