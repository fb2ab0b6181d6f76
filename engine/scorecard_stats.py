"""The figures of a signal-provider scorecard as one mergeable value (`Stats`) and a card of them
in rolling windows (`Card`): hourly buckets for the last 24 hours, daily ones for the last 30
days, and the all-time total.

`Stats` is a monoid: merging the stats of two consecutive stretches of time gives the stats of
the whole, drawdown included (it keeps the cumulative PnL's sum, highest and lowest prefix), so a
window is the merge of its buckets in time order and nothing ever rescans history. Money is
integer: quote atomic units (per agent; one agent has one quote) and micro-USD (1e-6 USD,
rounded down once from the exact product), never float."""

from __future__ import annotations

import math

import msgspec
from msgspec import Struct

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WINDOWS = ("24h", "7d", "30d", "all")
HOURS_KEPT = 24
DAYS_KEPT = 30
# Latency histogram: bucket i holds latencies in (2^((i-1)/8), 2^(i/8)] ms (bucket 0: <= 1 ms),
# so a percentile read from it is the bucket's upper bound, at most 9.1 % above the true value.
LAT_STEPS_PER_DOUBLING = 8


def latency_bucket(ms: float) -> int:
    """The histogram bucket of a latency in ms (see LAT_STEPS_PER_DOUBLING)."""
    if ms <= 1:
        return 0
    return max(1, math.ceil(math.log2(ms) * LAT_STEPS_PER_DOUBLING - 1e-9))


def latency_bound(bucket: int) -> float:
    """The upper bound, ms, of a latency bucket."""
    return 2 ** (bucket / LAT_STEPS_PER_DOUBLING)


class Curve(Struct, array_like=True, gc=False):
    """A cumulative PnL curve summarised for drawdown: `sum` of the stretch, its highest and
    lowest prefix (the empty prefix, 0, included) and the largest fall from a prefix high to a
    later prefix low. Units are the caller's (quote atomic or micro-USD)."""

    sum: int = 0
    peak: int = 0
    trough: int = 0
    max_dd: int = 0

    def add(self, x: int) -> None:
        """Append one trade of PnL `x`."""
        s = self.sum + x
        if self.peak - s > self.max_dd:
            self.max_dd = self.peak - s
        if s > self.peak:
            self.peak = s
        if s < self.trough:
            self.trough = s
        self.sum = s

    def then(self, b: Curve) -> Curve:
        """This stretch followed by `b`."""
        return Curve(
            self.sum + b.sum,
            max(self.peak, self.sum + b.peak),
            min(self.trough, self.sum + b.trough),
            max(self.max_dd, b.max_dd, self.peak - (self.sum + b.trough)),
        )


class Stats(Struct, kw_only=True, gc=False):
    """What a source's signals did over a stretch of time.

    Signals: `received` (per source: signals received; per source × agent: signals its filters
    accepted whose execution ended), `executed` (executions filled), `failed`, `skipped` by reason (per source ×
    agent only skips after the agent's filters accepted the signal; per source all of them).
    Closed positions the source opened: `trades`, `wins` (PnL > 0), `losses` (PnL <= 0), `pnl`
    (quote atomic; per agent only), `pnl_by_quote` (per source: quote -> atomic), `curve` (quote
    atomic; per agent) and `curve_usd` (micro-USD) for PnL sum and drawdown, `best`/`worst`
    trade (micro-USD), `unpriced` (closes whose quote had no USD price: not in the USD figures),
    `exposure_ms` (summed holding time). Entry fills: `slip_bps_sum`/`slip_n` (fill price vs the
    price when the signal arrived, bps, positive = paid more) and `latency` (signal receipt ->
    fill, ms, as histogram bucket -> count)."""

    received: int = 0
    executed: int = 0
    failed: int = 0
    skipped: dict[str, int] = msgspec.field(default_factory=dict)
    trades: int = 0
    wins: int = 0
    losses: int = 0
    pnl: int = 0
    pnl_by_quote: dict[str, int] = msgspec.field(default_factory=dict)
    curve: Curve = msgspec.field(default_factory=Curve)
    curve_usd: Curve = msgspec.field(default_factory=Curve)
    best: int | None = None
    worst: int | None = None
    unpriced: int = 0
    exposure_ms: int = 0
    slip_bps_sum: float = 0.0
    slip_n: int = 0
    latency: dict[int, int] = msgspec.field(default_factory=dict)

    def merged(self, b: Stats) -> Stats:
        """This stretch followed by `b` (a new value; neither changes)."""
        return Stats(
            received=self.received + b.received,
            executed=self.executed + b.executed,
            failed=self.failed + b.failed,
            skipped=_sum_maps(self.skipped, b.skipped),
            trades=self.trades + b.trades,
            wins=self.wins + b.wins,
            losses=self.losses + b.losses,
            pnl=self.pnl + b.pnl,
            pnl_by_quote=_sum_maps(self.pnl_by_quote, b.pnl_by_quote),
            curve=self.curve.then(b.curve),
            curve_usd=self.curve_usd.then(b.curve_usd),
            best=_pick(max, self.best, b.best),
            worst=_pick(min, self.worst, b.worst),
            unpriced=self.unpriced + b.unpriced,
            exposure_ms=self.exposure_ms + b.exposure_ms,
            slip_bps_sum=self.slip_bps_sum + b.slip_bps_sum,
            slip_n=self.slip_n + b.slip_n,
            latency=_sum_maps(self.latency, b.latency),
        )

    def add_close(self, pnl: int, quote: str, pnl_usd: int | None, held_ms: int) -> None:
        """Count one closed position: `pnl` quote atomic, `pnl_usd` micro-USD (None: the
        quote had no USD price), held `held_ms`."""
        self.trades += 1
        if pnl > 0:
            self.wins += 1
        else:
            self.losses += 1
        self.pnl += pnl
        self.pnl_by_quote[quote] = self.pnl_by_quote.get(quote, 0) + pnl
        self.curve.add(pnl)
        if pnl_usd is None:
            self.unpriced += 1
        else:
            self.curve_usd.add(pnl_usd)
            if self.best is None or pnl_usd > self.best:
                self.best = pnl_usd
            if self.worst is None or pnl_usd < self.worst:
                self.worst = pnl_usd
        if held_ms > 0:
            self.exposure_ms += held_ms

    def add_fill(self, slip_bps: float | None, latency_bucket: int | None) -> None:
        """Count one entry fill's slippage (bps) and signal -> fill latency (its histogram
        bucket, `latency_bucket(ms)`), if known."""
        if slip_bps is not None:
            self.slip_bps_sum += slip_bps
            self.slip_n += 1
        if latency_bucket is not None:
            self.latency[latency_bucket] = self.latency.get(latency_bucket, 0) + 1

    def latency_pct(self, q: float) -> float | None:
        """The `q` (0-1) latency percentile, nearest rank, as its bucket's upper bound (ms);
        None without fills."""
        n = sum(self.latency.values())
        if not n:
            return None
        rank = max(1, math.ceil(q * n))
        seen = 0
        for b in sorted(self.latency):
            seen += self.latency[b]
            if seen >= rank:
                return latency_bound(b)
        raise AssertionError("unreachable")  # pragma: no cover


