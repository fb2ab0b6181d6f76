"""Exact money: the user's failing cases with their exact numbers (quote USDC, 6 decimals;
tokens 6 decimals; slippage and fee 0 unless stated; amounts in atomic units)."""

from __future__ import annotations

from typing import Any

from tradingd.adapters.venues.paper import paper_fill
from tradingd.engine import events as ev
from tradingd.engine.model import Order

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]
ZERO_COSTS = {"slippage_bps": 0, "fee_bps": 0}


def cfg(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sizing": {"mode": "fixed", "amount": "100000000"},  # 100 USDC
        "execution": dict(ZERO_COSTS),
        "stop_loss": {"enabled": False},
    }
    base.update(parts)
    return base


def opened(
    config: dict[str, Any], price: float, exit_index: str = "indexed"
) -> tuple[Harness, str]:
    """An engine with one USDC agent holding one position of T bought at `price`."""
    h = Harness(Clock(), exit_index)
    agent = h.agent(config, quote="USDC")
    h.tick(T, price)
    h.signal(T)
    h.settle()
    return h, agent


def sells(h: Harness) -> list[tuple[int, int, str]]:
    """(token amount, quote amount, reason) of every sell fill, in order."""
    return [
        (e.trade.amount, e.trade.quote_amount, e.trade.reason)
        for e in h.events()
        if isinstance(e, ev.OrderFilled) and e.trade.side == "sell"
    ]


def position(h: Harness):
    return next(iter(h.engine.positions.values()))


def order(side: str, amount_in: int, **kw: Any) -> Order:
    fields: dict[str, Any] = dict(
        id="o1",
        agent_id="a",
        position_id="p",
        side=side,
        purpose="exit" if side == "sell" else "entry",
        token=T,
        amount_in=amount_in,
        reason="t",
        created_at=0,
        venue="paper",
        quote="USDC",
        quote_decimals=6,
        token_decimals=6,
        slippage_bps=0,
        fee_bps=0,
    )
    fields.update(kw)
    return Order(**fields)


# -- 1. amounts ---------------------------------------------------------------------------------


def test_paper_sell_of_100_tokens_at_0_944_gets_exactly_94_4_usdc():
    fill = paper_fill(order("sell", 100_000_000), 0.944, 1.0, 0)
    assert fill.amount_out == 94_400_000


def test_paper_buy_of_94_4_usdc_at_0_944_gets_exactly_100_tokens():
    fill = paper_fill(order("buy", 94_400_000), 0.944, 1.0, 0)
    assert fill.amount_out == 100_000_000


def test_moon_bag_retains_exactly_8_2_pct_of_200_tokens():
    config = cfg(
        take_profit={
            "enabled": True,
            "levels": [{"gain_pct": 50, "sell_pct": 10}],
            "moon_bag": {"enabled": True, "trigger_gain_pct": 10, "retain_pct": 8.2},
        },
        sizing={"mode": "fixed", "amount": "200000000"},
    )
    h, _ = opened(config, 1.0)
    assert position(h).amount == 200_000_000
    h.tick(T, 1.1)
    assert position(h).moon_bag_amount == 16_400_000


def test_take_profit_sell_pct_33_333_sells_exactly_66_666_tokens():
    config = cfg(
        take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 33.333}]},
        sizing={"mode": "fixed", "amount": "200000000"},
    )
    h, _ = opened(config, 1.0)
    h.tick(T, 1.1)
    h.settle()
    assert [s[0] for s in sells(h)] == [66_666_000]


def test_partial_close_of_33_333_pct_sells_exactly_66_666_tokens():
    h, _ = opened(cfg(sizing={"mode": "fixed", "amount": "200000000"}), 1.0)
    h.engine.close_position(position(h).id, 33.333)
    h.collect()
    h.settle()
    assert [s[0] for s in sells(h)] == [66_666_000]


def test_balance_pct_sizing_is_exact():
    h = Harness(Clock())
    h.agent(
        cfg(sizing={"mode": "balance_pct", "balance_pct": 8.2}), deposit=200_000_000, quote="USDC"
    )
    h.tick(T, 1.0)
    h.signal(T)
    assert h.pending[0].amount_in == 16_400_000


def test_dca_buys_exactly_buy_pct_of_the_position_value():
    config = cfg(
        dca={"enabled": True, "levels": [{"drop_pct": -10, "buy_pct": 33.333}], "cooldown_s": 0}
    )
    h, _ = opened(config, 1.0)  # 100 tokens
    h.tick(T, 0.9)  # worth 90 USDC: buy 33.333% of it = 29.9997 USDC
    assert h.pending[0].amount_in == 29_999_700


# -- 2. boundaries ------------------------------------------------------------------------------


def test_take_profit_fires_at_exactly_its_level():
    config = cfg(take_profit={"enabled": True, "levels": [{"gain_pct": 20, "sell_pct": 50}]})
    h, _ = opened(config, 0.1)  # 1,000 tokens
    h.tick(T, 0.12)
    h.settle()
    assert sells(h) == [(500_000_000, 60_000_000, "take_profit")]


