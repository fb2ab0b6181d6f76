"""Header-less ingest, `POST /v1/hooks/{hook_id}` (docs/hooks.md): TradingView-shaped bodies as
JSON and as text/plain, text lines, the json template; a revoked or unknown hook and a hook whose
key was revoked answer one 404; HMAC (401 `bad_signature`); the per-hook rate limit; the hook's
fixed source; idempotent repeats; the admin routes and the CLI; the secret in no log record."""

from __future__ import annotations

import json
import logging
import stat
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from http_harness import SOL, TOKEN, Api, serve
from tradingd.adapters.app.cli import main
from tradingd.adapters.app.settings import Settings, TokenSettings
from tradingd.adapters.hooks.config import HooksSettings
from tradingd.adapters.hooks.signature import sign
from tradingd.adapters.hooks.store import hooks_path

TV_BODY = {
    "action": "buy",
    "token": TOKEN,
    "symbol": "BONK",
    "close": 0.0000213,
    "interval": "15",
    "time": "2026-12-01T12:00:00Z",
}


def serve_hooks(data_dir: Path, **hooks: Any) -> AbstractAsyncContextManager[Api]:
    """The in-process control port (http_harness.serve) with `[hooks]` settings."""

    def configure(settings: Settings) -> None:
        settings.hooks = HooksSettings(**hooks)
        settings.tokens[TOKEN] = TokenSettings(symbol="BONK", decimals=5)

    return serve(data_dir, configure=configure)


async def priced_agent(api: Api) -> str:
    agent = await api.agent()
    await api.prices((SOL, 150.0), (TOKEN, 0.00002))
    return agent


async def signals_key(api: Api) -> str:
    doc = await api.ok("POST", "/v1/keys", {"name": "provider", "scopes": ["signals"]})
    return str(doc["id"])


async def new_hook(api: Api, key_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "tv", "key_id": key_id, **fields}
    status, doc = await api.call("POST", "/v1/hooks", body)
    assert status == 201, doc
    return dict(doc)


