"""Account breakers (engine/account_breakers.py): each rule trips at exactly its threshold and
not one step before, a trip halts buys with an alert and says so once, a reset starts over, and
the equity the drawdown rule watches equals a naive recomputation over any sequence."""

from __future__ import annotations

from fractions import Fraction

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradingd.engine import events as ev
from tradingd.engine.account_breakers import (
    AccountBreakers,
    BreakerRules,
    naive_equity_usd,
)
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.snapshot import capture, restore

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]
T2 = TOKENS[1]
T3 = TOKENS[2]
USDC = 10**6
# 100 USDC a buy, no slippage or fee: amounts below are exact by hand.
CONFIG = {
    "sizing": {"mode": "fixed", "amount": str(100 * USDC)},
    "stop_loss": {"enabled": False},
    "execution": {"slippage_bps": 0, "fee_bps": 0},
}
STOP_CONFIG = {**CONFIG, "stop_loss": {"mode": "fixed", "default_pct": -10}}


def rig(rules: BreakerRules, config: dict | None = None) -> Harness:
    """One agent with 1,000 USDC, `T` priced at 1.0, breakers `rules`."""
    h = Harness(Clock())
    h.engine = Engine(h.clock, breakers=rules)
    h.agent(config or CONFIG, deposit=1000 * USDC, quote="USDC")
    h.tick(T, 1.0)
    h.tick(T2, 1.0)
    h.tick(T3, 1.0)
    return h


def buy(h: Harness, token: str = T) -> None:
    h.signal(token)
    h.settle()


def alerts(h: Harness, code: str) -> list[ev.Alert]:
    return [e for e in h.events() if isinstance(e, ev.Alert) and e.code == code]


def halts(h: Harness) -> list[ev.HaltChanged]:
    return [e for e in h.events() if isinstance(e, ev.HaltChanged)]


def at_price(h: Harness, price: float, token: str = T) -> None:
    h.clock.now += 1000
    h.tick(token, price)
    h.clock_step()


# -- equity drawdown -------------------------------------------------------------------------


def test_drawdown_of_exactly_the_threshold_does_not_trip_and_one_step_more_does():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)  # 900 USDC + 100 T at 1.0: equity 1,000, the day's peak
    at_price(h, 0.5)  # 900 + 50 = 950: exactly 5 % down
    assert not h.engine.halted_buys and not alerts(h, "breaker_tripped")
    at_price(h, 0.499999)  # 949.9999: more than 5 % down
    assert h.engine.halted_buys
    [alert] = alerts(h, "breaker_tripped")
    assert alert.details == {
        "rule": "equity_drawdown",
        "equity_usd": "949.999900",
        "peak_usd": "1000.000000",
        "drawdown_pct": 5.00001,
        "threshold_pct": 5,
    }
    [halt] = halts(h)
    assert (halt.buys, halt.rule, halt.details) == (True, "equity_drawdown", alert.details)


def test_a_trip_does_not_trip_again_until_reset():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    for price in (0.4, 0.3, 0.2, 0.1):
        at_price(h, price)
    assert len(alerts(h, "breaker_tripped")) == 1 and len(halts(h)) == 1


def test_reset_lifts_the_halt_and_takes_the_equity_now_as_the_peak():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    at_price(h, 0.4)  # 940: tripped
    was = h.engine.reset_breakers()
    h.collect()
    assert was is not None and was.rule == "equity_drawdown"
    assert not h.engine.halted_buys and h.engine.breakers.tripped is None
    assert [a.details for a in alerts(h, "breaker_reset")] == [{"rule": "equity_drawdown"}]
    at_price(h, 0.4)  # 940 is the new peak: no trip
    assert len(alerts(h, "breaker_tripped")) == 1
    at_price(h, 0.0001)  # 900.01: 4.25 % below 940
    assert len(alerts(h, "breaker_tripped")) == 1
    buy(h, T2)  # buys are taken again
    assert len([p for p in h.engine.positions.values() if p.status == "open"]) == 2


def test_lifting_the_operators_halt_clears_a_breaker_trip():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    at_price(h, 0.4)
    h.engine.set_halt(False)
    h.collect()
    assert h.engine.breakers.tripped is None and not h.engine.halted_buys
    assert len(alerts(h, "breaker_reset")) == 1


