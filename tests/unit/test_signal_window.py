"""The dedupe window: signal records (ids, client ids, executions) and closed positions kept in
memory are bounded by age and count, oldest evicted first, with an injected clock."""

from __future__ import annotations

from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.history import HistoryBounds
from tradingd.engine.model import Signal
from tradingd.engine.snapshot import capture, restore

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]


def engine(clock: Clock, agents: int = 0, **bounds: int) -> Engine:
    e = Engine(clock, history=HistoryBounds(**bounds))
    for _ in range(agents):
        e.create_agent("a", "paper", config_from_builtins({}))
    e.drain()
    return e


def signal(e: Engine, clock: Clock, client_id: str | None):
    sid = f"sig{e.id_seq}-{clock.now}-{client_id}"
    e.id_seq += 1
    s = Signal(
        id=sid, token=T, received_at=clock.now, expires_at=clock.now + 1, client_id=client_id
    )
    record, dup = e.on_signal(s)
    e.drain()
    return record, dup


def test_count_bound_keeps_the_newest_ids():
    clock = Clock()
    e = engine(clock, signals_kept=3)
    first = [signal(e, clock, f"c{i}")[0].signal.id for i in range(5)]
    assert list(e.signals) == first[2:]
    assert sorted(e.signal_by_client) == ["c2", "c3", "c4"]
    assert e.signal_window.forgotten == 2
    assert signal(e, clock, "c4")[1] is True  # inside the window: a duplicate
    record, dup = signal(e, clock, "c0")  # left memory: the engine alone sees a new id
    assert dup is False and record.signal.id not in first
    assert len(e.signals) == 3 and len(e.signal_by_client) == 3


def test_age_bound_evicts_ids_older_than_the_window():
    clock = Clock()
    e = engine(clock, signal_window_ms=1000)
    old, _ = signal(e, clock, "old")
    clock.now += 999
    assert signal(e, clock, "old")[1] is True  # younger than the window: a duplicate
    clock.now += 1
    record, dup = signal(e, clock, "old")  # aged the window: left memory, new to the engine
    assert dup is False and record.signal.id != old.signal.id
    assert list(e.signals) == [record.signal.id] and e.signal_window.forgotten == 1


def test_executions_bound_counts_every_agent_a_signal_reached():
    clock = Clock()
    e = engine(clock, agents=3, signal_executions_kept=7)
    ids = [signal(e, clock, f"c{i}")[0].signal.id for i in range(4)]
    assert all(len(e.signals[i].executions) == 3 for i in ids[2:])
    assert list(e.signals) == ids[2:]  # 2 records hold 6 <= 7 executions; a third would be 9
    assert e.signal_window.executions_held == 6


def test_the_newest_record_is_never_evicted():
    clock = Clock()
    e = engine(clock, agents=2, signals_kept=1, signal_executions_kept=1)
    record, _ = signal(e, clock, "a")
    assert list(e.signals) == [record.signal.id]  # over the executions bound, but the newest
    later, _ = signal(e, clock, "b")
    assert list(e.signals) == [later.signal.id] and e.signal_window.executions_held == 2


def test_restore_keeps_only_the_window():
    clock = Clock()
    e = engine(clock, signals_kept=10)
    for i in range(6):
        signal(e, clock, f"c{i}")
        clock.now += 100
    snap = capture(e)
    again = engine(clock, signals_kept=3)
    restore(again, snap)
    assert sorted(again.signal_by_client) == ["c3", "c4", "c5"]
    aged = engine(clock, signal_window_ms=250)
    restore(aged, snap)
    assert sorted(aged.signal_by_client) == ["c4", "c5"]


def test_closed_positions_kept_per_agent_is_configurable():
    h = Harness(Clock())
    h.engine = Engine(h.clock, history=HistoryBounds(closed_kept=2))
    h.sol()
    aid = h.agent({})
    h.tick(T, 1.0)
    closed = []
    for _ in range(3):
        record, _ = h.signal(T)
        h.settle()
        pid = record.executions[aid].position_id
        h.engine.close_position(pid, 100, "manual")
        h.collect()
        h.settle()
        closed.append(pid)
    assert closed[0] not in h.engine.positions
    assert [p in h.engine.positions for p in closed[1:]] == [True, True]
