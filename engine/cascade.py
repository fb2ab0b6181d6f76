"""One tick's exit decisions in slices: when a price falls through thousands of stops, the
Engine can decide them `slice` at a time, so the runtime yields to its event loop between
slices and the daemon keeps answering (benchmarks/exit_cascade.py).

Slicing never changes a decision. The positions a tick reaches are fixed, ordered and deduped
when the tick is applied, and each is decided at that tick's price and clock (the Engine's clock
reads the tick's time while a slice runs), in the same order as in one transition. Before anything that could see or change what the rest would decide — a
later tick, the clock, a close, a config, the halt, a deposit, a fill or a signal reaching one
of the agents still to decide — the Engine decides the rest first (`finish`). Only transitions
that cannot touch those agents' state run between slices (tests/unit/test_exit_cascade.py
checks sliced against whole, event for event)."""

from __future__ import annotations

from collections.abc import Callable

from .exit_actions import ExitActions
from .model import Position
from .state import EngineState


class TickWork:
    """What is left of one tick's exits: the ordered positions, and the tick's moment."""

    __slots__ = ("positions", "next", "now", "token", "price_usd", "agents", "resting")

    def __init__(self, positions: list[Position], now: int, token: str, price_usd: float) -> None:
        self.positions = positions
        # Every agent the tick reaches, decided or not: a superset of those still to decide,
        # computed once (asked on every fill and signal while a cascade is pending).
        self.agents = frozenset(p.agent_id for p in positions)
        # Resting buys existed when the tick came: its last slice expires and triggers them
        # (`done`), so their owners count among the tick's agents and any resting signal
        # (the global capacity) waits for the tick (set by ExitCascade.start).
        self.resting = False
        self.next = 0
        self.now = now
        self.token = token
        self.price_usd = price_usd


class ExitCascade:
    """The Engine's collaborator holding at most one tick's undecided exits. `done` runs once
    the tick's last position is decided (the tick's resting-entry work, which follows its exits
    in the same transition when nothing is sliced)."""

    def __init__(
        self, state: EngineState, exits: ExitActions, done: Callable[[TickWork], None]
    ) -> None:
        self.state = state
        self.exits = exits
        self.done = done
        self.work: TickWork | None = None

    @property
    def pending(self) -> bool:
        """A tick's exits are being decided: some positions are still to decide."""
        return self.work is not None

    def agents(self) -> frozenset[str]:
        """The agents of the tick being decided (those with a position still to decide among
        them); empty when none is pending."""
        return frozenset() if self.work is None else self.work.agents

    def start(self, work: TickWork, limit: int | None) -> bool:
        """Decide up to `limit` positions of `work` (all when None). True while some remain."""
        assert self.work is None, "a tick's exits must be finished before the next tick"
        self.work = work
        pending = self.advance(limit)
        if pending and self.state.entries:
            work.agents = work.agents | {e.agent_id for e in self.state.entries.values()}
            work.resting = True
        return pending

    def advance(self, limit: int | None) -> bool:
        """Decide the next `limit` positions (all when None); the tick's `done` follows its
        last. True while some remain; False at once when none is pending."""
        w = self.work
        if w is None:
            return False
        end = len(w.positions) if limit is None else min(len(w.positions), w.next + limit)
        chunk, w.next = w.positions[w.next : end], end
        last = end == len(w.positions)
        if last:
            self.work = None
        # Every slice reads the tick's clock: what it decides (and stamps) is decided at the
        # tick, as in one transition, however late the loop turn that runs it.
        clock, self.state.clock = self.state.clock, lambda: w.now
        try:
            self.exits.evaluate_ordered(chunk, w.now, w.token)
            if last:
                self.done(w)
        finally:
            self.state.clock = clock
        return self.work is not None

    def finish(self) -> None:
        """Decide every position still to decide, now."""
        self.advance(None)
