"""`/v1/openapi.json` documents every route the app serves, with the types it really uses."""

from __future__ import annotations

import jsonschema_rs
from http_harness import SOL, TOKEN, serve
from tradingd.adapters.http.app import all_routes


async def test_every_route_is_documented_with_security_and_error_schema(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        assert doc["openapi"] == "3.1.0"
        assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        for route in all_routes():
            op = doc["paths"][route.document_path][route.method.lower()]
            for status in route.responses:
                assert str(status) in op["responses"]
            if route.scope is None:
                assert op["security"] == []
            else:
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }


async def test_every_registered_route_is_in_the_document(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        served = {
            (r.method, r.resource.canonical)
            for r in api.client.app.router.routes()
            if r.resource is not None
            and r.resource.canonical != "/v1/ws"
            and r.method != "HEAD"  # the dashboard's GETs answer HEAD too, as GET sans body
        }
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        assert served == documented


async def test_responses_validate_against_their_documented_schemas(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        await api.ok("POST", "/v1/signals", {"token": TOKEN})
        await api.settle()
        position_id = (await api.ok("GET", f"/v1/agents/{agent_id}/positions"))["items"][0]["id"]
        checks = [
            ("/v1/agents", "/v1/agents"),
            ("/v1/agents/{agent_id}", f"/v1/agents/{agent_id}"),
            ("/v1/agents/{agent_id}/positions", f"/v1/agents/{agent_id}/positions"),
            ("/v1/agents/{agent_id}/trades", f"/v1/agents/{agent_id}/trades"),
            ("/v1/agents/{agent_id}/balances", f"/v1/agents/{agent_id}/balances"),
            ("/v1/agents/{agent_id}/performance", f"/v1/agents/{agent_id}/performance"),
            ("/v1/positions/{position_id}", f"/v1/positions/{position_id}"),
            ("/v1/signals", "/v1/signals"),
            ("/v1/prices/{token}", f"/v1/prices/{TOKEN}"),
            ("/health", "/health"),
            ("/v1/keys", "/v1/keys"),
        ]
        for template, path in checks:
            schema = doc["paths"][template]["get"]["responses"]["200"]["content"][
                "application/json"
            ]["schema"]
            body = await api.ok("GET", path)
            validator = jsonschema_rs.Draft202012Validator(
                {**schema, "components": doc["components"]}
            )
            validator.validate(body)
        status, error = await api.call("GET", "/v1/agents/nope")
        assert status == 404
        jsonschema_rs.Draft202012Validator(
            {"$ref": "#/components/schemas/ErrorBody", "components": doc["components"]}
        ).validate(error)
