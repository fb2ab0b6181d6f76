"""Requests aiohttp cannot parse (a control character in a header, a bad request line, an
over-long header) or whose handler failed outside the app's middlewares: answered in the one
error shape, echoing nothing the client sent.

aiohttp answers these itself, before any route or middleware runs, with a plain-text body that
quotes the offending bytes (an `Authorization` header with a control character came back with
the key in it) and logs the same text with a traceback. It offers no hook for that response, so
each connection's `RequestHandler` gets a subclass that only replaces `handle_error`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from tradingd.adapters.http.errors import error_response

log = logging.getLogger("tradingd.http")

_MESSAGES = {
    400: "malformed HTTP request",
    500: "internal error",
    504: "handler timed out",
}
_CODES = {400: "bad_request", 500: "internal_error", 504: "timeout"}


class JsonErrorRequestHandler(RequestHandler):  # type: ignore[misc]
    __slots__ = ()  # no state of its own: the same layout as aiohttp's handler

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's contract: a response that closes the connection. `message` and `exc`
        quote the client's bytes, so neither reaches the body or the log."""
        if status >= 500:
            log.error(
                "request failed outside the app",
                exc_info=exc,
                extra={"status": status, "method": getattr(request, "method", None)},
            )
        else:
            log.warning(
                "malformed HTTP request refused",
                extra={"status": status, "error": type(exc).__name__ if exc else None},
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        try:
            reason = HTTPStatus(status).phrase.lower()
        except ValueError:
            reason = "error"
        code = _CODES.get(status, f"http_{status}")
        response = error_response(status, code, _MESSAGES.get(status, reason))
        response.force_close()
        return response


def json_protocol_errors(server: Callable[[], RequestHandler]) -> Callable[[], RequestHandler]:
    """Wrap aiohttp's protocol factory (`runner.server`): every connection's handler answers
    protocol errors with `JsonErrorRequestHandler.handle_error`."""

    def factory() -> RequestHandler:
        handler = server()
        handler.__class__ = JsonErrorRequestHandler  # same slots: a layout-safe swap
        return handler

    return factory