def test_stop_loss_fires_at_exactly_its_level():
    h, _ = opened(cfg(stop_loss={"mode": "fixed", "default_pct": -10}), 0.1)
    h.tick(T, 0.09)
    h.settle()
    assert sells(h) == [(1_000_000_000, 90_000_000, "stop_loss")]


def test_zones_stop_at_a_peak_exactly_on_plus_20_pct_is_active():
    # peak 0.12 = +20% exactly: zones k = 0.5, S = 10%, stop 0.11.
    h, _ = opened(cfg(stop_loss={"mode": "zones", "default_pct": -32}), 0.1)
    h.tick(T, 0.12)
    h.tick(T, 0.11)
    h.settle()
    assert [s[2] for s in sells(h)] == ["stop_loss"]


def test_custom_stop_level_reached_exactly_arms_its_stop():
    levels = [{"gain_pct": 20, "stop_pct": 5}]
    h, _ = opened(cfg(stop_loss={"mode": "custom", "default_pct": -32, "levels": levels}), 0.1)
    h.tick(T, 0.12)
    h.tick(T, 0.105)
    h.settle()
    assert [s[2] for s in sells(h)] == ["stop_loss"]


def test_dca_fires_at_exactly_its_drop():
    config = cfg(dca={"enabled": True, "levels": [{"drop_pct": -15, "buy_pct": 50}]})
    h, _ = opened(config, 0.1)
    h.tick(T, 0.085)
    assert [o.purpose for o in h.pending] == ["dca"]


def test_moon_bag_trigger_fires_at_exactly_its_gain():
    config = cfg(
        take_profit={
            "enabled": True,
            "levels": [{"gain_pct": 500, "sell_pct": 10}],
            "moon_bag": {"enabled": True, "trigger_gain_pct": 20, "retain_pct": 10},
        }
    )
    h, _ = opened(config, 0.1)
    h.tick(T, 0.12)
    assert position(h).moon_bag_amount == 100_000_000


def test_stale_trade_band_edges_are_inside_the_band():
    for edge in (0.095, 0.11):  # -5% and +10% of 0.1
        config = cfg(
            stale_trade={"enabled": True, "min_hold_s": 1, "min_pnl_pct": -5, "max_pnl_pct": 10}
        )
        h, _ = opened(config, 0.1)
        h.clock.now += 2_000
        h.tick(T, edge)
        h.settle()
        assert [s[2] for s in sells(h)] == ["stale_trade"], edge


# -- 3. a ladder reaching 100% closes the position ---------------------------------------------


def test_ladder_of_two_halves_sells_the_odd_unit_and_closes():
    levels = [{"gain_pct": 10, "sell_pct": 50}, {"gain_pct": 30, "sell_pct": 50}]
    h, _ = opened(cfg(take_profit={"enabled": True, "levels": levels}), 0.3)
    p = position(h)
    assert p.amount == 333_333_333
    h.tick(T, 0.335)
    h.settle()
    h.tick(T, 0.4)
    h.settle()
    assert [s[0] for s in sells(h)] == [166_666_666, 166_666_667]
    assert p.status == "closed" and p.exit_reason == "take_profit" and p.amount == 0


def test_a_remainder_worth_less_than_the_dust_threshold_is_sold_with_the_slice():
    config = cfg(
        take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 99.9}]},
        execution={**ZERO_COSTS, "dust_quote": "200000"},  # 0.2 USDC
    )
    h, _ = opened(config, 1.0)  # 100 tokens: 0.1 left after 99.9% would be worth 0.11 USDC
    h.tick(T, 1.1)
    h.settle()
    assert [s[0] for s in sells(h)] == [100_000_000]
    assert position(h).status == "closed"


def test_a_sell_worth_no_quote_is_not_placed():
    h, _ = opened(cfg(stop_loss={"mode": "fixed", "default_pct": -10}), 1.0)
    h.tick(T, 1e-9)  # 100 tokens worth 0.0000001 USDC: below one atomic unit
    assert h.pending == []
    assert position(h).status == "open"
    assert any(isinstance(e, ev.Alert) and e.code == "exit_below_minimum" for e in h.events())


# -- 6. the trailing peak starts at the market price -------------------------------------------


def test_trailing_peak_starts_at_the_decision_price_not_the_slipped_fill():
    config = cfg(
        stop_loss={"mode": "trailing", "trail_pct": 0.5},
        execution={"slippage_bps": 100, "fee_bps": 0},
    )
    h, _ = opened(config, 1.0)
    p = position(h)
    assert p.entry_price_usd == 1.01
    h.tick(T, 1.0)
    h.tick(T, 1.0)
    assert h.pending == [] and p.status == "open"
    assert h.engine.position(p.id).peak_price_usd == 1.0


# -- 7. decimals conflicts and configs applied to open positions -------------------------------


