"""Invariants that must hold after every transition (checked by the property tests)."""

from __future__ import annotations

from collections import defaultdict

from tradingd.engine.assets import quote_mint
from tradingd.engine.entry_index import meets
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
        assert all(r.agent_id != aid for r in e.entries.values()), "a deleted agent's buy rests"
    check_resting(h)


def check_resting(h: Harness) -> None:
    """Every resting entry is owned by exactly one live agent's book and is in the engine's
    entries, its signal's entry ids and the entry index; those hold nothing else."""
    e = h.engine
    owners: dict[str, list[str]] = defaultdict(list)
    for aid, book in e.books.items():
        for eid, entry in book.entries.items():
            assert entry.id == eid and entry.agent_id == aid, "entry filed under another id"
            assert e.entries.get(eid) is entry, "a book's entry is not in engine.entries"
            owners[eid].append(aid)
    assert set(owners) == set(e.entries), "engine.entries holds an entry no book owns"
    assert all(len(o) == 1 for o in owners.values()), "an entry owned twice"
    by_signal: dict[str, set[str]] = defaultdict(set)
    for eid, entry in e.entries.items():
        assert entry.id == eid
        by_signal[entry.signal_id].add(eid)
        agent = e.agents[entry.agent_id]
        assert entry.quote == agent.quote and entry.amount > 0
        assert entry.token != quote_mint(entry.quote)
        assert entry.type in ("limit", "stop") and entry.price_usd > 0
        assert entry.created_at < entry.expires_at
        record = e.signals.get(entry.signal_id)
        if record is not None:  # still in the dedupe window
            assert record.executions[entry.agent_id].status == "resting"
    assert {s: set(ids) for s, ids in e.entries_by_signal.items()} == dict(by_signal), (
        "entries_by_signal differs from the entries"
    )
    assert len(e.entry_index) == len(e.entries), "the entry index holds other entries"
    for entry in e.entries.values():
        # A price fresh when the entry rested was checked then (a marketable entry executes at
        # once), and every later one when it came: none of them may meet an entry still resting.
        tick = e.prices.get(entry.token)
        if tick is not None and tick.ts >= entry.created_at - e.max_price_age_ms:
            assert not meets(entry, tick.price_usd), "a resting entry its price already met"
    seqs = [entry.seq for entry in e.entries.values()]
    assert len(set(seqs)) == len(seqs), "two entries with one arrival seq"


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
    for entry in e.entries.values():
        reserved_by_agent[entry.agent_id] += entry.amount
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
        assert bal.reserved == reserved_by_agent[aid], (
            "reservation differs from the buys resting plus the buys in flight"
        )
        positions = e.agent_positions[aid].values()
        open_cost = sum(p.cost for p in positions if p.status != "closed")
        assert h.deposits[aid] == bal.total + open_cost - agent.perf.realized_pnl, (
            "quote value not conserved"
        )
        live = {p.id for p in positions if p.status != "closed"}
        assert set(e.live_positions[aid]) == live, "live positions index drifted"
        agent_orders = [o for o in e.orders.values() if o.agent_id == aid]
        resting = e.books[aid].entries.values()
        assert e.exposure[aid].snapshot() == rebuild(positions, agent_orders, resting).snapshot(), (
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
