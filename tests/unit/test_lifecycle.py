"""The position and order state machines: one table per entity covers every status, a legal
move changes the status, an illegal one raises InvariantViolation and changes nothing; the
statuses are the strings the wire has always carried."""

from __future__ import annotations

import msgspec
import pytest
from tradingd.engine.config import config_from_builtins
from tradingd.engine.errors import InvariantViolation, NotFound
from tradingd.engine.lifecycle import (
    ORDER_TRANSITIONS,
    POSITION_TRANSITIONS,
    OrderStatus,
    PositionStatus,
    move_order,
    move_position,
)
from tradingd.engine.model import Order, Position

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]


def position(status: PositionStatus) -> Position:
    return Position(
        id="pos_1",
        seq=1,
        agent_id="alpha",
        token=T,
        symbol=None,
        decimals=6,
        config=config_from_builtins({}),
        status=status,
    )


def order(status: OrderStatus) -> Order:
    return Order(
        id="ord_1",
        agent_id="alpha",
        position_id="pos_1",
        side="buy",
        purpose="entry",
        token=T,
        amount_in=1,
        reason="signal",
        created_at=0,
        venue="paper",
        quote="SOL",
        quote_decimals=9,
        token_decimals=6,
        slippage_bps=0,
        fee_bps=0,
        status=status,
    )


def test_each_table_names_every_status_and_only_statuses():
    assert set(POSITION_TRANSITIONS) == set(PositionStatus)
    assert set(ORDER_TRANSITIONS) == set(OrderStatus)
    assert all(to <= set(PositionStatus) for to in POSITION_TRANSITIONS.values())
    assert all(to <= set(OrderStatus) for to in ORDER_TRANSITIONS.values())


def test_statuses_are_the_strings_of_the_wire():
    assert [s.value for s in PositionStatus] == ["opening", "open", "closing", "closed"]
    assert [s.value for s in OrderStatus] == ["submitted", "filled", "failed"]
    encoded = msgspec.json.encode(position(PositionStatus.CLOSING))
    assert b'"status":"closing"' in encoded
    decoded = msgspec.json.decode(encoded, type=Position)
    assert decoded.status is PositionStatus.CLOSING


def test_the_legal_position_moves_are_exactly_these():
    legal = {(a, b) for a, tos in POSITION_TRANSITIONS.items() for b in tos}
    assert legal == {
        (PositionStatus.OPENING, PositionStatus.OPEN),
        (PositionStatus.OPENING, PositionStatus.CLOSED),
        (PositionStatus.OPEN, PositionStatus.CLOSING),
        (PositionStatus.CLOSING, PositionStatus.OPEN),
        (PositionStatus.CLOSING, PositionStatus.CLOSED),
    }


@pytest.mark.parametrize("start", list(PositionStatus))
@pytest.mark.parametrize("to", list(PositionStatus))
def test_a_position_moves_only_along_its_table(start, to):
    p = position(start)
    if to in POSITION_TRANSITIONS[start]:
        move_position(p, to)
        assert p.status is to
    else:
        with pytest.raises(InvariantViolation):
            move_position(p, to)
        assert p.status is start


@pytest.mark.parametrize("start", list(OrderStatus))
@pytest.mark.parametrize("to", list(OrderStatus))
def test_an_order_moves_only_from_submitted_to_filled_or_failed(start, to):
    o = order(start)
    legal = start is OrderStatus.SUBMITTED and to is not OrderStatus.SUBMITTED
    assert (to in ORDER_TRANSITIONS[start]) == legal
    if legal:
        move_order(o, to)
        assert o.status is to
    else:
        with pytest.raises(InvariantViolation):
            move_order(o, to)
        assert o.status is start


def test_a_second_fill_of_a_settled_order_changes_nothing():
    h = Harness(Clock())
    h.sol()
    h.agent({})
    h.tick(T, 1.0)
    h.signal(T)
    (pending,) = h.pending
    h.settle()
    before = msgspec.json.encode(h.engine.positions[pending.position_id])
    with pytest.raises(NotFound):
        h.engine.on_order_failed(pending.id, "late")
    assert msgspec.json.encode(h.engine.positions[pending.position_id]) == before
