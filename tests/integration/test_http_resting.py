"""Resting entries (limit and stop buys) through the REST control port of a real in-process
Daemon: they rest with their quote reserved, fill when the price meets them (paper), expire,
are cancelled by the key that posted them (or admin), and bad ones are refused with nothing
reserved."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from http_harness import SOL, TOKEN, TOKEN2, Api, serve
from test_history_postgres import persistent, written_behind
from tradingd.adapters.app.cli import main
from tradingd.adapters.app.settings import engine_options, load_settings

from tests.polling import poll_until_async

HOUR_MS = 3_600_000
AMOUNT = "100000000"  # the default fixed buy: 0.1 SOL


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def limit_signal(price: float, **extra: Any) -> dict[str, Any]:
    return {
        "token": TOKEN,
        "entry": {"type": "limit", "price_usd": price},
        "expires_at": now_ms() + HOUR_MS,
        **extra,
    }


async def sol_balance(api: Api, agent_id: str) -> dict[str, Any]:
    balances = await api.ok("GET", f"/v1/agents/{agent_id}/balances")
    return next(b for b in balances if b["asset"] == "SOL")


async def execution(api: Api, signal_id: str) -> dict[str, Any]:
    (ex,) = (await api.ok("GET", f"/v1/signals/{signal_id}"))["executions"]
    return ex


async def rested(api: Api, config: dict[str, Any] | None = None, **extra: Any) -> tuple[str, str]:
    """An agent with a limit buy at 0.9 resting while TOKEN is at 1.0: (agent id, signal id)."""
    agent_id = await api.agent(config)
    await api.prices((SOL, 150.0), (TOKEN, 1.0))
    status, doc = await api.call("POST", "/v1/signals", limit_signal(0.9), **extra)
    assert status == 202, doc
    return agent_id, doc["signal_id"]


# -- resting and filling ----------------------------------------------------------------------


async def test_limit_entry_rests_with_its_quote_reserved(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, signal_id = await rested(api)
        ex = await execution(api, signal_id)
        assert (ex["status"], ex["reason"], ex["position_id"]) == ("resting", "", None)
        balance = await sol_balance(api, agent_id)
        assert balance["reserved"] == AMOUNT
        assert int(balance["available"]) == 10_000_000_000 - int(AMOUNT)
        assert await api.ok("GET", f"/v1/agents/{agent_id}/positions") == {
            "items": [],
            "next_cursor": None,
        }


async def test_signal_record_shows_its_entry_condition(tmp_path):
    async with serve(tmp_path) as api:
        _, signal_id = await rested(api)
        record = await api.ok("GET", f"/v1/signals/{signal_id}")
        assert record["entry"] == {"type": "limit", "price_usd": 0.9}
        plain = await api.ok("POST", "/v1/signals", {"token": TOKEN2})
        assert (await api.ok("GET", f"/v1/signals/{plain['signal_id']}"))["entry"] is None


async def test_agent_entries_list_the_resting_buy(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, signal_id = await rested(api)
        doc = await api.ok("GET", f"/v1/agents/{agent_id}/entries")
        (entry,) = doc["items"]
        assert doc["next_cursor"] is None
        assert entry["id"].startswith("ent_")
        assert (entry["agent_id"], entry["signal_id"], entry["token"]) == (
            agent_id,
            signal_id,
            TOKEN,
        )
        assert (entry["type"], entry["price_usd"], entry["amount"]) == ("limit", 0.9, AMOUNT)
        assert (entry["quote"], entry["quote_decimals"]) == ("SOL", 9)
        assert entry["created_at"].endswith("Z") and entry["expires_at"].endswith("Z")


async def test_agent_entries_are_paginated_oldest_first(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, first = await rested(api, {"limits": {"max_positions_per_token": 5}})
        second = (await api.ok("POST", "/v1/signals", limit_signal(0.8)))["signal_id"]
        path = f"/v1/agents/{agent_id}/entries"
        page1 = await api.ok("GET", f"{path}?limit=1")
        assert [e["signal_id"] for e in page1["items"]] == [first]
        page2 = await api.ok("GET", f"{path}?limit=1&cursor={page1['next_cursor']}")
        assert [e["signal_id"] for e in page2["items"]] == [second]
        assert page2["next_cursor"] is None


async def test_agent_entries_of_an_unknown_agent_are_404(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", "/v1/agents/nope/entries")
        assert status == 404 and doc["error"]["code"] == "not_found"


async def test_limit_entry_fills_when_the_price_falls_to_it(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, signal_id = await rested(api)
        await api.prices((TOKEN, 0.95))  # not yet
        assert (await execution(api, signal_id))["status"] == "resting"
        await api.prices((TOKEN, 0.85))
        await api.settle()
        ex = await execution(api, signal_id)
        assert ex["status"] == "filled" and ex["position_id"]
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert trade["side"] == "buy" and trade["price_usd"] <= 0.9
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"] == []
        assert (await sol_balance(api, agent_id))["reserved"] == "0"


async def test_limit_fill_never_pays_above_the_limit_even_with_slippage(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, signal_id = await rested(api, {"execution": {"slippage_bps": 1000}})
        await api.prices((TOKEN, 0.88))  # 10 % slippage would pay 0.968
        await api.settle()
        assert (await execution(api, signal_id))["status"] == "filled"
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert trade["price_usd"] == pytest.approx(0.9, rel=1e-12)
        assert trade["price_usd"] <= 0.9


async def test_stop_entry_fills_when_the_price_rises_to_it(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        body = {**limit_signal(1.2), "entry": {"type": "stop", "price_usd": 1.2}}
        signal_id = (await api.ok("POST", "/v1/signals", body))["signal_id"]
        await api.prices((TOKEN, 1.1))
        assert (await execution(api, signal_id))["status"] == "resting"
        await api.prices((TOKEN, 1.25))
        await api.settle()
        assert (await execution(api, signal_id))["status"] == "filled"
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert trade["price_usd"] >= 1.2


async def test_marketable_limit_executes_at_once(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        signal_id = (await api.ok("POST", "/v1/signals", limit_signal(1.1)))["signal_id"]
        await api.settle()
        assert (await execution(api, signal_id))["status"] == "filled"
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"] == []


async def test_repeated_client_id_rests_once(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        body = limit_signal(0.8, id="prov-1")
        first = await api.ok("POST", "/v1/signals", body)
        status, again = await api.call("POST", "/v1/signals", body)
        assert status == 200 and again["duplicate"] is True
        assert again["signal_id"] == first["signal_id"]
        entries = (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"]
        assert [e["signal_id"] for e in entries] == [first["signal_id"]]
        assert (await sol_balance(api, agent_id))["reserved"] == AMOUNT


async def test_one_tick_fills_the_better_limit_first_and_skips_the_other_at_the_limit(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()  # max_positions_per_token 1: only one may open
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        lower = (await api.ok("POST", "/v1/signals", limit_signal(0.8)))["signal_id"]
        higher = (await api.ok("POST", "/v1/signals", limit_signal(0.9)))["signal_id"]
        assert (await sol_balance(api, agent_id))["reserved"] == str(2 * int(AMOUNT))
        await api.prices((TOKEN, 0.7))  # meets both
        await api.settle()
        assert (await execution(api, higher))["status"] == "filled"
        ex = await execution(api, lower)
        assert (ex["status"], ex["reason"]) == ("skipped", "max_positions_per_token")
        assert (await sol_balance(api, agent_id))["reserved"] == "0"
        assert len((await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]) == 1


async def test_entry_expires_and_releases_its_reservation(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        body = {**limit_signal(0.5), "expires_at": now_ms() + 300}
        signal_id = (await api.ok("POST", "/v1/signals", body))["signal_id"]
        assert (await execution(api, signal_id))["status"] == "resting"

        async def after_a_tick() -> dict[str, Any]:
            await api.prices((TOKEN, 1.0))  # a tick past the expiry ends it
            return await execution(api, signal_id)

        ex = await poll_until_async(
            after_a_tick, lambda e: e["status"] != "resting", tries=200, interval_s=0.02
        )
        assert (ex["status"], ex["reason"]) == ("skipped", "expired")
        assert (await sol_balance(api, agent_id))["reserved"] == "0"
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"] == []


# -- cancelling -------------------------------------------------------------------------------


async def test_delete_cancels_the_resting_entry_and_releases_the_quote(tmp_path):
    async with serve(tmp_path) as api:
        key = await api.key("signals")
        agent_id, signal_id = await rested(api, key=key)
        status, doc = await api.call("DELETE", f"/v1/signals/{signal_id}", key=key)
        assert status == 200, doc
        assert (doc["signal_id"], doc["cancelled"]) == (signal_id, 1)
        (entry,) = doc["entries"]
        assert (entry["agent_id"], entry["amount"], entry["type"]) == (agent_id, AMOUNT, "limit")
        assert (await sol_balance(api, agent_id))["reserved"] == "0"
        ex = await execution(api, signal_id)
        assert (ex["status"], ex["reason"]) == ("skipped", "cancelled")
        await api.prices((TOKEN, 0.5))  # the price comes: nothing buys
        await api.settle()
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"] == []


async def test_second_delete_cancels_nothing(tmp_path):
    async with serve(tmp_path) as api:
        key = await api.key("signals")
        _, signal_id = await rested(api, key=key)
        await api.ok("DELETE", f"/v1/signals/{signal_id}", key=key)
        status, doc = await api.call("DELETE", f"/v1/signals/{signal_id}", key=key)
        assert status == 200
        assert (doc["cancelled"], doc["entries"]) == (0, [])


async def test_delete_by_another_signals_key_is_404_and_cancels_nothing(tmp_path):
    async with serve(tmp_path) as api:
        owner, other = await api.key("signals"), await api.key("signals")
        agent_id, signal_id = await rested(api, key=owner)
        status, doc = await api.call("DELETE", f"/v1/signals/{signal_id}", key=other)
        assert status == 404 and doc["error"]["code"] == "not_found"
        assert (await execution(api, signal_id))["status"] == "resting"
        assert (await sol_balance(api, agent_id))["reserved"] == AMOUNT


async def test_admin_cancels_a_signal_another_key_posted(tmp_path):
    async with serve(tmp_path) as api:
        owner = await api.key("signals")
        agent_id, signal_id = await rested(api, key=owner)
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}")  # the admin key
        assert doc["cancelled"] == 1
        assert (await sol_balance(api, agent_id))["reserved"] == "0"


async def test_delete_of_an_unknown_signal_is_404(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call("DELETE", "/v1/signals/sig_unknown")
        assert status == 404 and doc["error"]["code"] == "not_found"


async def test_delete_needs_the_signals_scope(tmp_path):
    async with serve(tmp_path) as api:
        _, signal_id = await rested(api)
        status, doc = await api.call(
            "DELETE", f"/v1/signals/{signal_id}", key=await api.key("read")
        )
        assert status == 403 and doc["error"]["details"]["scope"] == "signals"


async def test_delete_after_the_fill_cancels_nothing(tmp_path):
    async with serve(tmp_path) as api:
        key = await api.key("signals")
        agent_id, signal_id = await rested(api, key=key)
        await api.prices((TOKEN, 0.85))
        await api.settle()
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}", key=key)
        assert doc["cancelled"] == 0
        assert (await execution(api, signal_id))["status"] == "filled"


async def test_delete_of_a_plain_signal_cancels_nothing(tmp_path):
    async with serve(tmp_path) as api:
        key = await api.key("signals")
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        signal_id = (await api.ok("POST", "/v1/signals", {"token": TOKEN}, key=key))["signal_id"]
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}", key=key)
        assert doc["cancelled"] == 0


# -- refused ----------------------------------------------------------------------------------


def _bad_bodies() -> list[tuple[str, dict[str, Any], str]]:
    ok = {"token": TOKEN, "entry": {"type": "limit", "price_usd": 0.9}}
    later = now_ms() + HOUR_MS
    return [
        ("missing expires_at", ok, "$.expires_at"),
        ("expires_at in the past", {**ok, "expires_at": now_ms() - 1000}, "$.expires_at"),
        ("expires_at beyond max_resting_s", {**ok, "expires_at": now_ms() + 90_000_000}, "$.expires_at"),
        ("expires_at a string", {**ok, "expires_at": str(later)}, "$.expires_at"),
        ("expires_at without entry", {"token": TOKEN, "expires_at": later}, "$.expires_at"),
        ("expires_in_ms with entry", {**ok, "expires_at": later, "expires_in_ms": 1000}, "$.expires_in_ms"),
        ("price zero", {**ok, "expires_at": later, "entry": {"type": "limit", "price_usd": 0}}, "$.entry.price_usd"),
        ("price negative", {**ok, "expires_at": later, "entry": {"type": "stop", "price_usd": -1}}, "$.entry.price_usd"),
        ("price a string", {**ok, "expires_at": later, "entry": {"type": "limit", "price_usd": "0.9"}}, "$.entry.price_usd"),
        ("price missing", {**ok, "expires_at": later, "entry": {"type": "limit"}}, "$.entry"),
        ("type market", {**ok, "expires_at": later, "entry": {"type": "market", "price_usd": 1}}, "$.entry.type"),
        ("unknown entry field", {**ok, "expires_at": later, "entry": {"type": "limit", "price_usd": 1, "size": 2}}, "$.entry.size"),
        ("sell with entry", {**ok, "expires_at": later, "side": "sell"}, "$.entry"),
        ("control character", {**ok, "expires_at": later, "reason": "a\u0000b"}, "$.reason"),
    ]  # fmt: skip


@pytest.mark.parametrize("name", [case[0] for case in _bad_bodies()])
async def test_bad_resting_signal_is_422_and_reserves_nothing(tmp_path: Path, name: str):
    _, body, path = next(c for c in _bad_bodies() if c[0] == name)
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        status, doc = await api.call("POST", "/v1/signals", body)
        assert status == 422, doc
        assert doc["error"]["code"] == "validation_error"
        assert doc["error"]["details"]["path"] == path, doc
        assert (await sol_balance(api, agent_id))["reserved"] == "0"
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"] == []
        assert (await api.ok("GET", "/v1/signals"))["items"] == []


async def test_plain_signal_keeps_its_expires_in_ms_default(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("POST", "/v1/signals", {"token": TOKEN})
        record = await api.ok("GET", f"/v1/signals/{doc['signal_id']}")
        assert record["entry"] is None
        received, expires = (iso(record[k]) for k in ("received_at", "expires_at"))
        assert expires - received == timedelta(milliseconds=30_000)


# -- configuration ----------------------------------------------------------------------------


def test_engine_resting_bounds_come_from_the_config(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nmax_resting_s = 60\nmax_resting_entries = 7\n")
    options = engine_options(load_settings(str(path), {}))
    assert (options["max_resting_ms"], options["max_resting_entries"]) == (60_000, 7)
    defaults = engine_options(load_settings(None, {}))
    assert (defaults["max_resting_ms"], defaults["max_resting_entries"]) == (86_400_000, 100_000)


def test_check_config_refuses_a_zero_max_resting_s(tmp_path: Path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nmax_resting_s = 0\n")
    assert main(["check-config", str(path)]) != 0
    assert "max_resting_s" in capsys.readouterr().err


# -- the OpenAPI document ---------------------------------------------------------------------


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def _response_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path][method]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


async def test_resting_responses_validate_against_the_openapi_document(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        agent_id, signal_id = await rested(api)
        checks = [
            ("/v1/agents/{agent_id}/entries", "get", f"/v1/agents/{agent_id}/entries"),
            ("/v1/signals/{signal_id}", "get", f"/v1/signals/{signal_id}"),
            ("/v1/signals", "get", "/v1/signals"),
            ("/v1/signals/{signal_id}", "delete", f"/v1/signals/{signal_id}"),
        ]
        for template, method, path in checks:
            body = await api.ok(method.upper(), path)
            _validator(doc, _response_schema(doc, template, method)).validate(body)
        body = await api.ok("GET", f"/v1/signals/{signal_id}")
        assert body["executions"][0]["status"] == "skipped"  # cancelled by the DELETE above


async def test_openapi_documents_the_entry_fields_of_a_signal(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
    schemas = doc["components"]["schemas"]
    signal_in = schemas["SignalIn"]["properties"]
    assert {"entry", "expires_at", "expires_in_ms"} <= set(signal_in)
    assert schemas["EntryIn"]["properties"]["type"] == {"enum": ["limit", "stop"]}
    assert "resting" in schemas["ExecutionOut"]["properties"]["status"]["enum"]
    assert "entry" in schemas["SignalOut"]["properties"]
    delete = doc["paths"]["/v1/signals/{signal_id}"]["delete"]
    assert delete["x-scope"] == "signals" and "404" in delete["responses"]
    valid = {"token": TOKEN, "entry": {"type": "stop", "price_usd": 2}, "expires_at": now_ms()}
    body_schema = doc["paths"]["/v1/signals"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    _validator(doc, body_schema).validate(valid)


# -- signals that left the dedupe window (real Redis and Postgres) ------------------------------


async def test_poster_of_a_signal_past_the_window_is_known_by_its_resting_entry(
    tmp_path, store_servers, namespace
):
    async with persistent(tmp_path, store_servers, namespace, dedupe_max_ids=1) as api:
        owner, other = await api.key("signals"), await api.key("signals")
        await api.agent({"limits": {"max_positions_per_token": 5}})
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        signal_id = (await api.ok("POST", "/v1/signals", limit_signal(0.9), key=owner))["signal_id"]
        await api.ok("POST", "/v1/signals", {"token": TOKEN2}, key=owner)
        assert signal_id not in api.daemon.engine.signals  # left the window; its entry rests
        status, _ = await api.call("DELETE", f"/v1/signals/{signal_id}", key=other)
        assert status == 404
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}", key=owner)
        assert doc["cancelled"] == 1


async def test_poster_of_a_signal_past_the_window_is_read_from_postgres(
    tmp_path, store_servers, namespace
):
    async with persistent(tmp_path, store_servers, namespace, dedupe_max_ids=1) as api:
        owner, other = await api.key("signals"), await api.key("signals")
        await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        signal_id = (await api.ok("POST", "/v1/signals", limit_signal(0.9), key=owner))["signal_id"]
        assert (await api.ok("DELETE", f"/v1/signals/{signal_id}", key=owner))["cancelled"] == 1
        await api.ok("POST", "/v1/signals", {"token": TOKEN2}, key=owner)
        assert signal_id not in api.daemon.engine.signals
        await written_behind(api)
        status, doc = await api.call("DELETE", f"/v1/signals/{signal_id}", key=other)
        assert status == 404 and doc["error"]["code"] == "not_found"
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}", key=owner)
        assert (doc["signal_id"], doc["cancelled"]) == (signal_id, 0)


async def test_a_resting_buy_and_its_cancel_survive_a_restart(tmp_path, store_servers, namespace):
    async with persistent(tmp_path, store_servers, namespace) as api:
        key = await api.key("signals")
        agent_id, signal_id = await rested(api, key=key)
    async with persistent(tmp_path, store_servers, namespace) as api:
        entries = (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"]
        assert [e["signal_id"] for e in entries] == [signal_id]
        assert (await sol_balance(api, agent_id))["reserved"] == AMOUNT
        doc = await api.ok("DELETE", f"/v1/signals/{signal_id}", key=key)  # the key survives too
        assert doc["cancelled"] == 1
    async with persistent(tmp_path, store_servers, namespace) as api:
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/entries"))["items"] == []
        assert (await sol_balance(api, agent_id))["reserved"] == "0"
        ex = await execution(api, signal_id)
        assert (ex["status"], ex["reason"]) == ("skipped", "cancelled")


async def test_a_cancel_over_http_reaches_the_recording(tmp_path):
    import asyncio

    from tradingd.adapters.app.recording import wire_recorder
    from tradingd.adapters.feeds.recorder import Recorder
    from tradingd.adapters.feeds.replay import CancelRecord, SignalRecord, read_files

    base = tmp_path / "rec" / "ticks.jsonl"
    async with serve(tmp_path / "data") as api:
        recorder = Recorder(base)
        recorder.start()
        task = asyncio.create_task(recorder.run())
        wire_recorder(recorder, api.daemon.runtime)
        _, signal_id = await rested(api)
        assert (await api.ok("DELETE", f"/v1/signals/{signal_id}"))["cancelled"] == 1
        await recorder.close()
        task.cancel()
    records = list(read_files(sorted(base.parent.glob("ticks-*.jsonl"))))
    (entry,) = [r for r in records if isinstance(r, SignalRecord)]
    assert entry.ref == signal_id and entry.id is None and entry.entry is not None
    assert [r for r in records if isinstance(r, CancelRecord)] == [
        CancelRecord(ts=records[-1].ts, signal=signal_id)
    ]
