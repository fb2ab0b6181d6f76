"""`tradingd_source_*`: the signal sources' all-time scorecards as Prometheus series, read from
the engine when `/metrics` is scraped (nothing on the hot path).

Label cardinality is bounded: the first `[sources] metrics_max` sources (by when their card was
first written, then name: a choice that stays put across restarts, so counters stay monotonic)
get their own `source` label; the rest are summed under `source="other"`, which then carries no
drawdown or latency (those do not add up across sources)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from tradingd.engine.core import Engine
from tradingd.engine.scorecard_stats import Card, Stats
from tradingd.engine.scorecards import OTHER


class SourceCollector(Collector):
    def __init__(self, engine: Engine, max_labels: int) -> None:
        self.engine = engine
        self.max_labels = max_labels

    def describe(self) -> list[Any]:
        return []  # values exist only at scrape time

    def labelled(self) -> tuple[list[tuple[str, Stats]], Stats | None]:
        """(source, all-time stats) with their own label, and the sum of the rest (None when
        there is no rest)."""
        cards = self.engine.scorecards.by_source
        order = sorted(
            (name for name in cards if name != OTHER),
            key=lambda n: (cards[n].created_at, n),
        )
        own = order[: self.max_labels]
        rest: list[Card] = [cards[n] for n in order[self.max_labels :]]
        if OTHER in cards:
            rest.append(cards[OTHER])
        now = self.engine.clock()
        summed = None
        for card in rest:
            total = card.window("all", now)
            summed = total if summed is None else summed.merged(total)  # counts and sums only
        return [(n, cards[n].window("all", now)) for n in own], summed

    def collect(self) -> Iterator[Any]:
        own, rest = self.labelled()
        rows = own + ([(OTHER, rest)] if rest is not None else [])
        signals = CounterMetricFamily(
            "tradingd_source_signals", "Signals received, per source", labels=["source"]
        )
        executions = CounterMetricFamily(
            "tradingd_source_executions",
            "Agents' executions of a source's signals that ended, by status",
            labels=["source", "status"],
        )
        trades = CounterMetricFamily(
            "tradingd_source_trades",
            "Positions a source's signals opened that closed, by result (win: PnL > 0)",
            labels=["source", "result"],
        )
        pnl = GaugeMetricFamily(
            "tradingd_source_realized_pnl_usd",
            "Realized PnL of a source's positions, USD (each close at its quote's price then)",
            labels=["source"],
        )
        drawdown = GaugeMetricFamily(
            "tradingd_source_max_drawdown_usd",
            "Largest fall of a source's cumulative realized USD PnL from a high",
            labels=["source"],
        )
        latency = GaugeMetricFamily(
            "tradingd_source_fill_latency_ms",
            "Signal receipt -> entry fill, ms (histogram bucket upper bound), all time",
            labels=["source", "quantile"],
        )
        slippage = GaugeMetricFamily(
            "tradingd_source_avg_slippage_bps",
            "Average entry fill price vs the price when the signal arrived, bps",
            labels=["source"],
        )
        for name, s in rows:
            signals.add_metric([name], s.received)
            executions.add_metric([name, "filled"], s.executed)
            executions.add_metric([name, "failed"], s.failed)
            executions.add_metric([name, "skipped"], sum(s.skipped.values()))
            trades.add_metric([name, "win"], s.wins)
            trades.add_metric([name, "loss"], s.losses)
            pnl.add_metric([name], s.curve_usd.sum / 1e6)
            if s.slip_n:
                slippage.add_metric([name], s.slip_bps_sum / s.slip_n)
            if name == OTHER:
                continue
            drawdown.add_metric([name], s.curve_usd.max_dd / 1e6)
            for q in (0.5, 0.99):
                value = s.latency_pct(q)
                if value is not None:
                    latency.add_metric([name, str(q)], value)
        yield from (signals, executions, trades, pnl, drawdown, latency, slippage)
