"""Invariants that must hold after every transition (checked by the property tests)."""

from __future__ import annotations

from collections import defaultdict

from tradingd.engine.exposure import rebuild
from tradingd.engine.lifecycle import OrderStatus, PositionStatus

from tests.unit.harness import Harness


def check_ownership(h: Harness) -> None:
    """Every container agrees on who owns what: each position, order, trade and balance of the
    engine belongs to one live agent's book, the global indexes hold exactly the books'
    entries, and nothing of a deleted agent is left anywhere."""
    e = h.engine
    assert list(e.agents) == list(e.books)
    for aid, book in e.books.items():
        assert book.agent.id == aid and e.agents[aid] is book.agent
        assert book.agent.quote in book.balances, "quote account missing"
        assert all(k == b.asset for k, b in book.balances.items())
        for pid, p in book.positions.items():
            assert p.agent_id == aid and e.positions.get(pid) is p, "position outside the index"
        assert set(book.live) == {p.id for p in book.positions.values() if p.status != "closed"}
        assert all(book.positions[pid] is p for pid, p in book.live.items())
        closed = {p.id for p in book.positions.values() if p.status == "closed"}
        assert set(book.closed_ids) == closed and len(book.closed_ids) == len(closed)
        assert all(t.agent_id == aid for t in book.trades)
    owned = sum(len(b.positions) for b in e.books.values())
    assert len(e.positions) == owned, "the position index holds a position no book owns"
    for o in e.orders.values():
        book = e.books.get(o.agent_id)
        assert book is not None and o.position_id in book.live, "order without a live owner"
    for aid in h.deleted - set(e.books):
        assert aid not in e.agents and aid not in e.trades and not e.ledger.balances(aid)
        assert all(p.agent_id != aid for p in e.positions.values())
        assert all(o.agent_id != aid for o in e.orders.values())


def check_in_flight(h: Harness) -> None:
    """The order record is the one truth about money in motion: every order in flight is
    `submitted`, and a position's `in_flight` names exactly its one order in flight; an
    opening position waits on its entry buy, a closing one on a sell."""
    e = h.engine
    by_position: dict[str, list[str]] = defaultdict(list)
    for oid, o in e.orders.items():
        assert o.id == oid and o.status == OrderStatus.SUBMITTED
        assert isinstance(o.status, OrderStatus)
        by_position[o.position_id].append(oid)
    for p in e.positions.values():
        assert isinstance(p.status, PositionStatus)
        assert by_position.get(p.id, []) == ([p.in_flight] if p.in_flight else []), (
            "in_flight differs from the orders in flight"
        )
        order = e.orders[p.in_flight] if p.in_flight else None
        if p.status == PositionStatus.OPENING:
            assert order is not None and order.purpose == "entry"
        elif p.status == PositionStatus.CLOSING:
            assert order is not None and order.side == "sell"
        elif p.status == PositionStatus.CLOSED:
            assert order is None


def check_invariants(h: Harness) -> None:
    check_ownership(h)
    check_in_flight(h)
    e = h.engine
    reserved_by_agent: dict[str, int] = defaultdict(int)
    selling: dict[str, int] = defaultdict(int)
    for o in e.orders.values():
        if o.side == "buy":
            reserved_by_agent[o.agent_id] += o.amount_in
        else:
            selling[o.position_id] += 1
            assert o.amount_in <= e.positions[o.position_id].amount, "sell larger than the holding"
    for aid, agent in e.agents.items():
        bal = e.ledger.balance(aid, agent.quote)
        assert bal.reserved >= 0
        assert bal.available >= 0, f"negative available balance {bal}"
        assert bal.reserved == reserved_by_agent[aid], "reservation does not match buys in flight"
        positions = e.agent_positions[aid].values()
        open_cost = sum(p.cost for p in positions if p.status != "closed")
        assert h.deposits[aid] == bal.total + open_cost - agent.perf.realized_pnl, (
            "quote value not conserved"
        )
        live = {p.id for p in positions if p.status != "closed"}
        assert set(e.live_positions[aid]) == live, "live positions index drifted"
        agent_orders = [o for o in e.orders.values() if o.agent_id == aid]
        assert e.exposure[aid].snapshot() == rebuild(positions, agent_orders).snapshot(), (
            "exposure drifted"
        )
        bought: dict[str, int] = defaultdict(int)
        sold: dict[str, int] = defaultdict(int)
        for t in e.trades[aid]:
            (bought if t.side == "buy" else sold)[t.position_id] += t.amount
        for p in positions:
            assert p.amount >= 0 and p.cost >= 0
            assert 0 <= p.moon_bag_amount <= p.amount
            assert selling[p.id] <= 1, "position sold twice at once"
            assert sold[p.id] + p.amount == bought[p.id], "tokens sold that were never bought"
            if p.status == "closed":
                assert p.amount == 0 and p.cost == 0
            if p.status == "closing":
                assert selling[p.id] == 1
