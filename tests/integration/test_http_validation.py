"""Bad input on every write route gets its 4xx in the one error shape, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from http_harness import SOL, TOKEN, TOKEN2, Api, serve

BIG = str(2**64)  # one past the u64 maximum
OVERSIZED = json.dumps({"token": TOKEN, "reason": "x" * 70_000}).encode()


async def world(api: Api) -> dict[str, str]:
    """An agent holding one open position, prices for SOL and TOKEN, one extra key."""
    agent_id = await api.agent({"stop_loss": {"mode": "trailing", "trail_pct": 10}})
    await api.prices((SOL, 150.0), (TOKEN, 1.0))
    await api.ok("POST", "/v1/signals", {"id": "first", "token": TOKEN})
    await api.settle()
    position_id = (await api.ok("GET", f"/v1/agents/{agent_id}/positions"))["items"][0]["id"]
    await api.key("read")
    return {"agent": agent_id, "position": position_id}


async def state(api: Api, ids: dict[str, str]) -> dict[str, Any]:
    agent = f"/v1/agents/{ids['agent']}"
    paths = [
        "/v1/agents",
        "/v1/signals",
        "/v1/keys",
        f"{agent}/config",
        f"{agent}/balances",
        f"{agent}/positions",
        f"{agent}/trades",
        f"{agent}/performance",
    ]
    snapshot = {p: await api.ok("GET", p) for p in paths}
    for token in (SOL, TOKEN, TOKEN2):
        status, price = await api.call("GET", f"/v1/prices/{token}")
        snapshot[token] = (status, price.get("price_usd"), price.get("ts"))
    snapshot["halted"] = (await api.ok("GET", "/health"))["halted"]
    return snapshot


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


SIG = "/v1/signals"
PRICES = "/v1/prices"
AGENTS = "/v1/agents"
AGENT = "/v1/agents/{agent}"
CASES: list[tuple[str, str, str, bytes, int, str | None]] = [
    # name, method, path, body, status, details.path
    ("signal malformed", "POST", SIG, b'{"token": ', 400, None),
    ("signal not utf8", "POST", SIG, b'{"token": "\xff"}', 400, None),
    ("signal array", "POST", SIG, b"[]", 422, "$"),
    ("signal unknown field", "POST", SIG, j({"token": TOKEN, "strenght": 3}), 422, "$.strenght"),
    ("signal wrong type", "POST", SIG, j({"token": TOKEN, "strength": "4"}), 422, "$.strength"),
    ("signal strength 6", "POST", SIG, j({"token": TOKEN, "strength": 6}), 422, "$.strength"),
    ("signal bad side", "POST", SIG, j({"token": TOKEN, "side": "hold"}), 422, "$.side"),
    ("signal invalid mint", "POST", SIG, j({"token": "not-a-mint"}), 422, "$.token"),
    ("signal short mint", "POST", SIG, j({"token": TOKEN[:-4]}), 422, "$.token"),
    ("signal no token", "POST", SIG, j({"symbol": "X"}), 422, "$"),
    (
        "signal expiry 0",
        "POST",
        SIG,
        j({"token": TOKEN, "expires_in_ms": 0}),
        422,
        "$.expires_in_ms",
    ),
    (
        "signal expiry huge",
        "POST",
        SIG,
        j({"token": TOKEN, "expires_in_ms": 10**12}),
        422,
        "$.expires_in_ms",
    ),
    ("signal oversized", "POST", SIG, OVERSIZED, 413, None),
    ("prices malformed", "POST", PRICES, b'{"ticks": [', 400, None),
    (
        "prices NaN literal",
        "POST",
        PRICES,
        b'{"ticks": [{"token": "%s", "price_usd": NaN}]}' % TOKEN.encode(),
        400,
        None,
    ),
    (
        "prices NaN string",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": "NaN"}]}),
        422,
        "$.ticks[0].price_usd",
    ),
    (
        "prices infinite",
        "POST",
        PRICES,
        b'{"ticks": [{"token": "%s", "price_usd": 1e999}]}' % TOKEN.encode(),
        422,
        "$.ticks[0].price_usd",
    ),
    (
        "prices negative",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": -1}]}),
        422,
        "$.ticks[0].price_usd",
    ),
    (
        "prices zero",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": 0}]}),
        422,
        "$.ticks[0].price_usd",
    ),
    (
        "prices bad mint after a good tick",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": 0.5}, {"token": "bad", "price_usd": 1}]}),
        422,
        "$.ticks[1].token",
    ),
    (
        "prices negative ts",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": 1, "ts": -1}]}),
        422,
        "$.ticks[0].ts",
    ),
    ("prices unknown field", "POST", PRICES, j({"ticks": [], "extra": 1}), 422, "$.extra"),
    (
        "prices oversized",
        "POST",
        PRICES,
        j({"ticks": [{"token": TOKEN, "price_usd": 0.5, "source": "s" * 60}] * 1200}),
        413,
        None,
    ),
    ("agent malformed", "POST", AGENTS, b"{", 400, None),
    ("agent unknown field", "POST", AGENTS, j({"name": "a", "venu": "paper"}), 422, "$.venu"),
    ("agent wrong type", "POST", AGENTS, j({"name": 5}), 422, "$.name"),
    ("agent unknown venue", "POST", AGENTS, j({"name": "a", "venue": "kraken"}), 422, "$.venue"),
    (
        "agent unconfigured venue",
        "POST",
        AGENTS,
        j({"name": "a", "venue": "jupiter", "wallet_id": "w"}),
        422,
        "$.venue",
    ),
    (
        "agent invalid quote",
        "POST",
        AGENTS,
        j({"name": "a", "quote": "not-a-mint"}),
        422,
        "$.quote",
    ),
    (
        "agent config typo",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"sizing": {"amout": "1"}}}),
        422,
        "$.config.sizing.amout",
    ),
    (
        "agent negative amount",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"sizing": {"amount": "-5"}}}),
        422,
        "$.config.sizing.amount",
    ),
    (
        "agent fractional amount",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"sizing": {"amount": "1.5"}}}),
        422,
        "$.config.sizing.amount",
    ),
    (
        "agent huge amount",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"sizing": {"amount": BIG}}}),
        422,
        "$.config.sizing.amount",
    ),
    (
        "agent amount as number",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"sizing": {"amount": 5}}}),
        422,
        "$.config.sizing.amount",
    ),
    (
        "agent cross-field rule",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"signals": {"token_filter": "allow"}}}),
        422,
        "$.config.signals.tokens",
    ),
    (
        "agent invalid filter mint",
        "POST",
        AGENTS,
        j({"name": "a", "config": {"signals": {"token_filter": "deny", "tokens": ["x"]}}}),
        422,
        "$.config.signals.tokens[0]",
    ),
    ("rename empty", "PATCH", AGENT, j({"name": ""}), 422, "$.name"),
    ("rename unknown field", "PATCH", AGENT, j({"name": "b", "status": "paused"}), 422, "$.status"),
    ("rename malformed", "PATCH", AGENT, b"nope", 400, None),
    ("rename unknown agent", "PATCH", "/v1/agents/nope", j({"name": "b"}), 404, None),
    ("delete with open position", "DELETE", AGENT, b"", 409, None),
    ("delete unknown agent", "DELETE", "/v1/agents/nope", b"", 404, None),
    ("config typo", "PUT", AGENT + "/config", j({"stop_los": {}}), 422, "$.stop_los"),
    (
        "config bad value",
        "PUT",
        AGENT + "/config",
        j({"stop_loss": {"trail_pct": 150}}),
        422,
        "$.stop_loss.trail_pct",
    ),
    (
        "config bad query",
        "PUT",
        AGENT + "/config?apply_to_open=maybe",
        j({}),
        422,
        "query.apply_to_open",
    ),
    ("config malformed", "PUT", AGENT + "/config", b"{]", 400, None),
    ("pause unknown agent", "POST", "/v1/agents/nope/pause", b"", 404, None),
    ("resume unknown agent", "POST", "/v1/agents/nope/resume", b"", 404, None),
    (
        "deposit negative",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": "-1"}),
        422,
        "$.amount",
    ),
    (
        "deposit zero",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": "0"}),
        422,
        "$.amount",
    ),
    (
        "deposit fractional",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": "1.5"}),
        422,
        "$.amount",
    ),
    (
        "deposit exponent",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": "1e9"}),
        422,
        "$.amount",
    ),
    (
        "deposit over u64",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": BIG}),
        422,
        "$.amount",
    ),
    (
        "deposit balance over u64",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": str(2**64 - 1)}),
        422,
        "$.amount",
    ),
    (
        "deposit number",
        "POST",
        AGENT + "/deposits",
        j({"asset": "SOL", "amount": 100}),
        422,
        "$.amount",
    ),
    (
        "deposit invalid mint",
        "POST",
        AGENT + "/deposits",
        j({"asset": "xyz", "amount": "1"}),
        422,
        "$.asset",
    ),
    (
        "deposit unknown agent",
        "POST",
        "/v1/agents/nope/deposits",
        j({"asset": "SOL", "amount": "1"}),
        404,
        None,
    ),
    ("close pct 0", "POST", AGENT + "/positions/{position}/close", j({"pct": 0}), 422, "$.pct"),
    ("close pct 101", "POST", AGENT + "/positions/{position}/close", j({"pct": 101}), 422, "$.pct"),
    (
        "close pct text",
        "POST",
        AGENT + "/positions/{position}/close",
        j({"pct": "all"}),
        422,
        "$.pct",
    ),
    (
        "close unknown field",
        "POST",
        AGENT + "/positions/{position}/close",
        j({"pc": 5}),
        422,
        "$.pc",
    ),
    ("close malformed", "POST", AGENT + "/positions/{position}/close", b"{pct: 5}", 400, None),
    ("close unknown position", "POST", AGENT + "/positions/nope/close", j({}), 404, None),
    ("halt wrong type", "POST", "/v1/halt", j({"buys": "yes"}), 422, "$.buys"),
    ("halt unknown field", "POST", "/v1/halt", j({"buy": True}), 422, "$.buy"),
    ("key no scopes", "POST", "/v1/keys", j({"name": "k", "scopes": []}), 422, "$.scopes"),
    (
        "key unknown scope",
        "POST",
        "/v1/keys",
        j({"name": "k", "scopes": ["root"]}),
        422,
        "$.scopes[0]",
    ),
    ("key no name", "POST", "/v1/keys", j({"scopes": ["read"]}), 422, "$"),
    ("revoke unknown key", "DELETE", "/v1/keys/nope", b"", 404, None),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input_is_rejected_and_changes_nothing(
    tmp_path, method, path, body, status, field
):
    async with serve(tmp_path) as api:
        ids = await world(api)
        before = await state(api, ids)
        got, doc = await api.call(method, path.format(**ids), raw=body)
        assert got == status, doc
        assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "details"}
        if field is not None:
            assert doc["error"]["details"]["path"] == field
        await api.settle()
        assert await state(api, ids) == before


async def test_too_many_ticks_is_413_and_applies_none(tmp_path):
    async with serve(tmp_path, max_ticks_per_push=3) as api:
        ticks = [{"token": TOKEN, "price_usd": 1.0 + i} for i in range(4)]
        status, doc = await api.call("POST", "/v1/prices", {"ticks": ticks})
        assert status == 413 and doc["error"]["code"] == "too_many_ticks"
        assert (await api.call("GET", f"/v1/prices/{TOKEN}"))[0] == 404
        assert (await api.call("POST", "/v1/prices", {"ticks": ticks[:3]}))[0] == 202


async def test_oversized_chunked_body_without_length_is_413(tmp_path):
    async with serve(tmp_path) as api:

        async def chunks():
            for _ in range(20):
                yield b"x" * 8192

        async with api.client.post(
            "/v1/signals",
            data=chunks(),
            headers={
                "Authorization": "Bearer tdk_test_admin_bootstrap_key",
                "Content-Type": "application/json",
            },
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_wrong_method_use_the_error_shape(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", "/v1/nothing")
        assert status == 404 and doc["error"]["code"] == "not_found"
        status, doc = await api.call("PUT", "/v1/signals", {})
        assert status == 405 and doc["error"]["code"] == "method_not_allowed"


async def test_a_body_whose_content_encoding_does_not_decode_is_400(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call(
            "POST",
            "/v1/signals",
            raw=b'{"token": "not gzip"}',
            headers={"Content-Encoding": "gzip"},
        )
        assert status == 400 and doc["error"]["code"] == "bad_content_encoding"
