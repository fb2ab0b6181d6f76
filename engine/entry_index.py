"""Which resting entries a tick crosses or the clock expires: the per-token entry index, and the
naive scan that is its oracle. Both return the entries they pop; `priority_order` sorts the
ones crossed on one tick, and the caller decides what each does.

Per token, limit buys sit in a max-heap on their limit price (a tick at or below the highest
crosses it first) and stop buys in a min-heap on their trigger price; one global heap holds the
expiries. A removed entry leaves stale heap entries behind, skipped when popped and compacted
away when they outnumber the live ones, so a tick costs O(log n) per entry it crosses plus
O(1), independent of the entries it does not cross."""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import Protocol

from .model import RestingEntry
from .money import exact


class EntryBook(Protocol):
    """What the engine asks of a resting-entry index (EntryIndex, or NaiveEntries as its
    oracle). Prices are USD per whole token, times epoch ms."""

    def add(self, entry: RestingEntry) -> None:
        """Track a resting entry."""

    def remove(self, entry: RestingEntry) -> None:
        """Stop tracking an entry (cancelled, or its agent deleted); unknown ones are ignored."""

    def crossed(self, token: str, price: float) -> list[RestingEntry]:
        """Pop and return `token`'s entries that `price` meets: limit buys with a limit at or
        above it, stop buys with a trigger at or below it. Any order: see priority_order."""

    def expired(self, now: int) -> list[RestingEntry]:
        """Pop and return the entries whose `expires_at` is before `now` (epoch ms)."""

    def __len__(self) -> int:
        """Entries tracked."""


def meets(entry: RestingEntry, price: float) -> bool:
    """Whether `price` (USD) meets the entry: at or below a limit, at or above a stop. The two
    prices are compared as the floats they were written as: no ratio is computed."""
    return price <= entry.price_usd if entry.type == "limit" else price >= entry.price_usd


def priority_order(entries: list[RestingEntry], price: float) -> list[RestingEntry]:
    """The entries one tick at `price` crossed, in price-time priority: the entry the price went
    furthest through first (a higher limit, a lower stop; between kinds, the larger distance in
    USD, exact from the prices as written), then the earlier arrival (`seq`)."""

    def key(e: RestingEntry) -> tuple[Fraction, int]:
        through = exact(e.price_usd) - exact(price)
        return (-through if e.type == "limit" else through, e.seq)

    return sorted(entries, key=key)


class NaiveEntries:
    """The oracle: every entry of the token is looked at on every tick, every entry on every
    clock step."""

    def __init__(self) -> None:
        self._all: dict[str, RestingEntry] = {}

    def add(self, entry: RestingEntry) -> None:
        """Track the entry."""
        self._all[entry.id] = entry

    def remove(self, entry: RestingEntry) -> None:
        """Stop tracking the entry."""
        self._all.pop(entry.id, None)

    def crossed(self, token: str, price: float) -> list[RestingEntry]:
        """Scan all entries: pop those of `token` that `price` meets."""
        out = [e for e in self._all.values() if e.token == token and meets(e, price)]
        for e in out:
            del self._all[e.id]
        return out

    def expired(self, now: int) -> list[RestingEntry]:
        """Scan all entries: pop those expired before `now`."""
        out = [e for e in self._all.values() if e.expires_at < now]
        for e in out:
            del self._all[e.id]
        return out

    def __len__(self) -> int:
        return len(self._all)


class _TokenEntries:
    __slots__ = ("limits", "stops")

    def __init__(self) -> None:
        self.limits: list[tuple[float, int, str]] = []  # (-limit price, seq, id): max-heap
        self.stops: list[tuple[float, int, str]] = []  # (trigger price, seq, id): min-heap


class EntryIndex:
    """The per-token entry index (an EntryBook): a tick pops only the entries it crosses."""

    def __init__(self) -> None:
        self._books: dict[str, _TokenEntries] = {}
        self._live: dict[str, RestingEntry] = {}
        self._expiries: list[tuple[int, int, str]] = []  # (expires_at, seq, id)
        self._stale = 0  # heap items whose entry left

    def add(self, entry: RestingEntry) -> None:
        """Index the entry under its token and its expiry."""
        book = self._books.get(entry.token)
        if book is None:
            book = self._books[entry.token] = _TokenEntries()
        item = (entry.seq, entry.id)
        if entry.type == "limit":
            heapq.heappush(book.limits, (-entry.price_usd, *item))
        else:
            heapq.heappush(book.stops, (entry.price_usd, *item))
        heapq.heappush(self._expiries, (entry.expires_at, *item))
        self._live[entry.id] = entry

    def remove(self, entry: RestingEntry) -> None:
        """Forget the entry: its heap items go stale (two: its price's and its expiry's)."""
        if self._live.pop(entry.id, None) is not None:
            self._stale += 2
            self._compact()

    def crossed(self, token: str, price: float) -> list[RestingEntry]:
        """Pop `token`'s limit buys at or above `price` and stop buys at or below it."""
        book = self._books.get(token)
        if book is None:
            return []
        limits, stops = book.limits, book.stops
        if (not limits or -limits[0][0] < price) and (not stops or stops[0][0] > price):
            return []  # the common tick: nothing crossed, nothing allocated
        out: list[RestingEntry] = []
        while limits and -limits[0][0] >= price:
            self._take(heapq.heappop(limits)[2], out)
        while stops and stops[0][0] <= price:
            self._take(heapq.heappop(stops)[2], out)
        if not limits and not stops:
            del self._books[token]
        self._compact()
        return out

    def expired(self, now: int) -> list[RestingEntry]:
        """Pop the entries whose expiry is before `now`."""
        heap = self._expiries
        if not heap or heap[0][0] >= now:
            return []
        out: list[RestingEntry] = []
        while heap and heap[0][0] < now:
            self._take(heapq.heappop(heap)[2], out)
        self._compact()
        return out

    def _take(self, entry_id: str, out: list[RestingEntry]) -> None:
        entry = self._live.pop(entry_id, None)
        if entry is None:
            self._stale -= 1  # an item of an entry that already left
        else:
            out.append(entry)
            self._stale += 1  # its other item (expiry, or price) is stale now

    def _compact(self) -> None:
        if self._stale <= 2 * len(self._live) + 1024:
            return
        live = self._live
        for token in list(self._books):
            book = self._books[token]
            book.limits = [i for i in book.limits if i[2] in live]
            book.stops = [i for i in book.stops if i[2] in live]
            heapq.heapify(book.limits)
            heapq.heapify(book.stops)
            if not book.limits and not book.stops:
                del self._books[token]
        self._expiries = [i for i in self._expiries if i[2] in live]
        heapq.heapify(self._expiries)
        self._stale = 0

    def __len__(self) -> int:
        return len(self._live)
