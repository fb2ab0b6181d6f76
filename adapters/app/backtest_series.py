"""Time series a replay draws for its report: each agent's equity after every record and each
token's price, kept bounded however long the replay (min/max buckets that double in width), and
the exposure time. One pass, O(cap) memory per series; the figures derived from them (max
drawdown of equity, final equity, exposure) are computed here once, for the JSON and the HTML."""

from __future__ import annotations

from fractions import Fraction
from typing import Generic, NamedTuple, TypeVar

from tradingd.adapters.app.metrics_scrape import equity_atomic
from tradingd.engine.core import Engine

# Bounds of the series a report carries: per agent (equity) and per token (price). A bucket
# keeps its lowest and highest sample, so a series holds at most about this many points plus
# the first, the last, the two that define its max drawdown and the pinned ones (trades).
EQUITY_POINTS = 2000
PRICE_POINTS = 1000

V = TypeVar("V", int, float)


class Sample(NamedTuple, Generic[V]):
    ts: int  # epoch ms
    value: V
    peak: V  # the highest value up to this sample, over every sample (kept or not)


class _Bucket(Generic[V]):
    __slots__ = ("count", "lo", "hi")

    def __init__(self, s: Sample[V]) -> None:
        self.count = 1
        self.lo = s
        self.hi = s

    def add(self, s: Sample[V], count: int = 1) -> None:
        self.count += count
        if s.value < self.lo.value:  # ties keep the earlier sample: deterministic
            self.lo = s
        if s.value > self.hi.value:
            self.hi = s

    def absorb(self, other: _Bucket[V]) -> None:
        self.count += other.count
        for s in (other.lo, other.hi):
            self.add(s, 0)


class SeriesSampler(Generic[V]):
    """A series of (ts, value) in time order, bounded to about `cap` points. Samples at the
    same ts coalesce (the last value wins: the state after everything applied at that time).
    Kept always: the first and last samples, the running peak and the trough that define the
    max drawdown, and every pinned sample (a trade's time on a price chart); the rest are
    the lowest and highest sample of each bucket of consecutive samples, buckets doubling in
    width (pairs merged) whenever there would be more than cap/2 of them."""

    def __init__(self, cap: int) -> None:
        if cap < 4:
            raise ValueError("cap must be at least 4")
        self.max_buckets = cap // 2
        self.width = 1
        self.buckets: list[_Bucket[V]] = []
        self.count = 0
        self.first: Sample[V] | None = None
        self.last: Sample[V] | None = None
        self.pinned: list[Sample[V]] = []
        self._pending: tuple[int, V, bool] | None = None
        self._peak: Sample[V] | None = None  # the running high
        self.dd_peak: Sample[V] | None = None  # the pair with the largest (peak - v) / peak
        self.dd_trough: Sample[V] | None = None

    def add(self, ts: int, value: V, pin: bool = False) -> None:
        pending = self._pending
        if pending is not None and pending[0] == ts:
            self._pending = (ts, value, pin or pending[2])
            return
        self._commit()
        self._pending = (ts, value, pin)

    def _commit(self) -> None:
        if self._pending is None:
            return
        ts, value, pin = self._pending
        self._pending = None
        peak = self._peak
        if peak is None or value > peak.value:
            s = Sample(ts, value, value)
            self._peak = s
        else:
            s = Sample(ts, value, peak.value)
            self._track_drawdown(peak, s)
        self.count += 1
        if self.first is None:
            self.first = s
        self.last = s
        if pin:
            self.pinned.append(s)
        if self.buckets and self.buckets[-1].count < self.width:
            self.buckets[-1].add(s)
        else:
            self.buckets.append(_Bucket(s))
            if len(self.buckets) > self.max_buckets:
                self._halve()

    def _track_drawdown(self, peak: Sample[V], s: Sample[V]) -> None:
        if peak.value <= 0:
            return
        top, bottom = self.dd_peak, self.dd_trough
        # (peak - v) / peak > (top - bottom) / top, cross-multiplied: exact for int amounts
        if top is None or bottom is None:
            if s.value < peak.value:
                self.dd_peak, self.dd_trough = peak, s
        elif (peak.value - s.value) * top.value > (top.value - bottom.value) * peak.value:
            self.dd_peak, self.dd_trough = peak, s

    def _halve(self) -> None:
        merged: list[_Bucket[V]] = []
        for i in range(0, len(self.buckets), 2):
            bucket = self.buckets[i]
            if i + 1 < len(self.buckets):
                bucket.absorb(self.buckets[i + 1])
            merged.append(bucket)
        self.buckets = merged
        self.width *= 2

    def max_drawdown_pct(self) -> float:
        """The largest fall from a running high, percent of that high, over every sample."""
        self._commit()
        top, bottom = self.dd_peak, self.dd_trough
        if top is None or bottom is None:
            return 0.0
        return float(Fraction(top.value - bottom.value) * 100 / Fraction(top.value))

    def points(self) -> list[Sample[V]]:
        """The kept samples in time order, one per ts."""
        self._commit()
        kept: dict[int, Sample[V]] = {}
        extra = (self.first, self.last, self.dd_peak, self.dd_trough)
        for s in (*extra, *self.pinned, *(x for b in self.buckets for x in (b.lo, b.hi))):
            if s is not None:
                kept[s.ts] = s
        return [kept[ts] for ts in sorted(kept)]


class ExposureClock:
    """Time during which an agent held at least one position not closed, in ms: measured at
    record granularity (the state after each record holds until the next record)."""

    def __init__(self) -> None:
        self.ms = 0
        self._since: int | None = None

    def observe(self, ts: int, holding: bool) -> None:
        if holding and self._since is None:
            self._since = ts
        elif not holding and self._since is not None:
            self.ms += ts - self._since
            self._since = None

    def total(self, end_ts: int) -> int:
        return self.ms + (end_ts - self._since if self._since is not None else 0)


class ReplayCurves:
    """Samples every agent's equity (metrics_scrape.equity_atomic, the daemon's one valuation)
    and exposure after each record, and the price of each ticked or traded token."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.equity: dict[str, SeriesSampler[int]] = {}
        self.exposure: dict[str, ExposureClock] = {}
        self.prices: dict[str, SeriesSampler[float]] = {}
        self.traded: set[str] = set()

    def after_record(self, ts: int, ticked: str | None, filled: set[str]) -> None:
        engine = self.engine
        for token in filled | ({ticked} if ticked else set()):
            tick = engine.prices.get(token)
            if tick is not None:
                sampler = self.prices.get(token)
                if sampler is None:
                    sampler = self.prices[token] = SeriesSampler[float](PRICE_POINTS)
                sampler.add(ts, tick.price_usd, pin=token in filled)
        self.traded |= filled
        for agent in engine.agents.values():
            equity = self.equity.get(agent.id)
            if equity is None:
                equity = self.equity[agent.id] = SeriesSampler[int](EQUITY_POINTS)
                self.exposure[agent.id] = ExposureClock()
            equity.add(ts, equity_atomic(engine, agent, engine.quote_usd(agent.quote)))
            self.exposure[agent.id].observe(ts, engine.exposure[agent.id].open > 0)
