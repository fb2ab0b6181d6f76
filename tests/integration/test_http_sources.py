"""Signal sources on the control port: scorecards per source and per agent (`/v1/sources...`,
`/v1/agents/{id}/sources`), attribution on positions and trades, and the per-source breaker
tripping, refusing the source's buys, and being reset over the API."""

from __future__ import annotations

from pathlib import Path

from http_harness import TOKEN, Api, serve

USDC_DEPOSIT = "1000000000"  # 1,000 USDC
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},  # 100 USDC a buy
    "limits": {"max_open_positions": 10, "max_positions_per_token": 10},
    "stop_loss": {"mode": "fixed", "default_pct": -10},
    "execution": {"slippage_bps": 0, "fee_bps": 0},
    "source_breaker": {"enabled": True, "consecutive_losses": 2},
}


async def usdc_agent(api: Api, config: dict = CONFIG) -> str:
    doc = await api.ok("POST", "/v1/agents", {"name": "a", "quote": "USDC", "config": config})
    await api.ok(
        "POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "USDC", "amount": USDC_DEPOSIT}
    )
    return str(doc["id"])


async def signal(api: Api, source: str, side: str = "buy") -> dict:
    body = {"token": TOKEN, "side": side, "source": source, "type": "breakout", "strength": 3}
    return await api.ok("POST", "/v1/signals", body)


async def round_trip(api: Api, source: str, entry: float, exit_: float) -> None:
    """Buy at `entry` on a `source` signal; leave at `exit_` (a stop-out below -10 %, else a
    sell signal from the same source)."""
    await api.prices((TOKEN, entry))
    await signal(api, source)
    await api.settle()
    await api.prices((TOKEN, exit_))
    if exit_ > entry * 0.9:
        await signal(api, source, side="sell")
    await api.settle()


async def test_scorecards_show_each_sources_trades_exactly(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api, {**CONFIG, "source_breaker": {"enabled": False}})
        await round_trip(api, "alpha", 1.0, 1.5)  # +50 USDC
        await round_trip(api, "alpha", 1.0, 0.8)  # -20 USDC (stop at 0.9 sells at 0.8)
        await round_trip(api, "beta", 2.0, 2.5)  # +25 USDC
        page = await api.ok("GET", "/v1/sources?window=all")
        names = [s["source"] for s in page["items"]]
        assert names == ["alpha", "beta"]
        alpha = page["items"][0]["stats"]
        assert alpha["signals"]["received"] == 3  # two buys and one sell signal
        assert (alpha["trades"], alpha["wins"], alpha["losses"]) == (2, 1, 1)
        assert alpha["realized_pnl"] == {"USDC": "30000000"}
        assert alpha["realized_pnl_usd"] == "30"
        assert alpha["best_trade_usd"] == "50" and alpha["worst_trade_usd"] == "-20"
        assert alpha["avg_trade_usd"] == "15"
        assert alpha["max_drawdown_usd"] == "20"
        assert alpha["win_rate"] == 0.5
        assert alpha["avg_slippage_bps"] == 0
        detail = await api.ok("GET", "/v1/sources/alpha")
        assert set(detail["windows"]) == {"24h", "7d", "30d", "all"}
        assert detail["windows"]["24h"] == detail["windows"]["all"]  # all of it in this hour
        assert detail["agents"] == 1
        rows = await api.ok("GET", "/v1/sources/alpha/agents?window=7d")
        (row,) = rows["items"]
        assert (row["agent_id"], row["realized_pnl"], row["max_drawdown"]) == (
            aid,
            "30000000",
            "20000000",
        )
        mine = await api.ok("GET", f"/v1/agents/{aid}/sources")
        assert [r["source"] for r in mine["items"]] == ["alpha", "beta"]


