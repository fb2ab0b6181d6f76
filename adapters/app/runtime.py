"""The runtime around the Engine: runs transitions, fans their events out, and carries order
intents to venues (async) and their results back as new transitions.

Subscribers (store, WebSocket hub, metrics) are synchronous callables that must only enqueue:
the engine never awaits a subscriber, so a slow consumer can never slow a transition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from tradingd.adapters.app.cascade_driver import CascadeDriver
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.errors import VenueError
from tradingd.engine.model import Fill, Order, RestingEntry, Signal, Tick
from tradingd.engine.ports import Venue
from tradingd.engine.state import SignalRecord

log = logging.getLogger("tradingd.runtime")
T = TypeVar("T")

EventSubscriber = Callable[[list[ev.Event]], None]
TickSubscriber = Callable[[list[Tick]], None]
OrderObserver = Callable[[Order, Fill | None, float], None]  # order, fill or None, seconds
# What the daemon receives, as it receives it (the recorder): ticks before they are applied,
# a signal just before it is applied, a clock turn; each with the clock (epoch ms) of that moment.
TickIntake = Callable[[list[Tick], int], None]
SignalIntake = Callable[[Signal, int], None]
ClockIntake = Callable[[int], None]
CancelIntake = Callable[[str, int], None]  # signal id whose resting buys are cancelled


# Engine transitions that may run between an exit cascade's slices without completing it: an
# order's own follow-ups (cascade.py says why each cannot change a decision still to take).
_BETWEEN_SLICES = frozenset(
    {
        Engine.continue_exits,
        Engine.on_fill,
        Engine.on_order_failed,
        Engine.on_swap_submitted,
        Engine.on_exchange_order_sent,
    }
)


def _method(fn: Callable[..., Any]) -> Any:
    return getattr(fn, "__func__", None)


class TickOutcome(NamedTuple):
    accepted: int
    rejected: dict[str, int]  # reason -> count


class Runtime:
    SELL_ATTEMPTS = 5
    BUY_ATTEMPTS = 3
    BACKOFF_S = 0.1
    # Between tries of an order whose venue could not tell its outcome (VenueError.unresolved).
    UNRESOLVED_WAIT_S = 1.0

    def __init__(
        self, engine: Engine, venues: dict[str, Venue], clock: Callable[[], int] = wall_clock_ms
    ):
        self.engine = engine
        self.venues = venues
        self.clock = clock
        self.event_subscribers: list[EventSubscriber] = []
        self.tick_subscribers: list[TickSubscriber] = []
        self.order_observers: list[OrderObserver] = []
        self.tick_intake: list[TickIntake] = []
        self.signal_intake: list[SignalIntake] = []
        self.clock_intake: list[ClockIntake] = []
        self.cancel_intake: list[CancelIntake] = []
        # The task carrying each order to its venue, by order id: handles only. What is in
        # flight, and what it reserves or sells, is the engine's order record (engine.orders).
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.ticks_rejected: dict[str, int] = {}  # reason -> count since start (metrics)
        self.accepting = True  # intake (signals, prices, new orders from the API) open
        # Hot standby (adapters/cluster): whether this process holds its lease, waiting out a
        # lapse being re-verified; no order leaves for a venue without it (it stays in flight:
        # the lease holder resumes it).
        self.lease_verified: Callable[[], Awaitable[bool]] | None = None
        self._inline_queue: list[Order] = []
        self._settling = False
        self._stopping = False
        # perf_counter() at the start of the tick batch being applied, None between batches:
        # lets event subscribers time tick -> exit decision (metrics).
        self.tick_batch_started: float | None = None
        # A tick reaching more than `cascade_slice` positions: decided and settled in slices
        # (cascade_driver.py).
        self.cascade = CascadeDriver(self)

    # -- transitions ------------------------------------------------------------------------

    def apply(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one engine transition and publish what it produced, even if it raised. A
        transition other than an order's own follow-ups first completes an exit cascade in
        progress (cascade.py: slicing must not change what anything decides)."""
        if self.cascade.active and _method(fn) not in _BETWEEN_SLICES:
            self.cascade.complete()
        try:
            return fn(*args, **kwargs)
        finally:
            self.flush()

    def flush(self) -> None:
        out = self.engine.drain()
        if out.events:
            for sub in self.event_subscribers:
                try:
                    sub(out.events)
                except Exception:  # a broken subscriber must not stop trading
                    log.exception("event subscriber failed", extra={"subscriber": repr(sub)})
        if out.intents:
            inline: list[Order] = []
            cascade = self.cascade
            for intent in out.intents:
                order = intent.order
                venue = self.venue_of(order)
                if venue is None or not venue.in_process:
                    self._dispatch(order)
                elif not (cascade.active and cascade.holds(order)):
                    inline.append(order)
            if inline:
                self.settle_in_process(inline)

    def push_ticks(self, ticks: Iterable[Tick]) -> TickOutcome:
        """Apply ticks one at a time, in order, exactly as if each came alone: an order decided
        on a tick is settled (in-process venues) or sent before the next tick is applied, so it
        fills at its own tick's price. Applied ticks are then published as one batch. Returns
        how many were applied and why the others were refused (see `Engine.on_tick`)."""
        batch = list(ticks)
        engine = self.engine
        if self.cascade.active and batch:
            # the last tick's exits (and a clock turn waiting for them) come first, and are
            # recorded first
            self.cascade.complete()
        if self.tick_intake and batch:
            self._tell_intake(self.tick_intake, batch, engine.clock())
        on_tick, prices = engine.on_tick, engine.prices
        applied: list[Tick] = []
        rejected: dict[str, int] = {}
        self.tick_batch_started = time.perf_counter()
        try:
            for tick in batch:
                if self.cascade.active:  # the last tick's exits come first
                    self.cascade.complete()
                reason = on_tick(tick)
                if reason is None:
                    applied.append(prices[tick.token])  # as applied (a future ts is clamped)
                    if engine.exits_pending:
                        self.cascade.begin(tick.token)
                else:
                    rejected[reason] = rejected.get(reason, 0) + 1
                if engine.has_intents:
                    self.flush()
        finally:
            self.flush()
            self.tick_batch_started = None
        for reason, n in rejected.items():
            self.ticks_rejected[reason] = self.ticks_rejected.get(reason, 0) + n
        if applied:
            for sub in self.tick_subscribers:
                try:
                    sub(applied)
                except Exception:
                    log.exception("tick subscriber failed")
        return TickOutcome(len(applied), rejected)

    # -- exit cascades in slices (cascade_driver.py) ---------------------------------------

    @property
    def cascade_slice(self) -> int | None:
        """An exit cascade (a tick reaching more than this many positions) is decided, and its
        in-process fills settled, this many at a time, one slice per loop turn, so the daemon
        keeps answering; None (the default, as in a backtest): all in the tick's transition."""
        return self.engine.exit_slice

    @cascade_slice.setter
    def cascade_slice(self, n: int | None) -> None:
        self.engine.exit_slice = n

    @property
    def cascading(self) -> bool:
        """An exit cascade is in progress (decisions or in-process fills still to come)."""
        return self.cascade.active

    def complete_cascade(self) -> None:
        """Decide and settle what is left of an exit cascade, now (before a transition that
        could see it: the next tick, the clock, an operator's call, a signal reaching it)."""
        self.cascade.complete()

    async def cascade_settled(self) -> None:
        """Return once no exit cascade is in progress: every exit the ticks applied so far
        asked for is decided and its in-process fill settled (POST /v1/prices awaits it, then
        the store, so its 202 covers the exits of its ticks)."""
        await self.cascade.settled()

    # -- orders -----------------------------------------------------------------------------

    def _dispatch(self, order: Order) -> None:
        task = asyncio.get_running_loop().create_task(
            self._execute(order), name=f"order-{order.id}"
        )
        self.in_flight[order.id] = task
        task.add_done_callback(lambda _t, oid=order.id: self.in_flight.pop(oid, None))

    def settle_in_process(self, orders: list[Order]) -> None:
        """In-process venues fill at once: settle right after the transition that asked, in
        the same loop turn (one flush publishes the fills). Re-entrant flushes are queued."""
        self._inline_queue.extend(orders)
        if self._settling:
            return
        self._settling = True
        try:
            while self._inline_queue:
                batch, self._inline_queue = self._inline_queue, []
                self._settle_batch(batch)
        finally:
            self._settling = False

    def _settle_batch(self, orders: list[Order]) -> None:
        """Fill a batch on an in-process venue, then settle every result in one flush. A
        transient failure falls back to the retrying per-order path."""
        engine = self.engine
        settled: list[tuple[Order, Fill | None, str]] = []
        for order in orders:
            venue = self.venue_of(order)
            assert venue is not None
            started = time.perf_counter()
            if (
                order.side == "buy"
                and order.expires_at is not None
                and self.clock() > order.expires_at
            ):
                settled.append((order, None, "expired"))
                continue
            try:
                fill = venue.execute_now(order)
            except VenueError as exc:
                if exc.transient:
                    self._dispatch(order)
                    continue
                settled.append((order, None, str(exc)))
            except Exception as exc:  # a venue bug: fail the order, keep the daemon
                log.exception("venue raised", extra={"order_id": order.id})
                settled.append((order, None, f"venue error: {exc!r}"))
            else:
                self._observe(order, fill, time.perf_counter() - started)
                settled.append((order, fill, ""))
        try:
            for order, fill, reason in settled:
                try:
                    if fill is not None:
                        engine.on_fill(fill)
                    else:
                        self._observe(order, None, 0.0)
                        engine.on_order_failed(order.id, reason)
                except Exception:
                    log.exception(
                        "settling an order failed",
                        extra={"order_id": order.id, "agent_id": order.agent_id},
                    )
        finally:
            self.flush()

    def venue_of(self, order: Order) -> Venue | None:
        """The venue that carries `order`: an exchange account's is registered whole
        ("ccxt:<account>"), any other by its name before a ":market" suffix."""
        return self.venues.get(order.venue) or self.venues.get(order.venue.split(":", 1)[0])

    async def _execute(self, order: Order) -> None:
        venue = self.venue_of(order)
        attempts = self.SELL_ATTEMPTS if order.side == "sell" else self.BUY_ATTEMPTS
        started = time.perf_counter()
        reason = f"no venue {order.venue!r}"
        fee = 0
        attempt = -1
        while attempt + 1 < attempts:
            attempt += 1
            if venue is None:
                break
            if (
                order.side == "buy"
                # a recorded swap or exchange request may have filled: the venue resolves it
                and order.swap is None
                and order.exchange is None
                and order.expires_at is not None
                and self.clock() > order.expires_at
            ):
                reason = "expired"
                break
            if self.lease_verified is not None and not await self.lease_verified():
                log.error("order not sent: the lease is lost", extra={"order_id": order.id})
                return
            try:
                fill = await venue.execute(order)
            except VenueError as exc:
                reason = str(exc)
                fee += exc.fee
                log.warning(
                    "order attempt failed",
                    extra={
                        "order_id": order.id,
                        "agent_id": order.agent_id,
                        "attempt": attempt + 1,
                        "reason": reason,
                    },
                )
                if exc.unresolved:
                    # It may exist on the venue: failing it would release money in motion. It
                    # stays in flight, tried again (a restart resolves it from its record).
                    attempt -= 1  # not an attempt: the same order, still being resolved
                    await asyncio.sleep(max(exc.retry_after_s or 0.0, self.UNRESOLVED_WAIT_S))
                    continue
                if not exc.transient:
                    break
                await asyncio.sleep(max(exc.retry_after_s or 0.0, self.BACKOFF_S * 2**attempt))
                continue
            except Exception as exc:  # a venue bug: fail the order, keep the daemon
                reason = f"venue error: {exc!r}"
                log.exception("venue raised", extra={"order_id": order.id})
                break
            self._observe(order, fill, time.perf_counter() - started)
            self.apply(self.engine.on_fill, fill)
            return
        self._observe(order, None, time.perf_counter() - started)
        self.apply(self.engine.on_order_failed, order.id, reason, fee)

    def _observe(self, order: Order, fill: Fill | None, seconds: float) -> None:
        for obs in self.order_observers:
            try:
                obs(order, fill, seconds)
            except Exception:
                log.exception("order observer failed")

    def resume_orders(self, orders: Iterable[Order]) -> None:
        """Carry orders restored at recovery to their venues again: a buy past its expiry fails
        (and releases its reservation), anything else executes as if just submitted."""
        for order in orders:
            if order.id in self.engine.orders and order.id not in self.in_flight:
                self._dispatch(order)

    async def wait_orders(self, timeout: float) -> bool:
        """Wait for in-flight orders (and the orders their fills start) up to `timeout`."""
        self.complete_cascade()
        deadline = time.monotonic() + timeout
        while self.in_flight:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.wait(list(self.in_flight.values()), timeout=left)
        return True

    # -- the clock --------------------------------------------------------------------------

    def submit_signal(self, signal: Signal) -> tuple[SignalRecord, bool]:
        """Apply a received signal (Engine.on_signal) after telling the intake observers. During
        an exit cascade it is applied between slices when it can reach none of the cascade's
        agents nor its token (Engine.signal_may_reach), else after the cascade completes."""
        token = self.cascade.token
        if token is not None and self.engine.signal_may_reach(signal, token, self.cascade.agents):
            self.cascade.complete()  # before the recorder hears of the signal: same order
        if self.signal_intake:
            self._tell_intake(self.signal_intake, signal, self.engine.clock())
        return self.apply_between_slices(self.engine.on_signal, signal)

    def apply_between_slices(self, fn: Callable[..., T], *args: Any) -> T:
        """`apply` without completing a cascade first: for a transition already known not to
        see it (the caller's check), or the cascade's own."""
        try:
            return fn(*args)
        finally:
            self.flush()

    def cancel_resting(self, signal_id: str) -> list[RestingEntry]:
        """Cancel what still rests of a signal (Engine.cancel_resting) after telling the intake
        observers. Returns the entries cancelled."""
        self.complete_cascade()  # before the recorder hears of the cancel: same order
        if self.cancel_intake:
            self._tell_intake(self.cancel_intake, signal_id, self.engine.clock())
        return self.apply(self.engine.cancel_resting, signal_id)

    def clock_turn(self) -> None:
        """Time passes without a price (Engine.on_clock), after telling the intake observers.
        During an exit cascade the turn waits for the cascade's end (CascadeDriver): applied
        now it would have to complete the cascade in one block first, and in one transition
        the cascade would have finished before any clock turn anyway."""
        if self.cascade.active:
            self.cascade.clock_waiting = True
            return
        if self.clock_intake:
            self._tell_intake(self.clock_intake, self.engine.clock())
        self.apply(self.engine.on_clock)

    @staticmethod
    def _tell_intake(observers: list[Any], *args: Any) -> None:
        for observer in observers:
            try:
                observer(*args)
            except Exception:  # a broken recorder must not stop trading
                log.exception("intake observer failed", extra={"observer": repr(observer)})

    async def clock_loop(self, interval_ms: int) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            self.clock_turn()
