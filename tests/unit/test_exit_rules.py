"""Exit rules as API.md states them: stop modes, take-profit ladder, moon bag, DCA, stale, max hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradingd.engine.config import config_from_builtins
from tradingd.engine.exits import stop_gain_for_peak

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]


def sl(**kw):
    return config_from_builtins({"stop_loss": kw}).stop_loss


def opened(cfg: dict, price: float = 1.0) -> tuple[Harness, str]:
    h = Harness(Clock())
    h.sol()
    cfg = {"execution": {"slippage_bps": 0, "fee_bps": 0}, **cfg}
    aid = h.agent(cfg)
    h.tick(T, price)
    h.signal(T)
    h.settle()
    (p,) = h.engine.agent_positions[aid].values()
    assert p.status == "open"
    return h, p.id


def exits(h: Harness) -> list:
    return [e for e in h.events() if type(e).__name__ == "ExitTriggered"]


def test_fixed_stepper_stop_is_default_below_20_then_peak_minus_10():
    s = sl(mode="fixed", default_pct=-32)
    assert stop_gain_for_peak(s, 0) == -32
    assert stop_gain_for_peak(s, 19.9) == -32
    assert stop_gain_for_peak(s, 20) == 10
    assert stop_gain_for_peak(s, 150) == 140


@pytest.mark.parametrize(
    ("p", "expected"), [(25, 12.5), (50, 30), (100, 70), (200, 160), (300, 255)]
)
def test_zones_stop_keeps_the_zone_fraction_of_the_peak(p, expected):
    assert stop_gain_for_peak(sl(mode="zones"), p) == pytest.approx(expected)


def test_exponential_stop_matches_the_formula_at_known_points():
    s = sl(mode="exponential", default_pct=-32)
    assert stop_gain_for_peak(s, 20) == -32
    assert stop_gain_for_peak(s, 120) == pytest.approx(108.0)  # k capped at 0.90
    assert 0 < stop_gain_for_peak(s, 40) < 40


def test_custom_levels_pick_the_highest_reached_level():
    s = sl(
        mode="custom", levels=[{"gain_pct": 50, "stop_pct": 20}, {"gain_pct": 100, "stop_pct": 60}]
    )
    assert stop_gain_for_peak(s, 49) == -32
    assert stop_gain_for_peak(s, 75) == 20
    assert stop_gain_for_peak(s, 500) == 60


def test_trailing_stop_uses_trail_or_default_whichever_is_higher():
    s = sl(mode="trailing", trail_pct=10, default_pct=-5)
    assert stop_gain_for_peak(s, 0) == -5
    assert stop_gain_for_peak(s, 100) == pytest.approx(80)


@given(
    st.sampled_from(["fixed", "zones", "exponential", "trailing", "custom"]),
    st.lists(st.floats(0, 2000), min_size=2, max_size=50),
)
def test_stop_gain_never_decreases_as_the_peak_rises(mode, peaks):
    s = sl(mode=mode, levels=[{"gain_pct": 10, "stop_pct": 2}, {"gain_pct": 90, "stop_pct": 60}])
    values = [stop_gain_for_peak(s, p) for p in sorted(peaks)]
    assert values == sorted(values)


def test_trailing_stop_never_moves_down():
    h, pid = opened({"stop_loss": {"mode": "trailing", "trail_pct": 10}})
    seen = []
    for price in (1.2, 1.5, 1.4, 1.45, 1.36):
        h.clock.now += 1000
        h.tick(T, price)
        p = h.engine.position(pid)
        seen.append(p.stop_gain_pct)
    assert seen == sorted(seen)
    assert h.engine.position(pid).peak_price_usd == 1.5
    assert not exits(h)
    h.tick(T, 1.34)  # 1.5 * 0.9 = 1.35
    assert [e.reason for e in exits(h)] == ["stop_loss"]


def test_take_profit_levels_crossed_in_one_tick_sell_their_sum_once():
    levels = [
        {"gain_pct": 10, "sell_pct": 20},
        {"gain_pct": 20, "sell_pct": 30},
        {"gain_pct": 90, "sell_pct": 10},
    ]
    h, pid = opened(
        {"take_profit": {"enabled": True, "levels": levels}, "stop_loss": {"enabled": False}}
    )
    original = h.engine.position(pid).original_amount
    h.tick(T, 1.25)
    (exit_,) = exits(h)
    assert exit_.reason == "take_profit"
    assert exit_.sell_amount == original * 50 // 100
    h.settle()
    assert h.engine.position(pid).tp_done == 2


def test_moon_bag_is_never_sold_by_take_profit():
    h, pid = opened(
        {
            "stop_loss": {"enabled": False},
            "take_profit": {
                "enabled": True,
                "levels": [{"gain_pct": 10, "sell_pct": 60}, {"gain_pct": 50, "sell_pct": 40}],
                "moon_bag": {"enabled": True, "trigger_gain_pct": 30, "retain_pct": 25},
            },
        }
    )
    original = h.engine.position(pid).original_amount
    h.tick(T, 1.4)  # both the first level and the moon bag trigger
    h.settle()
    h.tick(T, 1.6)
    h.settle()
    p = h.engine.position(pid)
    assert p.status == "open"
    assert p.moon_bag_amount == original * 25 // 100
    assert p.amount == p.moon_bag_amount


def test_stop_sells_the_moon_bag_too():
    h, pid = opened(
        {
            "stop_loss": {"mode": "fixed", "default_pct": -10},
            "take_profit": {
                "enabled": True,
                "levels": [{"gain_pct": 10, "sell_pct": 90}],
                "moon_bag": {"enabled": True, "trigger_gain_pct": 5, "retain_pct": 10},
            },
        }
    )
    h.tick(T, 1.15)
    h.settle()
    h.tick(T, 0.5)
    h.settle()
    p = h.engine.position(pid)
    assert p.status == "closed" and p.exit_reason == "stop_loss" and p.amount == 0


def test_dca_recomputes_average_entry_and_respects_max_count_and_cooldown():
    h, pid = opened(
        {
            "stop_loss": {"enabled": False},
            "dca": {
                "enabled": True,
                "levels": [{"drop_pct": -10, "buy_pct": 100}],
                "max_count": 2,
                "cooldown_s": 60,
            },
        }
    )
    h.tick(T, 0.8)
    h.settle()
    p = h.engine.position(pid)
    assert p.dca_count == 1
    # buy_pct 100 of the position's value at 0.8 buys as many tokens again: (a*1 + a*0.8)/2a
    assert p.entry_price_usd == pytest.approx(0.9, rel=1e-6)
    h.clock.now += 1000
    h.tick(T, 0.5)  # in cooldown: nothing
    h.settle()
    assert h.engine.position(pid).dca_count == 1
    h.clock.now += 60_000
    h.tick(T, 0.5)
    h.settle()
    assert h.engine.position(pid).dca_count == 2
    h.clock.now += 120_000
    h.tick(T, 0.1)
    h.settle()
    assert h.engine.position(pid).dca_count == 2


def test_stale_trade_closes_a_flat_position_after_min_hold():
    h, pid = opened(
        {"stale_trade": {"enabled": True, "min_hold_s": 60, "min_pnl_pct": -5, "max_pnl_pct": 5}}
    )
    h.clock.now += 59_000
    h.clock_step()
    assert not exits(h)
    h.clock.now += 1_000
    h.clock_step()
    assert [e.reason for e in exits(h)] == ["stale_trade"]


def test_stale_trade_waits_for_the_price_to_enter_the_band():
    h, pid = opened(
        {
            "stop_loss": {"enabled": False},
            "stale_trade": {"enabled": True, "min_hold_s": 10, "min_pnl_pct": -5, "max_pnl_pct": 5},
        }
    )
    h.tick(T, 1.5)
    h.clock.now += 20_000
    h.clock_step()
    h.tick(T, 1.3)
    assert not exits(h)
    h.tick(T, 1.02)
    assert [e.reason for e in exits(h)] == ["stale_trade"]


def test_max_hold_closes_on_the_clock():
    h, pid = opened({"max_hold_s": 30})
    h.clock.now += 30_000
    h.clock_step()
    h.settle()
    assert h.engine.position(pid).exit_reason == "max_hold"


def test_closing_position_is_skipped_until_its_sell_settles():
    h, pid = opened({"stop_loss": {"mode": "fixed", "default_pct": -10}})
    h.engine.close_position(pid, 50)
    h.collect()
    h.tick(T, 0.5)  # stop crossed while the manual sell is in flight
    assert [e.reason for e in exits(h)] == ["manual"]
    h.settle()  # the half settles; the rest re-arms and the next tick stops it out
    h.tick(T, 0.5)
    assert [e.reason for e in exits(h)] == ["manual", "stop_loss"]