def test_a_new_utc_day_starts_a_new_peak():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    at_price(h, 0.6)  # 960: 4 % down
    h.clock.now = (h.clock.now // 86_400_000 + 1) * 86_400_000  # midnight UTC
    at_price(h, 0.6)  # the new day's peak is 960
    at_price(h, 0.2)  # 920: 4.17 % below 960
    assert not h.engine.halted_buys
    at_price(h, 0.1)  # 910: 5.2 % below 960 (9 % below yesterday's 1,000)
    assert h.engine.halted_buys


def test_flatten_sells_every_position_on_a_trip():
    h = rig(BreakerRules(equity_drawdown_pct=5, flatten=True))
    buy(h)
    buy(h, T2)
    at_price(h, 0.7)  # 800 + 70 + 100 = 970
    at_price(h, 0.4)  # 940: tripped, both sold
    h.settle()
    assert h.engine.halted_buys
    assert {p.status for p in h.engine.positions.values()} == {"closed"}
    assert {p.exit_reason for p in h.engine.positions.values()} == {"manual"}


def test_a_buy_is_refused_while_tripped():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    at_price(h, 0.4)
    record, _ = h.signal(T2)
    assert [x.status for x in record.executions.values()] == ["skipped"]


# -- consecutive stop-outs -------------------------------------------------------------------


def stop_out(h: Harness, token: str = T) -> None:
    """Buy at 1.0, fall through the -10 % stop, back to 1.0."""
    buy(h, token)
    h.clock.now += 1000
    h.tick(token, 0.85)
    h.settle()
    h.clock.now += 1000
    h.tick(token, 1.0)


def test_the_nth_stop_out_in_a_row_trips_and_the_one_before_does_not():
    h = rig(BreakerRules(consecutive_stop_outs=3), STOP_CONFIG)
    stop_out(h)
    stop_out(h)
    assert h.engine.breakers.streak == 2 and not h.engine.halted_buys
    stop_out(h)
    assert h.engine.halted_buys
    [alert] = alerts(h, "breaker_tripped")
    assert alert.details == {"rule": "consecutive_stop_outs", "streak": 3, "threshold": 3}


def test_a_close_for_another_reason_ends_the_streak():
    h = rig(BreakerRules(consecutive_stop_outs=3), STOP_CONFIG)
    stop_out(h)
    stop_out(h)
    buy(h)
    h.signal(T, side="sell")
    h.settle()
    assert h.engine.breakers.streak == 0
    stop_out(h)
    stop_out(h)
    assert not h.engine.halted_buys


# -- stale feeds -----------------------------------------------------------------------------


def test_a_feed_silent_for_exactly_the_limit_does_not_trip_and_one_ms_more_does():
    h = rig(BreakerRules(stale_feeds_s=30))
    buy(h)
    last = h.engine.prices[T].ts
    h.clock.now = last + 30_000
    h.clock_step()
    assert not h.engine.halted_buys
    h.clock.now += 1
    h.clock_step()
    assert h.engine.halted_buys
    [alert] = alerts(h, "breaker_tripped")
    assert alert.details == {"rule": "stale_feeds", "token": T, "age_s": 30.001, "threshold_s": 30}


def test_stale_feeds_count_only_while_positions_are_open():
    h = rig(BreakerRules(stale_feeds_s=30))
    h.clock.now += 3_600_000
    h.clock_step()
    assert not h.engine.halted_buys


def test_after_a_reset_a_feed_age_counts_from_the_reset():
    h = rig(BreakerRules(stale_feeds_s=30))
    buy(h)
    h.clock.now += 60_000
    h.clock_step()
    h.engine.reset_breakers()
    h.clock.now += 30_000
    h.clock_step()
    assert not h.engine.halted_buys
    h.clock.now += 1
    h.clock_step()
    assert h.engine.halted_buys


# -- order failure rate ----------------------------------------------------------------------


def test_failure_rate_trips_at_exactly_the_threshold_once_min_orders_ended():
    rules = BreakerRules(order_failure_rate=50, order_failure_window=4, min_orders=4)
    h = rig(rules)
    buy(h, T)  # filled
    h.signal(T2)
    h.settle(fail=True)  # 1 failed of 2
    buy(h, T2)  # 1 of 3
    assert not h.engine.halted_buys  # fewer than min_orders
    h.signal(T3)
    h.settle(fail=True)  # 2 failed of 4: 50 %
    assert h.engine.halted_buys
    [alert] = alerts(h, "breaker_tripped")
    assert alert.details == {
        "rule": "order_failure_rate",
        "failed": 2,
        "orders": 4,
        "rate_pct": 50.0,
        "threshold_pct": 50,
        "window": 4,
    }


def test_failure_rate_one_order_below_the_threshold_does_not_trip():
    rules = BreakerRules(order_failure_rate=50, order_failure_window=4, min_orders=4)
    h = rig(rules)
    for token in (T, T2, T3):
        buy(h, token)
    h.signal(T, side="sell")
    h.settle(fail=True)  # 1 failed of 4: 25 %
    assert not h.engine.halted_buys
    h.signal(T, side="sell")
    h.settle(fail=True)  # the window's last 4 (the oldest fill left it): 2 failed
    assert h.engine.halted_buys


def test_pure_rules_are_off_unless_configured():
    b = AccountBreakers()
    assert b.on_equity(Fraction(1), 0) is None and b.on_equity(Fraction(0), 1) is None
    assert b.on_position_closed("stop_loss", 2) is None
    assert b.on_order_done(True, 3) is None
    assert b.on_feeds([(T, 0)], 10**12) is None


# -- the equity watched equals a naive recomputation -----------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([T, T2]), st.floats(-0.4, 0.4)),
        st.tuples(st.just("buy"), st.sampled_from([T, T2]), st.integers(1, 5)),
        st.tuples(st.just("sell"), st.sampled_from([T, T2]), st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 5), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS, st.lists(st.booleans(), max_size=20), st.sampled_from([1, 3, 10]))
