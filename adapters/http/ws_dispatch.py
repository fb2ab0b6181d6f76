"""Fan-out of engine events and price batches to the WebSocket clients subscribed to them.

The runtime hooks only route (decide channel, agent and token) and append a job: no client is
visited inside an engine transition, so orders are dispatched before any fan-out work. Jobs run
in FIFO order from loop callbacks that visit at most CHUNK clients each, so with a thousand
clients the loop still polls sockets (signals, ticks, fills) between slices of a fan-out. Each
payload is encoded once per job (once per distinct token filter for prices), never per client."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from tradingd.adapters.http import ws_wire as wire
from tradingd.adapters.http.source_schemas import source_message
from tradingd.adapters.http.ws_events import ROUTE_CHANNELS, ROUTES, Routed
from tradingd.adapters.http.ws_outbox import Outbox, PriceBatch
from tradingd.adapters.timestamps import wall_clock_ms as now_ms
from tradingd.engine import events as ev
from tradingd.engine.model import Tick

if TYPE_CHECKING:
    from tradingd.adapters.http.token_schemas import TokenOut

log = logging.getLogger("tradingd.ws")
CHUNK = 64  # client visits per loop callback: ~2 ms with the writes they wake
BACKLOG_ITERATIONS = 16
MAX_DIRTY_TOKENS = 10_000  # token views waiting for the next `tokens` job
TOKEN_VIEWS_PER_JOB = 100  # `token` messages per subscriber per [ws] token_interval_ms
_MISSING: Any = object()


class Filter:
    """One channel's filter: the agent ids and tokens it admits, None for all."""

    __slots__ = ("agents", "tokens")

    def __init__(self, agents: frozenset[str] | None, tokens: frozenset[str] | None) -> None:
        self.agents, self.tokens = agents, tokens

    def admits(self, agent_id: str | None, token: str | None) -> bool:
        return (self.agents is None or agent_id is None or agent_id in self.agents) and (
            self.tokens is None or token is None or token in self.tokens
        )

    def widen(self, other: Filter) -> Filter:
        agents = None if self.agents is None or other.agents is None else self.agents | other.agents
        tokens = None if self.tokens is None or other.tokens is None else self.tokens | other.tokens
        return Filter(agents, tokens)

    def narrow(self, agents: list[str] | None, tokens: list[str] | None) -> Filter | None:
        """Remove ids from explicit lists (an "all" list stays all); None once nothing is left."""
        a = self.agents - frozenset(agents) if self.agents is not None and agents else self.agents
        t = self.tokens - frozenset(tokens) if self.tokens is not None and tokens else self.tokens
        return None if a == frozenset() or t == frozenset() else Filter(a, t)


class Subscriber(Protocol):
    subs: dict[str, Filter]
    outbox: Outbox


class _EventJob:
    __slots__ = ("clients", "pos", "routed", "ts", "data")

    def __init__(self, clients: tuple[Subscriber, ...], routed: Routed, ts: int) -> None:
        self.clients, self.pos, self.routed, self.ts = clients, 0, routed, ts
        self.data: bytes | None = None  # encoded on the first client that admits it

    def visit(self, client: Subscriber) -> None:
        r = self.routed
        f = client.subs.get(r.channel)
        if f is not None and f.admits(r.agent_id, r.token):
            if self.data is None:
                self.data = wire.encode(r.data)
            client.outbox.push(r.type, self.ts, self.data)


class _PriceJob:
    __slots__ = ("clients", "pos", "ticks", "ts", "batches")

    def __init__(self, clients: tuple[Subscriber, ...], ticks: dict[str, Tick], ts: int) -> None:
        self.clients, self.pos, self.ticks, self.ts = clients, 0, ticks, ts
        self.batches: dict[frozenset[str] | None, PriceBatch | None] = {}

    def visit(self, client: Subscriber) -> None:
        f = client.subs.get("prices")
        if f is None:
            return
        batch = self.batches.get(f.tokens, _MISSING)
        if batch is _MISSING:
            batch = self.batches[f.tokens] = PriceBatch.of(self.ticks, f.tokens)
        if batch is not None:
            client.outbox.push_prices(batch, self.ts)


class _SourceJob:
    """`source` messages to every `sources` subscriber (no agent or token filter applies)."""

    __slots__ = ("clients", "pos", "views", "ts")

    def __init__(self, clients: tuple[Subscriber, ...], views: list[bytes], ts: int) -> None:
        self.clients, self.pos, self.views, self.ts = clients, 0, views, ts

    def visit(self, client: Subscriber) -> None:
        if "sources" in client.subs:
            for data in self.views:
                client.outbox.push(SOURCE, self.ts, data)


