"""Per-agent exposure kept incrementally, so a buy's limit checks are O(1), not O(positions):
positions not closed (in total and per token), and quote committed per token (open cost plus
buys in flight plus buys resting), which `sizing.max_per_token` caps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from .lifecycle import PositionStatus
from .model import Order, Position, RestingEntry


class Exposure:
    """One agent's exposure: `open` positions not closed, `by_token` those per token, `committed`
    quote atomic units per token (open cost plus buys in flight)."""

    __slots__ = ("open", "by_token", "committed")

    def __init__(self) -> None:
        self.open = 0
        self.by_token: defaultdict[str, int] = defaultdict(int)
        self.committed: defaultdict[str, int] = defaultdict(int)

    def opened(self, token: str, reserved: int) -> None:
        """A position in `token` opened with `reserved` quote atomic units committed."""
        self.open += 1
        self.by_token[token] += 1
        self.committed[token] += reserved

    def closed(self, token: str) -> None:
        """A position in `token` closed (or its entry failed)."""
        self.open -= 1
        self.by_token[token] -= 1

    def commit(self, token: str, delta: int) -> None:
        """Change the quote committed to `token` by `delta` atomic units (signed)."""
        self.committed[token] += delta

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """The exposure as a comparable value: (open, by_token, committed), zeros left out."""
        return (
            self.open,
            {k: v for k, v in self.by_token.items() if v},
            {k: v for k, v in self.committed.items() if v},
        )


def rebuild(
    positions: Iterable[Position],
    orders: Iterable[Order],
    entries: Iterable[RestingEntry] = (),
) -> Exposure:
    """Exposure from scratch: used by recovery, and by tests as the oracle."""
    exp = Exposure()
    for entry in entries:
        exp.commit(entry.token, entry.amount)
    for p in positions:
        if p.status != PositionStatus.CLOSED:
            exp.opened(p.token, p.cost)
    for o in orders:
        if o.side == "buy":
            exp.commit(o.token, o.amount_in)
    return exp