def test_drawdown_trips_iff_the_naive_equity_sequence_says_so(actions, failures, limit_pct):
    """At each point the engine evaluates (each settlement, each clock turn), recompute the
    equity from every balance and position: the rule trips at the first point where it is
    more than the limit below the running peak, and never otherwise."""
    config = {**STOP_CONFIG, "take_profit": {"enabled": True, "levels": [
        {"gain_pct": 20, "sell_pct": 50}]}}  # fmt: skip
    h = rig(BreakerRules(equity_drawdown_pct=limit_pct), config)
    prices = {T: 1.0, T2: 1.0}
    peak: Fraction | None = None
    tripped = False
    fails = iter(failures)

    def evaluated() -> None:
        nonlocal peak, tripped
        equity = naive_equity_usd(h.engine)
        assert equity == h.engine.equity.usd()  # the held amounts kept from fills are right
        if not tripped and equity is not None:
            peak = equity if peak is None or equity > peak else peak
            tripped = peak > 0 and (peak - equity) * 100 > limit_pct * peak
        assert (h.engine.breakers.tripped is not None) == tripped

    for kind, a, b in actions:
        h.step(prices, kind, a, b)
        if kind == "wait":
            evaluated()
        while h.pending:  # one order at a time: each settlement is an evaluation
            pending, h.pending = h.pending[1:], h.pending[:1]
            h.settle(fail=next(fails, False))
            h.pending = pending + h.pending
            evaluated()


# -- restart ---------------------------------------------------------------------------------


def restarted(h: Harness, rules: BreakerRules) -> None:
    """Replace the engine by one restored from its snapshot, as recovery does."""
    snap = capture(h.engine)
    h.engine = Engine(h.clock, breakers=rules)
    restore(h.engine, snap)


def test_a_trip_survives_a_restart_and_an_admin_reset_lifts_its_halt():
    rules = BreakerRules(equity_drawdown_pct=5)
    h = rig(rules)
    buy(h)
    at_price(h, 0.4)
    restarted(h, rules)
    trip = h.engine.breakers.tripped
    assert h.engine.halted_buys and trip is not None and trip.rule == "equity_drawdown"
    assert h.engine.reset_breakers() == trip
    assert not h.engine.halted_buys


class TickingClock(Clock):
    """A clock that moves 1 ms on every read, as a loaded machine's wall clock may."""

    def __call__(self) -> int:
        self.now += 1
        return self.now


def test_the_halt_of_a_trip_is_stamped_with_the_trip_time():
    """Recovery restores a trip's `at` from its HaltChanged: one clock read for both (a CI run
    restored a trip 1 ms late)."""
    h = Harness(TickingClock())
    h.engine = Engine(h.clock, breakers=BreakerRules(consecutive_stop_outs=1))
    h.agent(STOP_CONFIG, deposit=1000 * USDC, quote="USDC")
    h.tick(T, 1.0)
    stop_out(h)
    trip = h.engine.breakers.tripped
    [halt] = halts(h)
    assert trip is not None and halt.ts == trip.at


