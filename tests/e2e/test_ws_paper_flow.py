"""The paper flow over HTTP with a dashboard on the WebSocket, against the real `tradingd run`
process: every message arrives with seq = previous + 1, the buy and the stop-loss sell arrive as
`trade` messages, and the position's life as `position` messages."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec

from tests.polling import poll_until_async

SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


class Api:
    def __init__(self, session: aiohttp.ClientSession, daemon: Any) -> None:
        self.session, self.base = session, daemon.base_url
        self.headers = daemon.headers

    async def ok(self, method: str, path: str, body: object = None) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as resp:
            assert resp.status < 300, (method, path, resp.status, await resp.text())
            return await resp.json()


class Stream:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        doc: dict[str, Any] = msgspec.json.decode(msg.data)
        assert doc["seq"] == len(self.seen) + 1, (doc["seq"], len(self.seen))
        self.seen.append(doc)
        return doc

    async def until(self, pred: Any, limit: int = 500) -> dict[str, Any]:
        """The first message (read from now on) that satisfies `pred`."""
        return await poll_until_async(self.next, pred, tries=limit, interval_s=0, what="message")


def is_position(event: str) -> Any:
    return lambda d: d["type"] == "position" and d["data"]["event"] == event


async def test_paper_flow_on_the_websocket_has_consecutive_seq_and_trade_messages(
    daemon: Any,
) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, daemon)
        agent = await api.ok(
            "POST",
            "/v1/agents",
            {
                "name": "ws-e2e",
                "venue": "paper",
                "quote": "SOL",
                "config": {"stop_loss": {"mode": "trailing", "trail_pct": 10, "default_pct": -30}},
            },
        )
        await api.ok(
            "POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": "5000000000"}
        )
        await api.ok(
            "POST",
            "/v1/prices",
            {"ticks": [{"token": SOL, "price_usd": 150.0}, {"token": TOKEN, "price_usd": 1.0}]},
        )
        async with session.ws_connect(daemon.base_url.replace("http", "ws") + "/v1/ws") as ws:
            await ws.send_json({"op": "auth", "key": daemon.admin_key})
            stream = Stream(ws)
            await ws.send_json(
                {
                    "op": "subscribe",
                    "channels": ["positions", "trades", "signals", "prices"],
                    "agents": [agent["id"]],
                }
            )
            snapshot = await stream.next()
            assert snapshot["type"] == "snapshot" and snapshot["data"]["positions"] == []
            assert {SOL, TOKEN} <= {p["token"] for p in snapshot["data"]["prices"]}

            await api.ok("POST", "/v1/signals", {"id": "ws-e2e-1", "token": TOKEN, "strength": 4})
            buy = await stream.until(lambda d: d["type"] == "trade")
            assert buy["data"]["side"] == "buy" and buy["data"]["token"] == TOKEN
            assert buy["data"]["quote_amount"].isdigit() and buy["data"]["venue"] == "paper"
            opened = await stream.until(is_position("opened"))
            position_id = opened["data"]["id"]
            assert buy["data"]["position_id"] == position_id

            await api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 2.0}]})
            await api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 1.7}]})
            sell = await stream.until(lambda d: d["type"] == "trade")
            assert sell["data"]["side"] == "sell" and sell["data"]["reason"] == "stop_loss"
            closed = await stream.until(is_position("closed"))
            assert (
                closed["data"]["id"] == position_id and closed["data"]["exit_reason"] == "stop_loss"
            )

            kinds = {d["type"] for d in stream.seen}
            assert {"snapshot", "signal", "trade", "position", "prices"} <= kinds
            assert [d["seq"] for d in stream.seen] == list(range(1, len(stream.seen) + 1))
            trades = (await api.ok("GET", f"/v1/agents/{agent['id']}/trades"))["items"]
            assert [t["id"] for t in trades] == [buy["data"]["id"], sell["data"]["id"]]


async def test_websocket_refuses_a_key_without_read_scope(daemon: Any) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, daemon)
        created = await api.ok("POST", "/v1/keys", {"name": "feeder", "scopes": ["feed"]})
        url = daemon.base_url.replace("http", "ws") + "/v1/ws"
        headers = {"Authorization": f"Bearer {created['key']}"}
        try:
            async with session.ws_connect(url, headers=headers):
                raise AssertionError("connected without the read scope")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403


async def test_heartbeats_and_metrics_reach_a_real_client(daemon_factory: Any) -> None:
    daemon = daemon_factory(config_text="[ws]\nheartbeat_s = 0.1\n")
    async with aiohttp.ClientSession() as session:
        url = daemon.base_url.replace("http", "ws") + "/v1/ws"
        async with session.ws_connect(url, headers=daemon.headers) as ws:
            stream = Stream(ws)
            beats = [await stream.until(lambda d: d["type"] == "heartbeat") for _ in range(2)]
            assert beats[1]["seq"] == beats[0]["seq"] + 1
            async with session.get(daemon.base_url + "/metrics", headers=daemon.headers) as resp:
                text = await resp.text()
        assert "tradingd_ws_clients 1.0" in text
        assert "tradingd_event_loop_lag_seconds_bucket" in text
    await asyncio.to_thread(daemon.stop)
    assert daemon.exit_code == 0
