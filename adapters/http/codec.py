"""Request and response plumbing shared by the route modules: strict body decoding (400
malformed, 413 too large, 422 with the field path), query parameters, opaque-cursor pagination,
and JSON responses. Decoding happens once here, at the edge."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from tradingd.adapters.http.auth import ApiKey
from tradingd.adapters.http.errors import (
    MalformedJson,
    PayloadTooLarge,
    UndecodableBody,
    UnsupportedMediaType,
)
from tradingd.adapters.http.strict_json import check_body
from tradingd.engine.errors import ValidationError

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

T = TypeVar("T")
DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
API_KEY = web.RequestKey("api_key", ApiKey)  # the authenticated key of the request
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(tuple[int, int, str])


def daemon_of(request: web.Request) -> Daemon:
    return request.app[DAEMON]


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(obj), content_type="application/json")


def _error_path(message: str) -> str:
    path = "$"
    if " - at `" in message:
        path = message.rsplit(" - at `", 1)[1].rstrip("`")
    if "unknown field `" in message:
        field = message.split("unknown field `", 1)[1].split("`", 1)[0]
        path = f"{path}.{field}"
    return path


def validation_error(exc: msgspec.ValidationError) -> ValidationError:
    """msgspec's typed-decode error as ours: the message without msgspec's location suffix,
    the JSON path of the failing field (`$.channels[0]`) in `path`, as the one error shape's
    `details.path` gives it over REST and the WebSocket alike."""
    message = str(exc)
    return ValidationError(message.split(" - at `", 1)[0], _error_path(message))


def decode(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Typed decode (400 malformed, 422 with the path), then what msgspec lets through:
    duplicate keys and control characters in text (422 with the path)."""
    try:
        value = decoder.decode(raw)
        check_body(raw)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"request body is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:  # a 2 KB body of 1,000 nested arrays, decoded into Any
        raise MalformedJson("request body is nested too deeply") from None
    return value


def _require_json(request: web.Request) -> None:
    """415 unless a body is declared `application/json`, UTF-8 if a charset is named. No body
    (optional bodies) needs no media type: clients often label an empty POST anything."""
    if not request.body_exists:
        return
    charset = request.charset
    if request.content_type != "application/json" or (
        charset is not None and charset.lower() not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaType(
            "send the body as Content-Type: application/json (UTF-8)",
            {"expected": "application/json"},
        )


async def read_raw(request: web.Request) -> bytes:
    """The whole body, within `[http] max_body_bytes` (413 otherwise). aiohttp keeps it, so a
    second call returns at once without yielding to the loop. 415 unless the body is JSON."""
    _require_json(request)
    limit = daemon_of(request).settings.http.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(
            f"body of {declared} bytes over the {limit} byte limit", {"limit": limit}
        )
    try:
        raw = await request.read()  # aiohttp also stops at client_max_size for chunked bodies
    except (
        HttpProcessingError,
        RequestPayloadError,
    ):  # a Content-Encoding that does not decode: the client's fault
        raise UndecodableBody(
            "the body could not be decoded with its Content-Encoding", {}
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"body over the {limit} byte limit", {"limit": limit})
    return raw


async def read_body(
    request: web.Request, decoder: msgspec.json.Decoder[T], *, optional: bool = False
) -> T:
    """Decode the body; `optional` bodies may be empty (all fields take defaults)."""
    raw = await read_raw(request)
    if optional and not raw.strip():
        raw = b"{}"
    return decode(raw, decoder)


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ValidationError(f"{name} must be true or false", f"query.{name}")


def query_choice(request: web.Request, name: str, choices: Sequence[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(choices)}", f"query.{name}")
    return raw


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits (a 500 then)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer in 1..{MAX_LIMIT}", "query.limit")
    return int(raw)


Order = tuple[int, str]  # a list's sort key: (creation time or sequence, id)


def page_limit(request: web.Request) -> int:
    """The page size asked for (`?limit=`, default 100, 1..1000; 422 otherwise)."""
    return _limit(request)


def key_cursor(last: Order) -> str:
    """A cursor resuming right after the sort key `last` on any server listing by the same key
    (no position in it): agent shards merging their pages into one."""
    return _encode_cursor(0, last)


def _encode_cursor(offset: int, last: Order) -> str:
    raw = _encoder.encode((offset, last[0], last[1]))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[int, Order]:
    try:
        offset, k0, k1 = _cursor_decoder.decode(
            base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        )
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ValidationError("cursor is not one this server issued", "query.cursor") from None
    if offset < 0:
        raise ValidationError("cursor is not one this server issued", "query.cursor")
    return offset, (k0, k1)


def paginate(
    request: web.Request,
    items: Sequence[T],
    order: Callable[[T], Order],
    *,
    grows_at_front: bool = False,
) -> tuple[Sequence[T], str | None]:
    """One page of `items`, which must be sorted by `order`. The cursor holds the last item's
    position and sort key: the next page starts at that position if the item is still there
    (the common case, O(1)), else right after its key (an item was removed before it).

    `grows_at_front` lists (newest first) gain items only at the front and lose them only at
    the back: the cursor's item has moved right by the arrivals, or is gone with all after it."""
    limit = _limit(request)
    start = 0
    raw = request.query.get("cursor")
    if raw:
        offset, last = _decode_cursor(raw)
        if 0 < offset <= len(items) and order(items[offset - 1]) == last:
            start = offset
        elif grows_at_front:
            start = next(
                (i + 1 for i in range(max(offset - 1, 0), len(items)) if order(items[i]) == last),
                None,
            )
            if start is None:
                # Not there: gone with all after it (one process), or, for a cursor another
                # shard made (offset 0), not applied here yet: resume at the first item after
                # its key, so this shard's older items are not skipped.
                start = next((i for i in range(len(items)) if order(items[i]) > last), len(items))
        else:
            start = bisect.bisect_right(items, last, key=order)
    page = items[start : start + limit]
    end = start + len(page)
    next_cursor = _encode_cursor(end, order(page[-1])) if page and end < len(items) else None
    return page, next_cursor


def page_request(request: web.Request) -> tuple[int, Order | None]:
    """(limit, sort key of the previous page's last item or None) for lists merged from memory
    and Postgres, which page by key only; their cursors are also valid for `paginate`."""
    raw = request.query.get("cursor")
    return _limit(request), (_decode_cursor(raw)[1] if raw else None)


def cursor_after(key: Order) -> str:
    return _encode_cursor(0, key)
