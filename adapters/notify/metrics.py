"""Prometheus series of the notification channels, read from their counters at scrape time
(nothing is observed on the trading path). The `channel` label is a configured name: bounded by
the config (config.MAX_CHANNELS)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tradingd.adapters.notify.notifier import Notifier

_COUNTERS = (
    ("sent", "Notifications delivered"),
    ("failed", "Notifications given up on (max_retries reached, or refused)"),
    ("dropped", "Notifications dropped: the channel's queue was full, or left at shutdown"),
    ("retries", "Notification requests retried (timeouts, connection errors, 429, 5xx)"),
)


class NotifyCollector(Collector):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        senders = self.notifier.senders.values()
        for field, help_text in _COUNTERS:
            family = CounterMetricFamily(f"tradingd_notify_{field}", help_text, labels=["channel"])
            for sender in senders:
                family.add_metric([sender.name], getattr(sender.stats, field))
            yield family
        depth = GaugeMetricFamily(
            "tradingd_notify_queue_depth", "Notifications waiting in a channel's queue",
            labels=["channel"],
        )  # fmt: skip
        for sender in senders:
            depth.add_metric([sender.name], len(sender.queue))
        yield depth
