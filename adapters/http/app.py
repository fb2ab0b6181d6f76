"""The aiohttp application of the control port: the route table, the guard every route passes
(key, rate limit, scope, intake), and the middlewares that give every failure the one error
shape and time every request for the metrics."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web
from tradingd.adapters.app.version import VERSION
from tradingd.adapters.hooks.secret import redact_hook_path
from tradingd.adapters.http import (
    routes_accounts,
    routes_admin,
    routes_agents,
    routes_breakers,
    routes_dashboard,
    routes_entries,
    routes_health,
    routes_hooks,
    routes_notifications,
    routes_positions,
    routes_prices,
    routes_signals,
    routes_sources,
    routes_tokens,
    routes_wallets,
)
from tradingd.adapters.http.auth import RateLimiter, bearer_key
from tradingd.adapters.http.codec import API_KEY, DAEMON, read_raw
from tradingd.adapters.http.errors import (
    Forbidden,
    NotReady,
    RateLimited,
    Unauthorized,
    error_response,
    from_http_exception,
    from_tradingd_error,
)
from tradingd.adapters.http.openapi import DOCUMENT, Handler, Route, build_document
from tradingd.engine.errors import TradingdError, Unavailable, ValidationError

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")
LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")


def all_routes() -> list[Route]:
    return [
        *routes_signals.ROUTES,
        *routes_entries.ROUTES,
        *routes_prices.ROUTES,
        *routes_tokens.ROUTES,
        *routes_agents.ROUTES,
        *routes_accounts.ROUTES,
        *routes_positions.ROUTES,
        *routes_admin.ROUTES,
        *routes_breakers.ROUTES,
        *routes_sources.ROUTES,
        *routes_health.ROUTES,
        *routes_wallets.ROUTES,
        *routes_dashboard.ROUTES,
        *routes_hooks.ROUTES,
        *routes_notifications.ROUTES,
    ]


def _authorize(request: web.Request, route: Route) -> None:
    daemon = request.app[DAEMON]
    raw = bearer_key(request.headers.get("Authorization"))
    if raw is None:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    key = daemon.keys.authenticate(raw) if daemon.keys is not None else None
    if key is None:
        raise Unauthorized("unknown API key")
    request[API_KEY] = key
    wait = request.app[LIMITER].take(key.id)
    if wait is not None:
        raise RateLimited(max(1, math.ceil(wait)))
    assert route.scope is not None
    if not key.allows(route.scope):
        raise Forbidden(f"this key lacks the {route.scope!r} scope", {"scope": route.scope})


def _require_intake(daemon: Daemon) -> None:
    if not (daemon.ready and daemon.runtime.accepting):
        raise NotReady("not accepting work: starting up or shutting down")


def _refuse_standby(daemon: Daemon) -> None:
    """Hot standby: a process without the lease takes no write (docs/cluster.md)."""
    from tradingd.adapters.cluster.role import Standby

    cluster = daemon.cluster
    assert cluster is not None
    if cluster.role == "stepped_down":
        raise Standby("this process lost its lease and is stepping down: send to the active one")
    if cluster.role == "active":
        raise Standby(
            "this process's lease lapsed by its own clock (its loop or Redis stalled) and is "
            "being confirmed with Redis: retry shortly",
            {"role": cluster.role, "verifying": True},
        )
    raise Standby(
        "this process is the standby (or still taking over): send writes to the active one",
        {"role": cluster.role},
    )


def _owner_shard(request: web.Request, daemon: Daemon) -> tuple[int, str, str] | None:
    """Agent shards: the shard that owns what the path names, what it is and its id — the agent
    by its id's hash, a position by the shard its id names (`pos_s<i>_...`) or the one it moved
    to (`tradingd cluster reshard`) — or None when it is this shard's, or a position id names no
    shard (made before shards: looked up here)."""
    from tradingd.adapters.cluster.shards import owner, shard_of_id

    match = request.match_info
    if "agent_id" in match:
        agent_id = match["agent_id"]
        if daemon.owns(agent_id):
            return None
        return owner(agent_id, daemon.shards), "agent", agent_id
    if "position_id" in match:
        intake = daemon.shard_intake
        shard = intake.moved_positions.get(match["position_id"]) if intake is not None else None
        if shard is None:  # a position is on the shard its id names unless it moved
            shard = shard_of_id(match["position_id"], daemon.shards)
        if shard is not None and shard != daemon.shard:
            return shard, "position", match["position_id"]
    return None


async def _to_owner(
    request: web.Request, daemon: Daemon, shard: int, kind: str, named: str
) -> web.StreamResponse:
    """Agent shards: a request naming what another shard owns (the `kind` "agent" or
    "position" with the id `named`) is forwarded to that shard and its answer returned
    (adapters/cluster/forward.py). A 421 naming the owner (and its control URL when
    registered) when forwarding is off, the owner never registered a URL, or the request was
    already forwarded once."""
    from tradingd.adapters.cluster.shards import misdirected, owned_details

    intake = daemon.shard_intake
    url = await intake.owner_url(shard) if intake is not None else None
    forwarder = daemon.forwarder
    if forwarder is None or url is None or forwarder.marked(request):
        raise misdirected(named, shard, url, kind)
    body = await read_raw(request) if request.body_exists else b""
    details = owned_details(kind, named, shard, url)
    return await forwarder.forward(request, body, f"{kind} {named[:128]!r}", details)


async def _on_every_shard(
    request: web.Request, daemon: Daemon, route: Route, here: web.StreamResponse
) -> web.StreamResponse:
    """Agent shards: an operation on every shard, applied here (`here` is this shard's answer),
    sent on to every other shard; their answers merged into this one by the route. Raises
    ShardsIncomplete naming the shards that did not confirm it."""
    from tradingd.adapters.cluster.forward import ShardsIncomplete

    forwarder, intake = daemon.forwarder, daemon.shard_intake
    if forwarder is None or intake is None or forwarder.marked(request):
        return here  # forwarding off: each shard acts alone; or this is a shard's share
    urls = await intake.shard_urls()
    others = {i: urls[i] for i in range(daemon.shards) if i != daemon.shard and i in urls}
    body = await read_raw(request) if request.body_exists else b""
    answers, failures = await forwarder.fan_out(request, body, others)
    for i in range(daemon.shards):
        if i != daemon.shard and i not in urls:
            failures[i] = "never registered a control URL (not started)"
    if failures:
        applied = sorted([daemon.shard, *answers])
        done = "answered by" if request.method == "GET" else "done on"
        raise ShardsIncomplete(
            f"{done} shards {applied}, not by {sorted(failures)}: send it again (safe)",
            {"applied": applied, "failed": {str(i): r for i, r in sorted(failures.items())}},
        )
    if route.merge_shards is None or not isinstance(here, web.Response) or here.body is None:
        return here
    own = msgspec.json.decode(here.body)  # type: ignore[arg-type]
    merged = route.merge_shards(request, own, [answers[i] for i in sorted(answers)])
    return web.Response(
        body=msgspec.json.encode(merged), status=here.status, content_type="application/json"
    )


def _reads_the_book(route: Route) -> bool:
    """A read of trading state (agents, positions, prices, signals...), not of the process
    (health, metrics, the OpenAPI document, the dashboard's files)."""
    return route.path.startswith("/v1/") and route.path != "/v1/openapi.json"


def _refuse_unknown_query(request: web.Request, route: Route) -> None:
    """A query parameter the route does not declare, or one given twice, is a 422 naming it: a
    typo (`?limt=5`) or an ambiguity (`?limit=1&limit=2`) must not be silently resolved, as an
    unknown body field is not."""
    known = {q.name for q in route.query}
    for name in request.query:
        shown = name[:64] if name.isprintable() else "?"  # never echo a control character
        if name not in known:
            raise ValidationError(f"unknown query parameter {shown!r}", f"query.{shown}")
        if len(request.query.getall(name)) > 1:
            raise ValidationError(
                f"query parameter {shown!r} given more than once", f"query.{shown}"
            )


async def _refuse_body(request: web.Request) -> None:
    """A route that takes no body refuses one (415 if not JSON, 422 otherwise), as it refuses
    an unknown field: `{"rule": "x"}` sent to a reset must not look accepted. An empty JSON
    object is no body."""
    raw = await read_raw(request)
    if raw.strip() not in (b"", b"{}"):
        raise ValidationError("this route takes no body", "$")


def guarded(route: Route) -> Handler:
    """The route's handler behind its key, rate limit, scope and intake checks, in that order."""
    handler = route.handler

    async def guard(request: web.Request) -> web.StreamResponse:
        daemon = request.app[DAEMON]
        if route.scope is not None and not (
            route.public_if_metrics_public and daemon.settings.http.metrics_public
        ):
            _authorize(request, route)
        if route.strict_query and request.query:
            _refuse_unknown_query(request, route)
        if route.body is None and not route.body_media and request.body_exists:
            await _refuse_body(request)
        cluster = daemon.cluster
        if cluster is not None and not cluster.acting:
            if route.method != "GET":
                _refuse_standby(daemon)
            elif cluster.role != "active" and _reads_the_book(route):
                # a standby's book is empty until it takes over: a 404 or an empty list
                # would be wrong answers (an active re-verifying its lease still reads)
                _refuse_standby(daemon)
        if daemon.shards > 1 and (elsewhere := _owner_shard(request, daemon)) is not None:
            # the owner's answer: durable there before it was sent
            return await _to_owner(request, daemon, *elsewhere)
        if route.intake:
            _require_intake(daemon)
            if route.body is not None:
                # Reading the body is the one await before the handler's transition: shutdown
                # may have closed intake meanwhile, and an order started after the drain
                # would never be waited for.
                await read_raw(request)
                _require_intake(daemon)
        response = await handler(request)
        if route.method != "GET" and response.status < 400 and daemon.store is not None:
            # Acknowledged means durable: what this request changed is in Redis (or the
            # fsync'd spill file) before the client hears 2xx. Raises 503 past the timeout.
            await daemon.store.flushed()
        if route.cluster_wide and daemon.shards > 1 and response.status < 400:
            return await _on_every_shard(request, daemon, route, response)
        return response

    guard.__name__ = handler.__name__
    return guard


@web.middleware
async def error_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TradingdError as exc:
        # a hook's path holds its secret: logged as /v1/hooks/{hook_id}
        extra = {"path": redact_hook_path(request.path), "method": request.method, "code": exc.code}
        if isinstance(exc, Unavailable):
            # A dependency down (the store, an exchange's markets): expected, said in /health;
            # one line without a traceback, so a retrying client does not flood the log.
            log.warning("request failed: %s", exc.message, extra=extra)
        elif exc.status >= 500 and not isinstance(exc, NotReady):
            log.error("request failed", exc_info=exc, extra=extra)
        return from_tradingd_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc)
    except msgspec.ValidationError as exc:  # a response that breaks its own schema: our bug
        log.exception("response encoding failed", extra={"path": redact_hook_path(request.path)})
        return error_response(500, "internal_error", "internal error", {"reason": str(exc)})
    except Exception:
        log.exception(
            "unhandled error",
            extra={"path": redact_hook_path(request.path), "method": request.method},
        )
        return error_response(500, "internal_error", "internal error")


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics = request.app[DAEMON].metrics
        if metrics is not None:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.observe_http(route, request.method, status, time.perf_counter() - started)


def build_app(daemon: Daemon) -> web.Application:
    http = daemon.settings.http
    app = web.Application(client_max_size=http.max_body_bytes, middlewares=[observe, error_shape])
    app[DAEMON] = daemon
    app[LIMITER] = RateLimiter(http.rate_limit_per_s, http.rate_limit_burst)
    routes_hooks.install(app, daemon.settings.hooks, daemon.data_dir)
    routes = all_routes()
    for route in routes:
        if route in routes_dashboard.ROUTES:  # HEAD too: uptime checkers probe the page with it
            app.router.add_get(route.path, guarded(route), allow_head=True)
        else:
            app.router.add_route(route.method, route.path, guarded(route))
    if daemon.hub is not None:
        app.router.add_get("/v1/ws", daemon.hub.handle)  # the hub authenticates (header or op)
    app[DOCUMENT] = msgspec.json.encode(build_document(routes, VERSION))
    return app