class _TokenJob:
    __slots__ = ("clients", "pos", "views", "ts")

    def __init__(self, clients: tuple[Subscriber, ...], views: dict[str, bytes], ts: int) -> None:
        self.clients, self.pos, self.views, self.ts = clients, 0, views, ts

    def visit(self, client: Subscriber) -> None:
        f = client.subs.get("tokens")
        if f is None:
            return
        for token, data in self.views.items():
            if f.admits(None, token):
                client.outbox.push(TOKEN, self.ts, data)


# The source of a signal, fill or close: what makes a source's card change.
_SCORED: dict[type, Callable[[Any], str | None]] = {
    ev.SignalReceived: lambda e: e.source,
    ev.OrderFilled: lambda e: e.trade.source,
    ev.PositionClosed: lambda e: e.position.opened_by.source if e.position.opened_by else None,
}
TOKEN = b"token"
SOURCE = b"source"
MAX_DIRTY_SOURCES = 10_000
SOURCE_VIEWS_PER_JOB = 100  # `source` messages per subscriber per [ws] token_interval_ms
# (token, the engine's watched tokens) -> the token's view, or None when nothing is known of it
TokenView = Callable[[str, "Collection[str]"], "TokenOut | None"]


class Dispatcher:
    def __init__(
        self,
        engine: Any,
        by_channel: dict[str, set[Any]],
        price_interval_ms: int,
        token_view: TokenView | None = None,
        token_interval_ms: int = 1000,
    ) -> None:
        self.engine = engine
        self.by_channel = by_channel
        self.price_interval_s = price_interval_ms / 1000
        # `tokens` channel: a token's view after its market data or divergence changed, at most
        # once per token_interval_ms (built from the engine when sent, so it is current)
        self.token_view = token_view
        self.token_interval_s = token_interval_ms / 1000
        self._dirty_tokens: dict[str, None] = {}  # an ordered set: first changed, first sent
        self._token_timer: asyncio.TimerHandle | None = None
        # `sources` channel: a source's card after a signal, fill or close of it, at most once
        # per token_interval_ms (built from the engine when sent, so it is current)
        self._dirty_sources: dict[str, None] = {}
        self._source_timer: asyncio.TimerHandle | None = None
        self._jobs: deque[_EventJob | _PriceJob | _TokenJob | _SourceJob] = deque()
        self.backlog = 0  # client visits the pending jobs still have to make
        self._running: asyncio.Handle | None = None
        self._pending_ticks: dict[str, Tick] = {}  # latest per token since the last price job
        self._price_timer: asyncio.TimerHandle | None = None
        self._last_prices = 0.0

    # -- runtime hooks: synchronous, route and append only ------------------------------------

    def on_events(self, events: list[ev.Event]) -> None:
        engine, by_channel = self.engine, self.by_channel
        scoring = bool(by_channel["sources"])
        for event in events:
            t = type(event)
            if scoring and t in _SCORED:
                self._source_changed(_SCORED[t](event))
            channel = ROUTE_CHANNELS.get(t)
            if channel is None:
                continue
            if t is ev.Alert:
                self._on_alert(event)  # type: ignore[arg-type]
            subscribers = by_channel[channel]
            if not subscribers:
                continue
            routed = ROUTES[t](event, engine)
            if routed is not None:
                self._add(_EventJob(tuple(subscribers), routed, event.ts))

    def _on_alert(self, event: ev.Alert) -> None:
        if (
            event.code.startswith("price_divergence")
            and self.by_channel["tokens"]
            and self.token_view is not None
        ):
            self._token_changed(str(event.details.get("token")))

    def on_tick_intake(self, ticks: list[Tick], _now: int) -> None:
        """Runtime tick intake: tokens whose ticks carry market data get a `token` message."""
        if not self.by_channel["tokens"] or self.token_view is None:
            return
        for t in ticks:
            if (
                t.liquidity_usd is not None
                or t.market_cap_usd is not None
                or t.conf_usd is not None
            ):
                self._token_changed(t.token)

    def _token_changed(self, token: str) -> None:
        if len(self._dirty_tokens) < MAX_DIRTY_TOKENS:
            self._dirty_tokens.setdefault(token)
        if self._token_timer is None:
            loop = asyncio.get_running_loop()
            self._token_timer = loop.call_later(self.token_interval_s, self._token_job)

    def _token_job(self) -> None:
        """At most TOKEN_VIEWS_PER_JOB views per interval, first changed first sent (the rest
        wait for the next intervals), and only of tokens some subscriber admits: a push of
        thousands of tokens can neither flood a subscriber's queue nor starve the tokens
        another subscriber asked for."""
        self._token_timer = None
        subscribers = self.by_channel["tokens"]
        if not self._dirty_tokens or not subscribers or self.token_view is None:
            self._dirty_tokens = {}
            return
        wanted: set[str] | None = set()
        for client in subscribers:
            f = client.subs.get("tokens")
            if f is None:
                continue
            if f.tokens is None:
                wanted = None
                break
            wanted.update(f.tokens)  # type: ignore[union-attr]
        dirty = self._dirty_tokens
        if wanted is not None:
            dirty = {t: None for t in dirty if t in wanted}
        order = list(dirty)
        tokens, rest = order[:TOKEN_VIEWS_PER_JOB], order[TOKEN_VIEWS_PER_JOB:]
        self._dirty_tokens = dict.fromkeys(rest)
        if rest:
            loop = asyncio.get_running_loop()
            self._token_timer = loop.call_later(self.token_interval_s, self._token_job)
        views = {}
        watched = self.engine.watched_tokens()  # once for every view of the job
        for token in tokens:
            view = self.token_view(token, watched)
            if view is not None:
                views[token] = wire.encode(view)
        if views:
            self._add(_TokenJob(tuple(subscribers), views, now_ms()))

    def _source_changed(self, source: str | None) -> None:
        if source is None:
            return
        if len(self._dirty_sources) < MAX_DIRTY_SOURCES:
            self._dirty_sources.setdefault(self.engine.scorecards.name(source))
        if self._source_timer is None:
            loop = asyncio.get_running_loop()
            self._source_timer = loop.call_later(self.token_interval_s, self._source_job)

    def _source_job(self) -> None:
        """At most SOURCE_VIEWS_PER_JOB cards per interval, first changed first sent."""
        self._source_timer = None
        subscribers = self.by_channel["sources"]
        if not self._dirty_sources or not subscribers:
            self._dirty_sources = {}
            return
        order = list(self._dirty_sources)
        names, rest = order[:SOURCE_VIEWS_PER_JOB], order[SOURCE_VIEWS_PER_JOB:]
        self._dirty_sources = dict.fromkeys(rest)
        if rest:
            loop = asyncio.get_running_loop()
            self._source_timer = loop.call_later(self.token_interval_s, self._source_job)
        cards = self.engine.scorecards.by_source
        now = self.engine.clock()
        views = [
            wire.encode(source_message(name, cards[name], now)) for name in names if name in cards
        ]
        if views:
            self._add(_SourceJob(tuple(subscribers), views, now_ms()))

    def on_ticks(self, ticks: list[Tick]) -> None:
        if not self.by_channel["prices"]:
            return
        pending = self._pending_ticks
        for tick in ticks:
            pending[tick.token] = tick
        if self._price_timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_prices + self.price_interval_s - loop.time())
            self._price_timer = loop.call_later(delay, self._price_job)

    def _price_job(self) -> None:
        """At most once per price_interval_ms, the latest tick per token as one job."""
        self._price_timer = None
        self._last_prices = asyncio.get_running_loop().time()
        ticks, self._pending_ticks = self._pending_ticks, {}
        subscribers = self.by_channel["prices"]
        if ticks and subscribers:
            self._add(_PriceJob(tuple(subscribers), ticks, now_ms()))

    # -- running the jobs -----------------------------------------------------------------------

    def _add(self, job: _EventJob | _PriceJob | _TokenJob | _SourceJob) -> None:
        self._jobs.append(job)
        self.backlog += len(job.clients)
        if self._running is None:
            self._running = asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._running = None
        # Slices grow with the backlog, so an event storm to many clients is worked off within
        # a bounded number of loop iterations instead of piling up in memory.
        self.run(max(CHUNK, self.backlog // BACKLOG_ITERATIONS))
        if self._jobs:
            self._running = asyncio.get_running_loop().call_soon(self._run)

    def run(self, budget: int | None = None) -> None:
        """Visit up to `budget` clients (all pending work when None), oldest job first."""
        jobs = self._jobs
        left = self.backlog if budget is None else budget
        while jobs and left > 0:
            job = jobs[0]
            start, end = job.pos, min(len(job.clients), job.pos + left)
            clients, visit = job.clients, job.visit
            for i in range(start, end):
                try:
                    visit(clients[i])
                except Exception:  # one client's failure must not stop the fan-out to the rest
                    log.exception(
                        "ws fan-out to a client failed",
                        extra={"client": getattr(clients[i], "id", None)},
                    )
            job.pos = end
            left -= end - start
            self.backlog -= end - start
            if end == len(clients):
                jobs.popleft()

    def close(self) -> None:
        for handle in (self._running, self._price_timer, self._token_timer, self._source_timer):
            if handle is not None:
                handle.cancel()
        self._running = self._price_timer = self._token_timer = self._source_timer = None
        self._jobs.clear()
        self.backlog = 0
