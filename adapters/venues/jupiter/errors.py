"""The one map from Jupiter's answers and network failures to SwapFailure: a stable reason, and
whether the same step may succeed later (/work/shared/contracts/jupiter.md, "Errors")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from tradingd.adapters.feeds.retry import MAX_RETRY_AFTER_S, retry_after_s
from tradingd.engine.errors import VenueError

# An error body is read up to here: Jupiter's are one short JSON object, a proxy's HTML page is
# cut. Only ERROR_TEXT_CHARS of its text reach a message.
ERROR_BODY_BYTES = 4096
ERROR_TEXT_CHARS = 200
# x-ratelimit-reset names the Unix second a slot frees; one already past (clock skew, a slot
# freed while the answer travelled) still means "not now": wait this much.
MIN_RATE_LIMIT_WAIT_S = 1.0

# The request itself can never succeed: the token or market cannot be routed as asked, or the
# /swap request's own settings are refused (config errors).
PERMANENT_CODES: frozenset[str] = frozenset(
    {
        "TOKEN_NOT_TRADABLE",
        "NO_ROUTES_FOUND",
        "MARKET_NOT_FOUND",
        "NOT_SUPPORTED",
        "CIRCULAR_ARBITRAGE_IS_DISABLED",
        "MAX_ACCOUNT_GREATER_THAN_MAX",
        "INVALID_COMPUTE_UNIT_PRICE_AND_PRIORITIZATION_FEE",
    }
)
# The router found nothing usable this time; liquidity moves, a fresh quote may work.
# FAILED_TO_GET_SWAP_AND_ACCOUNT_METAS: Jupiter could not build the /swap accounts (its own RPC
# reads, or a quote gone stale): a fresh quote and /swap may succeed.
RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        "COULD_NOT_FIND_ANY_ROUTE",
        "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT",
        "CANNOT_COMPUTE_OTHER_AMOUNT_THRESHOLD",
        "FAILED_TO_GET_SWAP_AND_ACCOUNT_METAS",
    }
)
# An errorCode becomes part of a stable reason only if it looks like one (upper snake case);
# anything else the server writes there is not trusted into reasons or metric labels.
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class SwapFailure(VenueError):
    """A swap step failed. `reason`: a stable snake_case code that becomes the order's
    failure reason / execution record reason; `transient`: the same step may succeed later;
    `retry_after_s`: wait at least this long (rate limit), or None."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
        fee: int = 0,
    ) -> None:
        super().__init__(message, transient, {"reason": reason, **(details or {})}, fee)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _ErrorBody(msgspec.Struct):
    """Every error shape seen: Jupiter's `{"error","errorCode"}` and the API gateway's
    `{"code","message"}` (codes are ints there)."""

    error: str | None = None
    errorCode: str | None = None  # noqa: N815 - the wire's name
    message: str | None = None
    code: int | str | None = None


def printable(text: str, limit: int = ERROR_TEXT_CHARS) -> str:
    """`text` with control characters blanked, cut to `limit` characters: fit for a message."""
    text = "".join(c if c.isprintable() else " " for c in text.strip())
    return text if len(text) <= limit else text[:limit] + "…"


def code_reason(prefix: str, code: str | None) -> str | None:
    """`<prefix>_<code lowercased>` when `code` looks like an error code, else None."""
    if code is None or _CODE.fullmatch(code) is None:
        return None
    return f"{prefix}_{code.lower()}"


def jupiter_failure(
    status: int, body: bytes, headers: Mapping[str, str], now_s: float
) -> SwapFailure:
    """The SwapFailure for a non-200 answer: `body` (at most ERROR_BODY_BYTES of it), its
    `headers` and the Unix time `now_s` (seconds, for x-ratelimit-reset). The message names the
    status, the error code and the start of the server's text, never the body whole."""
    parsed = _error_body(body)
    code = parsed.errorCode if parsed is not None else None
    text = _error_text(parsed, body)
    shown = f"Jupiter answered HTTP {status}" + (f" {code}" if code else "")
    message = f"{shown}: {text}" if text else shown
    details: dict[str, Any] = {"status": status}
    if code_reason("jupiter", code) is not None:
        details["error_code"] = code
    if status == 429:
        wait = _rate_limit_wait_s(headers, now_s)
        return SwapFailure(
            "jupiter_rate_limited", message, transient=True, retry_after_s=wait, details=details
        )
    if status in (401, 403):
        # a missing, wrong or under-privileged API key, or a firewall rule: the operator must act
        return SwapFailure("jupiter_unauthorized", message, transient=False, details=details)
    reason = code_reason("jupiter", code)
    if code in PERMANENT_CODES:
        return SwapFailure(reason or "", message, transient=False, details=details)
    if code in RETRYABLE_CODES:
        return SwapFailure(reason or "", message, transient=True, details=details)
    if status >= 500:
        return SwapFailure(f"jupiter_http_{status}", message, transient=True, details=details)
    # any other answer (an unknown code on a 4xx, a 4xx without one, a redirect) will be the
    # same answer next time
    return SwapFailure(
        reason or f"jupiter_http_{status}", message, transient=False, details=details
    )


def timeout_failure(step: str, timeout_s: float) -> SwapFailure:
    """Jupiter did not answer `step` ("quote", "swap") within `timeout_s` seconds."""
    return SwapFailure(
        "jupiter_timeout", f"Jupiter /{step}: no answer in {timeout_s} s", transient=True
    )


def unreachable_failure(step: str, exc: BaseException) -> SwapFailure:
    """The connection to Jupiter failed (refused, reset, dropped mid-body, DNS)."""
    what = printable(str(exc)) or type(exc).__name__
    return SwapFailure(
        "jupiter_unreachable",
        f"Jupiter /{step}: connection failed: {type(exc).__name__}: {what}",
        transient=True,
    )


def malformed_failure(step: str, why: str) -> SwapFailure:
    """A 200 whose body is not the contract's shape (HTML from a proxy, a missing field)."""
    return SwapFailure(
        "jupiter_malformed", f"Jupiter /{step}: unexpected answer: {printable(why)}", transient=True
    )


def _error_body(body: bytes) -> _ErrorBody | None:
    try:
        return msgspec.json.decode(body, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _error_text(parsed: _ErrorBody | None, body: bytes) -> str:
    if parsed is not None:
        return printable(parsed.error or parsed.message or "")
    return printable(body[: ERROR_TEXT_CHARS * 4].decode("utf-8", "replace"))


def _rate_limit_wait_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Seconds to wait after a 429: x-ratelimit-reset (Unix seconds when a slot frees), else
    Retry-After (delta seconds or an HTTP date), else None. Never below
    MIN_RATE_LIMIT_WAIT_S when the reset header is present, never above MAX_RETRY_AFTER_S."""
    reset = _header(headers, "x-ratelimit-reset")
    if reset:
        try:
            at = float(reset.strip())
        except ValueError:
            at = float("nan")
        if at == at and abs(at) != float("inf"):
            return min(max(at - now_s, MIN_RATE_LIMIT_WAIT_S), MAX_RETRY_AFTER_S)
    return retry_after_s(_header(headers, "retry-after"), int(now_s * 1000))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by its lowercase `name`, whatever the case of `headers`' keys (aiohttp's are
    case-insensitive already; a plain dict is not)."""
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)
