"""Price selection across sources: priority with failover, stale ticks refused, the cross-check
that blocks buys while two live sources disagree, and market data kept from every source."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal, Tick
from tradingd.engine.price_sources import PricePolicy

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]
AGE = 10_000  # max_price_age_ms of these engines


def harness(**policy: object) -> Harness:
    h = Harness(Clock())
    h.engine = Engine(h.clock, max_price_age_ms=AGE, price_policy=PricePolicy(**policy))  # type: ignore[arg-type]
    h.sol()
    return h


def tick(
    h: Harness, source: str, price: float, ts: int | None = None, **market: object
) -> str | None:
    reason = h.engine.on_tick(
        Tick(T, price, h.clock.now if ts is None else ts, source, decimals=6, **market)  # type: ignore[arg-type]
    )
    h.collect()
    return reason


def alerts(h: Harness) -> list[tuple[str, dict]]:
    return [(e.code, e.details) for e in h.events() if type(e).__name__ == "Alert"]


def buy(h: Harness) -> tuple[str, str | None]:
    now = h.clock.now
    record, _ = h.engine.on_signal(
        Signal(id=f"s{now}-{len(h.log)}", token=T, received_at=now, expires_at=now + 30_000)
    )
    h.collect()
    (execution,) = record.executions.values()
    return execution.status, execution.reason


def test_a_lower_priority_source_is_kept_but_not_applied_while_the_primary_is_fresh():
    h = harness(sources=("pyth", "dexscreener"))
    assert tick(h, "pyth", 1.00) is None
    h.clock.now += 1000
    assert tick(h, "dexscreener", 1.05) == "secondary"
    assert h.engine.prices[T].source == "pyth"
    assert h.engine.prices[T].price_usd == 1.00


def test_the_fallback_prices_the_token_once_the_primary_is_stale_and_the_primary_takes_back():
    h = harness(sources=("pyth", "dexscreener"))
    tick(h, "pyth", 1.00)
    h.clock.now += AGE + 1  # pyth silent longer than the max price age
    assert tick(h, "dexscreener", 1.02) is None
    assert h.engine.prices[T].source == "dexscreener"
    # pyth recovers with a publish time a little older than dexscreener's receive time
    h.clock.now += 500
    assert tick(h, "pyth", 1.01, ts=h.clock.now - 800) is None
    assert h.engine.prices[T].source == "pyth"


def test_unlisted_sources_rank_after_listed_ones_and_equal_among_themselves():
    h = harness(sources=("pyth",))
    tick(h, "pyth", 1.0)
    assert tick(h, "push", 1.1) == "secondary"
    h2 = harness()  # no priority: any source, newest wins, ordered across sources as before
    tick(h2, "a", 1.0)
    assert tick(h2, "b", 1.1, ts=h2.clock.now - 1) == "out_of_order"
    h2.clock.now += 1
    assert tick(h2, "b", 1.1) is None


def test_per_token_sources_replace_the_global_order():
    h = harness(sources=("pyth", "dexscreener"), token_sources={T: ("dexscreener", "pyth")})
    tick(h, "dexscreener", 1.0)
    assert tick(h, "pyth", 1.1) == "secondary"


def test_a_source_ordered_against_its_own_last_tick():
    h = harness(sources=("pyth", "dexscreener"))
    tick(h, "pyth", 1.0)
    assert tick(h, "pyth", 0.5, ts=h.clock.now - 1) == "out_of_order"


def test_a_stale_tick_is_refused_and_fires_no_stop():
    h = harness()
    aid = h.agent({"stop_loss": {"mode": "fixed", "default_pct": -10}})
    tick(h, "dex", 1.0)
    assert buy(h) == ("pending", "")
    h.settle()
    h.clock.now += 60_000
    # a delayed response carrying a price from a minute ago, far below the stop
    assert tick(h, "dex", 0.5, ts=h.clock.now - AGE - 1) == "stale"
    (position,) = h.engine.live_positions[aid].values()
    assert position.status == "open"
    assert not h.pending


def test_divergence_alerts_once_blocks_buys_and_clears_with_hysteresis():
    h = harness(sources=("pyth", "dexscreener"), max_divergence_pct=5)
    h.agent({})
    tick(h, "pyth", 1.00)
    tick(h, "dexscreener", 1.06)  # 6% apart
    tick(h, "pyth", 1.001)  # still apart: no second alert
    assert [code for code, _ in alerts(h)] == ["price_divergence"]
    details = alerts(h)[0][1]
    assert details["token"] == T and details["prices"] == {"pyth": 1.0, "dexscreener": 1.06}
    assert buy(h) == ("skipped", "price_divergence")
    tick(h, "dexscreener", 1.045)  # 4.5%: under the threshold, above 3/4 of it: still blocked
    assert buy(h) == ("skipped", "price_divergence")
    tick(h, "dexscreener", 1.03)  # 3% < 3.75%: agree again
    assert [code for code, _ in alerts(h)] == ["price_divergence", "price_divergence_cleared"]
    assert buy(h) == ("pending", "")


def test_divergence_clears_when_one_source_goes_silent():
    h = harness(sources=("pyth", "dexscreener"), max_divergence_pct=5)
    h.agent({})
    tick(h, "pyth", 1.00)
    tick(h, "dexscreener", 1.20)
    h.clock.now += AGE + 1
    assert buy(h)[1] == "price_stale"  # the signal path itself never trusts the old state
    tick(h, "pyth", 1.00)
    assert buy(h) == ("pending", "")
    h.clock_step()
    assert [code for code, _ in alerts(h)][-1] == "price_divergence_cleared"


def test_divergence_exactly_at_the_threshold_is_not_divergence():
    # 1.1 vs 1.0 is exactly 10% as written; a float ratio says 10.000000000000009
    assert (1.1 - 1.0) / 1.0 * 100 > 10
    h = harness(sources=("pyth", "dexscreener"), max_divergence_pct=10)
    h.agent({})
    h.engine.on_tick(Tick(T, 1.0, h.clock.now, "pyth", decimals=6))
    h.engine.on_tick(Tick(T, 1.1, h.clock.now, "dexscreener", decimals=6))
    h.collect()
    assert alerts(h) == []
    assert buy(h) == ("pending", "")


def test_buys_may_ignore_divergence_when_configured():
    h = harness(
        sources=("pyth", "dexscreener"), max_divergence_pct=1, block_buys_on_divergence=False
    )
    h.agent({})
    tick(h, "pyth", 1.0)
    tick(h, "dexscreener", 1.5)
    assert [code for code, _ in alerts(h)] == ["price_divergence"]
    assert buy(h) == ("pending", "")


def test_liquidity_from_the_fallback_source_serves_the_filter_while_the_primary_prices():
    h = harness(sources=("pyth", "dexscreener"))
    h.agent({"signals": {"min_liquidity_usd": 50_000}})
    tick(h, "pyth", 1.0)
    assert buy(h) == ("skipped", "liquidity_unknown")
    tick(h, "dexscreener", 1.0, liquidity_usd=80_000.0)
    tick(h, "pyth", 1.0)  # a tick without pool data keeps the known liquidity
    assert buy(h) == ("pending", "")


def test_market_data_older_than_its_max_age_is_unknown():
    h = harness(max_market_age_ms=5_000)
    h.agent({"signals": {"min_liquidity_usd": 50_000}})
    tick(h, "dex", 1.0, liquidity_usd=80_000.0)
    h.clock.now += 5_001
    tick(h, "pyth", 1.0)
    assert buy(h) == ("skipped", "liquidity_unknown")


def test_sources_per_token_are_bounded():
    h = harness(max_sources_per_token=3)
    for i in range(10):
        h.clock.now += 1
        tick(h, f"src{i}", 1.0)
    assert len(h.engine.sources.ticks(T, h.engine.prices.get(T))) == 3


def test_the_source_bound_never_evicts_a_source_that_outranks_the_newcomer():
    # the attack: 8 made-up sources and a low price from a ninth pushed DexScreener out of the
    # table, and the low price fired a stop while DexScreener was fresh
    h = harness(sources=("pyth", "dexscreener"), max_sources_per_token=3)
    aid = h.agent({"stop_loss": {"mode": "fixed", "default_pct": -10}})
    tick(h, "dexscreener", 1.0)
    assert buy(h) == ("pending", "")
    h.settle()
    tick(h, "junk1", 1.0)
    assert tick(h, "junk2", 1.0) == "secondary"  # table full: dexscreener, junk1, junk2
    assert tick(h, "evil", 0.5) == "secondary"  # takes junk1's place (lowest rank, oldest)
    assert set(h.engine.sources.ticks(T, None)) == {"dexscreener", "junk2", "evil"}
    (position,) = h.engine.live_positions[aid].values()
    assert position.status == "open" and not h.pending
    h2 = harness(sources=("pyth", "dexscreener", "push"), max_sources_per_token=2)
    tick(h2, "pyth", 1.0)
    tick(h2, "dexscreener", 1.0)
    assert tick(h2, "push", 1.0) == "source_capacity"  # every source in the table outranks it


# -- the kind: selection and the cross-check against a naive oracle -----------------------------

SOURCES = ("a", "b", "c")


class Oracle:
    """The rules written the slow, obvious way: the full history of recorded ticks."""

    def __init__(self, order: tuple[str, ...], pct: Fraction | None) -> None:
        self.order, self.pct = order, pct
        self.recorded: list[Tick] = []
        self.price: Tick | None = None
        self.diverged = False

    def rank(self, s: str) -> int:
        return self.order.index(s) if s in self.order else len(self.order)

    def on_tick(self, t: Tick, now: int) -> str | None:
        if now - t.ts > AGE:
            return "stale"
        mine = [r for r in self.recorded if r.source == t.source]
        if mine and t.ts < mine[-1].ts:
            return "out_of_order"
        if (
            self.price
            and t.ts < self.price.ts
            and self.rank(self.price.source) == self.rank(t.source)
        ):
            return "out_of_order"
        self.recorded.append(t)
        latest = {r.source: r for r in self.recorded}
        fresh = {s: r for s, r in latest.items() if now - r.ts <= AGE}
        checked = {s: r for s, r in fresh.items() if not self.order or s in self.order}
        if self.pct is not None:
            spread = None
            if len(checked) >= 2:
                lo = min(Fraction(repr(r.price_usd)) for r in checked.values())
                hi = max(Fraction(repr(r.price_usd)) for r in checked.values())
                spread = (hi - lo) * 100 / lo
            if not self.diverged and spread is not None and spread > self.pct:
                self.diverged = True
            elif self.diverged and (spread is None or spread <= self.pct * Fraction(3, 4)):
                self.diverged = False
        if any(self.rank(s) < self.rank(t.source) for s in fresh if s != t.source):
            return "secondary"
        self.price = t
        return None


steps = st.lists(
    st.tuples(
        st.sampled_from(SOURCES),
        st.sampled_from([0.5, 1.0, 1.01, 1.04, 1.05, 1.06, 1.1, 2.0]),
        st.integers(0, 12_000),  # clock advance, ms
        st.integers(0, 3_000),  # how old the tick is when it arrives, ms
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    steps,
    st.sampled_from([(), ("a",), ("a", "b"), ("c", "a", "b")]),
    st.sampled_from([None, 1, 5, 4.5]),
)
def test_selection_and_divergence_match_the_naive_oracle(steps, order, pct):
    clock = Clock()
    engine = Engine(
        clock,
        max_price_age_ms=AGE,
        price_policy=PricePolicy(sources=order, max_divergence_pct=pct),
    )
    oracle = Oracle(order, Fraction(repr(pct)) if pct is not None else None)
    for source, price, advance, age in steps:
        clock.now += advance
        t = Tick(T, price, clock.now - age, source)
        assert engine.on_tick(t) == oracle.on_tick(t, clock.now)
        assert engine.prices.get(T) == oracle.price
        assert (T in engine.sources.diverged) == oracle.diverged
        engine.drain()


@settings(max_examples=200, deadline=None)
@given(
    st.decimals("0.0001", "1000", places=4),
    st.decimals("0.0001", "1000", places=4),
    st.decimals("0.01", "50", places=2),
)
def test_divergence_is_decided_on_the_prices_as_written(a, b, pct):
    clock = Clock()
    engine = Engine(
        clock,
        max_price_age_ms=AGE,
        price_policy=PricePolicy(sources=("x", "y"), max_divergence_pct=float(pct)),
    )
    engine.on_tick(Tick(T, float(a), clock.now, "x"))
    engine.on_tick(Tick(T, float(b), clock.now, "y"))
    lo, hi = Fraction(min(a, b)), Fraction(max(a, b))
    assert (T in engine.sources.diverged) == ((hi - lo) * 100 / lo > Fraction(pct))
