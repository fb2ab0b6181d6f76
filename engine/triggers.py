"""Which positions must be looked at on a tick: the per-token trigger index, and the naive scan
that is its oracle. Both only *propose* candidates; `exits.decide()` makes every decision.

The index keeps, per token, a StopBook (stops grouped by shared peak, see engine/stop_book.py),
heaps of take-profit / moon-bag / stale-band prices above and DCA / stale-band prices below, plus
one global heap of deadlines (max hold, stale eligibility). A candidate that gets no decision is
re-armed; one that is closing is dropped and re-armed when its order settles. Per-tick cost is
O(log n) plus amortized group merging, independent of the positions that do not trigger."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Protocol

from .exits import (
    dca_trigger_price,
    max_hold_at,
    moon_bag_trigger_price,
    next_take_profit_price,
    stale_band,
    stale_eligible_at,
)
from .model import Position
from .stop_book import StopBook

_UP = 1.0 + 1e-9
_DOWN = 1.0 - 1e-9


class ExitIndex(Protocol):
    """What the engine asks of an exit index (TriggerIndex, or NaiveScan as its oracle): which
    positions may have to act on a tick or at a time. Candidates only; `exits.decide()` decides.
    Prices are USD, times epoch ms."""

    def add(self, position: Position, now: int, peak: float | None = None) -> None:
        """Track an open position from `now`; its peak starts at `peak` (a recovered running
        high, USD) or at its entry price. Sets `position.peak_price_usd`."""

    def rearm(self, position: Position, now: int, fresh: bool) -> None:
        """Place the position's triggers again after a decision or a settled order; `fresh`:
        it has just been added or changed, so no last price is trusted for the stale band."""

    def remove(self, position: Position) -> None:
        """Stop tracking the position (closed, or closing until its order settles)."""

    def on_price(self, token: str, price: float) -> Iterable[Position]:
        """Record a tick of `token` at `price` (USD): peaks move up, and the positions whose
        stop, take-profit, moon-bag, DCA or stale-band level the price crossed are returned."""

    def due(self, now: int) -> Iterable[Position]:
        """Positions with a time rule (max hold, stale eligibility) due at `now` (epoch ms)."""

    def peak_of(self, position: Position) -> float:
        """The position's running high in USD (the price its trailing stop follows)."""

    def forget(self, token: str) -> None:
        """Drop what is kept for a token no tracked position holds."""


class NaiveScan:
    """The oracle: every position is a candidate on every tick and every clock step."""

    def __init__(self) -> None:
        self._by_token: dict[str, dict[str, Position]] = {}
        self._all: dict[str, Position] = {}

    def add(self, position: Position, now: int, peak: float | None = None) -> None:
        """As ExitIndex.add: the peak starts at `peak` (USD) or the entry price."""
        position.peak_price_usd = position.entry_price_usd if peak is None else peak
        self._by_token.setdefault(position.token, {})[position.id] = position
        self._all[position.id] = position

    def rearm(self, position: Position, now: int, fresh: bool) -> None:
        """Nothing to place: every tracked position is a candidate every time."""
        return None

    def remove(self, position: Position) -> None:
        """Stop tracking the position."""
        self._by_token.get(position.token, {}).pop(position.id, None)
        self._all.pop(position.id, None)

    def on_price(self, token: str, price: float) -> Iterable[Position]:
        """Raise the peaks of `token`'s positions to `price` (USD) if higher. Returns nothing:
        every position comes back from `due` instead."""
        for p in self._by_token.get(token, {}).values():
            if price > p.peak_price_usd:
                p.peak_price_usd = price
        return ()  # every position comes back from due(): one candidate list, no duplicates

    def due(self, now: int) -> Iterable[Position]:
        """Every tracked position, whatever `now` is."""
        return list(self._all.values())

    def peak_of(self, position: Position) -> float:
        """The position's running high in USD, as kept on the position."""
        return position.peak_price_usd

    def forget(self, token: str) -> None:
        """Drop the token's (empty) entry."""
        if not self._by_token.get(token):
            self._by_token.pop(token, None)


class _TokenBook:
    __slots__ = ("stops", "below", "above", "live", "last_price")

    def __init__(self) -> None:
        self.stops = StopBook()
        self.below: list[tuple[float, int, str, int]] = []  # (-key, seq, id, version)
        self.above: list[tuple[float, int, str, int]] = []  # (key, seq, id, version)
        self.live = 0
        self.last_price: float | None = None


