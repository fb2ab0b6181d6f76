"""Time series a replay draws for its report: each agent's equity after every record and each
token's price, kept bounded however long the replay (min/max buckets that double in width), and
the exposure time. One pass, O(cap) memory per series; the figures derived from them (max
drawdown of equity, final equity, exposure) are computed here once, for the JSON and the HTML."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from fractions import Fraction
from typing import Generic, NamedTuple, TypeVar

from tradingd.engine.assets import quote_mint
from tradingd.engine.core import Engine
from tradingd.engine.model import Position
from tradingd.engine.money import market_value

# Bounds of the series a report carries: per agent (equity) and per token (price). A bucket
# keeps its lowest and highest sample, so a series holds at most about this many points plus
# the first, the last, the two that define its max drawdown and the pinned ones (trades).
EQUITY_POINTS = 2000
PRICE_POINTS = 1000
# A price series pins the times of each agent's most recent fills on its token, at most this
# many per agent: the report marks that many fills per price chart (report_html MARKERS_SHOWN),
# and a pin per fill of a churning agent would make the series as long as its trade list.
PRICE_PINS_PER_AGENT = 500

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
    max drawdown, and the pinned samples (a trade's time on a price chart), the most recent
    `pin_cap` per pin key (an agent); the rest are
    the lowest and highest sample of each bucket of consecutive samples, buckets doubling in
    width (pairs merged) whenever there would be more than cap/2 of them."""

    def __init__(self, cap: int, pin_cap: int | None = None) -> None:
        if cap < 4:
            raise ValueError("cap must be at least 4")
        self.max_buckets = cap // 2
        self.width = 1
        self.buckets: list[_Bucket[V]] = []
        self.count = 0
        self.first: Sample[V] | None = None
        self.last: Sample[V] | None = None
        self.pin_cap = pin_cap
        self.pinned: dict[str, deque[Sample[V]]] = {}
        self._pending: tuple[int, V, frozenset[str]] | None = None
        self._peak: Sample[V] | None = None  # the running high
        self.dd_peak: Sample[V] | None = None  # the pair with the largest (peak - v) / peak
        self.dd_trough: Sample[V] | None = None

    def add(self, ts: int, value: V, pin: bool = False, pins: Iterable[str] = ()) -> None:
        """`pins`: the keys (agents) this sample is pinned for; `pin`: pinned for key ""."""
        keys = frozenset(pins) | ({""} if pin else frozenset())
        pending = self._pending
        if pending is not None and pending[0] == ts:
            self._pending = (ts, value, keys | pending[2])
            return
        self._commit()
        self._pending = (ts, value, keys)

    def _commit(self) -> None:
        if self._pending is None:
            return
        ts, value, keys = self._pending
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
        for key in keys:
            kept = self.pinned.get(key)
            if kept is None:
                kept = self.pinned[key] = deque(maxlen=self.pin_cap)
            kept.append(s)
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

    def last_value(self) -> V | None:
        """The value most recently added (at the latest ts)."""
        if self._pending is not None:
            return self._pending[1]
        return self.last.value if self.last is not None else None

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
        pinned = (s for kept in self.pinned.values() for s in kept)
        for s in (*extra, *pinned, *(x for b in self.buckets for x in (b.lo, b.hi))):
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


class _AgentEquity:
    """One agent's equity as last valued: its quote balance and its positions' value per token,
    so a tick revalues only the positions on the ticked token."""

    __slots__ = ("balance", "by_token", "value", "equity", "sampled_ts")

    def __init__(self) -> None:
        self.balance = 0
        self.by_token: dict[str, list[Position]] = {}
        self.value: dict[str, int] = {}  # token -> its positions' value, quote atomic
        self.equity = 0
        self.sampled_ts = -1


