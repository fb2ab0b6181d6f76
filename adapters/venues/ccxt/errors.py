"""The one map from CCXT's exceptions (and our own timeout) to ExchangeFailure: a stable reason,
whether the same call may succeed later, whether an order request that failed so may still have
been placed, and whether the operator must be told. Every exchange call goes through
`map_exceptions`; nothing else catches CCXT's errors.

Source: CCXT Manual, "Error Hierarchy" (ccxt/base/errors.py); Binance spot REST "Error codes"
(HTTP 429 rate limit, 418 IP ban with Retry-After, 5xx: "the execution status is UNKNOWN and
could have been a success")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ccxt.base import errors as ccxt_errors
from tradingd.adapters.venues.ccxt.urls import hide_userinfo
from tradingd.engine.errors import VenueError

MESSAGE_CHARS = 300  # an exchange's text is cut here in a message
_URL = re.compile(r"(https?://[^\s?]+)\?\S*")  # a signed URL's query (signature, timestamp)
_SIGNATURE = re.compile(r"(signature|apiKey|api_key|secret|password|passphrase)=[^&\s\"']*", re.I)


# Reasons of an order that exists (or may) on the exchange with an outcome not known yet: the
# runtime keeps it in flight and tries again (VenueError.unresolved), never fails it.
UNRESOLVED = frozenset({"order_open", "order_unresolved"})


class ExchangeFailure(VenueError):
    """An exchange call failed. `reason`: stable snake_case (the order's failure reason);
    `transient`: the same call may succeed later; `retry_after_s`: wait at least this long
    (rate limit, ban), or None; `maybe_placed`: an order request failed after it may have
    reached the exchange (timeout, lost connection, 5xx): look the order up, never resend;
    `alert`: the operator must act (funds, keys, a ban)."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool,
        retry_after_s: float | None = None,
        maybe_placed: bool = False,
        alert: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            message,
            transient,
            {"reason": reason, **(details or {})},
            unresolved=reason in UNRESOLVED,
            retry_after_s=retry_after_s,
        )
        self.reason = reason
        self.maybe_placed = maybe_placed
        self.alert = alert


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` fit for a log line or a message: the account's `secrets` (API key, secret,
    password), any URL's user:password and any signed URL query removed, control characters
    blanked, cut to MESSAGE_CHARS."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = hide_userinfo(text)
    text = _URL.sub(r"\1?…", text)
    text = _SIGNATURE.sub(r"\1=***", text)
    text = "".join(c if c.isprintable() else " " for c in text.strip())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "…"


# (CCXT class, reason, transient, maybe_placed, alert), most specific first: the first match wins.
_MAP: tuple[tuple[type[BaseException], str, bool, bool, bool], ...] = (
    (ccxt_errors.DuplicateOrderId, "duplicate_client_order_id", False, True, False),
    (ccxt_errors.OrderNotFound, "order_not_found", False, False, False),
    (ccxt_errors.InsufficientFunds, "insufficient_funds", False, False, True),
    (ccxt_errors.AccountSuspended, "exchange_account_suspended", False, False, True),
    (ccxt_errors.PermissionDenied, "exchange_permission_denied", False, False, True),
    (ccxt_errors.AuthenticationError, "exchange_auth_failed", False, False, True),
    (ccxt_errors.InvalidOrder, "order_rejected", False, False, False),
    (ccxt_errors.BadSymbol, "unknown_market", False, False, False),
    (ccxt_errors.MarketClosed, "market_closed", True, False, False),
    (ccxt_errors.RestrictedLocation, "exchange_restricted_location", False, False, True),
    (ccxt_errors.OperationRejected, "order_rejected", False, False, False),
    (ccxt_errors.NotSupported, "exchange_not_supported", False, False, False),
    (ccxt_errors.ArgumentsRequired, "exchange_bad_request", False, False, False),
    (ccxt_errors.BadRequest, "exchange_bad_request", False, False, False),
    (ccxt_errors.RateLimitExceeded, "rate_limited", True, False, False),
    (ccxt_errors.DDoSProtection, "rate_limited", True, False, False),
    (ccxt_errors.OnMaintenance, "exchange_maintenance", True, True, False),
    (ccxt_errors.ExchangeNotAvailable, "exchange_unavailable", True, True, False),
    (ccxt_errors.RequestTimeout, "exchange_timeout", True, True, False),
    # the request was refused before it was processed (timestamp outside recvWindow)
    (ccxt_errors.InvalidNonce, "exchange_clock_skew", True, False, False),
    (ccxt_errors.NetworkError, "exchange_network_error", True, True, False),
    (ccxt_errors.BadResponse, "exchange_bad_response", True, True, False),
    (ccxt_errors.OperationFailed, "exchange_operation_failed", True, True, False),
    # any other answer of the exchange to what was asked: the same answer next time
    (ccxt_errors.ExchangeError, "exchange_error", False, False, False),
)
# Binance answers a reused client order id with -2010 "Duplicate order sent." (an InvalidOrder).
_DUPLICATE_TEXT = ("duplicate order sent", "duplicate clientorderid", "duplicated client order")


def exchange_failure(
    exc: BaseException,
    *,
    exchange: str,
    secrets: Iterable[str] = (),
    retry_after_s: float | None = None,
) -> ExchangeFailure:
    """The ExchangeFailure for `exc`, raised by a call to `exchange` (its id): a CCXT error, or
    TimeoutError when our own bound on the call passed. `retry_after_s`: the Retry-After of the
    answer (429/418), if any. Raises nothing; an unknown exception maps to a non-transient
    "exchange_error"."""
    text = redact(str(exc), secrets)
    if isinstance(exc, TimeoutError):
        return ExchangeFailure(
            "exchange_timeout", f"{exchange}: no answer in time", transient=True, maybe_placed=True
        )
    message = f"{exchange}: {type(exc).__name__}: {text}" if text else f"{exchange}: {exc!r}"
    if isinstance(exc, ccxt_errors.InvalidOrder) and any(
        marker in text.lower() for marker in _DUPLICATE_TEXT
    ):
        return ExchangeFailure(
            "duplicate_client_order_id", message, transient=False, maybe_placed=True
        )
    if isinstance(exc, ccxt_errors.DDoSProtection) and not isinstance(
        exc, ccxt_errors.RateLimitExceeded
    ):
        banned = " 418 " in f" {text} "
        return ExchangeFailure(
            "ip_banned" if banned else "rate_limited",
            message,
            transient=True,
            retry_after_s=retry_after_s,
            alert=banned,
        )
    for cls, reason, transient, maybe_placed, alert in _MAP:
        if isinstance(exc, cls):
            return ExchangeFailure(
                reason,
                message,
                transient=transient,
                retry_after_s=retry_after_s if transient else None,
                maybe_placed=maybe_placed,
                alert=alert,
            )
    return ExchangeFailure("exchange_error", message, transient=False)


@contextmanager
def map_exceptions(
    exchange: str, secrets: Iterable[str] = (), retry_after: Any = None
) -> Iterator[None]:
    """Turn a CCXT exception (or TimeoutError) raised inside into ExchangeFailure, once.
    `retry_after`: a callable giving the Retry-After seconds of the last answer, or None."""
    try:
        yield
    except ExchangeFailure:
        raise
    except (ccxt_errors.BaseError, TimeoutError) as exc:
        wait = retry_after() if retry_after is not None else None
        raise exchange_failure(
            exc, exchange=exchange, secrets=secrets, retry_after_s=wait
        ) from None
