"""The Engine's whole state as one value: what persistence saves and recovery restores.

`capture(engine)` and `restore(engine, snapshot)` are exact inverses for everything that affects
future decisions: agents (config, status, performance), balances, positions with their exit
state (peak, ratcheted stop, take-profit levels taken, moon bag, DCA count), orders in flight,
resting buys, recent signals (idempotency ids and executions), last prices, halt, and the id
sequence."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from msgspec import Struct

from .account_breakers import BreakerTrip
from .book import AgentBook
from .lifecycle import HOLDING, PositionStatus
from .model import Agent, Balance, Execution, Order, Position, RestingEntry, Signal, Tick, Trade
from .scorecards import SavedCard

if TYPE_CHECKING:
    from .core import Engine


class SignalState(Struct, kw_only=True):
    """A signal in the dedupe window with its executions, one per agent it reached."""

    signal: Signal
    executions: list[Execution]
    agents_matched: int = 0


class EngineSnapshot(Struct, kw_only=True):
    """The engine's whole state as one value (the form recovery builds from Redis and Postgres):
    agents, balances by agent id, positions (closed ones kept in memory included), orders in
    flight, trades by agent id, the signals in the window, last prices, token decimals, the
    halt, and the id sequence. Amounts are atomic units."""

    agents: list[Agent]
    balances: dict[str, list[Balance]]
    positions: list[Position]  # every known position, closed ones included
    orders: list[Order]  # in flight
    trades: dict[str, list[Trade]] = {}
    signals: list[SignalState] = []
    prices: list[Tick] = []
    decimals: dict[str, int] = {}
    halted_buys: bool = False
    # the account breaker's trip that set the halt, if one did (None for the operator's halt)
    breaker_trip: BreakerTrip | None = None
    seq: int = 0
    entries: list[RestingEntry] = []  # resting buys, their quote reserved in `balances`
    scorecards: list[SavedCard] = []  # signal sources' cards and per-source breakers


def capture(engine: Engine) -> EngineSnapshot:
    """The engine's state now as an EngineSnapshot of copies (peaks and ratcheted stops refreshed
    first); only live agents' parts are in it. Emits nothing."""
    for p in engine.positions.values():
        engine.refresh(p)
    copy = msgspec.structs.replace
    return EngineSnapshot(
        agents=[copy(a) for a in engine.agents.values()],
        balances={aid: [copy(b) for b in engine.ledger.balances(aid)] for aid in engine.agents},
        positions=[copy(p) for p in engine.positions.values()],
        orders=[copy(o) for o in engine.orders.values()],
        trades={aid: list(ts) for aid, ts in engine.trades.items()},
        signals=[
            SignalState(
                signal=r.signal,
                executions=[copy(e) for e in r.executions.values()],
                agents_matched=r.agents_matched,
            )
            for r in engine.signals.values()
        ],
        prices=list(engine.prices.values()),
        decimals=dict(engine.decimals),
        halted_buys=engine.halted_buys,
        breaker_trip=engine.breakers.tripped,
        seq=engine.id_seq,
        entries=[copy(e) for e in engine.entries.values()],
        scorecards=engine.scorecards.saved(),
    )


def restore(engine: Engine, snap: EngineSnapshot) -> None:
    """Load `snap` into a fresh Engine (no agents yet). Emits no events. Each agent's book is
    rebuilt whole from its parts in the snapshot; parts naming an agent the snapshot does not
    hold (closed positions and trades of a deleted agent, which snapshots taken before agents
    owned their state could carry) are left out, as the engine had no owner for them.
    Raises ValueError when the engine is not fresh."""
    from .core import SignalRecord
    from .exposure import rebuild

    if engine.agents or engine.positions:
        raise ValueError("restore needs a fresh Engine")
    now = engine.clock()
    books = {a.id: AgentBook(a) for a in snap.agents}
    for aid, balances in snap.balances.items():
        if aid in books:
            books[aid].balances.update((b.asset, msgspec.structs.replace(b)) for b in balances)
    for aid, trades in snap.trades.items():
        if aid in books:
            books[aid].trades.extend(trades)
    positions = sorted((p for p in snap.positions if p.agent_id in books), key=lambda p: p.seq)
    for p in positions:
        books[p.agent_id].add_position(p)
    orders = [o for o in snap.orders if o.agent_id in books]
    entries = sorted((e for e in snap.entries if e.agent_id in books), key=lambda e: e.seq)
    for book in books.values():
        aid = book.agent.id
        book.exposure = rebuild(
            book.positions.values(),
            (o for o in orders if o.agent_id == aid),
            (e for e in entries if e.agent_id == aid),
        )
        engine._add_book(book)
    for entry in entries:
        engine._add_entry(entry)
    engine.decimals.update(snap.decimals)
    for t in snap.prices:
        engine.prices[t.token] = t
    for p in positions:
        engine.positions[p.id] = p
        if p.status in HOLDING:
            # The peak may be below the entry (it starts at the market price the buy was
            # decided on, below a slipped fill); 0 only if none was ever recorded.
            engine.index.add(p, now, peak=p.peak_price_usd or p.entry_price_usd)
    for o in orders:
        engine.orders[o.id] = o
    for s in snap.signals:  # oldest first
        engine.signal_window.keep(
            SignalRecord(
                signal=s.signal,
                executions={e.agent_id: e for e in s.executions},
                agents_matched=s.agents_matched,
            )
        )
    engine.signal_window.evict(now)  # only the dedupe window comes back
    closed = sorted(
        (p for p in positions if p.status == PositionStatus.CLOSED), key=lambda p: p.closed_at or 0
    )
    for p in closed:
        engine._forget_closed(p)
    engine.halted_buys = snap.halted_buys
    for card in snap.scorecards:
        if not card.agent_id or card.agent_id in books:
            engine.scorecards.restore(card)
    if snap.breaker_trip is not None and snap.halted_buys:
        engine.breakers.restore_trip(snap.breaker_trip)
    engine.id_seq = max(engine.id_seq, snap.seq)
