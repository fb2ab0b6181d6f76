"""What every request body must be, on every route that takes one: `application/json` (415),
no duplicate key in any object (422), no control character in any text field (422 naming the
field) — and a refused body changes nothing. The config file's agents follow the same text rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from http_harness import TOKEN, Api, serve
from test_http_validation import state, world
from tradingd.adapters.app.settings import load_settings
from tradingd.adapters.http.app import all_routes
from tradingd.engine.errors import ValidationError

PASS = "correct horse battery"
AGENT = "/v1/agents/{agent}"

# route -> (a valid body, the same body with one key repeated as raw JSON, that key's path,
#           the text fields a client can set)
ROUTES: dict[tuple[str, str], tuple[dict[str, Any], bytes, str, tuple[str, ...]]] = {
    ("POST", "/v1/signals"): (
        {"token": TOKEN, "id": "s1", "symbol": "B", "type": "t", "source": "p", "reason": "r"},
        b'{"token": "%s", "strength": 1, "strength": 5}' % TOKEN.encode(),
        "$.strength",
        ("id", "symbol", "type", "source", "reason"),
    ),
    ("POST", "/v1/prices"): (
        {"ticks": [{"token": TOKEN, "price_usd": 2.0, "source": "feeder"}]},
        b'{"ticks": [{"token": "%s", "price_usd": 2.0, "price_usd": 3.0}]}' % TOKEN.encode(),
        "$.ticks[0].price_usd",
        ("ticks[0].source",),
    ),
    ("POST", "/v1/agents"): (
        {"name": "n", "quote": "SOL", "config": {"signals": {"types": ["breakout"]}}},
        b'{"name": "a", "name": "b"}',
        "$.name",
        ("name", "config.signals.types[0]"),  # quote: refused as an unknown asset anyway
    ),
    ("PATCH", "/v1/agents/{agent_id}"): (
        {"name": "renamed"},
        b'{"name": "a", "name": "b"}',
        "$.name",
        ("name",),
    ),
    ("PUT", "/v1/agents/{agent_id}/config"): (
        {"signals": {"types": ["breakout"]}},
        b'{"stop_loss": {"mode": "trailing", "trail_pct": 10, "trail_pct": 50}}',
        "$.stop_loss.trail_pct",
        ("signals.types[0]",),
    ),
    ("POST", "/v1/agents/{agent_id}/deposits"): (
        {"asset": "SOL", "amount": "1"},
        b'{"asset": "SOL", "amount": "1", "amount": "5"}',
        "$.amount",
        (),  # asset: refused as an unknown asset anyway
    ),
    ("POST", "/v1/agents/{agent_id}/positions/{position_id}/close"): (
        {"pct": 50},
        b'{"pct": 10, "pct": 100}',
        "$.pct",
        (),
    ),
    ("POST", "/v1/halt"): (
        {"buys": True},
        b'{"flatten": false, "flatten": true}',
        "$.flatten",
        (),
    ),
    ("POST", "/v1/keys"): (
        {"name": "k", "scopes": ["read"]},
        b'{"name": "k", "scopes": ["read"], "scopes": ["admin"]}',
        "$.scopes",
        ("name",),
    ),
    ("POST", "/v1/hooks"): (
        {"name": "h", "key_id": "key_x", "source": "s", "type": "t"},
        b'{"name": "a", "key_id": "key_x", "name": "b"}',
        "$.name",
        ("name", "key_id", "source", "type"),
    ),
    ("POST", "/v1/notifications"): (
        {"name": "n", "kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s"},
        b'{"name": "a", "kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s", '
        b'"name": "b"}',
        "$.name",
        ("name",),
    ),
    ("POST", "/v1/wallets"): (
        {"name": "w", "passphrase": PASS, "id": "w1"},
        b'{"name": "w", "passphrase": "%s", "passphrase": "another passphrase"}' % PASS.encode(),
        "$.passphrase",
        ("name", "passphrase"),
    ),
    ("POST", "/v1/wallets/{wallet_id}/unlock"): (
        {"passphrase": PASS},
        b'{"passphrase": "%s", "passphrase": "%s"}' % (PASS.encode(), PASS.encode()),
        "$.passphrase",
        ("passphrase",),
    ),
}


def concrete(path: str, ids: dict[str, str]) -> str:
    return (
        path.replace("{agent_id}", ids["agent"])
        .replace("{position_id}", ids["position"])
        .replace("{wallet_id}", "w1")
    )


def with_text(body: dict[str, Any], field: str, text: str) -> dict[str, Any]:
    """A deep copy of `body` with the field at `field` (`a.b[0].c`) set to `text`."""
    doc = json.loads(json.dumps(body))
    parts = [p for p in re.split(r"\.|\[(\d+)\]", field) if p]
    target: Any = doc
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    target[int(last) if last.isdigit() else last] = text
    return doc


async def snapshot(api: Api, ids: dict[str, str]) -> dict[str, Any]:
    return {**await state(api, ids), "wallets": await api.ok("GET", "/v1/wallets")}


# every route that takes a body (a new one without cases here fails with a KeyError)
BODY_ROUTES = [(r.method, r.path) for r in all_routes() if r.body is not None]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
async def test_a_duplicate_key_is_422_naming_it_and_changes_nothing(tmp_path, method, path):
    _, duplicated, key_path, _ = ROUTES[(method, path)]
    async with serve(tmp_path) as api:
        ids = await world(api)
        before = await snapshot(api, ids)
        status, doc = await api.call(method, concrete(path, ids), raw=duplicated)
        assert status == 422, doc
        assert doc["error"]["code"] == "validation_error"
        assert doc["error"]["details"]["path"] == key_path
        await api.settle()
        assert await snapshot(api, ids) == before


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=latin-1"])
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
async def test_a_body_that_is_not_declared_json_is_415_and_changes_nothing(
    tmp_path, method, path, content_type
):
    body = ROUTES[(method, path)][0]
    async with serve(tmp_path) as api:
        ids = await world(api)
        before = await snapshot(api, ids)
        headers = {"Authorization": "Bearer tdk_test_admin_bootstrap_key"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with api.client.request(
            method,
            concrete(path, ids),
            data=json.dumps(body).encode(),
            headers=headers,
            skip_auto_headers=["Content-Type"],  # None: no Content-Type header at all
        ) as resp:
            assert resp.request_info.headers.get("Content-Type") == content_type
            doc = await resp.json()
            assert resp.status == 415, doc
        assert doc["error"]["code"] == "unsupported_media_type"
        assert set(doc["error"]) == {"code", "message", "details"}
        await api.settle()
        assert await snapshot(api, ids) == before


TEXT_CASES = [(m, p, f) for (m, p), (_, _, _, fields) in ROUTES.items() for f in fields]


@pytest.mark.parametrize(
    ("method", "path", "field"), TEXT_CASES, ids=[f"{m} {p} {f}" for m, p, f in TEXT_CASES]
)
async def test_a_nul_in_any_text_field_is_422_naming_the_field(tmp_path, method, path, field):
    body = with_text(ROUTES[(method, path)][0], field, "long enough text\u0000")
    async with serve(tmp_path) as api:
        ids = await world(api)
        before = await snapshot(api, ids)
        status, doc = await api.call(method, concrete(path, ids), body)
        assert status == 422, doc
        assert doc["error"]["details"]["path"] == f"$.{field}"
        assert "\u0000" not in json.dumps(doc, ensure_ascii=False)
        await api.settle()
        assert await snapshot(api, ids) == before


@pytest.mark.parametrize("text", ["a\tb", "line\n", "\r", "\u001f", "del\u007f", "\u0001"])
async def test_every_control_character_in_a_reason_is_refused(tmp_path, text):
    async with serve(tmp_path) as api:
        status, doc = await api.call("POST", "/v1/signals", {"token": TOKEN, "reason": text})
        assert status == 422 and doc["error"]["details"]["path"] == "$.reason"
        assert api.daemon.engine.signals == {}


async def test_the_nul_reason_and_the_nul_agent_name_of_the_attack_are_refused(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call("POST", "/v1/signals", {"token": TOKEN, "reason": "x\u0000"})
        assert (status, doc["error"]["details"]["path"]) == (422, "$.reason")
        status, doc = await api.call("POST", "/v1/agents", {"name": "evil\u0000"})
        assert (status, doc["error"]["details"]["path"]) == (422, "$.name")
        assert api.daemon.engine.signals == {} and api.daemon.engine.agents == {}


@pytest.mark.parametrize(
    "reason", ['plain: with "colons": {"x": 1}', 'a "quoted" reason with \\ and é 🚀', "a:b:c"]
)
async def test_a_duplicate_key_is_found_past_colons_and_escapes_in_text(tmp_path, reason):
    """The fast path counts `:` (text may hold some), the slow path parses escapes: both find
    the repeated key, and the same body without it is accepted with its text intact."""
    async with serve(tmp_path) as api:
        body = json.dumps({"token": TOKEN, "reason": reason, "id": "a"})
        status, doc = await api.call(
            "POST", "/v1/signals", raw=(body[:-1] + ', "id": "b"}').encode()
        )
        assert (status, doc["error"]["details"]["path"]) == (422, "$.id")
        doc = await api.ok("POST", "/v1/signals", raw=body.encode())
        assert (await api.ok("GET", f"/v1/signals/{doc['signal_id']}"))["reason"] == reason


def test_a_config_file_agent_with_a_control_character_is_refused_naming_it(tmp_path: Path):
    config = tmp_path / "agents.toml"
    config.write_text(
        '[[agents]]\nid = "alpha"\nname = "evil\\u0000"\n\n'
        '[[agents]]\nid = "beta"\nname = "b"\n[agents.config.signals]\ntypes = ["a\\tb"]\n'
    )
    with pytest.raises(ValidationError) as err:
        load_settings(str(config), {})
    assert "name" in err.value.message and "control characters" in err.value.message
    assert "\u0000" not in err.value.message
    config.write_text(config.read_text().replace("evil\\u0000", "fine"))
    with pytest.raises(ValidationError) as err:
        load_settings(str(config), {})
    assert "config.signals.types[0]" in err.value.message


async def test_a_route_that_takes_no_body_refuses_one_and_changes_nothing(tmp_path):
    async with serve(tmp_path) as api:
        ids = await world(api)
        pause = f"/v1/agents/{ids['agent']}/pause"
        before = await snapshot(api, ids)
        status, doc = await api.call("POST", pause, raw=b'{"rule": "x"}')
        assert status == 422 and doc["error"]["details"]["path"] == "$", doc
        status, doc = await api.call(
            "POST", pause, raw=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 415, doc
        assert await snapshot(api, ids) == before
        for empty in (b"{}", b" {} "):  # an empty JSON object is no body
            status, _ = await api.call("POST", pause, raw=empty)
            assert status == 200
        status, _ = await api.call("POST", "/v1/breakers/reset", raw=b'{"rule": "x"}')
        assert status == 422
