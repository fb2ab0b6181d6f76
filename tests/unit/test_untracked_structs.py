"""The engine's many short- and long-lived records (positions, orders, trades, executions,
balances, fills, events, signal records) are msgspec Structs with `gc=False`: the cyclic garbage
collector never tracks them, so a 100-agent signal adds no work to its collections (before, a
young-generation collection of the closed positions kept in memory paused the daemon 8-11 ms
about once a hundred 100-agent signals: benchmarks/signal_latency.py --baseline). The price is a
rule: an untracked object must never be part of a reference cycle, which the collector could
not free. These tests hold the rule on engines driven through random trading."""

from __future__ import annotations

import enum
import gc
import inspect

import msgspec
from hypothesis import HealthCheck, given, settings
from tradingd.engine import events, model, state
from tradingd.engine.snapshot import capture

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.strategies import actions, configs

UNTRACKED = (
    model.Position,
    model.Order,
    model.Trade,
    model.Execution,
    model.Balance,
    model.Fill,
    events.Event,
    state.SignalRecord,
)
_LEAVES = (str, bytes, int, float, bool, type(None), enum.Enum)


def _children(obj: object) -> list[object]:
    if isinstance(obj, msgspec.Struct):
        return [getattr(obj, f) for f in obj.__struct_fields__]
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    return list(gc.get_referents(obj))


def _assert_acyclic(root: object) -> None:
    """No object reachable from `root` (through Struct fields and containers) reaches itself:
    depth-first search with the path on a stack (grey) and finished objects (black)."""
    grey: set[int] = set()
    black: set[int] = set()
    stack: list[tuple[object, list[object]]] = [(root, _children(root))]
    grey.add(id(root))
    while stack:
        obj, todo = stack[-1]
        if not todo:
            stack.pop()
            grey.discard(id(obj))
            black.add(id(obj))
            continue
        child = todo.pop()
        if isinstance(child, _LEAVES) or inspect.isroutine(child) or isinstance(child, type):
            continue
        assert id(child) not in grey, f"reference cycle through {type(child).__name__}: {root!r}"
        if id(child) not in black:
            grey.add(id(child))
            stack.append((child, _children(child)))


def _untracked_roots(h: Harness) -> list[object]:
    e = h.engine
    roots: list[object] = [*e.positions.values(), *e.signals.values(), *h.events()]
    roots.extend(o for b in e.books.values() for o in b.trades)
    roots.extend(e.orders.values())
    return roots


def test_the_engine_records_are_not_tracked_by_the_garbage_collector():
    for cls in UNTRACKED:
        assert cls.__struct_config__.gc is False, cls.__name__
    for cls in events.Event.__subclasses__():
        assert cls.__struct_config__.gc is False, cls.__name__  # inherited by every event


def test_the_cycle_check_finds_a_cycle_through_a_position():
    h = Harness(Clock())
    h.sol()
    h.agent({})
    h.tick(TOKENS[0], 1.0)
    h.signal(TOKENS[0])
    h.settle()
    (p,) = h.engine.positions.values()
    _assert_acyclic(p)
    p.opened_by = [{"back": p}]  # type: ignore[assignment]
    try:
        _assert_acyclic(p)
    except AssertionError as exc:
        assert "Position" in str(exc)
    else:
        raise AssertionError("a cycle through a position was not found")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, actions)
def test_no_engine_record_is_part_of_a_reference_cycle(config, steps):
    h = Harness(Clock())
    h.sol()
    for _ in range(2):
        h.agent(config)
    prices = {t: 1.0 for t in TOKENS}
    for t in TOKENS:
        h.tick(t, 1.0)
    for kind, a, b in steps:
        h.step(prices, kind, a, b)
    h.settle()
    roots = _untracked_roots(h)
    assert any(isinstance(r, model.Position) for r in roots) or not h.engine.positions
    for root in roots:
        _assert_acyclic(root)
    _assert_acyclic(capture(h.engine))  # the snapshot recovery restores: every record at once
