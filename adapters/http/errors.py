"""The control port's one error shape, `{"error": {"code", "message", "details"}}`, and the
errors only the HTTP edge raises (auth, limits, malformed bodies). Engine errors keep their own
`.status` / `.code` (engine/errors.py); this module only renders them."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from tradingd.engine.errors import Conflict, TradingdError

_encoder = msgspec.json.Encoder()


class MalformedJson(TradingdError):
    code = "malformed_json"
    status = 400


class UndecodableBody(TradingdError):
    """The body's Content-Encoding could not be undone (e.g. `gzip` over bytes that are not)."""

    status = 400
    code = "bad_content_encoding"


class Unauthorized(TradingdError):
    code = "unauthorized"
    status = 401


class Forbidden(TradingdError):
    code = "forbidden"
    status = 403


class PayloadTooLarge(TradingdError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(TradingdError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(TradingdError):
    code = "rate_limited"
    status = 429

    def __init__(self, retry_after_s: int, of: str = "this key") -> None:
        super().__init__(f"rate limit exceeded for {of}", {"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class NotReady(TradingdError):
    code = "not_ready"
    status = 503


# aiohttp's own HTTPExceptions (unmatched route, wrong method, body over client_max_size)
# carry no code of ours; these name them.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = _encoder.encode({"error": {"code": code, "message": message, "details": details or {}}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def from_tradingd_error(exc: TradingdError) -> web.Response:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


def from_http_exception(exc: web.HTTPException) -> web.Response:
    status = exc.status
    details: dict[str, Any] = {}
    if status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        details["allowed_methods"] = sorted(exc.allowed_methods)
    message = exc.reason if status != 413 else "request body too large"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(
        status, _HTTP_CODES.get(status, f"http_{status}"), message, details, headers
    )


class TooManyTicks(PayloadTooLarge):
    code = "too_many_ticks"


class PaperVenueOnly(Conflict):
    code = "paper_venue_only"
