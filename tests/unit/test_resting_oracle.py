"""The entry index must end exactly the resting buys the naive scan ends: identical event streams
from the indexed and the naive engine on the same actions (resting limit and stop buys around
the price, ticks onto an entry's price, expiries, cancels, pauses, deletes and restarts, among
the ticks, fills and exits of the exit oracle), with the invariants checked after every step.

Identical streams prove nothing if nothing triggered, so each property tallies from the index's
log what its runs reached (entries executed, skipped at trigger time, expired, cancelled, ticks
meeting several entries at once) and fails when one stayed below its floor."""

from __future__ import annotations

import random
from collections import Counter

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants
from tests.unit.strategies import configs, resting_actions
from tests.unit.test_exit_index_oracle import assert_same_events

RESTED = b'{"event":"EntryRested"'
ENDED = b'{"event":"EntryEnded"'


def entries_in(h: Harness) -> Counter[str]:
    """What the run's resting buys did: `rested`, `executed` (triggered, an order placed),
    `skipped:<reason>` (triggered, then refused by a check), `expired`, `cancelled`,
    `agent_deleted`, and `crowded ticks` (one tick or signal meeting 2+ entries)."""
    kinds: Counter[str] = Counter()
    triggered_at: Counter[tuple[int, str]] = Counter()
    for raw in h.log:
        if raw.startswith(RESTED):
            kinds["rested"] += 1
        elif raw.startswith(ENDED):
            doc = msgspec.json.decode(raw)
            if doc["outcome"] == "triggered":
                triggered_at[(doc["ts"], doc["token"])] += 1
                kinds["executed" if doc["order_id"] else f"skipped:{doc['reason']}"] += 1
            elif doc["reason"] == "agent_deleted":
                kinds["agent_deleted"] += 1
            else:
                kinds[doc["outcome"]] += 1
    kinds["crowded ticks"] = sum(1 for n in triggered_at.values() if n > 1)
    return kinds


def note_coverage(h: Harness, tally: Counter[str]) -> None:
    kinds = entries_in(h)
    tally.update(kinds)
    tally["runs"] += 1
    tally["restarts while resting"] += h.restarts_resting
    tally["skipped at trigger"] += sum(n for k, n in kinds.items() if k.startswith("skipped:"))
    for kind in kinds:
        event(f"saw {kind.split(':')[0]}")


def assert_exercised(tally: Counter[str], floors: dict[str, int]) -> None:
    short = {kind: tally[kind] for kind, floor in floors.items() if tally[kind] < floor}
    assert not short, f"the generated runs rarely reached {short} (of {floors}); all: {tally}"


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
        assert h.step(prices, kind, a, b), kind
        check_invariants(h)
    h.settle()
    check_invariants(h)
    return h


# Floors about half the fewest seen, so they catch a generator gone flat, not noise. Six runs of
# 200 short examples reached: rested 502-803, executed 169-253, skipped at trigger 77-211,
# expired 58-204, cancelled 52-149, agent_deleted 7-53, crowded ticks 71-147; restarts while
# buys rested 15-61 (three runs).
SHORT_RUN_FLOORS = {
    "rested": 250,
    "executed": 80,
    "skipped at trigger": 35,
    "expired": 25,
    "cancelled": 25,
    "agent_deleted": 3,
    "crowded ticks": 30,
    "restarts while resting": 6,
}


def test_entry_index_and_naive_scan_emit_identical_events():
    tally: Counter[str] = Counter()

    # derandomize: the coverage floors below are checked on one fixed set of runs (random
    # seeds reached agent_deleted only 0-2 times in 2 of ~10 runs, failing CI on chance alone).
    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )
    @given(st.lists(configs, min_size=1, max_size=3), resting_actions)
    def identical(configs_, steps):
        indexed = run(configs_, steps, "indexed")
        naive = run(configs_, steps, "naive")
        assert_same_events(indexed, naive)
        note_coverage(indexed, tally)

    identical()
    assert_exercised(tally, SHORT_RUN_FLOORS)


def crowded_resting_steps(seed: int, n: int) -> list[tuple]:
    """Many resting buys on one token, ticks often exactly on their prices, a restart now and
    then: ties in price and in arrival order, and ticks meeting many entries at once."""
    rng = random.Random(seed)
    steps: list[tuple] = []
    grid = [-0.06, -0.04, -0.02, 0.02, 0.04, 0.06]  # few distinct prices: many equal limits
    for i in range(n):
        steps.append(("tick", TOKENS[0], rng.gauss(0.0, 0.03)))
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(["limit", "limit", "stop"])
            steps.append(("rest", TOKENS[0], (kind, rng.choice(grid), rng.randint(5, 90))))
        if rng.random() < 0.15:
            steps.append(("touch", rng.randint(0, 50), 0))
        if i % 3 == 0:
            steps.append(("settle", rng.random() < 0.05, 0))
        if rng.random() < 0.08:
            steps.append(("cancel", rng.randint(0, 5), 0))
        if rng.random() < 0.05:
            steps.append(("wait", rng.randint(1, 30), 0))
        if rng.random() < 0.04:
            steps.append((rng.choice(["pause", "resume"]), rng.randint(0, 2), 0))
        if rng.random() < 0.02:
            steps.append(("restart_engine", 0, 0))
    return steps


# Three runs of 40 crowded examples reached: rested 10516-13015, executed 1105-1894, skipped
# max_positions_per_token 8246-9687, skipped agent_paused 167-244, expired 416-932, cancelled
# 167-189, crowded ticks 2632-2831; restarts while buys rested 118 (one run).
CROWDED_FLOORS = {
    "rested": 5000,
    "executed": 500,
    "skipped:max_positions_per_token": 4000,
    "skipped:agent_paused": 80,
    "expired": 200,
    "cancelled": 80,
    "crowded ticks": 1300,
    "restarts while resting": 40,
}


def test_entry_index_matches_naive_scan_with_many_resting_buys_on_one_token():
    tally: Counter[str] = Counter()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(configs, min_size=1, max_size=3), st.integers(0, 2**32))
    def identical(configs_, seed):
        crowded = [
            {
                **c,
                "limits": {"max_open_positions": 8, "max_positions_per_token": 4},
                "sizing": {"mode": "fixed", "amount": "50000000"},
            }
            for c in configs_
        ]
        steps = crowded_resting_steps(seed, 150)
        indexed = run(crowded, steps, "indexed")
        naive = run(crowded, steps, "naive")
        assert_same_events(indexed, naive)
        note_coverage(indexed, tally)

    identical()
    assert_exercised(tally, CROWDED_FLOORS)
