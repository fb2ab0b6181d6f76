"""Stops of one token, grouped by shared peak, so a tick costs O(log n) whatever n is.

Every position on a token sees the same prices, so positions group by peak: a price x merges all
groups with peak <= x into one group with peak x (union-find, smaller into larger). A stop is
strictly below its peak, so a group at the running high cannot trigger; its stops are recomputed
on the first tick below its new peak. Recomputing is cheap because inside a group:

- a *dormant* position's stop cannot move until the peak reaches its activation price (e.g. a
  zones stop stays at `default_pct` until +20%, a custom stop until its next level): it waits in
  a heap keyed by that price and is not touched;
- an *active trailing* position's stop is peak × (1 − trail_pct), the same for every member with
  that trail: one heap entry stands for all of them;
- only the other active positions (fixed/zones/exponential past +20%) are recomputed one by one.

Heap keys are relaxed by a few ulps: float rounding may add a candidate, never hide one."""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left

from .exits import stop_gain_estimate, stop_price_estimate
from .model import Position

UP = 1.0 + 1e-9
DOWN = 1.0 - 1e-9
_NEVER = math.inf

Member = tuple[Position, int]  # (position, placement slot it was filed under)


class Group:
    """Positions of one token sharing one peak (USD): dormant stops in a heap by activation peak,
    active trailing stops by trail percent, the other active stops one by one. Merged groups
    point at their root (`parent`, union-find)."""

    __slots__ = ("peak", "parent", "dormant", "active", "trails", "trail_live", "trail_stamp")

    def __init__(self, peak: float) -> None:
        self.peak = peak
        self.parent: Group | None = None
        self.dormant: list[tuple[float, int, str, int]] = []  # (activation peak, seq, id, slot)
        self.active: list[Member] = []
        self.trails: dict[float, list[Member]] = {}  # trail_pct -> members
        self.trail_live: dict[float, int] = {}
        self.trail_stamp: dict[float, int] = {}  # trail_pct -> stamp of its live heap entry

    def size(self) -> int:
        """Members still filed in the group (dormant, active, live trailing), a count."""
        return len(self.dormant) + len(self.active) + sum(self.trail_live.values())


def find(group: Group) -> Group:
    """The root group `group` was merged into (itself if never merged); compresses the path on the
    way."""
    root = group
    while root.parent is not None:
        root = root.parent
    while group.parent is not None:  # path compression
        group.parent, group = root, group.parent
    return root


def _union(a: Group, b: Group) -> Group:
    if a.size() < b.size():
        a, b = b, a
    if len(b.dormant) > len(a.dormant) // 8:
        a.dormant.extend(b.dormant)
        heapq.heapify(a.dormant)
    else:
        for entry in b.dormant:
            heapq.heappush(a.dormant, entry)
    a.active.extend(b.active)
    for t, members in b.trails.items():
        a.trails.setdefault(t, []).extend(members)
        a.trail_live[t] = a.trail_live.get(t, 0) + b.trail_live.get(t, 0)
    a.trail_stamp.clear()  # the merged group is dirty: its recompute files fresh entries
    b.dormant, b.active, b.trails, b.trail_live, b.trail_stamp = [], [], {}, {}, {}
    b.parent = a
    return a


def activation_peak(position: Position, s: float) -> float:
    """The lowest peak at which the stop gain could rise above `s`; 0 when it rises with any
    new peak. Below it the stop is exactly `s` (each mode is non-decreasing in the peak). The
    float is relaxed DOWN a few ulps: waking a position early costs a recompute, late a miss."""
    sl = position.config.stop_loss
    entry = position.entry_price_usd
    if sl.mode == "trailing":
        return entry * (1.0 + s / 100.0) / (1.0 - sl.trail_pct / 100.0) * DOWN
    if sl.mode == "custom":
        for level in sl.levels:
            effective = level.stop_pct if level.stop_pct > 0 else sl.default_pct
            if effective > s:
                return entry * (1.0 + level.gain_pct / 100.0) * DOWN
        return _NEVER
    # fixed, zones, exponential: +20% first
    return entry * 1.2 * DOWN if s <= sl.default_pct else 0.0


