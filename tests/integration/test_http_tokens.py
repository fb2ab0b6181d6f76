"""Market data through the control port: prices from several sources with priority, the
cross-check blocking buys, GET /v1/tokens/{token} and the WebSocket `tokens` channel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.http_harness import ADMIN, SOL, TOKEN, Api, serve

POLICY = {"sources": ["oracle", "pools"], "max_divergence_pct": 5.0}
POOL = {
    "liquidity_usd": 2_000_000.0,
    "market_cap_usd": 400_000_000.0,
    "fdv_usd": 400_000_000.0,
    "volume_24h_usd": 5_000_000.0,
}


async def push(api: Api, *ticks: dict[str, Any]) -> dict[str, Any]:
    return await api.ok("POST", "/v1/prices", {"ticks": list(ticks)})


async def test_a_token_shows_each_source_the_selected_one_and_its_market_data(tmp_path):
    async with serve(tmp_path, prices=POLICY) as api:
        now = api.daemon.runtime.clock()
        pool = {**POOL, "pair_created_at": now - 90 * 86_400_000}
        assert (
            await push(
                api, {"token": TOKEN, "price_usd": 1.0, "source": "oracle", "conf_usd": 0.0005}
            )
        )["accepted"] == 1
        doc = await push(api, {"token": TOKEN, "price_usd": 1.01, "source": "pools", **pool})
        assert doc == {"accepted": 0, "rejected": 1, "reasons": {"secondary": 1}}
        view = await api.ok("GET", f"/v1/tokens/{TOKEN}")
        assert (view["price_usd"], view["source"]) == (1.0, "oracle")
        assert [(s["source"], s["selected"], s["rank"], s["fresh"]) for s in view["sources"]] == [
            ("oracle", True, 0, True),
            ("pools", False, 1, True),
        ]
        assert view["liquidity_usd"] == 2_000_000.0 and view["market_source"] == "pools"
        assert view["confidence_pct"] == 0.05
        assert view["divergence"] is None and view["buys_blocked"] is False
        # known: every factor but volatility (too few samples yet)
        assert view["risk"]["missing"] == ["volatility"]
        assert view["risk"]["score"] == 15


async def test_an_unknown_token_is_404_and_a_bad_mint_422(tmp_path):
    async with serve(tmp_path) as api:
        status, doc = await api.call("GET", f"/v1/tokens/{TOKEN}")
        assert status == 404 and doc["error"]["code"] == "not_found"
        status, doc = await api.call("GET", "/v1/tokens/not-a-mint")
        assert status == 422


async def test_divergence_blocks_buys_until_the_sources_agree(tmp_path):
    async with serve(tmp_path, prices=POLICY) as api:
        aid = await api.agent({})
        await push(api, {"token": SOL, "price_usd": 150.0, "decimals": 9})
        await push(
            api,
            {"token": TOKEN, "price_usd": 1.0, "source": "oracle", "decimals": 6},
            {"token": TOKEN, "price_usd": 1.2, "source": "pools"},
        )
        view = await api.ok("GET", f"/v1/tokens/{TOKEN}")
        assert view["divergence"] == {
            "prices": {"oracle": 1.0, "pools": 1.2},
            "spread_pct": 20.0,
        }
        assert view["buys_blocked"] is True
        sig = await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        doc = await api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        assert [(e["agent_id"], e["reason"]) for e in doc["executions"]] == [
            (aid, "price_divergence")
        ]
        await push(api, {"token": TOKEN, "price_usd": 1.01, "source": "pools"})
        sig = await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        doc = await api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        assert doc["executions"][0]["reason"] == ""


async def test_the_tokens_channel_sends_a_snapshot_then_a_view_when_market_data_changes(tmp_path):
    async with serve(tmp_path, prices=POLICY) as api:
        api.daemon.settings.ws.token_interval_ms = 10
        api.daemon.hub.dispatch.token_interval_s = 0.01
        await push(api, {"token": TOKEN, "price_usd": 1.0, "source": "oracle"})
        ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            await ws.send_str(
                json.dumps({"op": "subscribe", "channels": ["tokens"], "tokens": [TOKEN]})
            )
            snap = await asyncio.wait_for(ws.receive_json(), 5)
            assert snap["type"] == "snapshot"
            (token,) = snap["data"]["tokens"]
            assert token["token"] == TOKEN and token["liquidity_usd"] is None
            await push(api, {"token": TOKEN, "price_usd": 1.0, "source": "pools", **POOL})
            msg = await asyncio.wait_for(ws.receive_json(), 5)
            assert msg["type"] == "token"
            assert msg["data"]["liquidity_usd"] == 2_000_000.0
            assert msg["data"]["risk"]["factors"]["liquidity"]["risk"] == 0.0
        finally:
            await ws.close()


async def test_a_push_cannot_pass_its_prices_off_as_a_daemon_feed(tmp_path):
    async with serve(tmp_path, prices=POLICY) as api:
        for source in ("pyth", "dexscreener", "synthetic", "replay", "Pyth", " pyth", "PYTH "):
            status, doc = await api.call(
                "POST",
                "/v1/prices",
                {"ticks": [{"token": TOKEN, "price_usd": 1.0, "source": source}]},
            )
            assert status == 422 and doc["error"]["details"]["path"] == "$.ticks[0].source"
        assert TOKEN not in api.daemon.engine.prices


async def test_unlisted_sources_neither_block_buys_nor_replace_listed_pool_data(tmp_path):
    async with serve(tmp_path, prices=POLICY) as api:
        await api.agent({"signals": {"min_liquidity_usd": 1_000_000}})
        await push(api, {"token": SOL, "price_usd": 150.0, "decimals": 9})
        await push(
            api,
            {"token": TOKEN, "price_usd": 1.0, "source": "oracle", "decimals": 6},
            {"token": TOKEN, "price_usd": 1.0, "source": "pools", **POOL},
        )
        # a feed key's own source: far off, thin pool
        doc = await push(
            api, {"token": TOKEN, "price_usd": 0.5, "source": "mine", "liquidity_usd": 10.0}
        )
        assert doc["reasons"] == {"secondary": 1}
        view = await api.ok("GET", f"/v1/tokens/{TOKEN}")
        assert view["divergence"] is None and view["liquidity_usd"] == 2_000_000.0
        sig = await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        doc = await api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        assert doc["executions"][0]["reason"] == ""


async def test_a_push_of_thousands_of_tokens_does_not_cut_a_tokens_subscriber(tmp_path):
    # the attack: ~2,100 tokens with pool data in one push closed every unfiltered `tokens`
    # subscriber with slow_consumer (1013), however fast it read
    from tests.integration.test_http_price_bound import mint

    async with serve(tmp_path, prices={"max_tokens": 5000}) as api:
        api.daemon.hub.dispatch.token_interval_s = 0.05
        ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            await ws.send_str(json.dumps({"op": "subscribe", "channels": ["tokens"]}))
            assert (await asyncio.wait_for(ws.receive_json(), 5))["type"] == "snapshot"
            for start in range(0, 2500, 500):
                ticks = [
                    {"token": mint(i), "price_usd": 1.0, "liquidity_usd": 50_000.0}
                    for i in range(start, start + 500)
                ]
                await api.ok("POST", "/v1/prices", {"ticks": ticks})
            seen = 0
            while seen < 300:
                msg = await asyncio.wait_for(ws.receive_json(), 5)
                assert msg["type"] == "token", msg
                seen += 1
        finally:
            await ws.close()


async def test_a_flood_of_other_tokens_does_not_starve_a_filtered_tokens_subscriber(tmp_path):
    # the re-attack: 150 low-sorting mints re-pushed every interval kept a subscriber filtered
    # to one token from ever getting its `token` message (views went out in address order)
    from tests.integration.test_http_price_bound import mint

    async with serve(tmp_path, prices={"max_tokens": 5000}) as api:
        api.daemon.hub.dispatch.token_interval_s = 0.05
        ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"})
        try:
            await ws.send_str(
                json.dumps({"op": "subscribe", "channels": ["tokens"], "tokens": [TOKEN]})
            )
            assert (await asyncio.wait_for(ws.receive_json(), 5))["type"] == "snapshot"
            flood = [mint(i) for i in range(150)]
            for round_ in range(3):
                ticks = [{"token": t, "price_usd": 1.0, "liquidity_usd": 5e4} for t in flood]
                if round_ == 1:
                    ticks.append({"token": TOKEN, "price_usd": 1.0, "liquidity_usd": 7e5})
                await api.ok("POST", "/v1/prices", {"ticks": ticks})
            msg = await asyncio.wait_for(ws.receive_json(), 5)
            assert msg["type"] == "token" and msg["data"]["token"] == TOKEN
            assert msg["data"]["liquidity_usd"] == 7e5
        finally:
            await ws.close()


async def test_a_held_token_without_a_fresh_price_degrades_health(tmp_path):
    # the re-attack: Pyth frozen and DexScreener dropping the token left a held position with
    # no price any stop could act on, while every feed's own health said ok
    async with serve(tmp_path, prices={"max_price_age_ms": 300}) as api:
        await api.agent({})
        await push(api, {"token": SOL, "price_usd": 150.0, "decimals": 9})
        await push(api, {"token": TOKEN, "price_usd": 1.0, "decimals": 6})
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        await api.settle()
        health = await api.ok("GET", "/health")
        assert health["components"]["prices"] == {"status": "ok", "held_tokens": 1}
        await asyncio.sleep(0.35)
        health = await api.ok("GET", "/health")
        assert health["components"]["prices"]["stale_tokens"] == [TOKEN]
        assert health["status"] == "degraded"


async def test_an_unlisted_source_cannot_supply_the_market_data_the_filters_read(tmp_path):
    # the final attack: with the listed feeds silent, a push key's own source sent liquidity,
    # market cap and age of 1e9 and an old pair, and the buy went through both filters
    async with serve(tmp_path, prices=POLICY) as api:
        await api.agent({"signals": {"min_liquidity_usd": 50_000, "max_risk_score": 70}})
        await push(api, {"token": SOL, "price_usd": 150.0, "decimals": 9})
        doc = await push(
            api,
            {"token": TOKEN, "price_usd": 1.0, "source": "friend", "decimals": 6, **POOL},
        )
        assert doc["accepted"] == 1  # its price is taken (nothing listed is fresh) ...
        view = await api.ok("GET", f"/v1/tokens/{TOKEN}")
        assert view["liquidity_usd"] is None  # ... but not its market data
        sig = await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        doc = await api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        assert doc["executions"][0]["reason"] == "liquidity_unknown"