def test_the_operators_halt_is_not_a_trip_after_a_restart():
    rules = BreakerRules(equity_drawdown_pct=5)
    h = rig(rules)
    h.engine.set_halt(True)
    restarted(h, rules)
    assert h.engine.halted_buys and h.engine.breakers.tripped is None
    assert h.engine.reset_breakers() is None
    assert h.engine.halted_buys  # a reset lifts only a breaker's halt


def test_deleting_an_agent_with_its_balance_is_not_a_drawdown():
    h = rig(BreakerRules(equity_drawdown_pct=5))
    buy(h)
    other = h.agent(CONFIG, deposit=1000 * USDC, quote="USDC")
    at_price(h, 1.0)  # equity 2,000: the day's peak
    h.delete(other)
    at_price(h, 1.0)  # 1,000: half the account left, nothing lost
    assert not h.engine.halted_buys
    at_price(h, 0.49)  # 900 + 49 = 949: 5.1 % below 1,000
    assert h.engine.halted_buys


# -- a trip while a sliced exit cascade is pending -------------------------------------------


def cascade_then_trip(exit_slice: int | None) -> list[bytes]:
    """Agent A's stop-out on T2 is in flight when T crashes through B's three stops and B's
    resting limit buy; then A's sell fills and trips the breaker (one stop-out). The events,
    with the cascade decided in one transition or one exit at a time."""
    h = rig(BreakerRules(consecutive_stop_outs=1))
    a = h.engine.create_agent(
        "a",
        "paper",
        config_from_builtins({**STOP_CONFIG, "signals": {"token_filter": "allow", "tokens": [T2]}}),
        "USDC",
    ).id
    h.engine.deposit(a, "USDC", 1000 * USDC)
    b = h.engine.create_agent("b", "paper", config_from_builtins({
        **STOP_CONFIG, "signals": {"token_filter": "allow", "tokens": [T]},
        "limits": {"max_positions_per_token": 5}}), "USDC").id  # fmt: skip
    h.engine.deposit(b, "USDC", 1000 * USDC)
    h.collect()
    h.engine.delete_agent(next(iter(h.engine.agents)))  # the rig's own agent: not needed
    for token in (T2, T, T, T):
        buy(h, token)
    h.rest(T, "limit", 0.6)
    h.engine.exit_slice = exit_slice
    h.clock.now += 1000
    h.tick(T2, 0.85)  # A's stop: its sell is in flight
    a_sell = [o for o in h.pending if o.agent_id == a]
    h.pending = [o for o in h.pending if o.agent_id != a]
    h.clock.now += 1000
    h.tick(T, 0.5)  # B's stops and B's resting buy: a cascade
    kept, h.pending = h.pending, a_sell
    h.settle()  # A's sell fills: the breaker trips
    while h.engine.exits_pending:
        h.engine.continue_exits()
    h.collect()
    h.pending = kept + h.pending
    h.settle()
    return h.log


def decided(log: list[bytes]) -> list[tuple[object, ...]]:
    """What a run decided, in a canonical order: each exit, each resting buy's end, each halt."""
    dec = msgspec.json.Decoder(ev.AnyEvent)
    out: list[tuple[object, ...]] = []
    for e in map(dec.decode, log):
        if isinstance(e, ev.ExitTriggered):
            out.append(("exit", e.position_id, e.reason, e.price_usd, e.sell_amount))
        elif isinstance(e, ev.EntryEnded):
            out.append(("entry", e.entry_id, e.outcome, e.reason, e.order_id is not None))
        elif isinstance(e, ev.HaltChanged):
            out.append(("halt", e.buys, e.rule))
    return sorted(out, key=repr)


def test_a_trip_while_a_sliced_cascade_is_pending_decides_what_one_transition_decides():
    """A fill of another agent settles between the cascade's slices (by design), so the order
    of events differs; what is decided must not: the trip first decides the cascade's pending
    exits and resting buys at their tick, then halts."""
    whole, sliced = cascade_then_trip(None), cascade_then_trip(1)
    assert decided(sliced) == decided(whole)
    assert ("halt", True, "consecutive_stop_outs") in decided(whole)
    assert [d for d in decided(whole) if d[0] == "entry"][0][2:] == ("triggered", "", True)
