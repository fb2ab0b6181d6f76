"""Recovery: rebuild the engine's state from Postgres, the Redis stream and the spill file.

Which source wins: every entity row and every entry carries a version, the id of the stream entry
that produced it, and the newest version wins. Postgres is loaded first (it holds everything up to
what the writer has committed), then every entry still in the Redis stream is folded over it (the
stream is trimmed only below entries Postgres has committed, so together they miss nothing), then
the spill file's entries newer than the stream. An entry older than a row's version is skipped, so
a writer that was behind, a batch written twice, or a stream entry already in Postgres all give
the same result. The Redis hashes are not read: they are the live view of the same entries."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis
from tradingd.adapters.store.postgres import RecoveryLimits
from tradingd.adapters.store.records import Entry, decoder
from tradingd.adapters.store.redis import last_stream_id
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.stream_codec import Keys, entry_from_fields
from tradingd.engine import events as ev
from tradingd.engine.account_breakers import BreakerTrip
from tradingd.engine.model import (
    Agent,
    Balance,
    Execution,
    Order,
    Position,
    RestingEntry,
    Signal,
    Tick,
    Trade,
)
from tradingd.engine.scorecards import SavedCard
from tradingd.engine.snapshot import EngineSnapshot, SignalState

XRANGE_CHUNK = 5000
_V = tuple[int, Any]


def _put(table: dict[Any, _V], key: Any, version: int, value: Any) -> None:
    held = table.get(key)
    if held is None or held[0] < version:
        table[key] = (version, value)


def _trip_of(buys: bool, rule: str | None, ts: int, details: Any) -> BreakerTrip | None:
    """The account breaker's trip a HaltChanged recorded (its `rule`), None for the
    operator's halt, a lifted halt, or a record written before breakers existed."""
    if not buys or not rule:
        return None
    return BreakerTrip(rule=rule, at=ts, details=dict(details or {}))


