"""Which positions must be looked at on a tick: the per-token trigger index, and the naive scan
that is its oracle. Both only *propose* candidates; `exits.decide()` makes every decision.

The index keeps, per token, heaps of trigger prices (stops below, take-profit/moon-bag and
stale-band entries above, DCA and stale-band entries below) plus one global heap of deadlines
(max hold, stale eligibility). Keys are relaxed by a few ulps so float rounding can only add a
spurious candidate, never hide a real one.

Trailing peaks: every position on a token sees the same price path, so positions group by peak.
Groups are kept sorted by peak; a price x merges all groups with peak <= x into one group whose
peak is x (a union-find, smaller into larger). Stops are strictly below the peak, so a group at
the running high cannot trigger: its stops are recomputed once, on the first tick below its new
peak. Per-tick cost is O(log n) for the heaps plus amortized merging, independent of the number
of open positions that do not trigger."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable
from typing import Protocol

from engine.exits import (
    dca_trigger_price,
    max_hold_at,
    moon_bag_trigger_price,
    next_take_profit_price,
    ratcheted_stop_gain,
    stale_band,
    stale_eligible_at,
    stop_price,
)
from engine.model import Position

_UP = 1.0 + 1e-9
_DOWN = 1.0 - 1e-9


class ExitIndex(Protocol):
    def add(self, position: Position, now: int, peak: float | None = None) -> None: ...
    def rearm(self, position: Position, now: int, fresh: bool) -> None: ...
    def remove(self, position: Position) -> None: ...
    def on_price(self, token: str, price: float) -> Iterable[Position]: ...
    def due(self, now: int) -> Iterable[Position]: ...
    def peak_of(self, position: Position) -> float: ...


class NaiveScan:
    """The oracle: every position is a candidate on every tick and every clock step."""

    def __init__(self) -> None:
        self._by_token: dict[str, dict[str, Position]] = {}
        self._all: dict[str, Position] = {}

    def add(self, position: Position, now: int, peak: float | None = None) -> None:
        position.peak_price_usd = position.entry_price_usd if peak is None else peak
        self._by_token.setdefault(position.token, {})[position.id] = position
        self._all[position.id] = position

    def rearm(self, position: Position, now: int, fresh: bool) -> None:
        return None

    def remove(self, position: Position) -> None:
        self._by_token.get(position.token, {}).pop(position.id, None)
        self._all.pop(position.id, None)

    def on_price(self, token: str, price: float) -> Iterable[Position]:
        for p in self._by_token.get(token, {}).values():
            if price > p.peak_price_usd:
                p.peak_price_usd = price
        return ()  # every position comes back from due(): one candidate list, no duplicates

    def due(self, now: int) -> Iterable[Position]:
        return list(self._all.values())

    def peak_of(self, position: Position) -> float:
        return position.peak_price_usd


class _Group:
    __slots__ = ("peak", "members", "parent")

    def __init__(self, peak: float, members: list[Position]) -> None:
        self.peak = peak
        self.members = members
        self.parent: _Group | None = None


def _find(group: _Group) -> _Group:
    root = group
    while root.parent is not None:
        root = root.parent
    while group.parent is not None:  # path compression
        group.parent, group = root, group.parent
    return root


def _union(a: _Group, b: _Group) -> _Group:
    if len(a.members) < len(b.members):
        a, b = b, a
    a.members.extend(b.members)
    b.members = []
    b.parent = a
    return a


class _TokenBook:
    __slots__ = ("groups", "dirty", "stops", "below", "above", "live", "last_price")

    def __init__(self) -> None:
        self.groups: list[_Group] = []  # sorted by peak, highest first
        self.dirty: list[_Group] = []
        self.stops: list[tuple[float, int, str, int]] = []  # (-key, seq, id, stamp)
        self.below: list[tuple[float, int, str, int]] = []  # (-key, seq, id, version)
        self.above: list[tuple[float, int, str, int]] = []  # (key, seq, id, version)
        self.live = 0
        self.last_price: float | None = None


class TriggerIndex:
    def __init__(self) -> None:
        self._books: dict[str, _TokenBook] = {}
        self._positions: dict[str, Position] = {}
        self._version: dict[str, int] = {}
        self._stop_stamp: dict[str, int] = {}
        self._armed_gain: dict[str, float] = {}  # the stop gain each live stop entry encodes
        self._group_of: dict[str, _Group] = {}
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
        groups = book.groups
        i = bisect_left(groups, -peak, key=lambda g: -g.peak)
        if i < len(groups) and groups[i].peak == peak:
            group = groups[i]
            group.members.append(position)
        else:
            group = _Group(peak, [position])
            groups.insert(i, group)
        self._group_of[position.id] = group
        self._positions[position.id] = position
        book.live += 1
        self.rearm(position, now, fresh=True)

    def remove(self, position: Position) -> None:
        if self._positions.pop(position.id, None) is None:
            return
        self._version.pop(position.id, None)
        self._stop_stamp.pop(position.id, None)
        self._armed_gain.pop(position.id, None)
        self._group_of.pop(position.id, None)
        self._books[position.token].live -= 1

    def peak_of(self, position: Position) -> float:
        group = self._group_of.get(position.id)
        return _find(group).peak if group is not None else position.peak_price_usd

    # -- arming -----------------------------------------------------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _stop_entry(self, position: Position, peak: float) -> tuple[float, int, str, int]:
        s = ratcheted_stop_gain(position, peak)
        position.stop_gain_pct = s
        position.peak_price_usd = peak
        stamp = self._next()
        self._stop_stamp[position.id] = stamp
        self._armed_gain[position.id] = s
        return (-stop_price(position, s) * _UP, position.seq, position.id, stamp)

    def rearm(self, position: Position, now: int, fresh: bool) -> None:
        """(Re)place every trigger of an open position; older entries become stale."""
        book = self._books[position.token]
        version = self._next()
        self._version[position.id] = version
        seq, pid = position.seq, position.id
        if position.config.stop_loss.enabled:
            heapq.heappush(book.stops, self._stop_entry(position, self.peak_of(position)))
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
        stamp, version = self._stop_stamp, self._version
        if len(book.stops) > limit:
            book.stops = [e for e in book.stops if stamp.get(e[2]) == e[3]]
            heapq.heapify(book.stops)
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

    def _advance_peaks(self, book: _TokenBook, price: float) -> None:
        groups = book.groups
        if groups and groups[-1].peak <= price:
            merged = groups.pop()
            dirty = book.dirty
            raised = merged.peak < price or merged in dirty
            while groups and groups[-1].peak <= price:
                other = groups.pop()
                raised = raised or other.peak < price or other in dirty
                merged = _union(merged, other)
            merged.peak = price
            groups.append(merged)
            if raised and merged not in book.dirty:
                book.dirty.append(merged)
        if book.dirty:
            still = []
            for group in book.dirty:
                if group.parent is not None:
                    continue  # absorbed into another group, which is dirty itself
                if group.peak > price:
                    self._recompute(book, group)
                else:
                    still.append(group)
            book.dirty = still

    def _recompute(self, book: _TokenBook, group: _Group) -> None:
        version = self._version
        live = [p for p in group.members if p.id in version]
        group.members = live
        peak = group.peak
        stamps, armed = self._stop_stamp, self._armed_gain
        entries = []
        for p in live:
            if not p.config.stop_loss.enabled:
                continue
            if p.id in stamps and ratcheted_stop_gain(p, peak) == armed.get(p.id):
                p.peak_price_usd = peak  # the stop did not move: its heap entry stays valid
                continue
            entries.append(self._stop_entry(p, peak))
        stops = book.stops
        if len(entries) > len(stops) // 8:
            stops.extend(entries)
            heapq.heapify(stops)
        else:
            for entry in entries:
                heapq.heappush(stops, entry)
        self._compact(book)

    def on_price(self, token: str, price: float) -> Iterable[Position]:
        book = self._books.get(token)
        if book is None:
            book = self._books[token] = _TokenBook()
        book.last_price = price
        if not book.live:
            return ()
        self._advance_peaks(book, price)
        found: dict[str, Position] = {}
        positions, stamp, version = self._positions, self._stop_stamp, self._version
        stops = book.stops
        while stops and -stops[0][0] >= price:
            _, _, pid, st = heapq.heappop(stops)
            if stamp.get(pid) == st:
                del stamp[pid]
                found[pid] = positions[pid]
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