def _sum_maps(a: dict, b: dict) -> dict:  # type: ignore[type-arg]
    if not b:
        return dict(a)
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _pick(fn, a: int | None, b: int | None) -> int | None:  # type: ignore[no-untyped-def]
    if a is None:
        return b
    if b is None:
        return a
    return int(fn(a, b))


class Card(Struct, kw_only=True):
    """One scorecard. Every change goes to its hour's bucket only (`hours`: hour number since the
    epoch -> Stats, the last 24); when a new hour starts, the hours before it are folded, in
    order, into their day's bucket (`days`: day number -> Stats, the last 30) and into `total`
    (all time), so one event costs one bucket update. `folded`: the last hour folded. A window
    merges its buckets in time order with the hours not yet folded."""

    total: Stats = msgspec.field(default_factory=Stats)
    hours: dict[int, Stats] = msgspec.field(default_factory=dict)
    days: dict[int, Stats] = msgspec.field(default_factory=dict)
    folded: int = -1
    updated_at: int = 0
    created_at: int = 0
    created_by: str | None = None  # the API key whose signal named the source first

    def bucket(self, now: int) -> Stats:
        """This hour's Stats to add to at `now` (epoch ms). A clock that stepped back counts in
        the latest hour (a folded hour never changes again)."""
        h = max(now // HOUR_MS, self.folded + 1)
        self.updated_at = now
        hour = self.hours.get(h)
        if hour is not None:
            return hour
        if not self.created_at:
            self.created_at = now
        self._fold(h)
        hour = self.hours[h] = Stats()
        return hour

    def _fold(self, h: int) -> None:
        """Fold every hour before `h` not yet folded; drop buckets out of their window."""
        for k in sorted(k for k in self.hours if self.folded < k < h):
            stats = self.hours[k]
            day = self.days.get(k // 24)
            self.days[k // 24] = stats if day is None else day.merged(stats)
            self.total = self.total.merged(stats)
            self.folded = k
        for k in [k for k in self.hours if k <= h - HOURS_KEPT]:
            del self.hours[k]
        d = h // 24
        for k in [k for k in self.days if k <= d - DAYS_KEPT]:
            del self.days[k]

    def _unfolded(self) -> list[tuple[int, Stats]]:
        return sorted((k, s) for k, s in self.hours.items() if k > self.folded)

    def window(self, name: str, now: int) -> Stats:
        """The Stats of window `name` ("24h": this hour and the 23 before; "7d"/"30d": today
        and the 6/29 days before, by UTC day; "all") at `now`, merged in time order. Raises
        KeyError for an unknown window."""
        hour = now // HOUR_MS
        if name == "24h":
            out = Stats()
            for k in sorted(self.hours):
                if k > hour - HOURS_KEPT:
                    out = out.merged(self.hours[k])
            return out
        if name == "all":
            out = self.total
        elif name in ("7d", "30d"):
            first = now // DAY_MS - (6 if name == "7d" else DAYS_KEPT - 1)
            out = Stats()
            for k in sorted(self.days):
                if k >= first:
                    out = out.merged(self.days[k])
            return self._with_unfolded(out, first * 24)
        else:
            raise KeyError(name)
        return self._with_unfolded(out, None)

    def _with_unfolded(self, out: Stats, first_hour: int | None) -> Stats:
        for k, stats in self._unfolded():
            if first_hour is None or k >= first_hour:
                out = out.merged(stats)
        return out
