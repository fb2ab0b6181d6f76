"""Who may call what: the auth matrix over every REST route, the rate limit, key lifecycle."""

from __future__ import annotations

import asyncio

import pytest
from http_harness import ADMIN, TOKEN, serve
from tradingd.adapters.http.app import all_routes
from tradingd.adapters.http.auth import SCOPES

ROUTES = all_routes()
GUARDED = [r for r in ROUTES if r.scope is not None]
# A hook's URL is its own credential: it answers 404 to an unknown one (test_http_hooks.py).
PUBLIC = [r for r in ROUTES if r.scope is None and not r.path.startswith("/v1/hooks/")]


def concrete(path: str) -> str:
    """A request path for a route template: a mint for {token}, a shipped file of the
    dashboard for its {path:.+}, the parameter's name for any other id."""
    path = path.replace("{token}", TOKEN).replace("{path:.+}", "main.js")
    return path.replace("{", "").replace("}", "")


def route_id(route) -> str:
    return f"{route.method} {route.path}"


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
async def test_missing_unknown_and_malformed_keys_are_401(tmp_path, route):
    async with serve(tmp_path) as api:
        path = concrete(route.path)
        for key, headers in (
            (None, None),
            ("tdk_not_a_key", None),
            (None, {"Authorization": "Basic x"}),
        ):
            status, doc = await api.call(route.method, path, {}, key=key, headers=headers)
            assert status == 401, (key, headers, doc)
            assert doc["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
async def test_a_key_without_the_scope_is_403(tmp_path, route):
    async with serve(tmp_path) as api:
        other = sorted(SCOPES - {route.scope, "admin"})
        key = await api.key(*other)
        status, doc = await api.call(route.method, concrete(route.path), {}, key=key)
        assert status == 403, doc
        assert doc["error"] == {
            "code": "forbidden",
            "message": doc["error"]["message"],
            "details": {"scope": route.scope},
        }


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
async def test_a_key_with_the_scope_passes_the_guard(tmp_path, route):
    async with serve(tmp_path) as api:
        key = await api.key(route.scope)
        status, doc = await api.call(route.method, concrete(route.path), {}, key=key)
        assert status not in (401, 403), doc


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
async def test_admin_implies_every_scope(tmp_path, route):
    async with serve(tmp_path) as api:
        key = await api.key("admin")
        status, doc = await api.call(route.method, concrete(route.path), {}, key=key)
        assert status not in (401, 403), doc


@pytest.mark.parametrize("route", PUBLIC, ids=route_id)
async def test_probes_and_the_document_need_no_key(tmp_path, route):
    async with serve(tmp_path) as api:
        status, _ = await api.call(route.method, concrete(route.path), key=None)
        assert status == 200


async def test_metrics_and_health_are_open_when_metrics_public(tmp_path):
    async with serve(tmp_path, metrics_public=True) as api:
        for path in ("/metrics", "/health"):
            status, _ = await api.call("GET", path, key=None)
            assert status == 200
        status, _ = await api.call("GET", "/v1/agents", key=None)
        assert status == 401


async def test_metrics_need_read_by_default(tmp_path):
    async with serve(tmp_path) as api:
        status, _ = await api.call("GET", "/metrics", key=None)
        assert status == 401
        status, body = await api.call("GET", "/metrics", key=await api.key("read"))
        assert status == 200 and "tradingd_http_requests_total" in body


async def test_rate_limited_key_gets_429_with_retry_after(tmp_path):
    async with serve(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=3) as api:
        key = await api.key("read")
        statuses = [(await api.call("GET", "/v1/agents", key=key))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        async with api.client.get("/v1/agents", headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == "rate_limited"
        other = await api.key("read")  # buckets are per key
        assert (await api.call("GET", "/v1/agents", key=other))[0] == 200


async def test_created_key_is_shown_once_listed_without_secret_and_revocable(tmp_path):
    async with serve(tmp_path) as api:
        created = await api.ok("POST", "/v1/keys", {"name": "feeder", "scopes": ["feed"]})
        assert created["key"].startswith("tdk_") and created["scopes"] == ["feed"]
        listed = (await api.ok("GET", "/v1/keys"))["items"]
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0] and created["key"] not in str(listed)
        assert (await api.call("GET", "/v1/agents", key=created["key"]))[0] == 403
        status, _ = await api.call("DELETE", f"/v1/keys/{created['id']}")
        assert status == 204
        assert (await api.call("GET", "/v1/agents", key=created["key"]))[0] == 401
        status, doc = await api.call("DELETE", f"/v1/keys/{created['id']}")
        assert status == 404 and doc["error"]["code"] == "not_found"


async def test_intake_routes_are_503_until_ready(tmp_path):
    async with serve(tmp_path, ready=False) as api:
        status, doc = await api.call("POST", "/v1/signals", {"token": TOKEN})
        assert status == 503 and doc["error"]["code"] == "not_ready"
        assert (await api.call("GET", "/health/ready", key=None))[0] == 503
        assert (await api.call("GET", "/health/live", key=None))[0] == 200
        assert (await api.ok("GET", "/health"))["status"] == "down"


async def test_intake_routes_are_503_while_shutting_down(tmp_path):
    async with serve(tmp_path) as api:
        api.daemon.runtime.accepting = False  # what Daemon.shutdown does first
        status, _ = await api.call("POST", "/v1/prices", {"ticks": []})
        assert status == 503
        assert (await api.call("POST", "/v1/halt", {}))[0] == 200  # the kill switch still works


async def test_intake_closed_while_the_body_is_in_flight_is_503_and_records_nothing(tmp_path):
    async with serve(tmp_path) as api:

        async def slow_body():
            yield b'{"token": "'
            await asyncio.sleep(0.05)
            api.daemon.runtime.accepting = False  # shutdown begins mid-request
            yield TOKEN.encode() + b'"}'

        headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
        async with api.client.post("/v1/signals", data=slow_body(), headers=headers) as resp:
            assert resp.status == 503
        assert api.daemon.engine.signals == {}
