"""The rig of the ticker feed's integration tests (test_ccxt_ticker_feed.py): a CcxtTickerFeed
on unmodified ccxt binance objects pointed at the fake Binance, the batches it pushed, the
watched set a test edits, and bounded waits on what the feed did."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tradingd.adapters.feeds.ccxt_ticker import CcxtTickerFeed
from tradingd.engine.model import Tick
from tradingd.engine.ports import PushTicks

from tests.fakes.binance import FakeBinance
from tests.fakes.binance_ccxt import async_binance, point_at, pro_binance
from tests.polling import poll_until_async

BTC = "binance:BTC/USDT"
ETH = "binance:ETH/USDT"
BNB = "binance:BNB/USDT"
TICKER_24HR = "/api/v3/ticker/24hr"
BUDGET_S = 5.0  # every wait in these tests
# A fast feed: watched set and REST polls every 100 ms, a streamed market polled after 5 s.
FAST = {"poll_interval_ms": 100, "stale_after_ms": 10_000, "timeout_s": 2.0}


def market_stream(token: str) -> str:
    """The miniTicker stream of an instrument: "binance:BTC/USDT" -> "btcusdt@miniTicker"."""
    return token.split(":")[1].replace("/", "").lower() + "@miniTicker"


def free_port() -> int:
    """A port nothing listens on (bound, read and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Rig:
    """A feed on the fake, its pushed batches, and the watched set the test edits."""

    fake: FakeBinance
    feed: CcxtTickerFeed
    watched: set[str]
    batches: list[list[Tick]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def ticks(self) -> list[Tick]:
        return [t for batch in self.batches for t in batch]

    def prices(self, token: str) -> list[float]:
        return [t.price_usd for t in self.ticks if t.token == token]

    def run(self, push: PushTicks | None = None) -> None:
        self.task = asyncio.create_task(self.feed.run(push or self.batches.append))

    async def priced(self, token: str, price: float, what: str = "") -> None:
        await poll_until_async(
            lambda: self.prices(token),
            lambda got: price in got,
            timeout_s=BUDGET_S,
            what=what or f"a tick of {token} at {price}",
        )

    async def counter(self, name: str, at_least: int = 1) -> None:
        await poll_until_async(
            lambda: self.feed.counters().get(name, 0),
            lambda n: n >= at_least,
            timeout_s=BUDGET_S,
            what=f"counter {name} >= {at_least}",
        )


def send_event(fake: FakeBinance, market_id: str, **fields: str) -> int:
    """Send every connection subscribed to `<market_id>@miniTicker` its event with `fields`
    changed (a price the fake's own `set_price` cannot hold, such as "NaN"); returns how many
    connections got it."""
    stream = market_id.lower() + "@miniticker"
    sent = 0
    for conn in fake.ws.conns:
        if stream in (s.lower() for s in conn.streams):
            event = fake.ws.mini_event(market_id) | fields
            frame = {"stream": stream, "data": event} if conn.combined else event
            conn.queue.put_nowait(json.dumps(frame))
            sent += 1
    return sent


class Rigs:
    """Builds rigs on one fake and ends them all (tasks cancelled, ccxt objects closed)."""

    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        self.rigs: list[Rig] = []
        self.exchanges: list[Any] = []

    def build(
        self,
        watched: Iterable[str] | Callable[[], Iterable[str]] = (BTC,),
        ws: object = True,
        **opts: Any,
    ) -> Rig:
        """A rig pricing `watched` (a set the test edits, or the callable itself); `ws`: True
        (the fake's WebSocket), False (REST only), "dead" (a port nothing listens on) or another
        FakeBinance serving the WebSocket; `opts` over FAST."""
        fake = self.fake
        rest = async_binance(fake)
        self.exchanges.append(rest)
        ws_exchange = None
        if ws is not False:
            ws_exchange = pro_binance(fake)
            self.exchanges.append(ws_exchange)
            if ws == "dead":
                point_at(ws_exchange, fake.url, f"ws://127.0.0.1:{free_port()}")
            elif isinstance(ws, FakeBinance):
                point_at(ws_exchange, fake.url, ws.ws_url)
        chosen: set[str] = set() if callable(watched) else set(watched)
        source = watched if callable(watched) else lambda: chosen
        options = FAST | opts
        feed = CcxtTickerFeed("binance", ws_exchange, rest, source, rng=random.Random(7), **options)
        rig = Rig(fake, feed, chosen)
        self.rigs.append(rig)
        return rig

    async def close(self) -> None:
        tasks = [r.task for r in self.rigs if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for exchange in self.exchanges:
            await exchange.close()
