"""Gauges and counters read from the daemon when `/metrics` is scraped, so they cost nothing
between scrapes: O(agents + open positions) per scrape, never a scan on the hot path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from tradingd.engine.core import Engine
from tradingd.engine.model import Agent
from tradingd.engine.money import market_value, units_float, usd_float

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.adapters.metrics import Metrics


class StateCollector(Collector):
    def __init__(self, daemon: Daemon, metrics: Metrics) -> None:
        self.daemon = daemon
        self.metrics = metrics

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
            "tradingd_orders_in_flight",
            "Orders in flight (the engine's order records: sent, not yet filled or failed)",
            value=len(d.engine.orders),
        )
        yield GaugeMetricFamily(
            "tradingd_resting_entries",
            "Buys resting for their price (limit/stop entries), their quote reserved",
            value=len(engine.entries),
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
        yield from _agents(engine)
        yield from self._counts()
        yield from _feed_ages(d, self.metrics.source_last_tick_ms)
        yield from _live_feeds(d)
        yield from _recorder(d)
        yield from _store(d.store)
        yield from _ws(d.hub)

    def _counts(self) -> Iterator[Any]:
        trades = CounterMetricFamily(
            "tradingd_trades",
            "Fills per agent, by side and reason (signal, dca, or the exit reason)",
            labels=["agent", "side", "reason"],
        )
        for labels, n in sorted(self.metrics.trades.items()):
            trades.add_metric(list(labels), n)
        yield trades
        signals = CounterMetricFamily(
            "tradingd_signal_executions",
            "Per-agent signal outcomes: skipped (reason), pending, then filled or failed",
            labels=["agent", "status", "reason"],
        )
        for labels, n in sorted(self.metrics.signal_outcomes.items()):
            signals.add_metric(list(labels), n)
        yield signals


def _agents(engine: Engine) -> Iterator[Any]:
    info = GaugeMetricFamily(
        "tradingd_agent_info",
        "1 per agent: its name, venue and quote",
        labels=["agent", "name", "venue", "quote"],
    )
    equity = GaugeMetricFamily(
        "tradingd_agent_equity",
        "Quote balance plus open positions at the last price (cost basis without one), quote units",
        labels=["agent", "quote"],
    )
    equity_usd = GaugeMetricFamily(
        "tradingd_agent_equity_usd",
        "Equity in USD, where the quote has a USD price",
        labels=["agent"],
    )
    realized = GaugeMetricFamily(
        "tradingd_agent_realized_pnl",
        "Realized PnL since creation, quote units",
        labels=["agent", "quote"],
    )
    open_positions = GaugeMetricFamily(
        "tradingd_agent_open_positions",
        "Positions not closed (opening, open, closing)",
        labels=["agent"],
    )
    exposure = GaugeMetricFamily(
        "tradingd_agent_exposure",
        "Quote committed: cost of positions not closed plus buys in flight and resting, quote units",
        labels=["agent", "quote"],
    )
    for agent in engine.agents.values():
        qd = agent.quote_decimals
        quote_usd = engine.quote_usd(agent.quote)
        atomic = equity_atomic(engine, agent, quote_usd)
        info.add_metric([agent.id, agent.name, agent.venue, agent.quote], 1)
        equity.add_metric([agent.id, agent.quote], units_float(atomic, qd))
        if quote_usd:
            equity_usd.add_metric([agent.id], usd_float(atomic, qd, quote_usd))
        realized.add_metric([agent.id, agent.quote], units_float(agent.perf.realized_pnl, qd))
        exp = engine.exposure[agent.id]
        open_positions.add_metric([agent.id], exp.open)
        exposure.add_metric([agent.id, agent.quote], units_float(sum(exp.committed.values()), qd))
    yield from (info, equity, equity_usd, realized, open_positions, exposure)


def equity_atomic(engine: Engine, agent: Agent, quote_usd: float | None) -> int:
    """Quote atomic units: the quote balance (reserved included: a buy in flight has not spent
    it yet) plus each position's tokens valued exactly at the last price, or at cost basis
    when the token or the quote has no price."""
    total: int = engine.ledger.balance(agent.id, agent.quote).total
    for p in engine.live_positions[agent.id].values():
        if not p.amount:
            continue
        tick = engine.prices.get(p.token)
        value = market_value(
            p.amount, p.decimals, tick.price_usd if tick else None, quote_usd, agent.quote_decimals
        )
        total += p.cost if value is None else value
    return total


def _feed_ages(d: Daemon, pushed: dict[str, int]) -> Iterator[Any]:
    """A configured feed's own clock, and the arrival of applied ticks per `source` (pushed
    ticks included); the newer of the two when both name the same source."""
    now_ms = time.time_ns() // 1_000_000
    last = dict(pushed)
    for name, feed in d.feeds.items():
        ms = feed.last_tick_ms
        if ms is not None:
            last[name] = max(ms, last.get(name, ms))
    age = GaugeMetricFamily(
        "tradingd_feed_age_seconds", "Seconds since a source's last tick", labels=["source"]
    )
    for name, ms in sorted(last.items()):
        age.add_metric([name], max(0.0, (now_ms - ms) / 1000))
    yield age


def _live_feeds(d: Daemon) -> Iterator[Any]:
    """What each market-data feed counted (ticks, requests, reconnects, errors by kind), its
    state, and the signals' first-price fetches."""
    counts = CounterMetricFamily(
        "tradingd_feed_events",
        "Counts of a market-data feed by kind (ticks, requests, reconnects, errors_<kind>)",
        labels=["source", "kind"],
    )
    up = GaugeMetricFamily(
        "tradingd_feed_up", "1 while a market-data feed's status is ok", labels=["source"]
    )
    for name, feed in sorted(d.live_feeds.items()):
        for kind, n in sorted(feed.counters().items()):
            counts.add_metric([name, kind], n)
        up.add_metric([name], int(feed.health().get("status") == "ok"))
    yield counts
    yield up
    fetches = CounterMetricFamily(
        "tradingd_signal_price_fetches",
        "Buy signals whose token was fetched from the live feeds first, by outcome",
        labels=["outcome"],
    )
    fetches.add_metric(["priced"], d.first_price.fetched)
    fetches.add_metric(["missed"], d.first_price.missed)
    yield fetches


def _recorder(d: Daemon) -> Iterator[Any]:
    """The recorder's counts: records and bytes written, dropped, unrecordable, write errors,
    files."""
    if d.recorder is None:
        return
    counts = CounterMetricFamily(
        "tradingd_recorder_events", "Counts of the recorder by kind", labels=["kind"]
    )
    for kind, n in sorted(d.recorder.counters().items()):
        counts.add_metric([kind], n)
    yield counts


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