def test_a_tick_with_conflicting_decimals_is_refused_with_an_alert():
    h, _ = opened(cfg(), 1.0)
    from tradingd.engine.model import Tick

    assert h.engine.on_tick(Tick(T, 5.0, h.clock.now, decimals=9)) == "decimals_conflict"
    h.collect()
    assert h.engine.prices[T].price_usd == 1.0
    assert position(h).decimals == 6
    assert any(isinstance(e, ev.Alert) and e.code == "decimals_conflict" for e in h.events())


def test_a_future_tick_is_refused_and_does_not_freeze_the_price():
    from tradingd.engine.model import Tick

    h, _ = opened(cfg(), 1.0)
    now = h.clock.now
    assert h.engine.on_tick(Tick(T, 9.0, now + 86_400_000)) == "future"
    assert h.engine.on_tick(Tick(T, 2.0, now + 1)) is None
    assert h.engine.prices[T].price_usd == 2.0


def test_config_applied_to_open_positions_acts_at_the_last_price_at_once():
    from tradingd.engine.config import config_from_builtins

    h, agent = opened(cfg(stop_loss={"mode": "fixed", "default_pct": -32}), 1.0)
    h.tick(T, 0.95)
    assert h.pending == []
    new = config_from_builtins(cfg(stop_loss={"mode": "fixed", "default_pct": -3}))
    h.engine.update_config(agent, new, apply_to_open=True)
    h.collect()
    h.settle()
    assert sells(h) == [(100_000_000, 95_000_000, "stop_loss")]


def test_a_tick_slightly_ahead_does_not_lock_the_price_against_real_time_ticks():
    from tradingd.engine.model import Tick

    h, _ = opened(cfg(stop_loss={"mode": "fixed", "default_pct": -10}), 1.0)
    now = h.clock.now
    assert h.engine.on_tick(Tick(T, 1.0, now + 4_900)) is None  # within the 5 s skew
    h.tick(T, 0.5)  # a real-time tick right after: applied, and the stop sells
    h.settle()
    assert [s[2] for s in sells(h)] == ["stop_loss"]


def test_the_stop_price_shown_is_the_price_that_triggers():
    from tradingd.engine.exits import stop_trigger_price

    modes = [
        {"mode": "exponential", "default_pct": -32},
        {"mode": "zones", "default_pct": -32},
        {"mode": "fixed", "default_pct": -32},
        {"mode": "trailing", "trail_pct": 7, "default_pct": -32},
        {"mode": "custom", "default_pct": -32, "levels": [{"gain_pct": 10, "stop_pct": 3.3}]},
    ]
    for sl in modes:
        for entry, peak in ((1.0, 1.9), (0.29, 0.551), (4.35, 8.265), (0.3, 0.4)):
            h, _ = opened(cfg(stop_loss=sl), entry)
            h.tick(T, peak)
            p = h.engine.position(position(h).id)
            shown = stop_trigger_price(p)
            assert shown is not None
            h.tick(T, shown * (1 + 1e-12))  # above the level: no sell
            assert h.pending == [], (sl, entry, peak)
            h.tick(T, shown)
            assert [o.reason for o in h.pending] == ["stop_loss"], (sl, entry, peak, shown)


def test_a_ladder_of_thirds_written_to_three_places_is_a_valid_config():
    from tradingd.engine.config import config_from_builtins

    levels = [
        {"gain_pct": 10, "sell_pct": 33.333},
        {"gain_pct": 20, "sell_pct": 33.333},
        {"gain_pct": 30, "sell_pct": 33.334},
    ]
    config_from_builtins({"take_profit": {"enabled": True, "levels": levels}})


def test_sizing_tiers_are_compared_as_integers_not_floats():
    from tradingd.engine.config import config_from_builtins

    tiers = [  # distinct u64 amounts that are the same float
        {"min_balance": "18446744073709551614", "amount": "1"},
        {"min_balance": "18446744073709551615", "amount": "2"},
    ]
    config_from_builtins({"sizing": {"mode": "tiers", "tiers": tiers}})


def test_a_peak_below_the_slipped_entry_survives_a_snapshot_round_trip():
    from tradingd.engine.core import Engine
    from tradingd.engine.snapshot import capture, restore

    config = cfg(
        stop_loss={"mode": "trailing", "trail_pct": 3},
        execution={"slippage_bps": 100, "fee_bps": 0},
    )
    h, _ = opened(config, 1.0)
    p = h.engine.position(position(h).id)
    assert (p.entry_price_usd, p.peak_price_usd) == (1.01, 1.0)
    again = Engine(h.clock)
    restore(again, capture(h.engine))
    assert again.position(p.id).peak_price_usd == 1.0


def test_the_stop_price_shown_has_no_float_noise():
    from tradingd.engine.exits import stop_trigger_price

    h, _ = opened(cfg(stop_loss={"mode": "trailing", "trail_pct": 10}), 0.00002)
    h.tick(T, 0.00003)
    assert stop_trigger_price(h.engine.position(position(h).id)) == 0.000027
