"""History the engine keeps in memory, bounded; the rest is in Postgres (the system of record,
read by the control port) or, with the memory store, gone. `HistoryBounds` holds the bounds;
`SignalWindow` is the dedupe window of signal records."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from msgspec import Struct

if TYPE_CHECKING:
    from .state import SignalRecord


class HistoryBounds(Struct, frozen=True, kw_only=True):
    """What the engine keeps in memory of history a client can grow. Every bound is at least 1.

    Signals (the dedupe window): a signal record (the signal, its client id and one execution
    per agent it reached) is kept while it is younger than `signal_window_ms` (ms, by its
    `received_at`) and among the newest `signals_kept` records, and while the records hold at
    most `signal_executions_kept` executions in all; the oldest leave first. Closed positions:
    the last `closed_kept` closed per agent."""

    signal_window_ms: int = 24 * 3600 * 1000
    signals_kept: int = 100_000
    signal_executions_kept: int = 1_000_000
    closed_kept: int = 1_000


class SignalWindow:
    """Signal records oldest first (`records`, by signal id) and the client ids they hold
    (`by_client`), within `HistoryBounds`. Each record is added and evicted once: O(1)
    amortised per signal, and no walk over the window."""

    def __init__(self, bounds: HistoryBounds) -> None:
        self.bounds = bounds
        self.records: OrderedDict[str, SignalRecord] = OrderedDict()
        self.by_client: dict[str, str] = {}
        self.executions_held = 0  # executions in `records`
        self.tokens: dict[str, int] = {}  # token -> records naming it (prices of watched tokens)
        self.forgotten = 0  # records evicted so far (Postgres may still hold them)

    def keep(self, record: SignalRecord) -> None:
        """Add `record` as the newest."""
        self.records[record.signal.id] = record
        token = record.signal.token
        self.tokens[token] = self.tokens.get(token, 0) + 1
        if record.signal.client_id is not None:
            self.by_client[record.signal.client_id] = record.signal.id
        self.executions_held += len(record.executions)

    def executions_added(self, record: SignalRecord, before: int) -> None:
        """`record` (kept with `before` executions) now holds more."""
        if record.signal.id in self.records:
            self.executions_held += len(record.executions) - before

    def evict(self, now: int, keep: int = 0) -> None:
        """Evict the oldest records beyond the window: aged `signal_window_ms` or more at `now`
        (epoch ms), or past the count or executions bound; never the newest `keep`."""
        b = self.bounds
        records = self.records
        cutoff = now - b.signal_window_ms
        while len(records) > keep:
            oldest = next(iter(records.values()))
            if (
                len(records) <= b.signals_kept
                and self.executions_held <= b.signal_executions_kept
                and oldest.signal.received_at > cutoff
            ):
                return
            records.popitem(last=False)
            token = oldest.signal.token
            left = self.tokens[token] - 1
            if left:
                self.tokens[token] = left
            else:
                del self.tokens[token]
            self.forgotten += 1
            self.executions_held -= len(oldest.executions)
            client_id = oldest.signal.client_id
            if client_id is not None and self.by_client.get(client_id) == oldest.signal.id:
                del self.by_client[client_id]
