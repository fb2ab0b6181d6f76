"""What a WebSocket client asks for: `subscribe` / `unsubscribe`, and the snapshot that answers
each subscribe, under two per-connection bounds:

- subscribes per second (`[ws] subscribes_per_s`, burst `subscribe_burst`): one beyond them is
  refused with an `error` (`rate_limited`, `retry_after_ms`) and changes nothing;
- at most one snapshot per `[ws] snapshot_interval_ms`: subscribes inside the interval are
  merged, and when it ends their channels start streaming with ONE snapshot covering them all.

Either way a channel never streams before the snapshot that covers it."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from typing import Any, Protocol

from tradingd.adapters.http import shapes
from tradingd.adapters.http import ws_wire as wire
from tradingd.adapters.http.auth import RateLimiter
from tradingd.adapters.http.source_schemas import source_message
from tradingd.adapters.http.ws_dispatch import Dispatcher, Filter
from tradingd.adapters.http.ws_outbox import Outbox
from tradingd.adapters.timestamps import wall_clock_ms as now_ms
from tradingd.engine.assets import is_instrument

SNAPSHOT = b"snapshot"
SNAPSHOT_SOURCES = 20  # source cards in a subscribe snapshot, the most recently active
SNAPSHOT_TIMER = "snapshot"


class Subscriber(Protocol):
    subs: dict[str, Filter]  # streaming now
    pending: dict[str, Filter]  # subscribed, waiting for the next snapshot
    outbox: Outbox
    subscribes: RateLimiter
    snapshot_at: float | None  # loop time of the last snapshot
    timers: dict[str, asyncio.TimerHandle]


Arm = Callable[[Any, str, float, Callable[[Any], None]], None]
ErrorOut = Callable[[Any, str, str, "dict[str, Any] | None"], None]


def _add(subs: dict[str, Filter], channel: str, wanted: Filter) -> None:
    old = subs.get(channel)
    subs[channel] = old.widen(wanted) if old is not None else wanted


def _narrow(subs: dict[str, Filter], op: wire.Unsubscribe) -> list[str]:
    """Apply the unsubscribe to `subs`; the channels it removed entirely."""
    gone = []
    for channel in op.channels if op.channels is not None else wire.CHANNELS:
        old = subs.get(channel)
        if old is None:
            continue
        new = None if op.agents is None and op.tokens is None else old.narrow(op.agents, op.tokens)
        if new is None:
            del subs[channel]
            gone.append(channel)
        else:
            subs[channel] = new
    return gone


class Subscriptions:
    def __init__(
        self,
        engine: Any,
        dispatch: Dispatcher,
        by_channel: dict[str, set[Any]],
        settings: Any,
        arm: Arm,
        error: ErrorOut,
    ) -> None:
        self.engine = engine
        self.dispatch = dispatch
        self.by_channel = by_channel
        self.rate = settings.subscribes_per_s
        self.burst = settings.subscribe_burst
        self.interval_s = settings.snapshot_interval_ms / 1000
        self.arm = arm
        self.error = error
        self.snapshots = 0  # built, across every client (the metrics read it)

    def limiter(self) -> RateLimiter:
        """A new connection's subscribe budget."""
        return RateLimiter(self.rate, self.burst)

    def subscribe(self, client: Subscriber, op: wire.Subscribe) -> None:
        # Instrument ids, carried unchanged: a filter on a market nothing trades matches nothing.
        bad = [t for t in op.tokens or () if not is_instrument(t)]
        if bad:
            message = (
                "not a base58 32-byte mint address nor an exchange market "
                f"<exchange>:<BASE>/<QUOTE> (e.g. binance:BTC/USDT): {bad[0][:60]!r}"
            )
            return self.error(client, "validation_error", message, {"path": "$.tokens"})
        wait = client.subscribes.take("subscribe")
        if wait is not None:
            message = f"at most {self.rate:g} subscribes per second (burst {self.burst})"
            details = {"retry_after_ms": math.ceil(wait * 1000)}
            return self.error(client, "rate_limited", message, details)
        wanted = Filter(
            frozenset(op.agents) if op.agents is not None else None,
            frozenset(op.tokens) if op.tokens is not None else None,
        )
        for channel in op.channels:
            _add(client.pending, channel, wanted)
        if SNAPSHOT_TIMER in client.timers:
            return  # merged into the snapshot already due
        now = asyncio.get_running_loop().time()
        due = now if client.snapshot_at is None else client.snapshot_at + self.interval_s
        if now >= due:
            subscription = wire.SubscriptionOut(
                channels=list(op.channels), agents=op.agents, tokens=op.tokens
            )
            self._start_streaming(client, subscription)
        else:
            self.arm(client, SNAPSHOT_TIMER, due - now, self._snapshot_due)

    def unsubscribe(self, client: Subscriber, op: wire.Unsubscribe) -> None:
        for channel in _narrow(client.subs, op):
            self.by_channel[channel].discard(client)
        _narrow(client.pending, op)

    def _snapshot_due(self, client: Subscriber) -> None:
        if not client.pending or client.outbox.closed:
            return  # unsubscribed again meanwhile, or gone
        merged = functools.reduce(Filter.widen, client.pending.values())
        subscription = wire.SubscriptionOut(
            channels=list(client.pending),
            agents=sorted(merged.agents) if merged.agents is not None else None,
            tokens=sorted(merged.tokens) if merged.tokens is not None else None,
        )
        self._start_streaming(client, subscription)

    def _start_streaming(self, client: Subscriber, subscription: wire.SubscriptionOut) -> None:
        """The pending channels go live, answered by one snapshot of what they admit."""
        # Pending fan-out is older than the state the snapshot shows: deliver it first.
        self.dispatch.run()
        if client.outbox.closed or not client.pending:
            return  # that fan-out found the client's queue at its bound: it is being cut
        wanted = functools.reduce(Filter.widen, client.pending.values())
        for channel, filter_ in client.pending.items():
            _add(client.subs, channel, filter_)
            self.by_channel[channel].add(client)
        client.pending = {}
        client.snapshot_at = asyncio.get_running_loop().time()
        self.snapshots += 1
        client.outbox.push(SNAPSHOT, now_ms(), self._snapshot(subscription, wanted))

    def _snapshot(self, subscription: wire.SubscriptionOut, wanted: Filter) -> bytes:
        """Open positions, balances, agents, last prices and resting buys admitted by
        `wanted`."""
        engine = self.engine
        agent_ids = [a for a in engine.agents if wanted.agents is None or a in wanted.agents]
        positions = [
            shapes.position_out(engine.refresh(p))
            for aid in agent_ids
            for p in engine.agent_positions.get(aid, {}).values()
            if p.status in ("open", "closing") and wanted.admits(p.agent_id, p.token)
        ]
        balances = [
            shapes.agent_balance_out(aid, b)
            for aid in agent_ids
            for b in engine.ledger.balances(aid)
        ]
        prices = [
            shapes.tick_out(t) for tok, t in engine.prices.items() if wanted.admits(None, tok)
        ]
        entries = [
            shapes.resting_entry_out(e, engine)
            for aid in agent_ids
            for e in engine.books[aid].entries.values()
            if wanted.admits(e.agent_id, e.token)
        ]
        tokens = []
        view = self.dispatch.token_view
        if "tokens" in subscription.channels and view is not None:
            watched = engine.watched_tokens()
            names = wanted.tokens if wanted.tokens is not None else watched
            # at most as many as a token list may name: a snapshot stays one bounded message
            chosen = sorted(names)[: wire.MAX_IDS]
            tokens = [v for v in (view(t, watched) for t in chosen) if v is not None]
        sources = []
        if "sources" in subscription.channels:
            now, cards = engine.clock(), engine.scorecards.by_source
            # the most recently active ones only: a snapshot of every card (1,000 x 2 windows)
            # would hold the event loop and the client's queue (GET /v1/sources pages the rest)
            recent = sorted(cards, key=lambda n: cards[n].updated_at, reverse=True)
            sources = [source_message(n, cards[n], now) for n in recent[:SNAPSHOT_SOURCES]]
        return wire.encode(
            wire.SnapshotOut(
                subscription=subscription,
                halted=engine.halted_buys,
                agents=[shapes.agent_out(engine.agents[a]) for a in agent_ids],
                positions=positions,
                balances=balances,
                prices=prices,
                entries=entries,
                tokens=tokens,
                sources=sources,
            )
        )