async def hook_post(
    api: Api, path: str, body: Any, content_type: str = "application/json", **headers: str
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.call(
        "POST", path, key=None, raw=raw, headers={"Content-Type": content_type, **headers}
    )


async def signal_of(api: Api, accepted: dict[str, Any]) -> dict[str, Any]:
    return dict(await api.ok("GET", f"/v1/signals/{accepted['signal_id']}"))


async def test_tradingview_json_body_trades_on_paper_as_the_hooks_key(tmp_path):
    async with serve_hooks(tmp_path) as api:
        agent = await priced_agent(api)
        key_id = await signals_key(api)
        hook = await new_hook(api, key_id)
        status, doc = await hook_post(api, hook["path"], {**TV_BODY, "id": "tv-1"})
        assert status == 202, doc
        signal = await signal_of(api, doc)
        assert (signal["token"], signal["side"], signal["symbol"]) == (TOKEN, "buy", "BONK")
        record = api.daemon.engine.signals[doc["signal_id"]].signal
        assert record.key_id == key_id
        await api.settle()
        positions = await api.ok("GET", f"/v1/agents/{agent}/positions?status=open")
        assert [p["token"] for p in positions["items"]] == [TOKEN]


async def test_tradingview_body_sent_as_text_plain_is_taken(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        raw = json.dumps({"action": "SELL", "token": TOKEN}).encode()
        status, doc = await hook_post(api, hook["path"], raw, "text/plain; charset=utf-8")
        assert status == 202, doc
        assert (await signal_of(api, doc))["side"] == "sell"


async def test_tradingview_ticker_is_found_in_the_tokens_table(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        body = {"action": "long", "ticker": "BONKUSDT", "strength": "4"}
        status, doc = await hook_post(api, hook["path"], body)
        assert status == 202, doc
        signal = await signal_of(api, doc)
        assert (signal["token"], signal["strength"]) == (TOKEN, 4)


async def test_an_unreplaced_tradingview_placeholder_is_a_422_and_nothing_is_submitted(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        body = {"action": "{{strategy.order.actoin}}", "token": TOKEN}
        status, doc = await hook_post(api, hook["path"], body)
        assert status == 422 and doc["error"]["details"]["path"] == "$.action"
        assert (await api.ok("GET", "/v1/signals"))["items"] == []


async def test_a_deeply_nested_body_is_a_400_not_a_500(tmp_path):
    async with serve_hooks(tmp_path) as api:
        key = await signals_key(api)
        for template in ("tradingview", "json"):
            hook = await new_hook(api, key, template=template)
            raw = b'{"action":' + b"[" * 5000 + b"]" * 5000 + b"}"
            status, doc = await hook_post(api, hook["path"], raw)
            assert status == 400 and doc["error"]["code"] == "malformed_json", doc
        assert (await api.ok("GET", "/v1/signals"))["items"] == []


async def test_text_template_line_sets_side_strength_and_type(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), template="text")
        line = f"buy {TOKEN} strength=4 type=breakout id=t-1\n".encode()
        status, doc = await hook_post(api, hook["path"], line, "text/plain")
        assert status == 202, doc
        signal = await signal_of(api, doc)
        assert (signal["side"], signal["strength"], signal["type"], signal["id"]) == (
            "buy",
            4,
            "breakout",
            "t-1",
        )


async def test_bad_text_lines_are_422_and_submit_nothing(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), template="text")
        for line in (b"hold " + TOKEN.encode(), f"buy {TOKEN} size=3".encode(), b"buy", b""):
            status, doc = await hook_post(api, hook["path"], line, "text/plain")
            assert status == 422, (line, doc)
            assert doc["error"]["code"] == "validation_error"
        assert (await api.ok("GET", "/v1/signals"))["items"] == []


async def test_json_template_is_the_signals_body_strictly(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), template="json")
        status, doc = await hook_post(api, hook["path"], {"token": TOKEN, "strenght": 2})
        assert status == 422 and "strenght" in doc["error"]["details"]["path"]
        status, doc = await hook_post(api, hook["path"], {"token": TOKEN, "side": "sell"})
        assert status == 202, doc


async def test_hooks_fixed_source_overrides_the_bodys_and_defaults_fill_gaps(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(
            api, await signals_key(api), source="tv-alpha", type="breakout", strength=3
        )
        status, doc = await hook_post(api, hook["path"], {**TV_BODY, "source": "spoofed"})
        assert status == 202, doc
        signal = await signal_of(api, doc)
        assert (signal["source"], signal["type"], signal["strength"]) == ("tv-alpha", "breakout", 3)
        status, doc = await hook_post(api, hook["path"], {**TV_BODY, "strength": 5})
        assert (await signal_of(api, doc))["strength"] == 5


async def test_a_repeated_id_is_200_with_the_first_signal_id(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        first = await hook_post(api, hook["path"], {**TV_BODY, "id": "once"})
        again = await hook_post(api, hook["path"], {**TV_BODY, "id": "once"})
        assert first[0] == 202 and again[0] == 200
        assert again[1]["signal_id"] == first[1]["signal_id"] and again[1]["duplicate"] is True
        listed = (await api.ok("GET", "/v1/hooks"))["items"][0]
        assert (listed["counts"]["accepted"], listed["counts"]["duplicate"]) == (1, 1)


async def test_unknown_revoked_and_unbound_hooks_answer_the_same_404(tmp_path):
    async with serve_hooks(tmp_path) as api:
        key_id = await signals_key(api)
        revoked = await new_hook(api, key_id)
        await api.ok("DELETE", f"/v1/hooks/{revoked['id']}")
        unbound = await new_hook(api, key_id)
        await api.ok("DELETE", f"/v1/keys/{key_id}")
        listed = {h["id"]: h["active"] for h in (await api.ok("GET", "/v1/hooks"))["items"]}
        assert listed == {unbound["id"]: False}
        answers = []
        for path in (revoked["path"], unbound["path"], "/v1/hooks/tdh_" + "A" * 43):
            status, doc = await hook_post(api, path, TV_BODY)
            assert status == 404, doc
            assert path.rsplit("/", 1)[1] not in json.dumps(doc)
            answers.append(doc)
        assert answers[0] == answers[1] == answers[2]


async def test_a_hook_needs_a_live_key_with_the_signals_scope(tmp_path):
    async with serve_hooks(tmp_path) as api:
        reader = await api.ok("POST", "/v1/keys", {"name": "r", "scopes": ["read"]})
        for key_id in (reader["id"], "key_nope", "env-admin"):
            status, doc = await api.call(
                "POST", "/v1/hooks", {"name": "x", "key_id": key_id, "template": "text"}
            )
            assert status == 422 and doc["error"]["details"]["path"] == "$.key_id", doc


async def test_hmac_hook_refuses_missing_and_wrong_signatures_and_takes_a_good_one(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), hmac=True)
        secret = hook["hmac_secret"]
        raw = json.dumps(TV_BODY).encode()
        missing = await hook_post(api, hook["path"], raw)
        wrong = await hook_post(api, hook["path"], raw, **{"X-Signature": sign("nope", raw)})
        for status, doc in (missing, wrong):
            assert status == 401 and doc["error"]["code"] == "bad_signature", doc
        assert (await api.ok("GET", "/v1/signals"))["items"] == []
        good = await hook_post(api, hook["path"], raw, **{"X-Signature": sign(secret, raw)})
        assert good[0] == 202, good
        counts = (await api.ok("GET", "/v1/hooks"))["items"][0]["counts"]
        assert (counts["bad_signature"], counts["accepted"]) == (2, 1)


async def test_hmac_with_a_timestamp_refuses_a_stale_one(tmp_path):
    async with serve_hooks(tmp_path, max_signature_age_s=60) as api:
        hook = await new_hook(api, await signals_key(api), hmac=True)
        raw = json.dumps(TV_BODY).encode()
        now_s = api.daemon.runtime.clock() // 1000
        for ts, expected in ((now_s - 3600, 401), (now_s, 202)):
            headers = {
                "X-Signature": sign(hook["hmac_secret"], raw, str(ts)),
                "X-Signature-Timestamp": str(ts),
            }
            status, doc = await hook_post(api, hook["path"], raw, **headers)
            assert status == expected, doc


async def test_each_hook_has_its_own_rate_limit(tmp_path):
    async with serve_hooks(tmp_path, rate_limit_per_s=0.01, rate_limit_burst=2) as api:
        key_id = await signals_key(api)
        busy, other = await new_hook(api, key_id), await new_hook(api, key_id)
        statuses = [(await hook_post(api, busy["path"], TV_BODY))[0] for _ in range(3)]
        assert statuses == [202, 202, 429]
        async with api.client.post(busy["path"], json=TV_BODY) as resp:
            doc = await resp.json()
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert doc["error"]["code"] == "rate_limited"
        assert (await hook_post(api, other["path"], TV_BODY))[0] == 202


async def test_other_media_types_are_415_and_bodies_over_the_limit_413(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        form = await hook_post(
            api, hook["path"], b"action=buy", "application/x-www-form-urlencoded"
        )
        assert form[0] == 415
        big = await hook_post(api, hook["path"], b"x" * (128 * 1024), "text/plain")
        assert big[0] == 413


async def test_hook_list_shows_no_secret_and_the_file_holds_only_hashes(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), hmac=True, source="tv")
        hook_id = hook["hook_id"]
        assert hook["path"] == f"/v1/hooks/{hook_id}" and hook_id.startswith("tdh_")
        listed = json.dumps(await api.ok("GET", "/v1/hooks"))
        assert hook_id not in listed and hook["hmac_secret"] not in listed
        assert hook_id[:8] in listed
        assert '"hmac":true' in listed.replace(" ", "") and '"active":true' in listed.replace(
            " ", ""
        )
        path = hooks_path(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert hook_id not in path.read_text()


async def test_the_hook_id_reaches_no_log_record_nor_metric_label(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api), template="text")
        hook_id = hook["hook_id"]
        await hook_post(api, hook["path"], f"buy {TOKEN}".encode(), "text/plain")
        await hook_post(api, hook["path"], b"nonsense", "text/plain")
        await hook_post(api, hook["path"] + "x", b"buy", "text/plain")
        status, doc = await api.call("DELETE", f"/v1/hooks/{hook_id}")  # a mistake: 404
        assert status == 404 and hook_id[4:] not in json.dumps(doc)
        await hook_post(api, hook["path"] + "/more", b"", "text/plain")
        metrics = await api.call("GET", "/metrics")
        assert "/v1/hooks/{hook_id}" in metrics[1] and hook_id[4:] not in metrics[1]
    records = [r for r in caplog.records]
    assert any(getattr(r, "hook", None) == hook["id"] for r in records)
    for record in records:
        assert hook_id[4:] not in json.dumps(vars(record), default=repr), record.getMessage()


def test_hooks_cli_creates_lists_and_revokes(tmp_path, capsys):
    assert (
        main(["keys", "create", "--name", "p", "--scopes", "signals", "--data-dir", str(tmp_path)])
        == 0
    )
    key_id = capsys.readouterr().out.split("id: ", 1)[1].split()[0]
    args = ["--data-dir", str(tmp_path)]
    assert (
        main(["hooks", "create", "--name", "tv", "--key-id", key_id, "--source", "tv", *args]) == 0
    )
    out = capsys.readouterr().out
    record_id = out.split("id: ", 1)[1].split()[0]
    secret_path = out.split("path: ", 1)[1].split()[0]
    assert secret_path.startswith("/v1/hooks/tdh_")
    assert main(["hooks", "list", *args]) == 0
    listed = capsys.readouterr().out
    assert record_id in listed and secret_path.rsplit("/", 1)[1] not in listed
    assert main(["hooks", "revoke", record_id, *args]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {record_id}"
    assert main(["hooks", "list", *args]) == 0
    assert record_id not in capsys.readouterr().out
    assert main(["hooks", "create", "--name", "x", "--key-id", "key_nope", *args]) == 2


async def test_hooks_beyond_max_hooks_are_409(tmp_path):
    async with serve_hooks(tmp_path, max_hooks=2) as api:
        key_id = await signals_key(api)
        await new_hook(api, key_id)
        await new_hook(api, key_id)
        status, doc = await api.call("POST", "/v1/hooks", {"name": "3rd", "key_id": key_id})
        assert status == 409 and doc["error"]["details"]["limit"] == 2


async def test_usage_is_saved_at_shutdown_and_read_back(tmp_path):
    async with serve_hooks(tmp_path) as api:
        hook = await new_hook(api, await signals_key(api))
        assert (await hook_post(api, hook["path"], TV_BODY))[0] == 202
        assert (await hook_post(api, hook["path"], {"action": "buy"}))[0] == 422
        assert (await hook_post(api, hook["path"], {"action": "buy", "token": "nope"}))[0] == 422
    async with serve_hooks(tmp_path) as api:
        listed = (await api.ok("GET", "/v1/hooks"))["items"][0]
        assert (listed["counts"]["accepted"], listed["counts"]["refused"]) == (1, 2)
        assert listed["last_used_at"] is not None
