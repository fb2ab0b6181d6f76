"""Exact money through the control port of a real in-process Daemon: ticks of one push settle
one at a time, exits asked during an in-flight order are kept, bad ticks are counted."""

from __future__ import annotations

import time
from typing import Any

from http_harness import TOKEN, Api, serve

USDC_COSTS = {"slippage_bps": 0, "fee_bps": 0}
LADDER_AND_STOP = {
    "sizing": {"mode": "fixed", "amount": "100000000"},
    "execution": USDC_COSTS,
    "take_profit": {"enabled": True, "levels": [{"gain_pct": 50, "sell_pct": 50}]},
    "stop_loss": {"mode": "fixed", "default_pct": -10},
}


async def usdc_agent(api: Api, config: dict[str, Any]) -> str:
    doc = await api.ok("POST", "/v1/agents", {"name": "u", "quote": "USDC", "config": config})
    await api.ok(
        "POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "USDC", "amount": "1000000000"}
    )
    return str(doc["id"])


async def push(api: Api, *prices: float, **extra: Any) -> dict[str, Any]:
    ticks = [{"token": TOKEN, "price_usd": p, "decimals": 6, **extra} for p in prices]
    return await api.ok("POST", "/v1/prices", {"ticks": ticks})


async def sells(api: Api, agent: str) -> list[tuple[str, str, str, float]]:
    trades = (await api.ok("GET", f"/v1/agents/{agent}/trades"))["items"]
    return [
        (t["amount"], t["quote_amount"], t["reason"], t["price_usd"])
        for t in trades
        if t["side"] == "sell"
    ]


async def buy(api: Api, agent: str, price: float) -> None:
    await push(api, price)
    await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
    await api.settle()


async def test_one_push_of_two_ticks_settles_each_exit_at_its_own_tick(tmp_path):
    async with serve(tmp_path) as api:
        agent = await usdc_agent(api, LADDER_AND_STOP)
        await buy(api, agent, 1.0)
        await push(api, 1.5, 1.39)
        await api.settle()
        assert await sells(api, agent) == [
            ("50000000", "75000000", "take_profit", 1.5),
            ("50000000", "69500000", "stop_loss", 1.39),
        ]
        positions = (await api.ok("GET", f"/v1/agents/{agent}/positions?status=closed"))["items"]
        assert [p["exit_reason"] for p in positions] == ["stop_loss"]


async def test_a_take_profit_is_never_booked_at_a_later_crash_price(tmp_path):
    async with serve(tmp_path) as api:
        agent = await usdc_agent(api, LADDER_AND_STOP)
        await buy(api, agent, 1.0)
        await push(api, 1.5, 0.5)
        await api.settle()
        assert await sells(api, agent) == [
            ("50000000", "75000000", "take_profit", 1.5),
            ("50000000", "25000000", "stop_loss", 0.5),
        ]


async def test_push_reports_future_and_out_of_order_ticks_and_a_future_tick_locks_nothing(
    tmp_path,
):
    async with serve(tmp_path) as api:
        now = int(time.time() * 1000)
        doc = await api.ok(
            "POST",
            "/v1/prices",
            {
                "ticks": [
                    {"token": TOKEN, "price_usd": 1.0, "ts": now, "decimals": 6},
                    {"token": TOKEN, "price_usd": 9.0, "ts": now + 86_400_000},
                    {"token": TOKEN, "price_usd": 0.5, "ts": now - 1000},
                ]
            },
        )
        assert doc == {
            "accepted": 1,
            "rejected": 2,
            "reasons": {"future": 1, "out_of_order": 1},
        }
        await push(api, 2.0, ts=now + 10)
        assert (await api.ok("GET", f"/v1/prices/{TOKEN}"))["price_usd"] == 2.0
        metrics = await api.ok("GET", "/metrics")
        assert 'tradingd_ticks_rejected_total{reason="future"} 1.0' in metrics


async def test_a_tick_whose_decimals_conflict_is_422_and_applies_nothing(tmp_path):
    async with serve(tmp_path) as api:
        await push(api, 1.0)
        status, doc = await api.call(
            "POST",
            "/v1/prices",
            {
                "ticks": [
                    {"token": TOKEN, "price_usd": 3.0},
                    {"token": TOKEN, "price_usd": 2.0, "decimals": 9},
                ]
            },
        )
        assert status == 422 and doc["error"]["details"]["path"] == "$.ticks[1].decimals"
        assert (await api.ok("GET", f"/v1/prices/{TOKEN}"))["price_usd"] == 1.0
        status, doc = await api.call(
            "POST", "/v1/signals", {"token": TOKEN, "strength": 3, "decimals": 9}
        )
        assert status == 422 and doc["error"]["details"]["path"] == "$.decimals"


async def test_close_during_a_partial_take_profit_on_a_delayed_venue_is_kept_and_applied(
    tmp_path,
):
    async with serve(tmp_path) as api:
        api.daemon.runtime.venues["paper"].fill_delay_ms = 200  # a live venue's round trip
        config = {**LADDER_AND_STOP, "stop_loss": {"enabled": False}}
        agent = await usdc_agent(api, config)
        await buy(api, agent, 1.0)
        await push(api, 1.5)  # the take-profit sells half: in flight for 200 ms
        positions = (await api.ok("GET", f"/v1/agents/{agent}/positions"))["items"]
        position_id = positions[0]["id"]
        assert positions[0]["status"] == "closing"
        status, doc = await api.call(
            "POST", f"/v1/agents/{agent}/positions/{position_id}/close", {"pct": 100}
        )
        assert status == 202 and doc["pending"] is True and doc["order_id"] is None
        await api.settle()
        assert [(s[0], s[2]) for s in await sells(api, agent)] == [
            ("50000000", "take_profit"),
            ("50000000", "manual"),
        ]
        position = await api.ok("GET", f"/v1/positions/{position_id}")
        assert (position["status"], position["exit_reason"]) == ("closed", "manual")


async def test_sell_signal_during_a_delayed_dca_buy_is_applied_and_recorded(tmp_path):
    async with serve(tmp_path) as api:
        api.daemon.runtime.venues["paper"].fill_delay_ms = 200
        config = {
            **LADDER_AND_STOP,
            "take_profit": {"enabled": False},
            "stop_loss": {"enabled": False},
            "dca": {"enabled": True, "levels": [{"drop_pct": -10, "buy_pct": 50}]},
        }
        agent = await usdc_agent(api, config)
        await buy(api, agent, 1.0)
        await push(api, 0.9)  # DCA buy in flight
        doc = await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "sell", "strength": 3})
        await api.settle()
        assert [(s[0], s[1], s[2]) for s in await sells(api, agent)] == [
            ("150000000", "135000000", "signal")
        ]
        record = await api.ok("GET", f"/v1/signals/{doc['signal_id']}")
        assert [e["status"] for e in record["executions"]] == ["filled"]
