"""The paper trading flow through the REST control port of a real in-process Daemon."""

from __future__ import annotations

from http_harness import SOL, TOKEN, TOKEN2, Api, serve

TRAILING = {"stop_loss": {"mode": "trailing", "trail_pct": 10, "default_pct": -30}}


async def open_position(api: Api, config: dict | None = None) -> tuple[str, str]:
    agent_id = await api.agent(config or TRAILING)
    await api.prices((SOL, 150.0), (TOKEN, 1.0))
    await api.ok("POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK", "strength": 4})
    await api.settle()
    doc = await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=open")
    assert len(doc["items"]) == 1
    return agent_id, doc["items"][0]["id"]


async def test_trailing_stop_closes_a_paper_position_after_the_price_falls(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert position["status"] == "open" and int(position["amount"]) > 0
        assert position["exit_reason"] is None

        await api.prices((TOKEN, 2.0))  # new peak: stop at 1.8
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert position["peak_price_usd"] == 2.0
        assert abs(position["stop_price_usd"] - 1.8) < 1e-9

        await api.prices((TOKEN, 1.7))
        await api.settle()
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert position["status"] == "closed"
        assert position["exit_reason"] == "stop_loss"
        assert int(position["realized_pnl"]) > 0
        trades = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert [t["side"] for t in trades] == ["buy", "sell"]
        assert all(t["position_id"] == position_id for t in trades)
        assert trades[1]["reason"] == "stop_loss"
        closed = await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=closed")
        assert [p["id"] for p in closed["items"]] == [position_id]
        assert (await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=open"))["items"] == []


async def test_performance_counts_the_round_trip_as_a_win(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, _ = await open_position(api)
        await api.prices((TOKEN, 2.0))
        await api.prices((TOKEN, 1.7))
        await api.settle()
        perf = await api.ok("GET", f"/v1/agents/{agent_id}/performance")
        assert (perf["trades"], perf["wins"], perf["losses"], perf["win_rate"]) == (1, 1, 0, 1.0)
        assert int(perf["realized_pnl"]) > 0
        assert perf["unrealized_pnl"] == "0"


async def test_signal_record_shows_the_filled_execution(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent(TRAILING)
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        accepted = await api.ok("POST", "/v1/signals", {"token": TOKEN, "type": "Hypersurge"})
        assert accepted["agents_matched"] == 1 and accepted["duplicate"] is False
        await api.settle()
        record = await api.ok("GET", f"/v1/signals/{accepted['signal_id']}")
        assert record["type"] == "Hypersurge" and record["token"] == TOKEN
        (execution,) = record["executions"]
        assert execution["agent_id"] == agent_id
        assert execution["status"] == "filled"
        assert execution["position_id"]


async def test_repeated_client_id_returns_the_first_response_and_trades_once(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent({"limits": {"max_positions_per_token": 5}})
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        body = {"id": "prov-123", "token": TOKEN}
        status1, first = await api.call("POST", "/v1/signals", body)
        status2, again = await api.call("POST", "/v1/signals", {**body, "strength": 5})
        assert (status1, status2) == (202, 200)
        assert again["signal_id"] == first["signal_id"]
        assert again["received_at"] == first["received_at"]
        assert again["duplicate"] is True
        await api.settle()
        positions = await api.ok("GET", f"/v1/agents/{agent_id}/positions")
        assert len(positions["items"]) == 1


async def test_sell_signal_closes_open_positions_in_the_token(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "sell"})
        await api.settle()
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert (position["status"], position["exit_reason"]) == ("closed", "signal")


async def test_manual_close_returns_the_order_and_a_second_close_conflicts(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        path = f"/v1/agents/{agent_id}/positions/{position_id}/close"
        status, doc = await api.call("POST", path, {"pct": 100})
        assert status == 202 and doc["order_id"] and doc["position_id"] == position_id
        status, doc = await api.call("POST", path, {"pct": 100})
        assert status == 409 and doc["error"]["code"] == "conflict"
        await api.settle()
        status, doc = await api.call("POST", path)
        assert status == 409
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert position["exit_reason"] == "manual"


async def test_partial_close_keeps_the_position_open(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        before = int((await api.ok("GET", f"/v1/positions/{position_id}"))["amount"])
        await api.ok("POST", f"/v1/agents/{agent_id}/positions/{position_id}/close", {"pct": 25})
        await api.settle()
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert position["status"] == "open"
        assert int(position["amount"]) == before - before * 25 // 100


async def test_paused_agent_opens_nothing_and_resumes(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        assert (await api.ok("POST", f"/v1/agents/{agent_id}/pause"))["status"] == "paused"
        accepted = await api.ok("POST", "/v1/signals", {"token": TOKEN})
        record = await api.ok("GET", f"/v1/signals/{accepted['signal_id']}")
        assert record["executions"][0]["reason"] == "agent_paused"
        assert (await api.ok("POST", f"/v1/agents/{agent_id}/resume"))["status"] == "active"
        await api.ok("POST", "/v1/signals", {"token": TOKEN})
        await api.settle()
        assert len((await api.ok("GET", f"/v1/agents/{agent_id}/positions"))["items"]) == 1


async def test_halt_skips_buys_shows_in_health_and_flattens(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        halt = await api.ok("POST", "/v1/halt", {"buys": True, "flatten": True})
        assert halt["halted"] is True and len(halt["flatten_order_ids"]) == 1
        assert (await api.ok("GET", "/health"))["halted"] is True
        await api.settle()
        assert (await api.ok("GET", f"/v1/positions/{position_id}"))["status"] == "closed"
        accepted = await api.ok("POST", "/v1/signals", {"token": TOKEN})
        record = await api.ok("GET", f"/v1/signals/{accepted['signal_id']}")
        assert record["executions"][0]["reason"] == "halted"
        assert (await api.ok("DELETE", "/v1/halt"))["halted"] is False
        assert (await api.ok("GET", "/health"))["halted"] is False


async def test_config_update_reaches_open_positions_only_when_asked(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        config = await api.ok("GET", f"/v1/agents/{agent_id}/config")
        config["stop_loss"] = {"mode": "trailing", "trail_pct": 50, "default_pct": -60}
        await api.ok("PUT", f"/v1/agents/{agent_id}/config", config)
        assert (await api.ok("GET", f"/v1/agents/{agent_id}"))["config"]["stop_loss"][
            "trail_pct"
        ] == 50
        await api.prices((TOKEN, 2.0))
        kept = await api.ok("GET", f"/v1/positions/{position_id}")
        assert abs(kept["stop_price_usd"] - 1.8) < 1e-9  # still the 10% trail it opened with
        await api.ok("PUT", f"/v1/agents/{agent_id}/config?apply_to_open=true", config)
        moved = await api.ok("GET", f"/v1/positions/{position_id}")
        assert moved["stop_price_usd"] < 1.8


async def test_price_read_back_with_age_and_unknown_token_is_404(tmp_path):
    async with serve(tmp_path) as api:
        await api.ok(
            "POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 1.5, "source": "t"}]}
        )
        price = await api.ok("GET", f"/v1/prices/{TOKEN}")
        assert (price["token"], price["price_usd"], price["source"]) == (TOKEN, 1.5, "t")
        assert price["age_ms"] >= 0 and price["ts"].endswith("Z")
        status, doc = await api.call("GET", f"/v1/prices/{TOKEN2}")
        assert status == 404 and doc["error"]["code"] == "not_found"


async def test_agent_with_open_position_cannot_be_deleted_until_closed(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, position_id = await open_position(api)
        status, doc = await api.call("DELETE", f"/v1/agents/{agent_id}")
        assert status == 409
        await api.ok("POST", f"/v1/agents/{agent_id}/positions/{position_id}/close")
        await api.settle()
        status, _ = await api.call("DELETE", f"/v1/agents/{agent_id}")
        assert status == 204
        status, _ = await api.call("GET", f"/v1/agents/{agent_id}")
        assert status == 404


async def test_rename_and_balances(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent(deposit="5000000000")
        renamed = await api.ok("PATCH", f"/v1/agents/{agent_id}", {"name": "renamed"})
        assert renamed["name"] == "renamed"
        (balance,) = await api.ok("GET", f"/v1/agents/{agent_id}/balances")
        assert balance == {
            "asset": "SOL",
            "decimals": 9,
            "total": "5000000000",
            "reserved": "0",
            "available": "5000000000",
        }
        after = await api.ok(
            "POST", f"/v1/agents/{agent_id}/deposits", {"asset": "SOL", "amount": "1"}
        )
        assert after["total"] == "5000000001"


async def test_deposit_into_a_live_venue_agent_conflicts(tmp_path):
    async with serve(tmp_path) as api:
        api.daemon.runtime.venues["jupiter"] = api.daemon.runtime.venues["paper"]  # a stand-in
        await api.ok("POST", "/v1/wallets", {"name": "w", "passphrase": "p" * 12, "id": "w1"})
        agent = await api.ok(
            "POST", "/v1/agents", {"name": "live", "venue": "jupiter", "wallet_id": "w1"}
        )
        status, doc = await api.call(
            "POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": "1"}
        )
        assert status == 409 and doc["error"]["code"] == "paper_venue_only"
