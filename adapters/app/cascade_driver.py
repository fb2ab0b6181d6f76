"""Drives an exit cascade through the event loop: a tick that reaches more positions than
`[engine] cascade_slice` has its exits decided (Engine.continue_exits) and then its in-process
fills settled a slice per loop turn, so the control port keeps answering while thousands of
stops fire (benchmarks/exit_cascade.py).

What may run between slices, and why no decision changes, is engine/cascade.py's rule; this
module carries it out for the Runtime: the cascade agents' in-process orders are held until the
last decision and settled in order; a transition that could see the cascade completes it first
(`complete`); a clock turn waits for its end; a slice waits while the store's backlog of
not-yet-durable entries exceeds a slice's writes, so an acknowledgement during the cascade
waits for a bounded backlog."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tradingd.engine.model import Order

if TYPE_CHECKING:
    from tradingd.adapters.app.runtime import Runtime

log = logging.getLogger("tradingd.runtime")

# A cascade's next slice waits (BACKLOG_WAIT_S at a time) while the store holds more than this
# many entries per exit of a slice not yet durable: an exit writes about 6 (decision, order,
# position twice, fill, balance), so the backlog stays under about one slice's writes. A store
# that does not drain (a slow spill during an outage) is not waited for longer than
# BACKLOG_MAX_S at a time.
BACKLOG_ENTRIES_PER_EXIT = 8
BACKLOG_WAIT_S = 0.002
BACKLOG_MAX_S = 1.0


class CascadeDriver:
    """The Runtime's collaborator for one exit cascade at a time (None between cascades)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.token: str | None = None  # the cascade's token, None when none is in progress
        self.agents: frozenset[str] = frozenset()
        self.deferred: list[Order] = []  # the cascade's in-process orders, settled in slices
        # The store's backlog of entries not yet durable (Store.pending_writes); None without
        # a store.
        self.write_backlog: Callable[[], int] | None = None
        self.clock_waiting = False  # a clock turn came during the cascade: run it at the end
        self._handle: asyncio.Handle | None = None
        self._backlog_since = 0.0  # loop time of the last slice run without waiting
        self._done: asyncio.Future[None] | None = None
        self._started = 0.0  # perf_counter() of the cascade's tick batch (metrics)

    @property
    def active(self) -> bool:
        return self.token is not None

    def holds(self, order: Order) -> bool:
        """Whether an in-process order waits for the cascade's last decision (its agent is
        one of the cascade's): then it is kept in `deferred`."""
        if order.agent_id in self.agents:
            self.deferred.append(order)
            return True
        return False

    def begin(self, token: str) -> None:
        self.token = token
        self.agents = self.runtime.engine.exits_pending_agents()
        loop = asyncio.get_running_loop()
        self._backlog_since = loop.time()
        self._started = self.runtime.tick_batch_started or time.perf_counter()
        self._done = loop.create_future()
        self._schedule()

    async def settled(self) -> None:
        """Return once no cascade is in progress."""
        while self._done is not None:
            await asyncio.shield(self._done)

    def _schedule(self) -> None:
        if self._handle is None:
            loop = asyncio.get_running_loop()
            if self._store_behind(loop.time()):
                self._handle = loop.call_later(BACKLOG_WAIT_S, self._step)
            else:
                self._handle = loop.call_soon(self._step)

    def _store_behind(self, now: float) -> bool:
        backlog = self.write_backlog() if self.write_backlog is not None else 0
        limit = (self.runtime.cascade_slice or 0) * BACKLOG_ENTRIES_PER_EXIT
        if limit and backlog > limit and now - self._backlog_since < BACKLOG_MAX_S:
            return True
        self._backlog_since = now
        return False

    def _step(self) -> None:
        """One slice: the next exits to decide, else the next fills to settle; then yield. A
        slice that raises is logged and the cascade goes on (each slice moves past its
        positions first, as one transition that raised would have left them)."""
        self._handle = None
        if self.token is None:
            return
        if self._store_behind(asyncio.get_running_loop().time()):
            self._schedule()
            return
        rt, engine = self.runtime, self.runtime.engine
        try:
            if engine.exits_pending:
                # The tick -> exit decision metric is observed once, by the last decision
                # slice, from the tick's arrival.
                last = engine.exits_left <= (rt.cascade_slice or engine.exits_left)
                rt.tick_batch_started = self._started if last else None
                try:
                    rt.apply(engine.continue_exits)
                finally:
                    rt.tick_batch_started = None
            elif self.deferred:
                n = rt.cascade_slice or len(self.deferred)
                batch, self.deferred = self.deferred[:n], self.deferred[n:]
                rt.settle_in_process(batch)  # its agents' follow-up orders join `deferred`
            else:
                rt.flush()  # what a transition finished outside a slice (Engine.pause_buys)
        except Exception:
            log.exception("exit cascade slice failed", extra={"token": self.token})
        if engine.exits_pending or self.deferred:
            self._schedule()
        else:
            self._end()

    def complete(self) -> None:
        """Decide and settle what is left of the cascade, now."""
        if self.token is None:
            return
        rt = self.runtime
        if rt.engine.exits_pending:
            rt.apply_between_slices(rt.engine.finish_exits)
        while self.deferred:
            batch, self.deferred = self.deferred, []
            rt.settle_in_process(batch)
        self._end()

    def _end(self) -> None:
        self.token = None
        self.agents = frozenset()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(None)
        if self.clock_waiting:
            self.clock_waiting = False
            self.runtime.clock_turn()
