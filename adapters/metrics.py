"""Prometheus metrics of one daemon, in its own registry (never the process-global one, so
several daemons in one test process do not collide).

Latencies are observed inside the runtime hooks, which run synchronously right after the
transition that produced them; state gauges (positions, feeds, WebSocket clients, halt) are read
from the daemon when `/metrics` is scraped, so they cost nothing between scrapes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine import events as ev
from engine.model import Fill, Order

LOOP_LAG_INTERVAL_S = 0.25
WS_ROUTE = "/v1/ws"
# Sub-millisecond resolution at the bottom: an in-memory transition takes microseconds.
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
NETWORK = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
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
        self.loop_lag = Histogram(
            "tradingd_event_loop_lag_seconds",
            f"Oversleep of a {LOOP_LAG_INTERVAL_S}s timer: how long ready work waited for the loop",
            registry=r,
            buckets=FAST,
        )
        self.events = Counter(
            "tradingd_engine_events_total", "Engine events published", ["event"], registry=r
        )
        self.signal_executions = Counter(
            "tradingd_signal_executions_total", "Per-agent signal outcomes", ["status"], registry=r
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
        r.register(_StateCollector(daemon))
        daemon.runtime.event_subscribers.append(self.on_events)
        daemon.runtime.order_observers.append(self.on_order)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.lag_task = None  # built outside a loop (tests, tools): no lag sampling
        else:
            self.lag_task = daemon.spawn(self.sample_loop_lag(), "metrics-loop-lag")
        if getattr(daemon, "metrics", None) is None:
            daemon.metrics = self

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        if route != WS_ROUTE:  # a WebSocket request lasts as long as its connection
            self.http_duration.labels(route, method).observe(seconds)

    # -- runtime hooks (synchronous, cheap) -------------------------------------------------

    def on_events(self, events: list[ev.Event]) -> None:
        now_ns = time.time_ns()
        exits = False
        counts: dict[str, int] = {}
        for event in events:
            name = type(event).__name__
            counts[name] = counts.get(name, 0) + 1
            if isinstance(event, ev.SignalExecutionRecorded):
                self._on_execution(event, now_ns)
            elif isinstance(event, ev.ExitTriggered):
                exits = True
        for name, n in counts.items():
            self.events.labels(name).inc(n)
        started = getattr(self.daemon.runtime, "tick_batch_started", None)
        if exits and started is not None:
            self.tick_to_exit.observe(time.perf_counter() - started)

    def _on_execution(self, event: ev.SignalExecutionRecorded, now_ns: int) -> None:
        self.signal_executions.labels(event.status).inc()
        if event.status != "pending" or event.order_id is None:
            return
        record = self.daemon.engine.signals.get(event.signal_id)
        if record is not None:
            self.signal_to_order.observe(
                max(0.0, (now_ns - record.signal.received_at * 1_000_000) / 1e9)
            )

    def on_order(self, order: Order, fill: Fill | None, seconds: float) -> None:
        self.order_round_trip.labels(
            order.venue, order.side, "filled" if fill is not None else "failed"
        ).observe(seconds)

    async def sample_loop_lag(self, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + interval_s
            await asyncio.sleep(interval_s)
            self.loop_lag.observe(max(0.0, loop.time() - expected))


class _StateCollector(Collector):
    """Gauges read from the daemon at scrape time."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def describe(self) -> list[Any]:
        return []  # values exist only at scrape time

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        engine = d.engine
        by_status: dict[str, int] = {"open": 0, "closing": 0}
        for p in engine.positions.values():
            if p.status in by_status:
                by_status[p.status] += 1
        positions = GaugeMetricFamily(
            "tradingd_positions", "Positions held, by status", labels=["status"]
        )
        for status, n in by_status.items():
            positions.add_metric([status], n)
        yield positions
        yield GaugeMetricFamily("tradingd_agents", "Agents loaded", value=len(engine.agents))
        yield GaugeMetricFamily(
            "tradingd_orders_in_flight", "Orders at a venue", value=len(d.runtime.in_flight)
        )
        yield GaugeMetricFamily(
            "tradingd_halted", "1 while buys are halted", value=int(engine.halted_buys)
        )
        yield GaugeMetricFamily(
            "tradingd_ready", "1 once the daemon accepts work", value=int(bool(d.ready))
        )
        yield GaugeMetricFamily(
            "tradingd_uptime_seconds", "Seconds since start", value=time.monotonic() - d.started_at
        )
        rejected = CounterMetricFamily(
            "tradingd_ticks_rejected",
            "Ticks refused: future (beyond the skew), out_of_order, decimals_conflict",
            labels=["reason"],
        )
        for reason, n in sorted(d.runtime.ticks_rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield from _feed_ages(d)
        yield from _store(d.store)
        yield from _ws(d.hub)


def _feed_ages(d: Any) -> Iterator[Any]:
    now_ms = time.time_ns() // 1_000_000
    age = GaugeMetricFamily(
        "tradingd_feed_age_seconds", "Seconds since a feed's last tick", labels=["source"]
    )
    for name, feed in sorted(d.feeds.items()):
        last = getattr(feed, "last_tick_ms", None)
        if last is not None:
            age.add_metric([name], max(0.0, (now_ms - last) / 1000))
    yield age


def _store(store: Any) -> Iterator[Any]:
    if store is None:
        return
    lag = store.write_behind_lag()
    yield GaugeMetricFamily(
        "tradingd_write_behind_lag_entries",
        "Events written to Redis, not yet to Postgres",
        value=lag["entries"],
    )
    yield GaugeMetricFamily(
        "tradingd_write_behind_lag_seconds",
        "Age of the oldest event not yet in Postgres",
        value=lag["seconds"],
    )
    yield CounterMetricFamily(
        "tradingd_write_behind_dead_letters",
        "Stream entries Postgres refused for their data, moved to the dead_letters table",
        value=store.dead_letters,
    )
    up = GaugeMetricFamily(
        "tradingd_store_up", "1 while a store component is ok", labels=["component"]
    )
    for name, health in sorted(store.components.items()):
        up.add_metric([name], int(health.get("status") == "ok"))
    yield up


def _ws(hub: Any) -> Iterator[Any]:
    if hub is None:
        return
    yield GaugeMetricFamily(
        "tradingd_ws_clients", "Open WebSocket connections", value=len(hub.clients)
    )
    yield GaugeMetricFamily(
        "tradingd_ws_queued_messages", "Messages waiting in client queues", value=hub.queued
    )
    yield GaugeMetricFamily(
        "tradingd_ws_queued_bytes",
        "Payload bytes waiting in client queues",
        value=hub.queued_bytes,
    )
    yield GaugeMetricFamily(
        "tradingd_ws_queue_bytes_peak",
        "The most bytes one client's queue ever held",
        value=hub.peak_queued_bytes,
    )
    yield GaugeMetricFamily(
        "tradingd_ws_fanout_backlog",
        "Client deliveries not yet made by pending fan-out jobs",
        value=hub.dispatch.backlog,
    )
    yield CounterMetricFamily(
        "tradingd_ws_messages_sent", "WebSocket messages written", value=hub.sent
    )
    yield CounterMetricFamily(
        "tradingd_ws_messages_dropped",
        "Messages left unsent when a client was cut or went away",
        value=hub.dropped,
    )
    yield CounterMetricFamily(
        "tradingd_ws_slow_consumers",
        "Clients closed as slow consumers (1013)",
        value=hub.slow_consumers,
    )
    yield CounterMetricFamily(
        "tradingd_ws_revoked_closed",
        "Clients closed because their API key was revoked (1008)",
        value=hub.revoked,
    )
    yield CounterMetricFamily(
        "tradingd_ws_snapshots", "Snapshots built for subscribes", value=hub.subscriptions.snapshots
    )
