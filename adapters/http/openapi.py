"""The route table's description (`Route`) and the OpenAPI 3.1 document generated from it.

Every route module declares its routes as `Route` values naming the msgspec types of its body
and responses; the app registers exactly those routes and this module documents exactly those
types (`msgspec.json.schema_components`), so the document cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from tradingd.adapters.http.schemas import ErrorBody

DOCUMENT: web.AppKey[bytes] = web.AppKey("openapi_document")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REF = "#/components/schemas/{name}"
# A path parameter, `{name}` or aiohttp's `{name:regex}` (an instrument id may contain "/").
_PATH_PARAM = re.compile(r"\{(\w+)(?::[^{}]*)?\}")

_ERROR_TEXT = {
    400: "malformed JSON",
    401: "missing or unknown API key",
    403: "the key lacks the scope",
    404: "unknown id",
    409: "conflict with the current state",
    413: "body too large",
    415: "the body is not Content-Type: application/json",
    422: "validation failed (also: a duplicate key, a control character in text); "
    "details.path names the field",
    429: "rate limited; see Retry-After",
    503: "not ready, shutting down, or intake paused",
}


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str = ""


LIMIT = QueryParam(
    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "page size"
)
CURSOR = QueryParam("cursor", {"type": "string"}, "opaque cursor from `next_cursor`")
PAGED = (LIMIT, CURSOR)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: str | None  # None: no key needed
    responses: dict[int, Any]  # status -> msgspec type, or None for an empty body
    body: Any = None  # the request body's msgspec type
    body_optional: bool = False
    # A body the handler reads itself, documented per media type (the guard reads nothing):
    # for routes that take more than JSON, e.g. ("text/plain", str).
    body_media: tuple[tuple[str, Any], ...] = ()
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()  # statuses beyond the ones implied below
    intake: bool = False  # 503 while not ready or shutting down
    public_if_metrics_public: bool = False  # `[http] metrics_public` lifts the key check
    # Agent shards: an operation on every shard (the halt, a breaker reset, a signal's resting
    # buys, the list of agents), applied here and sent on to every other shard
    # (adapters/cluster/forward.py); `merge_shards(request, own, others)` merges the shards'
    # JSON answers into this one's (None: this one's answer).
    cluster_wide: bool = False
    merge_shards: Callable[[web.Request, Any, list[Any]], Any] | None = None
    media_type: str = "application/json"
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def document_path(self) -> str:
        """The path as OpenAPI and aiohttp's `canonical` write it: `{name}` without a regex."""
        return _PATH_PARAM.sub(r"{\1}", self.path)

    @property
    def strict_query(self) -> bool:
        """Whether a query parameter the route does not declare is refused (422): every JSON
        route of the API (`/v1/...`), as unknown body fields are; probes and metrics take any."""
        return self.path.startswith("/v1/") and self.media_type == "application/json"

    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.scope is not None:
            statuses |= {401, 403, 429}
        if self.body is not None or self.body_media:
            statuses |= {400, 413, 415, 422}
        if self.query or self.strict_query:
            statuses.add(422)
        if self.path_params:
            statuses |= {404, 422}
        if self.intake:
            statuses.add(503)
        return sorted(statuses)


def _content(route: Route, schema: dict[str, Any] | None) -> dict[str, Any]:
    if schema is None:
        return {}
    return {"content": {route.media_type: {"schema": schema}}}


_TOKEN_PARAM = (
    "an instrument id: a base58 mint, or an exchange market `<exchange>:<BASE>/<QUOTE>` "
    "percent-encoded (`binance%3ABTC%2FUSDT`; the literal `binance:BTC/USDT` is taken too)"
)


def _path_param(name: str) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "path", "required": True}
    param["schema"] = {"type": "string"}
    if name == "token":
        param["schema"]["maxLength"] = 74
        param["description"] = _TOKEN_PARAM
    return param


def _operation(route: Route, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "tags": [route.tag],
        "x-scope": route.scope,
        "parameters": [_path_param(p) for p in route.path_params]
        + [
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "schema": q.schema,
                "description": q.description,
            }
            for q in route.query
        ],
        "responses": {},
    }
    if route.scope is None:
        op["security"] = []
        op["description"] = "No key needed. " + route.description
    else:
        op["description"] = f"Scope `{route.scope}` (or `admin`). " + route.description
    if route.body is not None:
        op["requestBody"] = {
            "required": not route.body_optional,
            "content": {"application/json": {"schema": schema_of[route.body]}},
        }
    if route.body_media:
        op["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema_of[typ]} for media, typ in route.body_media},
        }
    for status, typ in route.responses.items():
        schema = schema_of[typ] if typ is not None else None
        op["responses"][str(status)] = {"description": "success", **_content(route, schema)}
    for status in route.error_statuses():
        op["responses"][str(status)] = {
            "description": _ERROR_TEXT.get(status, "error"),
            "content": {"application/json": {"schema": schema_of[ErrorBody]}},
        }
    if not op["parameters"]:
        del op["parameters"]
    return op


def build_document(routes: list[Route], version: str) -> dict[str, Any]:
    types: list[Any] = [ErrorBody]
    for r in routes:
        for typ in (r.body, *r.responses.values(), *(t for _, t in r.body_media)):
            if typ is not None and typ not in types:
                types.append(typ)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.document_path, {})[r.method.lower()] = _operation(r, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tradingd control port",
            "version": version,
            "description": (
                "REST half of the control port (docs/api.md, contract v1). Atomic amounts are "
                "decimal strings of integers; times are ISO-8601 UTC. Errors share one shape. "
                "Bodies are `application/json` (415 otherwise); a duplicate key in any object, "
                "or a control character (U+0000..U+001F, U+007F) in any string, is a 422. "
                "Tokens are instrument ids: a Solana mint, or an exchange market "
                "`<exchange>:<BASE>/<QUOTE>` (CCXT's exchange id and unified spot symbol, e.g. "
                "`binance:BTC/USDT`), percent-encoded in a path. "
                "The WebSocket stream is `GET /v1/ws` (scope read)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API key"}
            },
        },
    }
