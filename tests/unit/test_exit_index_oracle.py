"""The trigger index must propose every exit the naive scan finds: identical event streams."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tradingd.engine.errors import Conflict

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants
from tests.unit.strategies import actions, configs


def assert_same_events(indexed: Harness, naive: Harness) -> None:
    """Equal logs, or a message naming the first differing event and its differing fields."""
    if indexed.log == naive.log:
        return
    import msgspec

    for i, (a, b) in enumerate(zip(indexed.log, naive.log, strict=False)):
        if a != b:
            da, db = msgspec.json.decode(a), msgspec.json.decode(b)
            pa, pb = da.get("position", da), db.get("position", db)
            diff = {k: (pa.get(k), pb.get(k)) for k in set(pa) | set(pb) if pa.get(k) != pb.get(k)}
            raise AssertionError(f"event {i} ({da['event']}) differs: {diff}")
    raise AssertionError(f"lengths differ: {len(indexed.log)} vs {len(naive.log)}")


COVERAGE = (
    b'"reason":"stop_loss"',
    b'"reason":"take_profit"',
    b'"reason":"stale_trade"',
    b'"reason":"max_hold"',
    b'"reason":"signal"',
    b'"DcaTriggered"',
    b'"MoonBagSet"',
)


def note_coverage(h: Harness) -> None:
    """Hypothesis statistics: which exits and DCA the generated runs reached."""
    text = b"".join(h.log)
    for marker in COVERAGE:
        if marker in text:
            event(f"saw {marker.decode()}")


def run(configs_, steps, exit_index: str) -> Harness:
    clock = Clock()
    h = Harness(clock, exit_index)
    h.sol()
    for cfg in configs_:
        h.agent(cfg)
    prices = {t: 1.0 for t in TOKENS}
    for t in TOKENS:
        h.tick(t, 1.0)
    for kind, a, b in steps:
        if kind == "tick":
            prices[a] = max(prices[a] * math.exp(b), 1e-9)
            clock.now += 1000
            h.tick(a, prices[a])
        elif kind == "buy":
            h.signal(a, strength=b)
        elif kind == "sell":
            h.signal(a, side="sell")
        elif kind == "wait":
            clock.now += a * 1000
            h.clock_step()
        elif kind == "settle":
            h.settle(fail=a and len(h.log) % 3 == 0)
        elif kind == "close":
            open_ = [p for p in h.engine.positions.values() if p.status == "open"]
            if open_:
                try:
                    h.engine.close_position(open_[a % len(open_)].id, b)
                except Conflict:
                    pass
                h.collect()
        check_invariants(h)
    h.settle()
    check_invariants(h)
    return h


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(configs, min_size=1, max_size=3), actions)
def test_index_and_naive_scan_emit_identical_events(configs_, steps):
    indexed = run(configs_, steps, "indexed")
    naive = run(configs_, steps, "naive")
    assert_same_events(indexed, naive)
    note_coverage(indexed)


def random_walk_steps(seed: int, n: int) -> list[tuple]:
    import random

    rng = random.Random(seed)
    steps: list[tuple] = []
    for i in range(n):
        steps.append(("tick", rng.choice(TOKENS), rng.gauss(0.0, 0.06)))
        if i % 7 == 0:
            steps.append(("buy", rng.choice(TOKENS), rng.randint(1, 5)))
        if i % 3 == 0:
            steps.append(("settle", rng.random() < 0.05, 0))
        if rng.random() < 0.05:
            steps.append(("wait", rng.randint(1, 30), 0))
        if rng.random() < 0.01:
            steps.append(("sell", rng.choice(TOKENS), 0))
    return steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(configs, min_size=1, max_size=4), st.integers(0, 2**32))
def test_index_matches_naive_scan_on_long_random_walks(configs_, seed):
    steps = random_walk_steps(seed, 400)
    indexed = run(configs_, steps, "indexed")
    naive = run(configs_, steps, "naive")
    assert_same_events(indexed, naive)
    note_coverage(indexed)


def crowded_steps(seed: int, n: int) -> list[tuple]:
    """Many positions on one token: groups merge, trailing subgroups fire together."""
    import random

    rng = random.Random(seed)
    steps: list[tuple] = []
    for i in range(n):
        steps.append(("tick", TOKENS[0], rng.gauss(0.0, 0.04)))
        if i % 2 == 0:
            steps.append(("buy", TOKENS[0], 5))
        if i % 3 == 0:
            steps.append(("settle", rng.random() < 0.03, 0))
        if rng.random() < 0.03:
            steps.append(("wait", rng.randint(1, 30), 0))
    return steps


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(configs, min_size=1, max_size=3), st.integers(0, 2**32))
def test_index_matches_naive_scan_with_many_positions_on_one_token(configs_, seed):
    crowded = [
        {
            **c,
            "limits": {"max_open_positions": 60, "max_positions_per_token": 60},
            "sizing": {"mode": "fixed", "amount": "100000000"},
        }
        for c in configs_
    ]
    steps = crowded_steps(seed, 300)
    indexed = run(crowded, steps, "indexed")
    naive = run(crowded, steps, "naive")
    assert_same_events(indexed, naive)
    exits = b"".join(indexed.log).count(b'"reason":"stop_loss"')
    event(f"stop-loss exits: {'none' if not exits else '1-9' if exits < 10 else '10+'}")