async def test_positions_and_trades_name_the_signal_that_opened_them(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api)
        await api.prices((TOKEN, 1.0))
        sig = await signal(api, "alpha")
        await api.settle()
        (p,) = (await api.ok("GET", f"/v1/agents/{aid}/positions?status=open"))["items"]
        by = p["opened_by"]
        assert (by["signal_id"], by["source"], by["type"], by["strength"]) == (
            sig["signal_id"],
            "alpha",
            "breakout",
            3,
        )
        assert by["key_id"] is not None and by["price_usd"] == 1.0
        sell = await signal(api, "beta", side="sell")
        await api.settle()
        closed = await api.ok("GET", f"/v1/positions/{p['id']}")
        assert closed["exit_reason"] == "signal"
        assert closed["exit_signal_id"] == sell["signal_id"]
        trades = (await api.ok("GET", f"/v1/agents/{aid}/trades"))["items"]
        assert [(t["side"], t["signal_id"], t["source"]) for t in trades] == [
            ("buy", sig["signal_id"], "alpha"),
            ("sell", sell["signal_id"], "alpha"),
        ]


async def test_the_breaker_trips_refuses_the_source_and_is_reset_by_a_trade_key(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api)
        await round_trip(api, "alpha", 1.0, 0.8)
        await round_trip(api, "alpha", 1.0, 0.8)
        (row,) = (await api.ok("GET", f"/v1/agents/{aid}/sources"))["items"]
        assert row["breaker"]["state"] == "tripped"
        assert row["breaker"]["rule"] == "consecutive_losses"
        assert row["breaker"]["recent_pnl"] == ["-20000000", "-20000000"]
        await api.prices((TOKEN, 1.0))
        refused = await signal(api, "alpha")
        doc = await api.ok("GET", f"/v1/signals/{refused['signal_id']}")
        (execution,) = doc["executions"]
        assert (execution["status"], execution["reason"]) == ("skipped", "source_breaker")
        taken = await signal(api, "beta")
        doc = await api.ok("GET", f"/v1/signals/{taken['signal_id']}")
        assert doc["executions"][0]["status"] in ("pending", "filled")
        path = f"/v1/agents/{aid}/sources/alpha/reset"
        status, err = await api.call("POST", path, key=await api.key("read"))
        assert status == 403 and err["error"]["code"]
        reset = await api.ok("POST", path, key=await api.key("trade"))
        assert reset["reset"] is True and reset["breaker"]["state"] == "armed"
        again = await api.ok("POST", path)
        assert again["reset"] is False
        await api.settle()
        taken = await signal(api, "alpha")
        doc = await api.ok("GET", f"/v1/signals/{taken['signal_id']}")
        assert doc["executions"][0]["status"] in ("pending", "filled")


async def test_bad_requests_are_refused_in_the_one_error_shape(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api)
        status, err = await api.call("GET", "/v1/sources?window=1y")
        assert status == 422 and err["error"]["details"]["path"] == "query.window"
        status, err = await api.call("GET", "/v1/sources/nobody")
        assert status == 404 and err["error"]["code"] == "not_found"
        status, _ = await api.call("GET", "/v1/sources/nobody/agents")
        assert status == 404
        status, _ = await api.call("GET", "/v1/agents/nope/sources")
        assert status == 404
        status, _ = await api.call("POST", "/v1/agents/nope/sources/alpha/reset")
        assert status == 404
        status, err = await api.call("POST", f"/v1/agents/{aid}/sources/alpha/reset")
        assert status == 404 and err["error"]["code"] == "not_found"
        for reserved in ("other", "unattributed", "Other", "ｏｔｈｅｒ", "unattributed\u200b"):
            status, err = await api.call(
                "POST", "/v1/signals", {"token": TOKEN, "source": reserved}
            )
            assert status == 422 and err["error"]["details"]["path"] == "$.source"
        assert api.daemon.engine.signals == {}  # nothing was taken
        status, _ = await api.call("DELETE", "/v1/sources/nobody")
        assert status == 404
        for shared in ("other", "unattributed"):
            status, err = await api.call("DELETE", f"/v1/sources/{shared}")
            assert status == 422 and err["error"]["details"]["path"] == "$.source"
        key = await api.ok("POST", "/v1/keys", {"name": "tv", "scopes": ["signals"]})
        status, err = await api.call(
            "POST", "/v1/hooks", {"name": "h", "key_id": key["id"], "source": "other"}
        )
        assert status == 422 and err["error"]["details"]["path"] == "$.source"
        status, _ = await api.call("GET", "/v1/sources", key=None)
        assert status == 401
        status, err = await api.call(
            "PUT",
            f"/v1/agents/{aid}/config",
            {**CONFIG, "source_breaker": {"enabled": True}},
        )
        assert status == 422 and err["error"]["details"]["path"] == "$.source_breaker"


