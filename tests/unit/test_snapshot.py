"""Snapshot and restore: `restore(capture(e))` is `e` for everything that decides what happens
next; the wire form is the one recovery already stores; parts of agents the snapshot does not
hold are left out."""

from __future__ import annotations

import msgspec
import pytest
from tradingd.engine.core import Engine
from tradingd.engine.lifecycle import PositionStatus
from tradingd.engine.snapshot import EngineSnapshot, capture, restore

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants

SOL = 10**9
CFG = {"sizing": {"mode": "fixed", "amount": str(SOL)}}


def busy() -> Harness:
    """Two agents: a closed position, an open one, and a buy in flight."""
    clock = Clock()
    h = Harness(clock)
    h.sol()
    h.agent(CFG, agent_id="alpha")
    h.agent(CFG, agent_id="beta")
    for t in TOKENS:
        h.tick(t, 1.0)
    h.signal(TOKENS[0])
    h.settle()
    clock.now += 1000
    h.signal(TOKENS[0], side="sell")
    h.settle()
    clock.now += 1000
    h.signal(TOKENS[1])
    h.settle()
    clock.now += 1000
    h.signal(TOKENS[2])
    return h


def restored(snap: EngineSnapshot, clock: Clock) -> Engine:
    e = Engine(clock)
    restore(e, snap)
    return e


def test_a_restored_engine_captures_the_same_snapshot():
    h = busy()
    snap = capture(h.engine)
    assert len(snap.orders) == 2 and {p.status for p in snap.positions} == {
        "closed",
        "open",
        "opening",
    }
    assert capture(restored(snap, h.clock)) == snap


def test_a_snapshot_survives_its_json_form_with_the_statuses_as_strings():
    h = busy()
    wire = msgspec.json.encode(capture(h.engine))
    assert b'"status":"opening"' in wire and b'"status":"submitted"' in wire
    snap = msgspec.json.decode(wire, type=EngineSnapshot)
    e = restored(snap, h.clock)
    assert {type(p.status) for p in e.positions.values()} == {PositionStatus}
    assert capture(e) == snap


def test_a_restored_engine_settles_the_orders_it_restored():
    h = busy()
    h.restart()
    h.settle()
    assert not h.engine.orders
    assert all(p.status != "opening" for p in h.engine.positions.values())
    check_invariants(h)


def test_restore_refuses_an_engine_that_is_not_fresh():
    h = busy()
    with pytest.raises(ValueError):
        restore(h.engine, capture(h.engine))


def test_parts_of_an_agent_the_snapshot_does_not_hold_are_left_out():
    h = busy()
    snap = capture(h.engine)
    # As snapshots taken before agents owned their state could be: beta gone, its closed
    # position and trades kept.
    old = msgspec.structs.replace(
        snap,
        agents=[a for a in snap.agents if a.id == "alpha"],
        balances={"alpha": snap.balances["alpha"]},
        orders=[o for o in snap.orders if o.agent_id == "alpha"],
        positions=[p for p in snap.positions if p.agent_id == "alpha" or p.status == "closed"],
    )
    e = restored(old, h.clock)
    assert list(e.books) == ["alpha"]
    assert all(p.agent_id == "alpha" for p in e.positions.values())
    assert "beta" not in e.trades and e.ledger.balances("beta") == []
    e.create_agent("b", "paper", e.agents["alpha"].config, agent_id="beta")
    assert not e.agent_positions["beta"] and not e.trades["beta"]
    assert e.ledger.balance("beta", "SOL").total == 0
