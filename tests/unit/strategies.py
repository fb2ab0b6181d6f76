"""Hypothesis strategies for agent configs and action sequences."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.unit.harness import TOKENS

stop_loss = st.fixed_dictionaries(
    {
        "enabled": st.booleans(),
        "mode": st.sampled_from(["fixed", "trailing", "exponential", "zones", "custom"]),
        "default_pct": st.sampled_from([-5, -10, -20, -32]),
        "trail_pct": st.sampled_from([3, 5, 10, 25]),
        "levels": st.just(
            [
                {"gain_pct": 10, "stop_pct": 2},
                {"gain_pct": 30, "stop_pct": 15},
                {"gain_pct": 80, "stop_pct": 50},
            ]
        ),
    }
)
take_profit = st.fixed_dictionaries(
    {
        "enabled": st.booleans(),
        "levels": st.sampled_from(
            [
                [
                    {"gain_pct": 10, "sell_pct": 25},
                    {"gain_pct": 25, "sell_pct": 25},
                    {"gain_pct": 60, "sell_pct": 30},
                ],
                [{"gain_pct": 5, "sell_pct": 50}],
                [{"gain_pct": 15, "sell_pct": 100}],
            ]
        ),
        "moon_bag": st.fixed_dictionaries(
            {
                "enabled": st.booleans(),
                "trigger_gain_pct": st.sampled_from([8, 20, 40]),
                "retain_pct": st.sampled_from([10, 30]),
            }
        ),
    }
)
dca = st.fixed_dictionaries(
    {
        "enabled": st.booleans(),
        "levels": st.just([{"drop_pct": -5, "buy_pct": 50}, {"drop_pct": -12, "buy_pct": 100}]),
        "max_count": st.integers(0, 3),
        "cooldown_s": st.sampled_from([0, 5, 60]),
    }
)
stale = st.fixed_dictionaries(
    {
        "enabled": st.booleans(),
        "min_hold_s": st.sampled_from([5, 30]),
        "min_pnl_pct": st.sampled_from([-3, 0]),
        "max_pnl_pct": st.sampled_from([2, 6]),
    }
)
configs = st.fixed_dictionaries(
    {
        "sizing": st.sampled_from(
            [
                {"mode": "fixed", "amount": "500000000"},
                {"mode": "balance_pct", "balance_pct": 20},
                {
                    "mode": "tiers",
                    "tiers": [
                        {"min_balance": "0", "amount": "100000000"},
                        {"min_balance": "5000000000", "amount": "900000000"},
                    ],
                },
            ]
        ),
        "limits": st.fixed_dictionaries(
            {
                "max_open_positions": st.integers(1, 4),
                "max_positions_per_token": st.integers(1, 3),
                "token_cooldown_s": st.sampled_from([0, 10]),
            }
        ),
        "execution": st.fixed_dictionaries(
            {"slippage_bps": st.sampled_from([0, 50, 300]), "fee_bps": st.sampled_from([0, 30])}
        ),
        "stop_loss": stop_loss,
        "take_profit": take_profit,
        "dca": dca,
        "stale_trade": stale,
        "max_hold_s": st.sampled_from([None, None, 40]),
    }
)

token = st.sampled_from(TOKENS)
moves = st.sampled_from([-0.3, -0.15, -0.08, -0.04, -0.02, 0.02, 0.04, 0.08, 0.15, 0.3])
tick = st.tuples(st.just("tick"), token, moves)
action = st.one_of(
    tick,
    tick,
    tick,
    tick,
    st.tuples(st.just("tick"), token, st.floats(-0.25, 0.25)),
    st.tuples(st.just("buy"), token, st.integers(1, 5)),
    st.tuples(st.just("sell"), token, st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 20), st.just(0)),
    st.tuples(st.just("settle"), st.booleans(), st.just(0)),
    st.tuples(st.just("close"), st.integers(0, 5), st.sampled_from([25, 100])),
)
actions = st.lists(action, min_size=10, max_size=150)

# Resting buys (issue 15): a limit or stop at a price around the token's current one (offset:
# the log of their ratio; 0 rests exactly at the last price, a marketable limit and a met
# stop), expiring 1-90 s later; cancels of a signal that rested lately, the price moved exactly onto
# a resting entry's, agents paused, resumed or deleted, and restarts from the snapshot.
entry_offsets = st.one_of(
    st.sampled_from([-0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.2]),
    st.floats(-0.25, 0.25),
)
rest = st.tuples(
    st.just("rest"),
    token,
    st.tuples(
        st.sampled_from(["limit", "stop"]),
        entry_offsets,
        st.one_of(st.sampled_from([1, 2, 5, 10]), st.integers(1, 90)),
    ),
)
resting_action = st.one_of(
    action,
    action,
    action,
    rest,
    rest,
    rest,
    rest,
    st.tuples(st.just("touch"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("wait"), st.integers(5, 60), st.just(0)),
    st.tuples(st.sampled_from(["pause", "resume"]), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("delete_agent"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("delete_agent"), st.integers(0, 2), st.just(True)),
    st.tuples(st.just("restart_engine"), st.just(0), st.just(0)),
)
resting_actions = st.lists(resting_action, min_size=20, max_size=150)
