"""The trigger index must propose every exit the naive scan finds: identical event streams.

Identical streams prove nothing if no exit happened, so each property also tallies the exits its
generated runs reached (per kind, from the index's log) and fails when a kind it is meant to
exercise stayed below its floor: a generator that drifts into flat prices fails loudly."""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants
from tests.unit.strategies import actions, configs


def assert_same_events(indexed: Harness, naive: Harness) -> None:
    """Equal logs, or a message naming the first differing event and its differing fields."""
    if indexed.log == naive.log:
        return
    for i, (a, b) in enumerate(zip(indexed.log, naive.log, strict=False)):
        if a != b:
            da, db = msgspec.json.decode(a), msgspec.json.decode(b)
            pa, pb = da.get("position", da), db.get("position", db)
            diff = {k: (pa.get(k), pb.get(k)) for k in set(pa) | set(pb) if pa.get(k) != pb.get(k)}
            raise AssertionError(f"event {i} ({da['event']}) differs: {diff}")
    raise AssertionError(f"lengths differ: {len(indexed.log)} vs {len(naive.log)}")


OPENED = b'{"event":"PositionOpened"'
EXIT = b'{"event":"ExitTriggered"'
DCA = b'{"event":"DcaTriggered"'
MOON_BAG = b'{"event":"MoonBagSet"'


def exits_in(h: Harness) -> Counter[str]:
    """Exits of one run by kind: the ExitTriggered reason, with a stop-loss on a trailing stop
    counted as `trailing_stop`; plus `dca` (DcaTriggered) and `moon_bag` (MoonBagSet)."""
    stop_mode: dict[str, str] = {}
    kinds: Counter[str] = Counter()
    for raw in h.log:
        if raw.startswith(OPENED):
            position = msgspec.json.decode(raw)["position"]
            stop_mode[position["id"]] = position["config"]["stop_loss"]["mode"]
        elif raw.startswith(EXIT):
            doc = msgspec.json.decode(raw)
            reason = doc["reason"]
            if reason == "stop_loss" and stop_mode.get(doc["position_id"]) == "trailing":
                reason = "trailing_stop"
            kinds[reason] += 1
        elif raw.startswith(DCA):
            kinds["dca"] += 1
        elif raw.startswith(MOON_BAG):
            kinds["moon_bag"] += 1
    return kinds


def note_coverage(h: Harness, tally: Counter[str]) -> None:
    """Add one run's exits to `tally` (and to the Hypothesis statistics, per run)."""
    kinds = exits_in(h)
    tally.update(kinds)
    tally["runs"] += 1
    tally["runs with an exit"] += any(k not in ("dca", "moon_bag") for k in kinds)
    tally["price exits"] += kinds["stop_loss"] + kinds["trailing_stop"] + kinds["take_profit"]
    for kind in kinds:
        event(f"saw {kind}")


def assert_exercised(tally: Counter[str], floors: dict[str, int]) -> None:
    """Every kind in `floors` was reached at least that many times across the examples."""
    short = {kind: tally[kind] for kind, floor in floors.items() if tally[kind] < floor}
    assert not short, f"the generated runs rarely reached {short} (of {floors}); all: {tally}"


# Floors well under what the generators reach, so they catch a generator gone flat, not noise.
# Short random action lists vary a lot per kind from one Hypothesis run to the next (measured
# over 300 examples: 164-191 runs with an exit, 49-105 price exits, but as few as 0-1 trailing
# stops, moon bags or max holds), so they are held to exits overall; the long and crowded
# walks reach every kind hundreds to thousands of times (fewest seen: 357 trailing stops and
# 194 moon bags in a long-walk run, 1496 trailing stops in a crowded one) and are held to each.
SHORT_RUN_FLOORS = {"runs with an exit": 100, "price exits": 15, "signal": 50}
LONG_WALK_FLOORS = {
    "runs with an exit": 120,
    "stop_loss": 300,
    "trailing_stop": 50,
    "take_profit": 300,
    "dca": 200,
    "moon_bag": 20,
    "stale_trade": 300,
    "max_hold": 300,
}
# Trailing stops in crowded walks need a trailing config among 1-3 drawn ones and a turn down
# after a new high: 136 and 291 were seen in two runs (seed 12345 gives 291, the same before and
# after issue 10), so their floor is lower than the other kinds'.
CROWDED_FLOORS = {
    "runs with an exit": 40,
    "stop_loss": 300,
    "trailing_stop": 50,
    "take_profit": 300,
    "dca": 300,
}


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
        h.step(prices, kind, a, b)
        check_invariants(h)
    h.settle()
    check_invariants(h)
    return h


def test_index_and_naive_scan_emit_identical_events():
    tally: Counter[str] = Counter()

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,  # the coverage floors below hold for one fixed set of runs
    )
    @given(st.lists(configs, min_size=1, max_size=3), actions)
    def identical(configs_, steps):
        indexed = run(configs_, steps, "indexed")
        naive = run(configs_, steps, "naive")
        assert_same_events(indexed, naive)
        note_coverage(indexed, tally)

    identical()
    assert_exercised(tally, SHORT_RUN_FLOORS)


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


def test_index_matches_naive_scan_on_long_random_walks():
    tally: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,  # the coverage floors below hold for one fixed set of runs
    )
    @given(st.lists(configs, min_size=1, max_size=4), st.integers(0, 2**32))
    def identical(configs_, seed):
        steps = random_walk_steps(seed, 400)
        indexed = run(configs_, steps, "indexed")
        naive = run(configs_, steps, "naive")
        assert_same_events(indexed, naive)
        note_coverage(indexed, tally)

    identical()
    assert_exercised(tally, LONG_WALK_FLOORS)


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


def test_index_matches_naive_scan_with_many_positions_on_one_token():
    tally: Counter[str] = Counter()

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,  # the coverage floors below hold for one fixed set of runs
    )
    @given(st.lists(configs, min_size=1, max_size=3), st.integers(0, 2**32))
    def identical(configs_, seed):
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
        note_coverage(indexed, tally)
        stops = exits_in(indexed)
        exits = stops["stop_loss"] + stops["trailing_stop"]
        event(f"stop-loss exits: {'none' if not exits else '1-9' if exits < 10 else '10+'}")

    identical()
    assert_exercised(tally, CROWDED_FLOORS)
