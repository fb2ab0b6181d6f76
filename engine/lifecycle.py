"""The state machines of positions and orders: their statuses, one table of legal transitions
per entity, and the one function per entity that moves a status through its table. The values
are the strings the wire, Redis and Postgres have always carried.

    position: opening -> open | closed (its entry failed)
              open    -> closing (a sell placed)
              closing -> open (the sell filled in part, or failed) | closed (sold out)
    order:    submitted -> filled | failed
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from .errors import InvariantViolation

if TYPE_CHECKING:
    from .model import Order, Position


class PositionStatus(StrEnum):
    """Where a position is in its life. `opening`: its entry buy is in flight; `open`: it
    holds tokens and is watched by the exit rules; `closing`: a sell of it is in flight;
    `closed`: nothing held (sold out, or the entry failed)."""

    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class OrderStatus(StrEnum):
    """Where an order is: `submitted` (money in motion: a buy's quote reserved, or a sale of
    tokens under way), then `filled` or `failed`, both final."""

    SUBMITTED = "submitted"
    FILLED = "filled"
    FAILED = "failed"


POSITION_TRANSITIONS: dict[PositionStatus, frozenset[PositionStatus]] = {
    PositionStatus.OPENING: frozenset({PositionStatus.OPEN, PositionStatus.CLOSED}),
    PositionStatus.OPEN: frozenset({PositionStatus.CLOSING}),
    PositionStatus.CLOSING: frozenset({PositionStatus.OPEN, PositionStatus.CLOSED}),
    PositionStatus.CLOSED: frozenset(),
}

ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.SUBMITTED: frozenset({OrderStatus.FILLED, OrderStatus.FAILED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.FAILED: frozenset(),
}

LIVE = frozenset({PositionStatus.OPENING, PositionStatus.OPEN, PositionStatus.CLOSING})
HOLDING = frozenset({PositionStatus.OPEN, PositionStatus.CLOSING})  # tokens held, exits watched


S = TypeVar("S", PositionStatus, OrderStatus)


def _check(table: Mapping[S, frozenset[S]], kind: str, entity_id: str, now: S, to: S) -> None:
    # A StrEnum member hashes and compares as its string: the table is read without building an
    # enum member per move (this runs on every fill); an unknown status finds no entry.
    if to not in table.get(now, ()):
        raise InvariantViolation(
            f"{kind} {entity_id}: {now} -> {to} is not a legal transition",
            {f"{kind}_id": entity_id, "from": str(now), "to": str(to)},
        )


def move_position(p: Position, to: PositionStatus) -> None:
    """Set `p.status` to `to` if the table allows it from its status now. Raises
    InvariantViolation (and changes nothing) on an illegal transition."""
    _check(POSITION_TRANSITIONS, "position", p.id, p.status, to)
    p.status = to


def move_order(order: Order, to: OrderStatus) -> None:
    """Set `order.status` to `to` if the table allows it from its status now. Raises
    InvariantViolation (and changes nothing) on an illegal transition."""
    _check(ORDER_TRANSITIONS, "order", order.id, order.status, to)
    order.status = to
