"""What the store writes: engine events plus a few store records, each as one `Entry` with a
durable id.

Events carry full snapshots of most entities (positions, orders, balances, trades). Where they do
not, the store adds a record read from the engine right after the transition: `AgentSaved`
(performance, deposits and cooldowns change without an agent event), `PositionSaved` (a position
being opened has no event of its own), `PositionDropped` (an entry that failed removes it) and
`SignalSaved` (the exact signal with `agents_matched`). Records ride the same stream as events,
so Redis, the spill file and Postgres all see one ordered sequence.

Entry ids are `ms << 20 | n`: a 63-bit int for Postgres and, as `"ms-n"`, an explicit Redis stream
id. They only grow, across restarts too (see `EntryIds.advance_past`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Union

import msgspec
from msgspec import Struct
from tradingd.engine import events as ev
from tradingd.engine.model import Agent, Position, Signal
from tradingd.engine.scorecards import SavedCard

if TYPE_CHECKING:
    from tradingd.engine.core import Engine

SEQ_BITS = 20
SEQ_MASK = (1 << SEQ_BITS) - 1
SEP = "\x1f"  # joins the parts of a composite entity key


class AgentSaved(ev.Event):
    agent: Agent


class PositionSaved(ev.Event):
    position: Position


class PositionDropped(ev.Event):
    position_id: str
    agent_id: str


class SignalSaved(ev.Event):
    signal: Signal
    agents_matched: int = 0


class ScorecardSaved(ev.Event):
    """A signal source's scorecard (agent_id "": the source's own) and, per agent, its breaker
    on that source, written whole when changed (at most once a flush)."""

    saved: SavedCard


STORE_RECORDS = ("AgentSaved", "PositionSaved", "PositionDropped", "SignalSaved", "ScorecardSaved")
AnyEntry = Union[  # noqa: UP007
    ev.AnyEvent, AgentSaved, PositionSaved, PositionDropped, SignalSaved, ScorecardSaved
]

encoder = msgspec.json.Encoder()
decoder: msgspec.json.Decoder[AnyEntry] = msgspec.json.Decoder(AnyEntry)  # type: ignore[arg-type]


class Entry(Struct, frozen=True, array_like=True, gc=False):
    """One stream entry. `key` names the entity it changes (for Postgres' per-entity upserts),
    `agent` its agent; both are precomputed so the writer never decodes `payload`."""

    id: int
    type: str
    key: str
    agent: str
    payload: bytes

    @property
    def stream_id(self) -> str:
        return stream_id(self.id)

    def event(self) -> ev.Event:
        return decoder.decode(self.payload)


def stream_id(entry_id: int) -> str:
    return f"{entry_id >> SEQ_BITS}-{entry_id & SEQ_MASK}"


def parse_stream_id(sid: str | bytes) -> int:
    text = sid.decode() if isinstance(sid, bytes) else sid
    ms, _, n = text.partition("-")
    return int(ms) << SEQ_BITS | int(n or 0)


class EntryIds:
    """Monotonic entry ids from the wall clock; never reuses one, even if the clock steps back."""

    def __init__(self) -> None:
        self.last = 0

    def advance_past(self, entry_id: int) -> None:
        self.last = max(self.last, entry_id)

    def next(self) -> int:
        return self.block(1)

    def block(self, n: int) -> int:
        """The first of `n` consecutive new ids (the rest follow it by one each). A block
        longer than the ms's 2**20 sequence runs into the next ms's ids; they stay unique and
        increasing, and the next block starts past them."""
        candidate = (time.time_ns() // 1_000_000) << SEQ_BITS
        first = candidate if candidate > self.last else self.last + 1
        self.last = first + max(n, 1) - 1
        return first


def _key_agent(e: ev.Event) -> tuple[str, str]:
    """(entity key, agent id) of an entry; "" where there is none."""
    t = type(e)
    if (
        t is ev.PositionOpened
        or t is ev.PositionChanged
        or t is ev.PositionClosed
        or t is PositionSaved
    ):
        p = e.position  # type: ignore[attr-defined]
        return p.id, p.agent_id
    if t is ev.BalanceChanged or t is ev.Deposited:
        return f"{e.agent_id}{SEP}{e.asset}", e.agent_id  # type: ignore[attr-defined]
    if t is ev.OrderSubmitted or t is ev.SwapSubmitted or t is ev.ExchangeOrderSent:
        o = e.order  # type: ignore[attr-defined]
        return o.id, o.agent_id
    if t is ev.OrderFilled:
        return e.order_id, e.trade.agent_id  # type: ignore[attr-defined]
    if t is ev.EntryRested:
        r = e.entry  # type: ignore[attr-defined]
        return r.id, r.agent_id
    if t is ev.EntryEnded:
        return e.entry_id, e.agent_id  # type: ignore[attr-defined]
    if t is ev.SignalExecutionRecorded:
        return f"{e.signal_id}{SEP}{e.agent_id}", e.agent_id  # type: ignore[attr-defined]
    if t is ev.SignalReceived:
        return e.signal_id, ""  # type: ignore[attr-defined]
    if t is SignalSaved:
        return e.signal.id, ""  # type: ignore[attr-defined]
    if t is AgentSaved:
        return e.agent.id, e.agent.id  # type: ignore[attr-defined]
    if t is ScorecardSaved:
        c = e.saved  # type: ignore[attr-defined]
        return f"card{SEP}{c.agent_id}{SEP}{c.source}", c.agent_id
    if t is ev.OrderFailed:
        return e.order_id, e.agent_id  # type: ignore[attr-defined]
    if t is ev.HaltChanged:
        return "halt", ""
    if t is ev.PriceEvicted:
        return e.token, ""  # type: ignore[attr-defined]
    position_id = getattr(e, "position_id", None)
    agent_id = getattr(e, "agent_id", "") or ""
    if position_id is not None:
        return position_id, agent_id
    return agent_id, agent_id


_AGENT_TOUCHING = (
    ev.AgentCreated,
    ev.AgentRenamed,
    ev.AgentConfigUpdated,
    ev.AgentPaused,
    ev.AgentResumed,
    ev.Deposited,
    ev.OrderFilled,
    ev.PositionClosed,
)


def with_records(events: list[ev.Event], engine: Engine) -> list[ev.Event]:
    """`events` followed by the store records their transition calls for, read from `engine`
    right after the transition. Callers encode them at once, so no copies are taken."""
    out = list(events)
    agents: dict[str, None] = {}
    for e in events:
        t = type(e)
        if t is ev.OrderSubmitted and e.order.purpose == "entry":  # type: ignore[attr-defined]
            p = engine.positions.get(e.order.position_id)  # type: ignore[attr-defined]
            if p is not None:
                out.append(PositionSaved(ts=e.ts, position=p))
        elif t is ev.OrderFailed and e.position_id not in engine.positions:  # type: ignore[attr-defined]
            out.append(PositionDropped(ts=e.ts, position_id=e.position_id, agent_id=e.agent_id))  # type: ignore[attr-defined]
        elif t is ev.SignalReceived:
            record = engine.signals.get(e.signal_id)  # type: ignore[attr-defined]
            if record is not None:
                out.append(
                    SignalSaved(ts=e.ts, signal=record.signal, agents_matched=record.agents_matched)
                )
        if isinstance(e, _AGENT_TOUCHING):
            if t is ev.OrderFilled:
                agents[e.trade.agent_id] = None  # type: ignore[attr-defined]
            elif t is ev.PositionClosed:
                agents[e.position.agent_id] = None  # type: ignore[attr-defined]
            else:
                agents[e.agent_id] = None  # type: ignore[attr-defined]
    ts = events[-1].ts if events else 0
    for agent_id in agents:
        agent = engine.agents.get(agent_id)
        if agent is not None:
            out.append(AgentSaved(ts=ts, agent=agent))
    if engine.scorecards.dirty:
        out.extend(ScorecardSaved(ts=ts, saved=c) for c in engine.scorecards.take_dirty())
    return out


def to_entries(events: list[ev.Event], ids: EntryIds) -> list[Entry]:
    encode = encoder.encode
    out = []
    entry_id = ids.block(len(events))  # one clock read for the batch (a cascade has 60,000)
    for e in events:
        key, agent = _key_agent(e)
        out.append(Entry(entry_id, type(e).__name__, key, agent, encode(e)))
        entry_id += 1
    return out
