"""Probes, health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from tradingd.adapters.app.version import VERSION
from tradingd.adapters.http.codec import daemon_of, json_response
from tradingd.adapters.http.errors import NotReady
from tradingd.adapters.http.openapi import DOCUMENT, Route
from tradingd.adapters.http.routes_breakers import health_field
from tradingd.adapters.http.schemas import HealthOut, ProbeOut, WriteBehindLag

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

_UNHEALTHY = frozenset(("down", "degraded", "error", "unavailable", "stale"))


def components(daemon: Daemon) -> dict[str, Any]:
    """Health of the parts, as reported in `daemon.components` by their owners."""
    reported = daemon.components
    unset = (
        {"status": "disabled"} if daemon.settings.store.kind == "memory" else {"status": "unknown"}
    )
    return {
        "redis": reported.get("redis", unset),
        "postgres": reported.get("postgres", unset),
        "feeds": {
            "push": {"status": "ok"},
            **{name: {"status": "running"} for name in daemon.feeds},
            **{name: feed.health() for name, feed in daemon.live_feeds.items()},
            **reported.get("feeds", {}),
        },
        "venues": {
            **{name: {"status": "ok"} for name in daemon.runtime.venues},
            **({"jupiter": daemon.live.health()} if daemon.live.reports_health else {}),
            **reported.get("venues", {}),
            **daemon.exchanges.health_by_venue(),
        },
        "prices": held_prices(daemon),
        # outbound channels: queued, sent, failed, dropped, retries (never their URLs)
        **({"notifications": daemon.notifier.health()} if daemon.notifier is not None else {}),
    }


def held_prices(daemon: Daemon) -> dict[str, Any]:
    """Whether every token a live position holds has a price fresh enough to act on: a held
    token without one has no stop that can fire, whatever each feed's own health says."""
    engine = daemon.engine
    now = engine.clock()
    held = {t for e in engine.exposure.values() for t, n in e.by_token.items() if n > 0}
    stale = sorted(
        t
        for t in held
        if (tick := engine.prices.get(t)) is None or now - tick.ts > engine.max_price_age_ms
    )
    if not stale:
        return {"status": "ok", "held_tokens": len(held)}
    return {
        "status": "stale",
        "reason": f"{len(stale)} held token(s) without a price fresher than max_price_age_ms",
        "held_tokens": len(held),
        "stale_tokens": stale[:20],
    }


def _statuses(comps: dict[str, Any]) -> list[str]:
    out = [comps["redis"].get("status", ""), comps["postgres"].get("status", "")]
    out.append(comps["prices"].get("status", ""))
    for group in ("feeds", "venues"):
        out.extend(c.get("status", "") for c in comps[group].values() if isinstance(c, dict))
    return out


def write_behind_lag(daemon: Daemon) -> WriteBehindLag:
    if daemon.store is None:  # not opened yet: nothing written, nothing behind
        return WriteBehindLag(entries=0, seconds=0.0)
    lag = daemon.store.write_behind_lag()
    return WriteBehindLag(
        entries=int(lag.get("entries", 0)), seconds=float(lag.get("seconds", 0.0))
    )


async def get_health(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    comps = components(daemon)
    ready = daemon.ready and daemon.runtime.accepting
    status: Literal["ok", "degraded", "down"] = "down" if not ready else "ok"
    if ready and any(s in _UNHEALTHY for s in _statuses(comps)):
        status = "degraded"
    return json_response(
        HealthOut(
            status=status,
            components=comps,
            halted=daemon.engine.halted_buys,
            write_behind_lag=write_behind_lag(daemon),
            uptime_s=round(time.monotonic() - daemon.started_at, 3),
            version=VERSION,
            ready=ready,
            breakers=health_field(daemon.engine),
            cluster=daemon.cluster.health() if daemon.cluster is not None else None,
        )
    )


async def get_live(request: web.Request) -> web.Response:
    return json_response(ProbeOut(status="ok"))


async def get_ready(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    cluster = daemon.cluster
    if cluster is not None and not cluster.acting:
        from tradingd.adapters.cluster.role import Standby

        raise Standby(f"not ready: {cluster.role} (hot standby, no lease)", {"role": cluster.role})
    if not (daemon.ready and daemon.runtime.accepting):
        raise NotReady("not ready: starting up or shutting down")
    return json_response(ProbeOut(status="ok"))


async def get_metrics(request: web.Request) -> web.Response:
    metrics = daemon_of(request).metrics
    if metrics is None:
        raise NotReady("metrics are not wired")
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


ROUTES = [
    Route(
        "GET",
        "/health",
        get_health,
        "Health of the daemon and its parts",
        "health",
        "read",
        {200: HealthOut},
        public_if_metrics_public=True,
    ),
    Route("GET", "/health/live", get_live, "Liveness probe", "health", None, {200: ProbeOut}),
    Route(
        "GET",
        "/health/ready",
        get_ready,
        "Readiness probe",
        "health",
        None,
        {200: ProbeOut},
        errors=(503,),
    ),
    Route(
        "GET",
        "/metrics",
        get_metrics,
        "Prometheus metrics",
        "health",
        "read",
        {200: str},
        media_type="text/plain",
        public_if_metrics_public=True,
        errors=(503,),
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        get_openapi,
        "This document",
        "health",
        None,
        {200: dict[str, Any]},
    ),
]
