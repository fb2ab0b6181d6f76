"""Signal-provider scorecards (engine/scorecards.py, scorecard_stats.py): every window's figures
equal a recomputation from the full history, for random histories, at the Scorecards level and
through a real Engine."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine.config import SourceBreaker
from tradingd.engine.model import Attribution
from tradingd.engine.scorecard_stats import (
    DAY_MS,
    HOUR_MS,
    WINDOWS,
    Card,
    Curve,
    Stats,
    latency_bound,
    latency_bucket,
)
from tradingd.engine.scorecards import OTHER, UNATTRIBUTED, Scorecards
from tradingd.engine.source_breaker import trip_rule

T0 = 1_764_000_000_000
SOURCES = ["alpha", "beta", "", "gamma"]
AGENTS = ["a1", "a2"]


def in_window(name: str, ts: int, now: int) -> bool:
    if name == "all":
        return True
    if name == "24h":
        return ts // HOUR_MS >= now // HOUR_MS - 23
    days = 7 if name == "7d" else 30
    return ts // DAY_MS >= now // DAY_MS - (days - 1)


def naive_dd(pnls: list[int]) -> int:
    prefix = [0]
    for x in pnls:
        prefix.append(prefix[-1] + x)
    return max(prefix[i] - prefix[j] for i in range(len(prefix)) for j in range(i, len(prefix)))


def oracle(records: list[tuple], name: str, now: int) -> dict:
    """Figures of the records (ts, kind, data) in window `name` at `now`, recomputed naively."""
    out: dict = {
        "received": 0,
        "executed": 0,
        "failed": 0,
        "skipped": {},
        "pnls": [],
        "usd": [],
        "unpriced": 0,
        "exposure": 0,
        "slips": [],
        "lat": [],
        "by_quote": {},
    }
    for ts, kind, data in records:
        if not in_window(name, ts, now):
            continue
        if kind == "received":
            out["received"] += 1
        elif kind == "skipped":
            out["skipped"][data] = out["skipped"].get(data, 0) + 1
        elif kind in ("executed", "failed"):
            out[kind] += 1
        elif kind == "fill":
            slip, lat = data
            if slip is not None:
                out["slips"].append(slip)
            if lat is not None:
                out["lat"].append(lat)
        elif kind == "close":
            pnl, quote, usd, held = data
            out["pnls"].append(pnl)
            out["by_quote"][quote] = out["by_quote"].get(quote, 0) + pnl
            out["exposure"] += held
            if usd is None:
                out["unpriced"] += 1
            else:
                out["usd"].append(usd)
    return out


def check(stats: Stats, want: dict, agent_level: bool) -> None:
    assert stats.received == want["received"]
    assert stats.executed == want["executed"]
    assert stats.failed == want["failed"]
    assert {k: v for k, v in stats.skipped.items() if v} == want["skipped"]
    pnls = want["pnls"]
    assert stats.trades == len(pnls)
    assert stats.wins == sum(1 for x in pnls if x > 0)
    assert stats.losses == sum(1 for x in pnls if x <= 0)
    assert {k: v for k, v in stats.pnl_by_quote.items()} == want["by_quote"]
    if agent_level:
        assert stats.pnl == sum(pnls)
        assert stats.curve.sum == sum(pnls)
        assert stats.curve.max_dd == naive_dd(pnls)
    usd = want["usd"]
    assert stats.curve_usd.sum == sum(usd)
    assert stats.curve_usd.max_dd == naive_dd(usd)
    assert stats.best == (max(usd) if usd else None)
    assert stats.worst == (min(usd) if usd else None)
    assert stats.unpriced == want["unpriced"]
    assert stats.exposure_ms == want["exposure"]
    assert stats.slip_n == len(want["slips"])
    assert stats.slip_bps_sum == pytest.approx(sum(want["slips"]), rel=1e-9, abs=1e-9)
    for q in (0.5, 0.99):
        lat = sorted(want["lat"])
        expect = (
            latency_bound(latency_bucket(lat[max(1, math.ceil(q * len(lat))) - 1])) if lat else None
        )
        assert stats.latency_pct(q) == expect


event = st.one_of(
    st.tuples(st.just("received"), st.sampled_from(SOURCES), st.none(), st.none()),
    st.tuples(
        st.just("filtered"),
        st.sampled_from(SOURCES),
        st.none(),
        st.dictionaries(st.sampled_from(AGENTS), st.sampled_from(["min_strength", "type"])),
    ),
    st.tuples(
        st.just("execution"),
        st.sampled_from(SOURCES),
        st.sampled_from(AGENTS),
        st.sampled_from([("filled", ""), ("failed", "x"), ("skipped", "cooldown")]),
    ),
    st.tuples(
        st.just("fill"),
        st.sampled_from(SOURCES),
        st.sampled_from(AGENTS),
        st.tuples(st.floats(1e-6, 1e6), st.floats(1e-6, 1e6), st.integers(0, 10**7), st.booleans()),
    ),
    st.tuples(
        st.just("close"),
        st.sampled_from(SOURCES),
        st.sampled_from(AGENTS),
        st.tuples(
            st.integers(-(10**12), 10**12),
            st.one_of(st.none(), st.floats(0.01, 1e5)),
            st.integers(0, 10**9),
        ),
    ),
)
# Time steps that land on and next to hour and day edges, and the windows' edges
edges = st.sampled_from([0, 1, HOUR_MS - 1, HOUR_MS, DAY_MS - 1, DAY_MS, 6 * DAY_MS, 7 * DAY_MS])
step = st.tuples(st.one_of(edges, st.integers(0, 2 * HOUR_MS), st.integers(0, 30 * HOUR_MS)), event)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(step, max_size=60),
    st.one_of(edges, st.sampled_from([23 * HOUR_MS, 29 * DAY_MS]), st.integers(0, 40 * DAY_MS)),
)
def test_every_window_equals_a_recomputation_from_the_whole_history(steps, later) -> None:
    cards = Scorecards()
    now = T0
    by_source: dict[str, list] = {}
    by_agent: dict[tuple[str, str], list] = {}

    def rec(source: str, agent: str | None, kind: str, data: object) -> None:
        name = source or UNATTRIBUTED
        by_source.setdefault(name, []).append((now, kind, data))
        if agent is not None:
            by_agent.setdefault((agent, name), []).append((now, kind, data))

    for source in SOURCES:  # a source has its card once a signal named it
        cards.admit(source, None)
    for dt, (kind, source, agent, data) in steps:
        now += dt
        if kind == "received":
            cards.signal_received(source, None, now)
            rec(source, None, "received", None)
        elif kind == "filtered":
            cards.filtered(source, data, now)
            for reason in data.values():
                rec(source, None, "skipped", reason)
        elif kind == "execution":
            status, reason = data
            cards.execution(agent, source, status, reason, now)
            name = source or UNATTRIBUTED
            if status == "skipped" and (agent, name) not in by_agent:
                # an agent's card begins with an order: a skip before it counts per source
                by_source.setdefault(name, []).append((now, "skipped", reason))
                continue
            # per agent, `received` counts the signals whose execution ended
            by_agent.setdefault((agent, name), []).append((now, "received", None))
            rec(
                source,
                agent,
                "skipped"
                if status == "skipped"
                else ("executed" if status == "filled" else "failed"),
                reason if status == "skipped" else None,
            )
        elif kind == "fill":
            fill_price, signal_price, lat, known = data
            by = Attribution(
                signal_id="s",
                source=source,
                received_at=now - lat,
                price_usd=signal_price if known else None,
            )
            cards.entry_filled(agent, by, fill_price, now)
            slip = (fill_price / signal_price - 1) * 10_000 if known else None
            rec(source, agent, "fill", (slip, float(lat) if now - lat else None))
        else:
            pnl, quote_usd, held = data
            by = Attribution(signal_id="s", source=source)
            cards.closed(agent, by, "SOL", 9, quote_usd, pnl, held, now)
            usd = (
                math.floor(Fraction(pnl, 10**9) * Fraction(repr(quote_usd)) * 10**6)
                if quote_usd
                else None
            )
            rec(source, agent, "close", (pnl, "SOL", usd, held))
    end = now + later
    for name, records in by_source.items():
        for w in WINDOWS:
            check(cards.by_source[name].window(w, end), oracle(records, w, end), False)
    for (agent, name), records in by_agent.items():
        for w in WINDOWS:
            check(cards.by_agent[agent][name].window(w, end), oracle(records, w, end), True)


@given(st.lists(st.integers(-(10**6), 10**6), max_size=40), st.integers(0, 40))
def test_curve_merge_equals_one_curve_over_the_concatenation(xs, cut) -> None:
    a, b, whole = Curve(), Curve(), Curve()
    for i, x in enumerate(xs):
        (a if i < cut else b).add(x)
        whole.add(x)
    assert a.then(b) == whole
    assert whole.max_dd == naive_dd(xs)


def test_sources_past_the_bound_are_counted_as_other() -> None:
    cards = Scorecards(max_sources=2)
    for s in ("s1", "s2", "s3", "s4"):
        cards.signal_received(s, None, T0)
    assert set(cards.by_source) == {"s1", "s2", OTHER}
    assert cards.by_source[OTHER].window("all", T0).received == 2
    cards.signal_received("s1", None, T0)  # a known source keeps its own card
    assert cards.by_source["s1"].window("all", T0).received == 2


def test_buckets_out_of_the_window_are_dropped() -> None:
    card = Card()
    for h in range(100):
        card.bucket(T0 + h * HOUR_MS).received += 1
    assert len(card.hours) == 24
    assert card.window("24h", T0 + 99 * HOUR_MS).received == 24
    assert card.window("all", T0 + 99 * HOUR_MS).received == 100
    assert card.total.received == 99  # the current hour is not folded yet
    assert sum(d.received for d in card.days.values()) == 99


def test_latency_buckets_bound_the_value_within_nine_percent() -> None:
    for ms in (0.5, 1, 1.01, 2, 3, 10, 250, 999.9, 1e6):
        bound = latency_bound(latency_bucket(ms))
        assert bound >= ms
        assert bound <= max(ms, 1) * 2 ** (1 / 8) + 1e-9


# -- the breaker's rules, exact at their limits ------------------------------------------------


def test_consecutive_losses_trip_at_exactly_the_limit() -> None:
    cfg = SourceBreaker(enabled=True, consecutive_losses=3)
    assert trip_rule(cfg, [5, -1, 0], 1000) is None  # two in a row (0 is a loss)
    assert trip_rule(cfg, [5, -1, 0, -7], 1000) == (
        "consecutive_losses",
        {"losses": 3, "limit": 3},
    )
    assert trip_rule(cfg, [-1, -1, -1, 1], 1000) is None  # a win ends the streak


def test_drawdown_trips_at_exactly_the_limit_of_the_deposits() -> None:
    cfg = SourceBreaker(enabled=True, max_drawdown_pct=12.5)
    # deposits 1,000,000: 12.5 % is 125,000 exactly; 124,999 does not trip
    assert trip_rule(cfg, [100_000, -124_999], 1_000_000) is None
    rule, details = trip_rule(cfg, [100_000, -125_000], 1_000_000)
    assert rule == "max_drawdown_pct"
    assert details["drawdown"] == "125000"
    assert trip_rule(cfg, [-(10**9)], 0) is None  # no deposits: not judged


def test_win_rate_is_judged_only_with_min_trades_and_trips_strictly_under() -> None:
    cfg = SourceBreaker(enabled=True, min_win_rate_pct=40, min_trades=5)
    assert trip_rule(cfg, [-1, -1, -1, -1], 1) is None  # four trades: not judged
    assert trip_rule(cfg, [1, 1, -1, -1, -1], 1) is None  # 40 % is not under 40 %
    assert trip_rule(cfg, [1, -1, -1, -1, -1], 1)[0] == "min_win_rate_pct"


def test_win_rate_limit_as_written_is_exact() -> None:
    # 33.3 % as written: 1 win in 3 (33.33...) is not under it; float 1/3*100 must not decide
    cfg = SourceBreaker(enabled=True, min_win_rate_pct=33.4, min_trades=3)
    assert trip_rule(cfg, [1, -1, -1], 1)[0] == "min_win_rate_pct"
    cfg = SourceBreaker(enabled=True, min_win_rate_pct=33.3, min_trades=3)
    assert trip_rule(cfg, [1, -1, -1], 1) is None


@given(
    st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=30),
    st.integers(1, 10**10),
    st.sampled_from([0.1, 1, 2.5, 12.345, 33.3, 50, 99.99, 100]),
)
def test_the_drawdown_limit_trips_iff_an_exact_recomputation_says_so(pnls, deposited, pct) -> None:
    cfg = SourceBreaker(enabled=True, max_drawdown_pct=pct)
    dd = naive_dd(pnls)
    expect = dd * 100 >= Fraction(repr(pct)) * deposited
    got = trip_rule(cfg, pnls, deposited)
    assert (got is not None) == expect
    if got is not None:
        assert got[1]["drawdown"] == str(dd)


def test_a_clock_that_steps_back_loses_no_count() -> None:
    cards = Scorecards()
    cards.admit("alpha", None)
    by = Attribution(signal_id="s", source="alpha", received_at=T0, price_usd=1.0)
    t = T0 - T0 % HOUR_MS  # an hour's start
    cards.closed("a1", by, "SOL", 9, 150.0, -5, 10, t + 10)  # hour h
    cards.closed("a2", by, "SOL", 9, 150.0, -5, 10, t + HOUR_MS)  # hour h+1: folds h
    cards.closed("a1", by, "SOL", 9, 150.0, -5, 10, t + 20)  # back in hour h (cached pair)
    cards.closed("a1", by, "SOL", 9, 150.0, -5, 10, t + 2 * HOUR_MS)
    later = t + 2 * HOUR_MS
    assert cards.by_source["alpha"].window("all", later).trades == 4
    assert cards.by_agent["a1"]["alpha"].window("all", later).trades == 3
    assert cards.by_source["alpha"].window("24h", later).trades == 4


def test_one_agents_sources_past_its_bound_share_its_other_card() -> None:
    cards = Scorecards(max_sources=1000, max_agent_sources=2)
    for s in ("s1", "s2", "s3", "s4"):
        cards.admit(s, None)
        by = Attribution(signal_id="x", source=s)
        cards.closed("a1", by, "SOL", 9, None, -1, 1, T0)
        cards.closed("a2", by, "SOL", 9, None, -1, 1, T0) if s == "s4" else None
    assert set(cards.by_agent["a1"]) == {"s1", "s2", OTHER}
    assert cards.by_agent["a1"][OTHER].window("all", T0).trades == 2
    assert set(cards.by_agent["a2"]) == {"s4"}  # another agent has room of its own
    assert set(cards.by_source) == {"s1", "s2", "s3", "s4"}  # the per-source cards are whole
    assert cards.agent_name("a1", "s3") == OTHER and cards.agent_name("a1", "s1") == "s1"


def test_one_key_cannot_take_every_slot() -> None:
    cards = Scorecards(max_sources=1000, max_key_sources=3)
    names = [cards.admit(f"k1-{i}", "key_1") for i in range(5)]
    assert names == ["k1-0", "k1-1", "k1-2", OTHER, OTHER]
    assert cards.admit("k2-0", "key_2") == "k2-0"  # another key has room of its own
    assert cards.admit("k1-0", "key_1") == "k1-0"  # a source it has keeps its card
    cards.forget("k1-1")  # an admin frees one of key_1's slots
    assert cards.admit("k1-9", "key_1") == "k1-9"
    assert cards.name("never-admitted") == OTHER and cards.name("") == UNATTRIBUTED


def test_a_forgotten_card_is_persisted_as_deleted_and_not_restored() -> None:
    cards = Scorecards()
    cards.admit("alpha", "key_1")
    by = Attribution(signal_id="x", source="alpha")
    cards.closed("a1", by, "SOL", 9, None, -1, 1, T0)
    cards.take_dirty()
    assert cards.forget("alpha") == 1
    saved = {(c.agent_id, c.source): c for c in cards.take_dirty()}
    assert saved[("", "alpha")].deleted and saved[("a1", "alpha")].deleted
    again = Scorecards()
    for c in saved.values():
        again.restore(c)
    assert "alpha" not in again.by_source and "alpha" not in again.by_agent.get("a1", {})
    assert again.key_sources == {}


def test_skips_alone_never_take_an_agents_card_slots() -> None:
    cards = Scorecards(max_agent_sources=2)
    for i in range(10):  # a flood of sells the agent skips (no_open_position)
        cards.admit(f"flood{i}", "key_f")
        cards.execution("a1", f"flood{i}", "skipped", "no_open_position", T0)
    assert "a1" not in cards.by_agent
    assert cards.by_source["flood0"].window("all", T0).skipped == {"no_open_position": 1}
    cards.admit("legit", "key_l")
    by = Attribution(signal_id="x", source="legit")
    cards.closed("a1", by, "SOL", 9, None, -1, 1, T0)
    assert set(cards.by_agent["a1"]) == {"legit"}


@pytest.mark.parametrize(
    "name",
    [
        "other",
        "Other",
        " OTHER ",
        "ｏｔｈｅｒ",
        "unattributed\u200b",
        "\u202eunattributed",
        "UnAttributed",
        "other\ufe0f",
        "unattributed\u034f",
        "\u3164other",
        "ot\u115fher",
    ],
)
def test_lookalikes_of_the_reserved_names_are_reserved(name) -> None:
    from tradingd.engine.scorecards import is_reserved

    assert is_reserved(name)


@pytest.mark.parametrize("name", ["others", "other-desk", "tv", "", "attributed"])
def test_other_names_are_not_reserved(name) -> None:
    from tradingd.engine.scorecards import is_reserved

    assert not is_reserved(name)
