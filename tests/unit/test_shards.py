"""Agent shards: ownership by a stable hash of the agent id (stable, balanced, ids drawn for a
shard always land on it), the namespaces of the shards, and the engine's duplicate by signal id
(an intake entry delivered again after a crash trades nothing twice)."""

from __future__ import annotations

import hashlib
import random
import secrets

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.cluster.shards import (
    Misdirected,
    draw_agent_id,
    id_node,
    misdirected,
    owner,
    shard_namespace,
    shard_of_id,
)
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal

from tests.unit.harness import TOKENS, Clock, Harness


def test_owner_is_the_first_8_bytes_of_sha256_big_endian_mod_shards():
    digest = hashlib.sha256(b"agt_x").digest()
    assert owner("agt_x", 7) == int.from_bytes(digest[:8], "big") % 7
    assert owner("agt_x", 1) == 0


@given(st.text(min_size=1, max_size=128), st.integers(1, 64))
def test_owner_is_stable_and_in_range(agent_id: str, shards: int):
    first = owner(agent_id, shards)
    assert 0 <= first < shards
    assert owner(agent_id, shards) == first


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([2, 3, 7, 16, 64]), st.integers(0, 2**32))
def test_ownership_is_balanced(shards: int, seed: int):
    """1,000 random ids per shard: each shard's share is within 20% of the mean (over 6
    standard deviations of the binomial)."""
    rnd = random.Random(seed)
    per_shard = 1000
    counts = [0] * shards
    for _ in range(per_shard * shards):
        counts[owner(f"agt_{rnd.getrandbits(64):016x}", shards)] += 1
    assert min(counts) > per_shard * 0.8, counts
    assert max(counts) < per_shard * 1.2, counts


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_a_drawn_id_always_lands_on_its_shard(case: tuple[int, int]):
    shards, shard = case
    agent_id = draw_agent_id(shard, shards)
    assert owner(agent_id, shards) == shard
    assert agent_id.startswith("agt_")


def test_drawing_gives_up_only_after_a_bounded_number_of_draws():
    draws = []

    def never() -> str:
        draws.append(1)
        return "same"  # always the same shard

    wrong = (owner("same", 4) + 1) % 4
    try:
        draw_agent_id(wrong, 4, never)
    except RuntimeError:
        pass
    else:
        raise AssertionError("an impossible draw must fail")
    assert len(draws) == 64 * 4


def test_namespaces():
    assert shard_namespace("tradingd", 0, 1) == "tradingd"
    assert shard_namespace("tradingd", 2, 3) == "tradingd_s2"


def test_misdirected_is_a_421_naming_the_owner():
    exc = misdirected("agt_1", 2, "http://127.0.0.1:9")
    assert isinstance(exc, Misdirected)
    assert (exc.status, exc.code) == (421, "misdirected")
    assert exc.details == {"agent_id": "agt_1", "owner_shard": 2, "owner_url": "http://127.0.0.1:9"}
    assert "owner_url" not in misdirected("agt_1", 2, None).details


def test_a_signal_delivered_again_by_id_is_a_duplicate_and_trades_nothing():
    h = Harness(Clock())
    h.sol()
    h.agent({}, 10 * 10**9)
    h.tick(TOKENS[0], 1.0)
    now = h.clock.now
    signal = Signal(
        id=f"sig_{secrets.token_hex(4)}", token=TOKENS[0], received_at=now, expires_at=now + 30_000
    )
    first, dup1 = h.engine.on_signal(signal)
    h.collect()
    again, dup2 = h.engine.on_signal(signal)  # no client id: only the signal id says so
    h.collect()
    assert (dup1, dup2) == (False, True)
    assert again is first
    assert len(h.pending) == 1


def test_a_shard_always_takes_part_in_its_shards_lease() -> None:
    """A shard without --role holds its shard's lease as the active one, so a second process
    started for the same shard waits as its standby instead of splitting the shard's intake (a
    tester's finding); a plain single process takes no lease."""
    from tradingd.adapters.app.settings import ClusterSettings

    assert ClusterSettings(shards=3, shard=1).wanted() == "active"
    assert ClusterSettings(shards=3, shard=1, role="standby").wanted() == "standby"
    assert ClusterSettings().wanted() is None


def test_a_shards_ids_name_it_and_other_ids_name_none():
    assert id_node(2, 3) == "s2_" and id_node(0, 1) == ""
    assert shard_of_id("pos_s2_18f3a9c000001", 3) == 2
    assert shard_of_id("ord_s12_18f3a9c000001", 16) == 12
    for other in ("pos_18f3a9c000001", "pos_s3_1", "pos_sx_1", "pos_s_1", "s1_x", "", "pos_s1"):
        assert shard_of_id(other, 3) is None, other


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 63), st.integers(1, 64))
def test_every_id_a_shards_engine_makes_names_that_shard(shard, shards):
    shard %= shards
    h = Harness(Clock())
    h.engine = Engine(h.clock, node=id_node(shard, shards))
    h.sol()
    h.agent({}, 10 * 10**9)
    h.tick(TOKENS[0], 1.0)
    h.signal(TOKENS[0])
    h.settle()
    made = [*h.engine.positions, *(t.id for ts in h.engine.trades.values() for t in ts)]
    assert made
    for book_id in made:
        assert shard_of_id(book_id, shards) == (shard if shards > 1 else None), book_id
