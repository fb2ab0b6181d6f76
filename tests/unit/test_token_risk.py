"""The token risk score: documented factors and weights, unknowns scored as the highest risk,
monotone in every factor, and the `max_risk_score` signal filter."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine.model import Signal, Tick
from tradingd.engine.token_market import PoolData
from tradingd.engine.token_risk import WEIGHTS, risk_score

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]
NOW = 1_764_000_000_000
DAY = 86_400_000


def pool(**kw: object) -> PoolData:
    return PoolData(source="dexscreener", ts=NOW, **kw)  # type: ignore[arg-type]


def test_weights_sum_to_one_hundred():
    assert sum(WEIGHTS.values()) == 100


def test_a_token_nothing_is_known_of_scores_100_and_names_every_factor_missing():
    score = risk_score(None, None, None, NOW)
    assert score.score == 100
    assert sorted(score.missing) == sorted(WEIGHTS)


def test_a_deep_old_token_scores_low_and_only_unknown_confidence_counts():
    score = risk_score(
        pool(
            liquidity_usd=5_000_000.0,
            market_cap_usd=500_000_000.0,
            fdv_usd=500_000_000.0,
            volume_24h_usd=20_000_000.0,
            pair_created_at=NOW - 400 * DAY,
        ),
        0.3,
        None,
        NOW,
    )
    assert score.missing == ["confidence"]
    assert score.score == 5  # the missing confidence factor's full weight


def test_a_fresh_thin_pool_scores_high():
    score = risk_score(
        pool(
            liquidity_usd=8_000.0,
            market_cap_usd=90_000.0,
            fdv_usd=900_000.0,
            volume_24h_usd=5_000.0,
            pair_created_at=NOW - 600_000,
        ),
        6.0,
        0.05,
        NOW,
    )
    assert score.missing == []
    assert score.score == 100


def test_halfway_on_the_log_scale_is_half_the_weight():
    # liquidity 100,000 USD is halfway between 10,000 and 1,000,000 on a log scale
    score = risk_score(pool(liquidity_usd=100_000.0), None, None, NOW)
    assert score.factors["liquidity"].risk == 0.5
    assert score.factors["liquidity"].points == 15.0


values = st.one_of(st.none(), st.floats(0, 1e12, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(values, values, values, values, st.one_of(st.none(), st.floats(0, 100)), values)
def test_more_liquidity_volume_or_age_never_raises_the_score(liq, cap, vol, fdv, vola, extra):
    base = pool(liquidity_usd=liq, market_cap_usd=cap, volume_24h_usd=vol, fdv_usd=fdv)
    s = risk_score(base, vola, None, NOW)
    assert 0 <= s.score <= 100
    bump = extra if extra is not None else 1.0
    more = pool(
        liquidity_usd=(liq or 0) + bump,
        market_cap_usd=cap,
        volume_24h_usd=(vol or 0) + bump,
        fdv_usd=fdv,
    )
    assert risk_score(more, vola, None, NOW).score <= s.score


def test_max_risk_score_skips_a_risky_token_and_takes_a_safe_one():
    h = Harness(Clock())
    h.sol()
    aid = h.agent({"signals": {"max_risk_score": 40}})

    def buy() -> tuple[str, str]:
        now = h.clock.now
        record, _ = h.engine.on_signal(
            Signal(id=f"s{now}", token=T, received_at=now, expires_at=now + 30_000)
        )
        h.collect()
        e = record.executions[aid]
        return e.status, e.reason

    h.engine.on_tick(Tick(T, 1.0, h.clock.now, "dexscreener", decimals=6))
    assert buy() == ("skipped", "risk_score_above_max")
    h.clock.now += 1
    h.engine.on_tick(
        Tick(
            T,
            1.0,
            h.clock.now,
            "dexscreener",
            liquidity_usd=5e6,
            market_cap_usd=5e8,
            fdv_usd=5e8,
            volume_24h_usd=2e7,
            pair_created_at=h.clock.now - 400 * DAY,
        )
    )
    # volatility unknown (15) + confidence unknown (5) = 20 <= 40
    h.clock.now += 1
    assert buy() == ("pending", "")
    assert h.engine.token_risk(T).score == 20
