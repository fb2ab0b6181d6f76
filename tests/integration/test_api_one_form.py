"""REST and the WebSocket give one client-facing shape per thing, with one form per field: the
same trade, position and signal read over both carry the same values, timestamps as ISO-8601
strings in both, prices as the float nearest the exact value (issue 9: `0.000020200000000000003`
was shown for a fill at 0.00002 + 1% slippage; a take-profit level one ulp below its value)."""

from __future__ import annotations

from typing import Any

from http_harness import SOL, TOKEN, Api, serve
from test_ws_stack import Reader

ISO = "2000-01-01T00:00:00.000Z"
# 1% slippage on 0.00002 fills at exactly 0.0000202; the take-profit is 50% above it.
CONFIG = {
    "execution": {"slippage_bps": 100, "fee_bps": 0},
    "take_profit": {"enabled": True, "levels": [{"gain_pct": 50, "sell_pct": 25}]},
}


async def _socket(api: Api) -> Reader:
    key = await api.key("read")
    ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {key}"})
    reader = Reader(ws)
    await reader.subscribe(["positions", "trades", "signals"])
    return reader


async def _buy(api: Api) -> tuple[str, Reader, list[dict[str, Any]]]:
    agent_id = await api.agent(CONFIG)
    await api.prices((SOL, 150.0), (TOKEN, 0.00002))
    reader = await _socket(api)
    await api.ok("POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK", "strength": 4})
    await api.settle()
    got = await reader.until(lambda d: d["type"] == "position" and d["data"]["event"] == "opened")
    return agent_id, reader, got


def _is_iso(value: object) -> bool:
    return isinstance(value, str) and len(value) == len(ISO) and value.endswith("Z")


async def test_a_trade_over_rest_and_over_the_socket_is_the_same_trade(tmp_path):
    async with serve(tmp_path) as api:
        agent_id, reader, got = await _buy(api)
        streamed = next(d["data"] for d in got if d["type"] == "trade")
        (listed,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert streamed.pop("order_id")  # what only the stream carries
        assert streamed == listed
        assert _is_iso(listed["ts"]) and streamed["ts"] == listed["ts"]
        assert listed["price_usd"] == 2.02e-05  # not 2.0200000000000003e-05
        await reader.close()


async def test_a_position_over_rest_and_over_the_socket_is_the_same_position(tmp_path):
    async with serve(tmp_path) as api:
        _, reader, got = await _buy(api)
        streamed = got[-1]["data"]
        assert streamed.pop("event") == "opened"
        rest = await api.ok("GET", f"/v1/positions/{streamed['id']}")
        assert streamed == rest
        assert _is_iso(rest["opened_at"]) and rest["closed_at"] is None
        assert rest["entry_price_usd"] == 2.02e-05
        # 50% above 0.0000202 is exactly 0.0000303: shown as the nearest float, not the float
        # one ulp below (3.0299999999999998e-05) that the engine compares ticks with
        assert rest["next_take_profit_usd"] == 3.03e-05
        await reader.close()


async def test_a_signal_over_rest_and_over_the_socket_has_the_same_shape(tmp_path):
    async with serve(tmp_path) as api:
        _, reader, got = await _buy(api)
        got += await reader.until(
            lambda d: d["type"] == "signal" and d["data"].get("status") == "filled"
        )
        signals = [d["data"] for d in got if d["type"] == "signal"]
        streamed = next(s for s in signals if s["event"] == "received")
        rest = await api.ok("GET", f"/v1/signals/{streamed['signal_id']}")
        assert _is_iso(rest["expires_at"]) and _is_iso(rest["received_at"])
        # the same signal, field for field; its executions follow as `execution` messages
        assert {k: v for k, v in streamed.items() if k != "event"} == {**rest, "executions": []}
        latest = {  # each agent's last execution message (pending, then filled)
            x["agent_id"]: {k: v for k, v in x.items() if k not in ("event", "signal_id", "token")}
            for x in signals
            if x["event"] == "execution"
        }
        assert list(latest.values()) == rest["executions"]
        await reader.close()


async def test_the_envelope_time_stays_epoch_milliseconds(tmp_path):
    async with serve(tmp_path) as api:
        _, reader, got = await _buy(api)
        assert all(isinstance(d["ts"], int) and d["ts"] > 1_700_000_000_000 for d in got)
        await reader.close()
