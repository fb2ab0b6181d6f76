"""Properties of exact money, for the whole kind: amounts never exceed the exact value and are
within one atomic unit of it; a price written exactly on a level triggers it; a ladder that
sums to 100% closes the position."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.venues.paper import PaperRejected, paper_fill
from tradingd.engine.money import pct_of, quote_value, token_amount

from tests.unit.test_exact_money import T, cfg, opened, order, position, sells

# Prices and percentages as a feed or a config writes them: short decimals.
prices = st.builds(
    lambda digits, exp: Decimal(digits).scaleb(exp),
    st.integers(1, 99_999_999),
    st.integers(-12, 2),
)
pcts = st.builds(
    lambda n, places: Decimal(n).scaleb(-places), st.integers(1, 99_999), st.integers(0, 3)
)
amounts = st.integers(1, 2**64 - 1)
decimals = st.integers(0, 12)


def exact(d: Decimal) -> Fraction:
    return Fraction(d)


@given(amounts, pcts.filter(lambda p: p <= 100))
def test_pct_of_is_the_floor_of_the_exact_value(amount, pct):
    got = pct_of(amount, float(str(pct)))
    want = amount * exact(pct) / 100
    assert got <= want < got + 1


@given(amounts, decimals, prices, prices, decimals)
def test_quote_value_and_token_amount_are_floors_of_the_exact_values(a, td, tp, qp, qd):
    value = quote_value(a, td, float(str(tp)), float(str(qp)), qd)
    exact_value = Fraction(a, 10**td) * exact(tp) / exact(qp) * 10**qd
    assert value <= exact_value < value + 1
    tokens = token_amount(a, qd, float(str(qp)), float(str(tp)), td)
    exact_tokens = Fraction(a, 10**qd) * exact(qp) / exact(tp) * 10**td
    assert tokens <= exact_tokens < tokens + 1


@given(
    st.integers(1, 10**15),
    prices,
    st.integers(0, 5000),
    st.integers(0, 1000),
    st.sampled_from(["buy", "sell"]),
)
def test_paper_fills_never_exceed_the_exact_value(amount, price, slippage, fee, side):
    o = order(side, amount, slippage_bps=slippage, fee_bps=fee)
    try:
        fill = paper_fill(o, float(str(price)), 1.0, 0)
    except PaperRejected:
        return
    p = exact(price)
    if side == "buy":
        fee_units = amount * fee // 10_000
        want = Fraction(amount - fee_units, 10**6) / (p * (10_000 + slippage) / 10_000) * 10**6
        assert fill.amount_out <= want < fill.amount_out + 1
    else:
        gross = Fraction(amount, 10**6) * p * (10_000 - slippage) / 10_000 * 10**6
        assert fill.amount_out + fill.fee <= gross < fill.amount_out + fill.fee + 1


entries = st.builds(lambda n: Decimal(n).scaleb(-4), st.integers(1, 99_999))  # 0.0001 .. 9.9999
gains = st.builds(lambda n: Decimal(n).scaleb(-1), st.integers(1, 3_000))  # 0.1 .. 300.0
drops = st.builds(lambda n: -Decimal(n).scaleb(-1), st.integers(1, 900))  # -0.1 .. -90.0


def written(d: Decimal) -> float:
    """The level as a feed would write it: its exact decimal, parsed as a float."""
    return float(str(d))


indexes = st.sampled_from(["indexed", "naive"])  # the index and its oracle agree on the edge


@settings(max_examples=300)
@given(entries, gains, indexes)
def test_a_price_exactly_on_a_take_profit_level_triggers_it(entry, gain, index):
    levels = [{"gain_pct": float(gain), "sell_pct": 50}]
    h, _ = opened(cfg(take_profit={"enabled": True, "levels": levels}), written(entry), index)
    h.tick(T, written(entry * (1 + gain / 100)))
    assert [o.reason for o in h.pending] == ["take_profit"]


@settings(max_examples=300)
@given(entries, drops, indexes)
def test_a_price_exactly_on_a_stop_or_dca_level_triggers_it(entry, drop, index):
    level = written(entry * (1 + drop / 100))
    if level <= 0:
        return
    config = cfg(stop_loss={"mode": "fixed", "default_pct": float(drop)})
    h, _ = opened(config, written(entry), index)
    h.tick(T, level)
    assert [o.reason for o in h.pending] == ["stop_loss"]
    dca = {"enabled": True, "levels": [{"drop_pct": float(drop), "buy_pct": 10}]}
    h, _ = opened(cfg(dca=dca), written(entry), index)
    h.tick(T, level)
    assert [o.purpose for o in h.pending] == ["dca"]


peaks = st.builds(lambda n: Decimal(n).scaleb(-1), st.integers(200, 3_000))  # +20% .. +300%
ZONES = ((25, "0.5"), (50, "0.6"), (100, "0.7"), (200, "0.8"))


@settings(max_examples=300)
@given(entries, peaks, st.sampled_from(["fixed", "zones", "custom"]), indexes)
def test_a_price_exactly_on_a_ratcheted_stop_triggers_it(entry, peak_gain, mode, index):
    """Fixed (S = p - 10), zones (S = p x k) and custom stops armed by an exact peak gain p."""
    p = peak_gain
    sl: dict = {"mode": mode, "default_pct": -50}
    if mode == "custom":
        sl["levels"] = [{"gain_pct": float(p), "stop_pct": float(p / 2)}]
    h, _ = opened(cfg(stop_loss=sl), written(entry), index)
    h.tick(T, written(entry * (1 + p / 100)))
    if mode == "fixed":
        s = p - 10
    elif mode == "custom":
        s = p / 2
    else:
        s = p * Decimal(next((k for bound, k in ZONES if p <= bound), "0.85"))
    h.tick(T, written(entry * (1 + s / 100)))
    assert [o.reason for o in h.pending] == ["stop_loss"], (entry, p, mode, s)


@st.composite
def ladders(draw):
    """2-4 take-profit levels whose sell_pct (up to 3 decimals) sum to exactly 100."""
    k = draw(st.integers(2, 4))
    cuts = sorted(
        draw(st.lists(st.integers(1, 99_999), min_size=k - 1, max_size=k - 1, unique=True))
    )
    bounds = [0, *cuts, 100_000]
    sells_ = [Decimal(b - a).scaleb(-3) for a, b in zip(bounds, bounds[1:], strict=False)]
    gains_ = sorted(draw(st.lists(st.integers(1, 500), min_size=k, max_size=k, unique=True)))
    return [{"gain_pct": g, "sell_pct": float(s)} for g, s in zip(gains_, sells_, strict=True)]


@settings(max_examples=200)
@given(ladders(), entries, st.integers(1_000, 10**9))
def test_a_ladder_summing_to_100_pct_closes_the_position(levels, entry, spend):
    config = cfg(
        take_profit={"enabled": True, "levels": levels},
        sizing={"mode": "fixed", "amount": str(spend)},
    )
    h, _ = opened(config, written(entry))
    p = position(h)
    if p.status != "open":
        return  # the buy rounded to zero tokens
    bought = p.amount
    for level in levels:
        h.tick(T, written(entry * (1 + Decimal(level["gain_pct"]) / 100)))
        h.settle()
    assert p.status == "closed" and p.amount == 0 and p.exit_reason == "take_profit"
    assert sum(s[0] for s in sells(h)) == bought