class StateBook:
    """Entities by key with the version that last wrote them; `apply` folds one entry in."""

    def __init__(self) -> None:
        self.agents: dict[str, _V] = {}
        self.balances: dict[tuple[str, str], _V] = {}
        self.positions: dict[str, _V] = {}
        self.orders: dict[str, _V] = {}
        self.trades: dict[str, _V] = {}
        self.signals: dict[str, _V] = {}  # value: (Signal, agents_matched)
        self.executions: dict[tuple[str, str], _V] = {}
        self.halt: dict[str, _V] = {}
        self.breaker_trip: dict[str, _V] = {}  # "halt" -> the breaker's trip behind it, or None
        self.entries: dict[str, _V] = {}  # resting buys by entry id; None once ended
        self.cards: dict[tuple[str, str], _V] = {}  # (agent id or "", source) -> SavedCard
        self.entry_decimals: dict[
            str, int
        ] = {}  # token -> decimals named by a resting entry's signal
        # agent id -> version of its last AgentDeleted: what that id wrote before is a deleted
        # agent's, never a re-created one's.
        self.deleted: dict[str, int] = {}
        self.max_id = 0

    # -- entries ----------------------------------------------------------------------------

    def apply(self, entry_id: int, e: ev.Event) -> None:
        self.max_id = max(self.max_id, entry_id)
        t = type(e).__name__
        if t in ("PositionOpened", "PositionChanged", "PositionClosed", "PositionSaved"):
            _put(self.positions, e.position.id, entry_id, e.position)  # type: ignore[attr-defined]
        elif t == "PositionDropped":
            _put(self.positions, e.position_id, entry_id, None)  # type: ignore[attr-defined]
        elif t == "BalanceChanged":
            b = Balance(asset=e.asset, decimals=e.decimals, total=e.total, reserved=e.reserved)  # type: ignore[attr-defined]
            _put(self.balances, (e.agent_id, e.asset), entry_id, b)  # type: ignore[attr-defined]
        elif t in ("OrderSubmitted", "SwapSubmitted", "ExchangeOrderSent"):
            _put(self.orders, e.order.id, entry_id, e.order)  # type: ignore[attr-defined]
        elif t == "OrderFilled":
            _put(self.orders, e.order_id, entry_id, None)  # type: ignore[attr-defined]
            _put(self.trades, e.trade.id, entry_id, e.trade)  # type: ignore[attr-defined]
        elif t == "OrderFailed":
            _put(self.orders, e.order_id, entry_id, None)  # type: ignore[attr-defined]
        elif t == "AgentSaved":
            _put(self.agents, e.agent.id, entry_id, e.agent)  # type: ignore[attr-defined]
        elif t == "AgentDeleted":
            _put(self.agents, e.agent_id, entry_id, None)  # type: ignore[attr-defined]
            self._deleted(e.agent_id, entry_id)  # type: ignore[attr-defined]
        elif t == "SignalSaved":
            _put(self.signals, e.signal.id, entry_id, (e.signal, e.agents_matched))  # type: ignore[attr-defined]
        elif t == "SignalExecutionRecorded":
            x = Execution(
                agent_id=e.agent_id,
                status=e.status,
                reason=e.reason,
                position_id=e.position_id,  # type: ignore[attr-defined]
                order_id=e.order_id,
                latency_ms=e.latency_ms,
            )  # type: ignore[attr-defined]
            _put(self.executions, (e.signal_id, e.agent_id), entry_id, x)  # type: ignore[attr-defined]
        elif t == "SignalFiltered":
            for agent_id, reason in e.reasons.items():  # type: ignore[attr-defined]
                x = Execution(agent_id=agent_id, status="skipped", reason=reason)
                _put(self.executions, (e.signal_id, agent_id), entry_id, x)  # type: ignore[attr-defined]
        elif t == "EntryRested":
            _put(self.entries, e.entry.id, entry_id, e.entry)  # type: ignore[attr-defined]
        elif t == "EntryEnded":
            _put(self.entries, e.entry_id, entry_id, None)  # type: ignore[attr-defined]
        elif t == "ScorecardSaved":
            c = e.saved  # type: ignore[attr-defined]
            _put(self.cards, (c.agent_id, c.source), entry_id, c)
        elif t == "HaltChanged":
            _put(self.halt, "halt", entry_id, e.buys)  # type: ignore[attr-defined]
            _put(self.breaker_trip, "halt", entry_id, _trip_of(e.buys, e.rule, e.ts, e.details))  # type: ignore[attr-defined]

    def apply_entries(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.apply(entry.id, decoder.decode(entry.payload))

    # -- postgres rows ----------------------------------------------------------------------

    def load_rows(self, rows: dict[str, list[Any]]) -> None:
        dec = msgspec.json.decode
        for r in rows["agents"]:
            self._row(
                self.agents,
                r["id"],
                r["version"],
                None if r["deleted"] else dec(r["doc"], type=Agent),
            )
        for r in rows["balances"]:
            b = Balance(
                asset=r["asset"],
                decimals=r["decimals"],
                total=int(r["total"]),
                reserved=int(r["reserved"]),
            )
            self._row(self.balances, (r["agent_id"], r["asset"]), r["version"], b)
        for r in rows["positions"]:
            dropped = r["status"] == "dropped" or r["doc"] is None
            self._row(
                self.positions,
                r["id"],
                r["version"],
                None if dropped else dec(r["doc"], type=Position),
            )
        for r in rows["orders"]:
            live = r["status"] == "submitted" and r["doc"] is not None
            self._row(
                self.orders, r["id"], r["version"], dec(r["doc"], type=Order) if live else None
            )
        for r in rows["trades"]:
            trade = dec(r["doc"], type=Trade)
            self._row(self.trades, trade.id, r["event_id"], trade)
        for r in rows["signals"]:
            self._row(
                self.signals,
                r["id"],
                r["version"],
                (dec(r["doc"], type=Signal), r["agents_matched"]),
            )
        for r in rows["executions"]:
            x = dec(r["doc"], type=Execution)
            self._row(self.executions, (r["signal_id"], x.agent_id), r["version"], x)
        for r in rows.get("entries", ()):
            resting = r["status"] == "resting" and r["doc"] is not None
            entry = dec(r["doc"], type=RestingEntry) if resting else None
            self._row(self.entries, r["id"], r["version"], entry)
        for r in rows.get("entry_decimals", ()):
            self.entry_decimals.setdefault(r["token"], r["decimals"])
        for r in rows["engine_state"]:
            if r["key"] == "halt":
                doc = dec(r["value"])
                self._row(self.halt, "halt", r["version"], bool(doc["buys"]))
                trip = _trip_of(bool(doc["buys"]), doc.get("rule"), doc["ts"], doc.get("details"))
                self._row(self.breaker_trip, "halt", r["version"], trip)
            elif r["key"].startswith("card\x1f"):
                c = dec(r["value"], type=SavedCard)
                self._row(self.cards, (c.agent_id, c.source), r["version"], c)
            elif r["key"].startswith("deleted:"):
                self._deleted(r["key"].removeprefix("deleted:"), r["version"])
                self.max_id = max(self.max_id, r["version"])

    def _deleted(self, agent_id: str, version: int) -> None:
        self.deleted[agent_id] = max(self.deleted.get(agent_id, 0), version)

    def _alive(self, agent_id: str, version: int) -> bool:
        """False for what `agent_id` wrote before its last deletion (a deleted agent's)."""
        return version > self.deleted.get(agent_id, 0)

    def _row(self, table: dict[Any, _V], key: Any, version: int, value: Any) -> None:
        self.max_id = max(self.max_id, version)
        _put(table, key, version, value)

    def _positions_kept(self, live: set[str], closed_kept: int) -> list[Position]:
        """Live positions, and each agent's newest `closed_kept` closed ones (as the engine)."""
        out: list[Position] = []
        closed: dict[str, list[tuple[int, Position]]] = {}
        for version, p in self.positions.values():
            if p is None or p.agent_id not in live or not self._alive(p.agent_id, version):
                continue
            if p.status == "closed":
                closed.setdefault(p.agent_id, []).append((version, p))
            else:
                out.append(p)
        for items in closed.values():
            items.sort(key=lambda v: v[0])
            out.extend(p for _, p in items[-closed_kept:])
        return out

    def _entries_kept(self, live: set[str]) -> list[RestingEntry]:
        """Entries still resting, of live agents, in arrival order. An agent's deletion cancels
        its entries first; one written before a deletion is dropped all the same."""
        kept = [
            (version, e)
            for version, e in self.entries.values()
            if e is not None and e.agent_id in live and self._alive(e.agent_id, version)
        ]
        return [e for _, e in sorted(kept, key=lambda v: (v[1].seq, v[0]))]

    # -- the result -------------------------------------------------------------------------

    def snapshot(self, prices: list[Tick], seq: int, limits: RecoveryLimits) -> EngineSnapshot:
        agents = sorted(
            (a for _, a in self.agents.values() if a is not None),
            key=lambda a: (a.created_at, a.id),
        )
        live = {a.id for a in agents}
        balances: dict[str, list[Balance]] = {a.id: [] for a in agents}
        for (aid, _), (version, b) in sorted(self.balances.items()):
            if aid in live and self._alive(aid, version):
                balances[aid].append(b)
        for a in agents:  # an agent that never moved money still has its quote account
            if not any(b.asset == a.quote for b in balances[a.id]):
                balances[a.id].append(Balance(asset=a.quote, decimals=a.quote_decimals))
        positions = self._positions_kept(live, limits.closed_positions)
        orders = [o for _, o in sorted(self.orders.values(), key=lambda v: v[0]) if o is not None]
        trades: dict[str, list[Trade]] = {}
        for version, t in sorted(self.trades.values(), key=lambda v: v[0]):
            if t.agent_id in live and self._alive(t.agent_id, version):
                trades.setdefault(t.agent_id, []).append(t)
        trades = {aid: ts[-limits.trades :] for aid, ts in trades.items()}
        executions: dict[str, list[Execution]] = {}
        for (sid, _), (_, x) in self.executions.items():
            executions.setdefault(sid, []).append(x)
        window = (v for v in self.signals.values() if v[1][0].received_at > limits.signals_after)
        recent = sorted(window, key=lambda v: v[0])[-limits.signals :]
        signals = [
            SignalState(signal=s, executions=executions.get(s.id, []), agents_matched=m)
            for _, (s, m) in recent
        ]
        decimals: dict[str, int] = {}
        for _, (s, _) in recent:
            if s.decimals is not None:
                decimals.setdefault(s.token, s.decimals)
        for p in positions:
            decimals.setdefault(p.token, p.decimals)
        entries = self._entries_kept(live)
        for entry in entries:  # its signal may be older than the window
            held = self.signals.get(entry.signal_id)
            if held is not None and held[1][0].decimals is not None:
                decimals.setdefault(entry.token, held[1][0].decimals)
            elif entry.token in self.entry_decimals:
                decimals.setdefault(entry.token, self.entry_decimals[entry.token])
        for tick in prices:
            if tick.decimals is not None:
                decimals.setdefault(tick.token, tick.decimals)
        seq = max([seq, *(p.seq for p in positions), *(e.seq for e in entries)])
        halted = self.halt.get("halt", (0, False))[1]
        breaker_trip = self.breaker_trip.get("halt", (0, None))[1]
        return EngineSnapshot(
            agents=agents,
            balances=balances,
            positions=positions,
            orders=orders,
            trades=trades,
            signals=signals,
            prices=prices,
            decimals=decimals,
            halted_buys=halted,
            breaker_trip=breaker_trip,
            seq=seq,
            entries=entries,
            scorecards=[
                c
                for (aid, _), (version, c) in self.cards.items()
                if not aid or (aid in live and self._alive(aid, version))
            ],
        )


async def apply_stream(book: StateBook, r: aioredis.Redis, keys: Keys) -> int:
    """Fold the stream over `book` one XRANGE_CHUNK at a time, as it is read: no chunk holds
    the event loop for long (a hot standby taking over renews its lease meanwhile, and the
    control port answers), and the entries are never all in memory at once. Returns the last
    entry id read (0: the stream is empty)."""
    start, last = "-", 0
    while True:
        chunk = await r.xrange(keys.stream, min=start, count=XRANGE_CHUNK)
        entries = [entry_from_fields(sid, fields) for sid, fields in chunk]
        book.apply_entries(entries)
        if entries:
            last = entries[-1].id
        if len(chunk) < XRANGE_CHUNK:
            return last
        start = "(" + chunk[-1][0].decode()


async def read_hot(r: aioredis.Redis, keys: Keys) -> tuple[list[Tick], int]:
    """Last prices and the engine's id sequence, from the write-through meta hashes."""
    tick_dec = msgspec.json.Decoder(Tick).decode
    prices = [tick_dec(v) for v in (await r.hgetall(keys.prices)).values()]
    seq = await r.hget(keys.meta, "seq")
    return prices, int(seq or 0)


async def build_snapshot(
    book: StateBook, r: aioredis.Redis, keys: Keys, spill: SpillFile, limits: RecoveryLimits
) -> tuple[EngineSnapshot, int, list[Entry]]:
    """Fold the stream and the spill over `book` (loaded from Postgres). Returns the snapshot, the
    highest entry id seen anywhere (new ids must be above it) and the entries still only in the
    spill file."""
    read = await apply_stream(book, r, keys)
    last = max(await last_stream_id(r, keys), read)
    spilled = [e for e in spill.read() if e.id > last]
    book.apply_entries(spilled)
    prices, seq = await read_hot(r, keys)
    snap = book.snapshot(prices, seq, limits)
    return snap, max(book.max_id, last), spilled
