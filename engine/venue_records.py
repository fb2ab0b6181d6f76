"""What live venues record on the engine before they act, and what they tell it about markets:
a signed swap or an exchange request is recorded on its order (written through before it is
sent, so a restart resolves it instead of sending again), and an exchange market's order-size
rules are set or changed. Transitions of the Engine, kept apart from its trading ones."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from . import events as ev
from .assets import is_market
from .errors import InvariantViolation, NotFound, ValidationError
from .lots import InstrumentRules
from .model import ExchangeSubmission, Order, SwapSubmission
from .state import EngineState


def record_swap(state: EngineState, order_id: str, swap: SwapSubmission) -> Order:
    """`swap` on the order in flight (event SwapSubmitted). Raises NotFound, InvariantViolation
    (an attempt not newer than the recorded one)."""
    order = _next_attempt(state, order_id, "swap", swap.attempt, _swap_attempt)
    order.swap = swap
    state._emit(ev.SwapSubmitted(ts=state.clock(), order=msgspec.structs.replace(order)))
    return order


def record_exchange_request(state: EngineState, order_id: str, sent: ExchangeSubmission) -> Order:
    """`sent` on the order in flight (event ExchangeOrderSent). Raises NotFound,
    InvariantViolation (an attempt not newer than the recorded one)."""
    order = _next_attempt(state, order_id, "exchange", sent.attempt, _exchange_attempt)
    order.exchange = sent
    state._emit(ev.ExchangeOrderSent(ts=state.clock(), order=msgspec.structs.replace(order)))
    return order


def set_rules(state: EngineState, token: str, rules: InstrumentRules) -> None:
    """`token`'s order-size rules from now on; its decimals are fixed once known. Raises
    ValidationError (not a market, other decimals, rules out of bounds)."""
    if not is_market(token):
        raise ValidationError(f"not an exchange market: {token[:60]!r}", "$.token")
    known = state.decimals.get(token)
    if known is not None and known != rules.decimals:
        raise ValidationError(
            f"decimals {rules.decimals} differ from {token}'s known decimals {known}",
            "$.decimals",
        )
    if rules.step < 1 or rules.min_amount < 0 or not (rules.min_cost >= 0 and rules.cost_step >= 0):
        raise ValidationError("step must be >= 1, minimums >= 0", "$.rules")
    state.decimals[token] = rules.decimals
    state.instruments[token] = rules


def _swap_attempt(order: Order) -> int:
    return order.swap.attempt if order.swap is not None else 0


def _exchange_attempt(order: Order) -> int:
    return order.exchange.attempt if order.exchange is not None else 0


def _next_attempt(
    state: EngineState, order_id: str, what: str, attempt: int, recorded: Callable[[Order], int]
) -> Order:
    order = state.orders.get(order_id)
    if order is None:
        raise NotFound(f"no order in flight {order_id!r}", {"order_id": order_id})
    if attempt <= recorded(order):
        raise InvariantViolation(
            f"order {order_id}: {what} attempt {attempt} after {recorded(order)}",
            {"order_id": order_id},
        )
    return order
