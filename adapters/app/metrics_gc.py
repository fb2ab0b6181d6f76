"""The garbage collector's pauses as a Prometheus histogram, `tradingd_gc_pause_seconds
{generation}`: a collection stops the event loop (and every signal, tick and request with it),
so an operator chasing a latency tail needs to see how long and how often.

The gc callback only adds to plain counters: it runs inside an allocation anywhere in the
process, where taking a metric's lock (prometheus_client's Histogram.observe) could deadlock
against the same lock held by the code that allocated. The histogram is built at scrape time."""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

# A young collection of a few thousand objects takes tens of microseconds; a full one of a
# large heap, hundreds of milliseconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = 3


class GcPauses(Collector):
    """Counts every collection's pause (seconds, from gc.callbacks' start to stop) per
    generation into fixed buckets. `install` hooks it into the collector, `uninstall` unhooks
    it (a daemon stopped in a test process must not keep counting)."""

    def __init__(self) -> None:
        self.counts = [[0] * (len(BUCKETS) + 1) for _ in range(GENERATIONS)]
        self.sums = [0.0] * GENERATIONS
        self._started = 0.0

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Collections never overlap (CPython skips one while another runs), so neither do calls.
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.observe(info["generation"], time.perf_counter() - self._started)

    def observe(self, generation: int, seconds: float) -> None:
        g = min(max(generation, 0), GENERATIONS - 1)
        self.counts[g][bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sums[g] += seconds

    def describe(self) -> list[Any]:
        return []  # built at scrape time

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "tradingd_gc_pause_seconds",
            "Pauses of the garbage collector (the event loop stops meanwhile), by generation",
            labels=["generation"],
        )
        for g in range(GENERATIONS):
            counts, cumulative, buckets = self.counts[g], 0, []
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([str(g)], buckets, self.sums[g])
        yield family
