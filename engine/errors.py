"""The one error hierarchy of tradingd; the control port maps each class to a status and code."""

from __future__ import annotations

from typing import Any


class TradingdError(Exception):
    """Base class. `code` is the stable snake_case identifier clients see."""

    code = "error"
    status = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationError(TradingdError):
    """Input that is well-formed JSON but breaks a rule; `details.path` names the field."""

    code = "validation_error"
    status = 422

    def __init__(self, message: str, path: str = "$", details: dict[str, Any] | None = None):
        super().__init__(message, {"path": path, **(details or {})})
        self.path = path


class NotFound(TradingdError):
    """No such entity (agent, position, order, signal, key, wallet, or no known price for a
    token): 404."""

    code = "not_found"
    status = 404


class Conflict(TradingdError):
    """The request clashes with the current state (an id that exists, an agent with open
    positions or orders in flight, a position already closing, a locked wallet): 409."""

    code = "conflict"
    status = 409


class Unavailable(TradingdError):
    """A dependency the request needs is down or too slow (the store, a history read): 503;
    the same request may succeed later."""

    code = "unavailable"
    status = 503


class InvariantViolation(TradingdError):
    """An illegal state transition: a bug, never a user error. Fails loudly."""

    code = "invariant_violation"
    status = 500


class VenueError(TradingdError):
    """A venue could not execute an order. `transient` True: the same order may be tried again
    (a timeout, a dropped connection); False: it never will succeed as sent (a rejection).
    `fee`: quote atomic units the failed attempts cost anyway. `unresolved` True: the order
    exists (or may) on the venue and its outcome is not known yet: it is never failed (that
    would release money still in motion), only tried again. `retry_after_s`: the venue asked
    to wait at least this long (a rate limit, a ban), or None."""

    code = "venue_error"
    status = 502

    def __init__(
        self,
        message: str,
        transient: bool = False,
        details: dict[str, Any] | None = None,
        fee: int = 0,
        *,
        unresolved: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.transient = transient
        self.unresolved = unresolved
        self.retry_after_s = retry_after_s
        # Quote atomic units the failed attempts still cost (fees of transactions that landed
        # with an error): booked by Engine.on_order_failed.
        self.fee = fee