class ReplayCurves:
    """Samples every agent's equity and exposure after each record, and the price of each
    ticked or traded token. Equity is the daemon's one valuation (metrics_scrape.equity_atomic:
    quote balance plus positions at the last prices, cost without one), kept incrementally so a
    tick costs O(positions on the ticked token), not O(all positions): an agent whose balance or
    positions changed (`touched`: its events) or whose quote was repriced is valued whole; a
    holder of a repriced token revalues that token's positions only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.equity: dict[str, SeriesSampler[int]] = {}
        self.exposure: dict[str, ExposureClock] = {}
        self.prices: dict[str, SeriesSampler[float]] = {}  # token -> its price
        self.traded: set[str] = set()
        self._state: dict[str, _AgentEquity] = {}
        self._holders: dict[str, set[str]] = {}  # token -> agents holding it
        self._quote_of: dict[str, set[str]] = {}  # quote's price mint -> agents quoted in it
        self._prev_ts: int | None = None

    def after_record(
        self, ts: int, repriced: set[str], filled: dict[str, set[str]], touched: set[str]
    ) -> None:
        """`repriced`: tokens whose last price changed (ticked, evicted); `filled`: tokens
        traded, each with the agents that traded it; `touched`: agents with events (balance,
        position or order changes)."""
        self._sample_prices(ts, repriced, filled)
        whole = touched & self.engine.agents.keys()
        partial: dict[str, set[str]] = {}
        for token in repriced:
            whole |= self._quote_of.get(token, set())
            for agent_id in self._holders.get(token, ()):
                partial.setdefault(agent_id, set()).add(token)
        if len(self._state) != len(self.engine.agents):  # agents not valued yet
            whole |= self.engine.agents.keys() - self._state.keys()
        for agent_id in whole:
            self._value_whole(agent_id)
            self.exposure[agent_id].observe(ts, self.engine.exposure[agent_id].open > 0)
        for agent_id, tokens in partial.items():
            if agent_id not in whole:
                self._revalue(agent_id, tokens)
        for agent_id in whole | partial.keys():
            self._sample_equity(agent_id, ts)
        self._prev_ts = ts

    def finish(self) -> None:
        """Carry every curve to the last record's time."""
        if self._prev_ts is not None:
            for agent_id in self._state:
                self._sample_equity(agent_id, self._prev_ts)

    def _sample_prices(self, ts: int, repriced: set[str], filled: dict[str, set[str]]) -> None:
        for token in repriced | filled.keys():
            tick = self.engine.prices.get(token)
            if tick is not None:
                sampler = self.prices.get(token)
                if sampler is None:
                    sampler = self.prices[token] = SeriesSampler[float](
                        PRICE_POINTS, PRICE_PINS_PER_AGENT
                    )
                sampler.add(ts, tick.price_usd, pins=filled.get(token, ()))
        self.traded |= filled.keys()

    def _sample_equity(self, agent_id: str, ts: int) -> None:
        state = self._state[agent_id]
        sampler = self.equity[agent_id]
        last = sampler.last_value()
        if last is not None and last != state.equity:
            prev = self._prev_ts
            if prev is not None and prev > state.sampled_ts and prev < ts:
                sampler.add(prev, last)  # unchanged until the record before: a step, not a slope
        sampler.add(ts, state.equity)
        state.sampled_ts = ts

    def _value_whole(self, agent_id: str) -> None:
        engine = self.engine
        agent = engine.agents[agent_id]
        state = self._state.get(agent_id)
        if state is None:
            state = self._state[agent_id] = _AgentEquity()
            self.equity[agent_id] = SeriesSampler[int](EQUITY_POINTS)
            self.exposure[agent_id] = ExposureClock()
            self._quote_of.setdefault(quote_mint(agent.quote), set()).add(agent_id)
        for token in state.by_token:
            self._holders[token].discard(agent_id)
        state.balance = engine.ledger.balance(agent_id, agent.quote).total
        state.by_token = {}
        for p in engine.live_positions[agent_id].values():
            if p.amount:
                state.by_token.setdefault(p.token, []).append(p)
        state.value = {}
        for token in state.by_token:
            self._holders.setdefault(token, set()).add(agent_id)
        self._revalue(agent_id, set(state.by_token))

    def _revalue(self, agent_id: str, tokens: set[str]) -> None:
        engine = self.engine
        agent = engine.agents[agent_id]
        state = self._state[agent_id]
        quote_usd = engine.quote_usd(agent.quote)
        for token in tokens:
            tick = engine.prices.get(token)
            price = tick.price_usd if tick is not None else None
            total = 0
            for p in state.by_token.get(token, ()):
                value = market_value(p.amount, p.decimals, price, quote_usd, agent.quote_decimals)
                total += p.cost if value is None else value
            state.value[token] = total
        state.equity = state.balance + sum(state.value.values())