class StopBook:
    """The stops of one token, grouped by shared peak (see the module note): `advance` moves peaks
    with the price, `triggered` pops the stops at or above a price. Candidates only;
    `exits.decide()` decides."""

    def __init__(self) -> None:
        self.groups: list[Group] = []  # sorted by peak, highest first
        self.dirty: list[Group] = []
        self.heap: list[tuple[float, int, str, int]] = []  # (-key, seq, id or "", stamp)
        self.live = 0
        self._group_of: dict[str, Group] = {}
        self._slot: dict[str, int] = {}
        self._stamp: dict[str, int] = {}  # id -> stamp of its own live heap entry
        self._trail_of: dict[str, tuple[Group, float]] = {}
        self._trail_entries: dict[int, tuple[Group, float]] = {}
        self._positions: dict[str, Position] = {}
        self._counter = 0
        self._trail_seq = 0

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # -- membership -------------------------------------------------------------------------

    def add(self, position: Position, peak: float) -> None:
        """File an open position in the group whose peak is `peak` (USD), creating it if none has
        that peak. Its stop is placed by `place`."""
        groups = self.groups
        i = bisect_left(groups, -peak, key=lambda g: -g.peak)
        if i < len(groups) and groups[i].peak == peak:
            group = groups[i]
        else:
            group = Group(peak)
            groups.insert(i, group)
        self._group_of[position.id] = group
        self._positions[position.id] = position
        self.live += 1

    def remove(self, position: Position) -> None:
        """Unfile the position (its heap entries go stale). A position not in the book is ignored.
        Unfile the position (its heap entries go stale). A position not in the book is ignored."""
        pid = position.id
        if self._positions.pop(pid, None) is None:
            return
        self._unfile(pid)
        self._slot.pop(pid, None)
        self._group_of.pop(pid, None)
        self.live -= 1

    def peak_of(self, position: Position) -> float | None:
        """The running high in USD of the position's group, or None if the position is not in the
        book."""
        group = self._group_of.get(position.id)
        return find(group).peak if group is not None else None

    def _unfile(self, pid: str) -> None:
        self._stamp.pop(pid, None)
        trail = self._trail_of.pop(pid, None)
        if trail is not None:
            group = find(trail[0])
            group.trail_live[trail[1]] = group.trail_live.get(trail[1], 1) - 1

    # -- placement --------------------------------------------------------------------------

    def place(self, position: Position, push_trail: bool = True) -> None:
        """File an open position's stop for its group's current peak; older filings go stale."""
        pid = position.id
        self._unfile(pid)
        if not position.config.stop_loss.enabled:
            return
        group = find(self._group_of[pid])
        peak = group.peak
        # Float estimates: keys are relaxed by UP, and decisions are exact (exits.decide). The
        # ratcheted S is stored by the engine's refresh(), exactly, never from here.
        s = stop_gain_estimate(position, peak)
        position.peak_price_usd = peak
        slot = self._next()
        self._slot[pid] = slot
        wake = activation_peak(position, s)
        if wake > peak:
            heapq.heappush(group.dormant, (wake, position.seq, pid, slot))
            self._push_own(position, s)
        elif position.config.stop_loss.mode == "trailing":
            t = position.config.stop_loss.trail_pct
            group.trails.setdefault(t, []).append((position, slot))
            group.trail_live[t] = group.trail_live.get(t, 0) + 1
            self._trail_of[pid] = (group, t)
            if push_trail and t not in group.trail_stamp:
                self._push_trail(group, t)
        else:
            group.active.append((position, slot))
            self._push_own(position, s)

    def _push_own(self, position: Position, s: float) -> None:
        stamp = self._next()
        self._stamp[position.id] = stamp
        heapq.heappush(
            self.heap, (-stop_price_estimate(position, s) * UP, position.seq, position.id, stamp)
        )

    def _push_trail(self, group: Group, t: float) -> None:
        stamp = self._next()
        self._trail_seq -= 1  # unique and below every position seq: never compares further
        group.trail_stamp[t] = stamp
        self._trail_entries[stamp] = (group, t)
        heapq.heappush(
            self.heap, (-group.peak * (1.0 - t / 100.0) * UP, self._trail_seq, "", stamp)
        )

    def _recompute(self, group: Group) -> None:
        peak, slots = group.peak, self._slot
        positions = self._positions
        dormant = group.dormant
        while dormant and dormant[0][0] <= peak:
            _, _, pid, slot = heapq.heappop(dormant)
            if slots.get(pid) == slot:
                self.place(positions[pid], push_trail=False)
        active, group.active = group.active, []
        for position, slot in active:
            if slots.get(position.id) == slot:
                self.place(position, push_trail=False)
        for t, members in group.trails.items():
            live = group.trail_live.get(t, 0)
            if len(members) > 2 * live + 16:
                group.trails[t] = members = [m for m in members if slots.get(m[0].id) == m[1]]
            if live > 0:
                self._push_trail(group, t)

    # -- ticks ------------------------------------------------------------------------------

    def advance(self, price: float) -> None:
        """Raise the peak of every group at or below `price`; recompute groups it left."""
        groups = self.groups
        if groups and groups[-1].peak <= price:
            dirty = self.dirty
            merged = groups.pop()
            raised = merged.peak < price or merged in dirty
            while groups and groups[-1].peak <= price:
                other = groups.pop()
                raised = raised or other.peak < price or other in dirty
                merged = _union(merged, other)
            merged.peak = price
            groups.append(merged)
            if raised and merged not in dirty:
                merged.trail_stamp.clear()
                dirty.append(merged)
        if self.dirty:
            still = []
            for group in self.dirty:
                if group.parent is not None:
                    continue  # absorbed into another group, which is dirty itself
                if group.peak > price:
                    self._recompute(group)
                else:
                    still.append(group)
            self.dirty = still
        if len(self.heap) > 4 * self.live + 1024:
            self._compact()

    def triggered(self, price: float, found: dict[str, Position]) -> None:
        """Pop every filing whose stop is at or above `price` into `found`."""
        heap, stamps, slots = self.heap, self._stamp, self._slot
        while heap and -heap[0][0] >= price:
            _, _, pid, stamp = heapq.heappop(heap)
            if pid:
                if stamps.get(pid) == stamp:
                    del stamps[pid]
                    found[pid] = self._positions[pid]
                continue
            group, t = self._trail_entries.pop(stamp)
            if group.parent is not None or group.trail_stamp.get(t) != stamp:
                continue
            del group.trail_stamp[t]
            members = group.trails.pop(t, [])
            group.trail_live.pop(t, None)
            for position, slot in members:
                if slots.get(position.id) == slot:
                    self._trail_of.pop(position.id, None)
                    found[position.id] = position

    def _compact(self) -> None:
        def valid(entry: tuple[float, int, str, int]) -> bool:
            if entry[2]:
                return self._stamp.get(entry[2]) == entry[3]
            owner = self._trail_entries.get(entry[3])
            return (
                owner is not None
                and owner[0].parent is None
                and owner[0].trail_stamp.get(owner[1]) == entry[3]
            )

        self.heap = [e for e in self.heap if valid(e)]
        heapq.heapify(self.heap)
        live_stamps = {e[3] for e in self.heap if not e[2]}
        self._trail_entries = {k: v for k, v in self._trail_entries.items() if k in live_stamps}