class TriggerIndex:
    """The per-token trigger index (an ExitIndex): per tick, only the positions whose level the
    price crossed come back, at O(log n) plus amortized group merging."""

    def __init__(self) -> None:
        self._books: dict[str, _TokenBook] = {}
        self._positions: dict[str, Position] = {}
        self._version: dict[str, int] = {}
        self._deadlines: list[tuple[int, int, str, int]] = []  # (ms, seq, id, version)
        self._counter = 0

    # -- membership -------------------------------------------------------------------------

    def add(self, position: Position, now: int, peak: float | None = None) -> None:
        """Index an open position; `peak` restores a recovered position's running high."""
        book = self._books.get(position.token)
        if book is None:
            book = self._books[position.token] = _TokenBook()
        peak = position.entry_price_usd if peak is None else peak
        position.peak_price_usd = peak
        book.stops.add(position, peak)
        self._positions[position.id] = position
        book.live += 1
        self.rearm(position, now, fresh=True)

    def remove(self, position: Position) -> None:
        """Stop tracking the position: its heap entries go stale, its stop leaves its group. A
        position not tracked is ignored."""
        if self._positions.pop(position.id, None) is None:
            return
        self._version.pop(position.id, None)
        book = self._books[position.token]
        book.stops.remove(position)
        book.live -= 1

    def forget(self, token: str) -> None:
        """Drop the book of a token no position holds (its price left the price book)."""
        book = self._books.get(token)
        if book is not None and not book.live:
            del self._books[token]

    def peak_of(self, position: Position) -> float:
        """The position's running high in USD: its stop group's shared peak, else the one kept on
        the position."""
        book = self._books.get(position.token)
        peak = book.stops.peak_of(position) if book is not None else None
        return position.peak_price_usd if peak is None else peak

    # -- arming -----------------------------------------------------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def rearm(self, position: Position, now: int, fresh: bool) -> None:
        """(Re)place every trigger of an open position; older entries become stale."""
        book = self._books[position.token]
        version = self._next()
        self._version[position.id] = version
        seq, pid = position.seq, position.id
        book.stops.place(position)
        above = [
            p
            for p in (next_take_profit_price(position), moon_bag_trigger_price(position))
            if p is not None
        ]
        if above:
            heapq.heappush(book.above, (min(above) * _DOWN, seq, pid, version))
        dca = dca_trigger_price(position)
        if dca is not None:
            heapq.heappush(book.below, (-dca * _UP, seq, pid, version))
        hold = max_hold_at(position)
        if hold is not None:
            heapq.heappush(self._deadlines, (hold, seq, pid, version))
        eligible = stale_eligible_at(position)
        if eligible is not None:
            if now < eligible:
                heapq.heappush(self._deadlines, (eligible, seq, pid, version))
            elif fresh or book.last_price is None:
                heapq.heappush(self._deadlines, (now, seq, pid, version))
            else:
                low, high = stale_band(position)
                if book.last_price > high:
                    heapq.heappush(book.below, (-high * _UP, seq, pid, version))
                elif book.last_price < low:
                    heapq.heappush(book.above, (low * _DOWN, seq, pid, version))
                else:
                    heapq.heappush(self._deadlines, (now, seq, pid, version))
        self._compact(book)

    def _compact(self, book: _TokenBook) -> None:
        limit = 4 * book.live + 1024
        version = self._version
        for name in ("below", "above"):
            heap = getattr(book, name)
            if len(heap) > limit:
                kept = [e for e in heap if version.get(e[2]) == e[3]]
                heapq.heapify(kept)
                setattr(book, name, kept)
        if len(self._deadlines) > 4 * len(self._positions) + 1024:
            self._deadlines = [e for e in self._deadlines if version.get(e[2]) == e[3]]
            heapq.heapify(self._deadlines)

    # -- queries ----------------------------------------------------------------------------

    def on_price(self, token: str, price: float) -> Iterable[Position]:
        """Record a tick of `token` at `price` (USD) and return the positions whose stop,
        take-profit, moon-bag, DCA or stale-band level it crossed (each once), popping their
        entries; they are re-armed by `rearm` if they do not act."""
        book = self._books.get(token)
        if book is None:
            book = self._books[token] = _TokenBook()
        book.last_price = price
        if not book.live:
            return ()
        book.stops.advance(price)
        found: dict[str, Position] = {}
        book.stops.triggered(price, found)
        positions, version = self._positions, self._version
        below = book.below
        while below and -below[0][0] >= price:
            _, _, pid, v = heapq.heappop(below)
            if version.get(pid) == v:
                found[pid] = positions[pid]
        above = book.above
        while above and above[0][0] <= price:
            _, _, pid, v = heapq.heappop(above)
            if version.get(pid) == v:
                found[pid] = positions[pid]
        return found.values()

    def due(self, now: int) -> Iterable[Position]:
        """Pop and return the positions whose max-hold or stale deadline is at or before `now`
        (epoch ms), each once."""
        heap = self._deadlines
        if not heap or heap[0][0] > now:
            return ()
        found: dict[str, Position] = {}
        version, positions = self._version, self._positions
        while heap and heap[0][0] <= now:
            _, _, pid, v = heapq.heappop(heap)
            if version.get(pid) == v:
                found[pid] = positions[pid]
        return found.values()
