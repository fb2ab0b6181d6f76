"""Query parameters are decoded as strictly as bodies: on `/v1/...` routes one the route does not
take is a 422 naming it (a typo such as `?limt=5` is never silently ignored) and changes
nothing; the probes and `/metrics` take any."""

from __future__ import annotations

from pathlib import Path

from http_harness import serve


async def test_a_typo_in_a_list_route_query_is_a_422_naming_it(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", "/v1/agents?limt=5")
        assert status == 422
        assert doc["error"]["code"] == "validation_error"
        assert doc["error"]["details"]["path"] == "query.limt"


async def test_declared_query_parameters_still_work(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        assert (await api.ok("GET", "/v1/agents?limit=5"))["items"] is not None


async def test_a_query_on_a_route_that_takes_none_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        status, doc = await api.call("POST", "/v1/halt?buys=true", {"buys": True})
        assert status == 422 and doc["error"]["details"]["path"] == "query.buys"
        health = await api.ok("GET", "/health")
        assert health["halted"] is False


async def test_probes_and_metrics_take_any_query(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        assert (await api.call("GET", "/health/live?probe=1", key=None))[0] == 200
        assert (await api.call("GET", "/metrics?name[]=tradingd_agents"))[0] == 200


async def test_a_query_parameter_given_twice_is_a_422(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", "/v1/agents?limit=1&limit=2")
        assert status == 422 and doc["error"]["details"]["path"] == "query.limit"


async def test_a_control_character_in_a_query_name_is_never_echoed(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", "/v1/agents?limit%00=1")
        assert status == 422
        assert (
            "\x00" not in doc["error"]["message"] and "\x00" not in doc["error"]["details"]["path"]
        )
