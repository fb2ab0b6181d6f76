"""One owner per agent: an agent's state is created, restored and deleted as a whole, so an
agent created again with a deleted one's id starts with nothing of it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradingd.engine.config import config_from_builtins
from tradingd.engine.errors import Conflict
from tradingd.engine.snapshot import capture

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants
from tests.unit.strategies import action, configs

SOL = 10**9
T = TOKENS[0]


def test_an_agent_created_again_after_delete_starts_with_no_balance():
    h = Harness(Clock())
    h.agent({}, deposit=5 * SOL, agent_id="alpha")
    h.delete("alpha")
    again = h.engine.create_agent("a", "paper", config_from_builtins({}), agent_id="alpha")
    bal = h.engine.ledger.balance("alpha", "SOL")
    assert (bal.total, bal.reserved, again.deposited) == (0, 0, 0)


def test_an_agent_created_again_after_delete_has_no_positions_or_trades_of_the_old_one():
    clock = Clock()
    h = Harness(clock)
    h.sol()
    h.agent({"sizing": {"mode": "fixed", "amount": str(SOL)}}, agent_id="alpha")
    h.tick(T, 1.0)
    h.signal(T)
    h.settle()
    h.signal(T, side="sell")
    h.settle()
    assert [p.status for p in h.engine.positions.values()] == ["closed"]
    h.delete("alpha")
    assert not h.engine.positions
    h.agent({}, agent_id="alpha")
    assert not h.engine.agent_positions["alpha"] and not h.engine.trades["alpha"]
    assert h.engine.exposure["alpha"].snapshot() == (0, {}, {})
    check_invariants(h)


def test_an_agent_with_a_buy_in_flight_cannot_be_deleted():
    h = Harness(Clock())
    h.sol()
    h.agent({}, agent_id="alpha")
    h.tick(T, 1.0)
    h.signal(T)
    try:
        h.delete("alpha")
    except Conflict:
        pass
    else:
        raise AssertionError("deleted an agent with a buy in flight")
    assert "alpha" in h.engine.agents
    check_invariants(h)


lifecycle = st.one_of(
    action,
    action,
    st.tuples(st.just("delete"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("create"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("restart"), st.just(0), st.just(0)),
)


def run(agent_configs: list[dict], steps: list[tuple]) -> Harness:
    clock = Clock()
    h = Harness(clock)
    h.sol()
    ids = [f"agent{i}" for i in range(3)]
    for aid, cfg in zip(ids, agent_configs, strict=False):
        h.agent(cfg, agent_id=aid)
    prices = {t: 1.0 for t in TOKENS}
    for t in TOKENS:
        h.tick(t, 1.0)
    for kind, a, b in steps:
        if h.step(prices, kind, a, b):
            pass  # a trading action, as in the oracle tests
        elif kind == "delete":
            if ids[a] in h.engine.agents:
                try:
                    h.delete(ids[a])
                except Conflict:  # positions or orders still held: nothing changed
                    h.collect()
        elif kind == "create":
            if ids[a] not in h.engine.agents:
                h.agent(
                    agent_configs[b % len(agent_configs)], deposit=(b + 1) * SOL, agent_id=ids[a]
                )
        elif kind == "restart":
            before = capture(h.engine)
            h.restart()
            assert capture(h.engine) == before, "restore(capture(e)) differs from e"
        check_invariants(h)
    h.settle()
    check_invariants(h)
    return h


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(configs, min_size=1, max_size=3), st.lists(lifecycle, min_size=10, max_size=120))
def test_ownership_holds_through_deletes_re_creations_and_restarts(agent_configs, steps):
    run(agent_configs, steps)
