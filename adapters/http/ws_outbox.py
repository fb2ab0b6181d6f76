"""One WebSocket client's outgoing side: a queue of pre-encoded payloads bounded in messages and
in bytes, the connection's `seq`, price coalescing, and the writer that drains the queue onto
the socket.

Pushing never blocks and never encodes per client: the payload bytes are shared by every client
that receives them and only the envelope (`type`, `seq`, `ts`) is formatted at write time. `seq`
is spent when a message is written, so what a client receives has no gap. Nothing is ever
dropped from a live stream: a push that finds the queue at its bound, or a queue whose oldest
message has waited past the lag bound, calls `on_overflow` (the hub then cuts the client with a
`slow_consumer` alert and close code 1013)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import msgspec
from aiohttp import WSMsgType, web
from tradingd.adapters.http import shapes
from tradingd.adapters.http import ws_wire as wire
from tradingd.engine.model import Tick

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
    return wire.encode(wire.PricesOut(ticks=[shapes.tick_out(t) for t in ticks.values()]))


class Item(msgspec.Struct, gc=False):
    """A queued message. A `prices` item keeps absorbing ticks (latest per token) until written:
    then `data` is None and `ticks` is this client's own merged copy. Untracked by the cyclic GC
    (it holds bytes and a dict of frozen ticks, never a cycle): thousands are made per second.
    `size` is what it counts against the byte bound; `at` the loop time it was queued."""

    type: bytes
    ts: int
    data: bytes | None
    ticks: dict[str, Tick] | None
    size: int
    at: float


class Counters:
    """Totals across every client of a hub, read by the metrics."""

    __slots__ = ("sent", "dropped", "peak_bytes")

    def __init__(self) -> None:
        self.sent = 0
        self.dropped = 0  # messages left unsent when a client was cut or went away
        self.peak_bytes = 0  # the most bytes one client's queue ever held


class Outbox:
    def __init__(
        self,
        capacity: int,
        max_bytes: int,
        max_lag_s: float,
        counters: Counters,
        on_overflow: Callable[[Outbox, str], None],
    ) -> None:
        self.capacity = capacity  # messages
        self.max_bytes = max_bytes  # payload bytes queued (one message alone may be larger)
        self.max_lag_s = max_lag_s  # the oldest queued message's age
        self.counters = counters
        self.on_overflow = on_overflow  # with the reason: "queue_messages", "queue_bytes", "lag"
        self.queue: deque[Item] = deque()
        self.queued_bytes = 0
        self.seq = 0
        self.closed = False
        self._price_item: Item | None = None
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def next_seq(self) -> int:
        """The seq of a frame written outside the queue (refusals, the slow-consumer alert)."""
        self.seq += 1
        return self.seq

    def push(
        self, type_: bytes, ts: int, data: bytes, ticks: dict[str, Tick] | None = None
    ) -> Item | None:
        if self.closed:
            return None
        queue, size, now = self.queue, len(data), self._loop.time()
        if queue:
            reason = None
            if len(queue) >= self.capacity:
                reason = "queue_messages"
            elif self.queued_bytes + size > self.max_bytes:
                reason = "queue_bytes"
            elif now - queue[0].at > self.max_lag_s:
                reason = "lag"
            if reason is not None:
                self.counters.dropped += 1
                self.on_overflow(self, reason)
                return None
        item = Item(type_, ts, data, ticks, size, now)
        queue.append(item)
        self.queued_bytes += size
        if self.queued_bytes > self.counters.peak_bytes:
            self.counters.peak_bytes = self.queued_bytes
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
        # the folded batch is encoded at write time: count it at the batch's bytes per tick
        size = len(item.ticks) * len(batch.data) // max(1, len(batch.ticks))
        self.queued_bytes += size - item.size
        item.size = size

    def close(self) -> None:
        """Take nothing more and drop what waits (the client is gone or being cut off)."""
        self.closed = True
        self.counters.dropped += len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
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
            self.queued_bytes -= item.size
            if item is self._price_item:
                self._price_item = None
                if item.data is None:
                    item.data = encode_prices(item.ticks or {})
            assert item.data is not None
            # seq is spent before the await: the frame is in the transport once send_frame
            # starts waiting for a drain, so a cut client's alert follows it without a gap
            self.seq += 1
            await ws.send_frame(envelope(item.type, self.seq, item.ts, item.data), WSMsgType.TEXT)
            counters.sent += 1
