"""Prometheus metrics of one daemon, in its own registry (never the process-global one, so
several daemons in one test process do not collide).

Latencies and per-agent counts are observed inside the runtime hooks, which run synchronously
right after the transition that produced them (a dict update per event, no scans); state gauges
(equity, positions, feeds, WebSocket clients, halt) are read from the daemon when `/metrics` is
scraped (adapters/app/metrics_scrape.py), so they cost nothing between scrapes."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from tradingd.adapters.app.metrics_gc import GcPauses
from tradingd.adapters.app.metrics_scrape import StateCollector
from tradingd.adapters.app.metrics_sources import SourceCollector
from tradingd.adapters.app.version import VERSION
from tradingd.engine import events as ev
from tradingd.engine.model import ExitReason, Fill, Order, Tick

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

LOOP_LAG_INTERVAL_S = 0.25
WS_ROUTE = "/v1/ws"
# Sub-millisecond resolution at the bottom: an in-memory transition takes microseconds.
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# A pushed tick names its own `source`: the sources tracked are capped, the least recently seen
# making room, so a client cannot grow the label set.
MAX_TICK_SOURCES = 64
TRADE_REASONS = frozenset((*get_args(ExitReason), "dca", "signal"))
# Skip reasons are engine codes; a failed order's reason is the venue's free text, not a label.
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
MAX_CACHED_CHILDREN = 1024  # label values are bounded sets (routes, venues), the caches too
_FILL, _EXECUTION, _FILTERED, _EXIT, _DELETED, _ALERT = range(6)
_EVENT_KINDS: dict[type, int] = {
    ev.OrderFilled: _FILL,
    ev.SignalExecutionRecorded: _EXECUTION,
    ev.SignalFiltered: _FILTERED,
    ev.ExitTriggered: _EXIT,
    ev.AgentDeleted: _DELETED,
    ev.Alert: _ALERT,
}
NETWORK = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The daemon's metrics. The daemon subscribes `on_events`, `on_ticks` and `on_order` to
    its runtime and runs `sample_loop_lag`; `daemon` is read at scrape time (state gauges)."""

    def __init__(self, daemon: Daemon) -> None:
        self.engine = daemon.engine
        self.runtime = daemon.runtime
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signal_to_order = Histogram(
            "tradingd_signal_to_order_seconds",
            "From a signal's receipt to its order leaving the engine (received_at has ms resolution)",
            registry=r,
            buckets=FAST,
        )
        self.tick_to_exit = Histogram(
            "tradingd_tick_to_exit_decision_seconds",
            "Wall time of a tick batch that triggered exits, from its arrival to the exit orders",
            registry=r,
            buckets=FAST,
        )
        self.order_round_trip = Histogram(
            "tradingd_order_round_trip_seconds",
            "Venue execution of an order, retries included",
            ["venue", "side", "outcome"],
            registry=r,
            buckets=NETWORK,
        )
        self.swap_steps = Histogram(
            "tradingd_swap_step_seconds",
            "One step of a live swap: quote, swap (build), sign, persist, send, confirm",
            ["venue", "step"],
            registry=r,
            buckets=NETWORK,
        )
        self.loop_lag = Histogram(
            "tradingd_event_loop_lag_seconds",
            f"Oversleep of a {LOOP_LAG_INTERVAL_S}s timer: how long ready work waited for the loop",
            registry=r,
            buckets=FAST,
        )
        Info("tradingd_build", "The running tradingd", registry=r).info({"version": VERSION})
        self.events = Counter(
            "tradingd_engine_events_total", "Engine events published", ["event"], registry=r
        )
        self.http_requests = Counter(
            "tradingd_http_requests_total",
            "Control-port requests",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "tradingd_http_request_duration_seconds",
            "Control-port request handling time",
            ["route", "method"],
            registry=r,
            buckets=FAST,
        )
        self.alerts = Counter(
            "tradingd_alerts_total",
            "Alerts raised (price_divergence, decimals_conflict, store outages, ...), by code",
            ["code"],
            registry=r,
        )
        # Counted here, emitted by the collector: a deleted agent's series go with it.
        self.trades: dict[tuple[str, str, str], int] = {}  # (agent, side, reason)
        self.signal_outcomes: dict[tuple[str, str, str], int] = {}  # (agent, status, reason)
        self.source_last_tick_ms: dict[str, int] = {}  # tick source -> arrival, wall ms
        # Label children looked up once (prometheus' labels() takes a lock and builds a key).
        self._event_children: dict[type, Any] = {}
        self._round_trip_children: dict[tuple[str, str, str], Any] = {}
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        disable_created_metrics()  # process-wide; `_created` series double the scrape for nothing
        r.register(StateCollector(daemon, self))
        self.gc_pauses = GcPauses()
        r.register(self.gc_pauses)
        ProcessCollector(registry=r)  # process_*: CPU seconds, resident memory, open fds
        self.sources = SourceCollector(daemon.engine, daemon.settings.sources.metrics_max)
        r.register(self.sources)
        if daemon.notifier is not None:  # tradingd_notify_* per channel, read at scrape time
            from tradingd.adapters.notify.metrics import NotifyCollector

            r.register(NotifyCollector(daemon.notifier))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            if len(self._http_children) >= MAX_CACHED_CHILDREN:
                self._http_children.clear()
            children = self._http_children[key] = (
                self.http_requests.labels(route, method, str(status)),
                # a WebSocket request lasts as long as its connection: not a duration
                None if route == WS_ROUTE else self.http_duration.labels(route, method),
            )
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

    # -- runtime hooks (synchronous, cheap) -------------------------------------------------

    def on_events(self, events: list[ev.Event]) -> None:
        # One dict lookup per event on its exact type (no event class is subclassed): a
        # 100-agent buy publishes ~750 events, and the isinstance chain and labels() lookups
        # per event were 15 % of the signal path's CPU under cProfile
        # (tests/integration/test_metrics*.py check the counts).
        counts: dict[type, int] = {}
        exits = False
        now_ns = 0
        for event in events:
            t = type(event)
            counts[t] = counts.get(t, 0) + 1
            kind = _EVENT_KINDS.get(t)
            if kind is None:
                continue
            if kind == _FILL:
                tr = event.trade  # type: ignore[attr-defined]
                _count(self.trades, (tr.agent_id, tr.side, _trade_reason(tr.reason)))
            elif kind == _EXECUTION:
                now_ns = now_ns or time.time_ns()
                self._on_execution(event, now_ns)  # type: ignore[arg-type]
            elif kind == _FILTERED:
                # one entry per agent a signal skipped: 1,000 with 1,000 agents on other tokens
                outcomes = self.signal_outcomes
                for agent_id, reason in event.reasons.items():  # type: ignore[attr-defined]
                    key = (agent_id, "skipped", _reason_label(reason))
                    outcomes[key] = outcomes.get(key, 0) + 1
            elif kind == _EXIT:
                exits = True
            elif kind == _DELETED:
                self._forget(event.agent_id)  # type: ignore[attr-defined]
            else:
                self.alerts.labels(_reason_label(event.code)).inc()  # type: ignore[attr-defined]
        child = self._event_children
        for t, n in counts.items():
            counter = child.get(t)
            if counter is None:
                counter = child[t] = self.events.labels(t.__name__)
            counter.inc(n)
        started = self.runtime.tick_batch_started
        if exits and started is not None:
            self.tick_to_exit.observe(time.perf_counter() - started)

    def _on_execution(self, event: ev.SignalExecutionRecorded, now_ns: int) -> None:
        reason = _reason_label(event.reason) if event.reason else ""
        _count(self.signal_outcomes, (event.agent_id, event.status, reason))
        if event.status != "pending" or event.order_id is None:
            return
        record = self.engine.signals.get(event.signal_id)
        # A resting entry's order leaves when its price comes: time spent resting is no latency.
        if record is not None and record.signal.entry is None:
            self.signal_to_order.observe(
                max(0.0, (now_ns - record.signal.received_at * 1_000_000) / 1e9)
            )

    def _forget(self, agent_id: str) -> None:
        for counts in (self.trades, self.signal_outcomes):
            for key in [k for k in counts if k[0] == agent_id]:
                del counts[key]

    def on_ticks(self, ticks: list[Tick]) -> None:
        now_ms = time.time_ns() // 1_000_000
        last = self.source_last_tick_ms
        for tick in ticks:
            source = tick.source
            if source not in last and len(last) >= MAX_TICK_SOURCES:
                del last[min(last, key=last.__getitem__)]
            last[source] = now_ms

    def on_order(self, order: Order, fill: Fill | None, seconds: float) -> None:
        key = (order.venue, order.side, "filled" if fill is not None else "failed")
        child = self._round_trip_children.get(key)
        if child is None:
            if len(self._round_trip_children) >= MAX_CACHED_CHILDREN:
                self._round_trip_children.clear()
            child = self._round_trip_children[key] = self.order_round_trip.labels(*key)
        child.observe(seconds)

    async def sample_loop_lag(self, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
        """While it runs: the event loop's lag every `interval_s`, and the collector's pauses
        (tradingd_gc_pause_seconds), which are one cause of it."""
        loop = asyncio.get_running_loop()
        self.gc_pauses.install()
        try:
            while True:
                expected = loop.time() + interval_s
                await asyncio.sleep(interval_s)
                self.loop_lag.observe(max(0.0, loop.time() - expected))
        finally:
            self.gc_pauses.uninstall()


def _count(counts: dict[tuple[str, str, str], int], key: tuple[str, str, str]) -> None:
    counts[key] = counts.get(key, 0) + 1


def _trade_reason(reason: str) -> str:
    """An entry's order reason is `signal:<type>`, the type chosen by the signal's sender."""
    if reason in TRADE_REASONS:
        return reason
    return "signal" if reason.startswith("signal") else "other"


_REASON_LABELS: dict[str, str] = {}
MAX_REASON_LABELS = 256  # the engine's codes are a few dozen


def _reason_label(reason: str) -> str:
    """`reason` when it is an engine code (REASON_CODE), else "other". Memoized: a signal
    skipped by 1,000 agents labels 1,000 reasons, and the regex was half that loop's time."""
    label = _REASON_LABELS.get(reason)
    if label is None:
        label = reason if REASON_CODE.fullmatch(reason) else "other"
        if label is reason and len(_REASON_LABELS) < MAX_REASON_LABELS:
            _REASON_LABELS[reason] = label  # codes only (≤ 48 chars): free text is not kept
    return label
