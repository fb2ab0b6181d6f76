"""No amount in the book passes the u64 maximum (the width of SPL amounts): every order carries
the most its fill may return (`max_amount_out`), so a position's tokens, DCA included, and an
agent's quote balance stay within 2**64 - 1 whatever the prices. The cases are the attack's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine.config import MAX_ATOMIC
from tradingd.engine.errors import ValidationError

from tests.unit.harness import Clock, Harness
from tests.unit.invariants import check_invariants

TOKEN = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
DCA = {
    "dca": {
        "enabled": True,
        "levels": [{"drop_pct": -10, "buy_pct": 100}],
        "max_count": 5,
        "cooldown_s": 0,
    }
}


def _bounded(h: Harness) -> None:
    for p in h.engine.positions.values():
        assert p.amount <= MAX_ATOMIC, p
    for aid in h.engine.agents:
        for b in h.engine.ledger.balances(aid):
            assert b.total <= MAX_ATOMIC, b
    check_invariants(h)


def test_dca_cannot_grow_a_position_past_the_u64_maximum() -> None:
    # 0.1 SOL at 1.8e-9 USD, 9 decimals: 8,333,333,333,333,333,333 tokens; two DCA buys of 100%
    # would reach 32,677,343,611,504,007,542 (the attack's position), past 2**64 - 1.
    h = Harness(Clock())
    h.sol()
    aid = h.agent(DCA)
    h.tick(TOKEN, 0.0000000018, 9)
    h.signal(TOKEN)
    h.settle()
    for price in (0.0000000016, 0.0000000014, 0.0000000012):
        h.clock.now += 1000
        h.tick(TOKEN, price, 9)
        h.settle()
        _bounded(h)
    (p,) = h.engine.positions.values()
    assert p.agent_id == aid and p.amount <= MAX_ATOMIC and p.dca_count >= 1
    assert any(b"u64 maximum" in line for line in h.log)  # a DCA buy was refused, not filled


def test_a_sell_cannot_credit_the_quote_balance_past_the_u64_maximum() -> None:
    # the attack: bought at $1, closed at $1e299 -> a quote amount of ~300 digits
    h = Harness(Clock())
    h.sol()
    aid = h.agent({})
    h.tick(TOKEN, 1.0, 6)
    h.signal(TOKEN)
    h.settle()
    balance_before = h.engine.ledger.balance(aid, "SOL").total
    h.tick(TOKEN, 1e299, 6)
    (p,) = h.engine.positions.values()
    h.engine.close_position(p.id, 100.0)
    h.collect()
    h.settle()
    _bounded(h)
    assert h.engine.ledger.balance(aid, "SOL").total == balance_before  # refused, nothing credited
    assert h.engine.positions[p.id].status == "open"  # the sell failed: the tokens are still held


@settings(max_examples=60, deadline=None)
@given(
    # Gains stay below ~1e300 % here: past that the stop's float gain overflows (a separate
    # fault, left for its own fix; see the closing note of issue 17).
    entry=st.floats(min_value=1e-12, max_value=1e6),
    moves=st.lists(st.floats(min_value=1e-18, max_value=1e280), min_size=1, max_size=6),
    decimals=st.integers(0, 18),
)
def test_no_price_path_takes_an_amount_past_the_u64_maximum(
    entry: float, moves: list[float], decimals: int
) -> None:
    h = Harness(Clock())
    h.sol()
    h.agent(DCA)
    h.tick(TOKEN, entry, decimals)
    h.signal(TOKEN)
    h.settle()
    for price in moves:
        h.clock.now += 1000
        h.tick(TOKEN, price, decimals)
        h.settle()
    for p in list(h.engine.positions.values()):
        if p.status == "open":
            try:
                h.engine.close_position(p.id, 100.0)
            except ValidationError:  # worth less than one quote atomic unit: nothing to sell
                continue
            h.collect()
            h.settle()
    _bounded(h)