async def test_sources_past_the_bound_share_the_other_card(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        api.daemon.engine.scorecards.max_sources = 2
        await usdc_agent(api)
        await api.prices((TOKEN, 1.0))
        for name in ("s1", "s2", "s3", "s4"):
            await signal(api, name)
        page = await api.ok("GET", "/v1/sources?window=all")
        counts = {s["source"]: s["stats"]["signals"]["received"] for s in page["items"]}
        assert counts == {"other": 2, "s1": 1, "s2": 1}


async def test_metrics_show_each_source_and_group_the_rest_as_other(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        api.daemon.metrics.sources.max_labels = 1  # [sources] metrics_max
        await usdc_agent(api, {**CONFIG, "source_breaker": {"enabled": False}})
        await round_trip(api, "alpha", 1.0, 1.5)  # +50 USDC
        await round_trip(api, "beta", 1.0, 0.8)  # -20 USDC
        await round_trip(api, "gamma", 1.0, 0.8)  # -20 USDC
        text = await api.ok("GET", "/metrics")
        lines = set(text.splitlines())
        assert 'tradingd_source_signals_total{source="alpha"} 2.0' in lines
        assert 'tradingd_source_trades_total{result="win",source="alpha"} 1.0' in lines
        assert 'tradingd_source_realized_pnl_usd{source="alpha"} 50.0' in lines
        # beta and gamma (one buy signal each, stopped out) share the label "other"
        assert 'tradingd_source_signals_total{source="other"} 2.0' in lines
        assert 'tradingd_source_trades_total{result="loss",source="other"} 2.0' in lines
        assert 'tradingd_source_realized_pnl_usd{source="other"} -40.0' in lines
        assert not any('source="beta"' in line for line in lines)


async def test_an_admin_forgets_a_source_and_frees_its_slot(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api)
        api.daemon.engine.scorecards.max_sources = 2
        await round_trip(api, "alpha", 1.0, 0.8)
        await signal(api, "beta")
        await signal(api, "gamma")  # no room: counted under "other"
        names = {s["source"] for s in (await api.ok("GET", "/v1/sources?window=all"))["items"]}
        assert names == {"alpha", "beta", "other"}
        status, _ = await api.call("DELETE", "/v1/sources/alpha", key=await api.key("trade"))
        assert status == 403
        gone = await api.ok("DELETE", "/v1/sources/alpha")
        assert gone == {"source": "alpha", "agents": 1}
        status, _ = await api.call("GET", "/v1/sources/alpha")
        assert status == 404
        rows = (await api.ok("GET", f"/v1/agents/{aid}/sources"))["items"]
        assert "alpha" not in {r["source"] for r in rows}
        await signal(api, "gamma")  # the freed slot
        assert (await api.ok("GET", "/v1/sources/gamma"))["windows"]["all"]["signals"][
            "received"
        ] == 1


async def test_one_key_begins_at_most_max_per_key_sources(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        api.daemon.engine.scorecards.max_key_sources = 2
        flood, other = await api.key("signals"), await api.key("signals")
        for i in range(4):
            await api.ok("POST", "/v1/signals", {"token": TOKEN, "source": f"f{i}"}, key=flood)
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "source": "legit"}, key=other)
        page = await api.ok("GET", "/v1/sources?window=all")
        counts = {s["source"]: s["stats"]["signals"]["received"] for s in page["items"]}
        assert counts == {"f0": 1, "f1": 1, "other": 2, "legit": 1}


async def test_the_readmes_config_round_trip_adds_the_breaker_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        aid = await usdc_agent(api, {**CONFIG, "source_breaker": {"enabled": False}})
        config = await api.ok("GET", f"/v1/agents/{aid}/config")
        config["source_breaker"] = {"enabled": True, "consecutive_losses": 4, "min_trades": 10}
        await api.ok("PUT", f"/v1/agents/{aid}/config", config)
        after = await api.ok("GET", f"/v1/agents/{aid}/config")
        assert after["sizing"] == config["sizing"] and after["stop_loss"]["default_pct"] == -10
        assert after["source_breaker"]["consecutive_losses"] == 4
