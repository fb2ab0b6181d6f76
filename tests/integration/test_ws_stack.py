"""Support for the WebSocket tests (no tests here): a real Daemon (memory engine, paper venue)
behind an in-process aiohttp server routing only `/v1/ws`, and a client that checks every
message's seq on arrival."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import Settings, WsSettings
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.http.auth import KeyStore
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Signal, Tick

from tests.polling import poll_until_async

TOKEN_A = demo_mint("WS-A")
TOKEN_B = demo_mint("WS-B")
RECV_TIMEOUT_S = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Stack:
    def __init__(self, **ws: Any) -> None:
        settings = Settings()
        settings.ws = WsSettings(**{"heartbeat_s": 3600.0, **ws})
        self.daemon = Daemon(settings, demo=False)
        self.keys = KeyStore(None)
        self.daemon.keys = self.keys
        self.read_key = self.keys.create("dashboard", frozenset({"read"}))[1]
        self.feed_key = self.keys.create("feeder", frozenset({"feed"}))[1]
        self.hub = self.daemon.build_hub()
        self.metrics: Any = None
        self.app = web.Application()
        self.app.router.add_get("/v1/ws", self.hub.handle)
        self.client: TestClient[Any, Any] | None = None

    @property
    def runtime(self) -> Any:
        return self.daemon.runtime

    @property
    def engine(self) -> Any:
        return self.daemon.engine

    async def start(self) -> Stack:
        self.client = TestClient(TestServer(self.app, host="127.0.0.1"))
        await self.client.start_server()
        return self

    async def stop(self) -> None:
        await self.daemon.shutdown()  # drains orders, cancels background tasks, closes the hub
        if self.client is not None:
            await self.client.close()

    async def connect(self, key: str | None = None, header: bool = True) -> Reader:
        assert self.client is not None
        headers = {"Authorization": f"Bearer {key or self.read_key}"} if header else {}
        ws = await self.client.ws_connect("/v1/ws", headers=headers)
        if not header:
            await ws.send_json({"op": "auth", "key": key or self.read_key})
        return Reader(ws)

    # -- building state through the runtime, like the REST routes do -------------------------

    def create_agent(self, agent_id: str, amount: str = "1000000000") -> None:
        config = config_from_builtins(
            {
                "sizing": {"mode": "fixed", "amount": amount},
                "limits": {"max_positions_per_token": 5},
            }
        )
        self.runtime.apply(
            self.engine.create_agent, agent_id, "paper", config, "SOL", None, agent_id
        )
        self.runtime.apply(self.engine.deposit, agent_id, "SOL", 100 * 10**9)

    def prices(self, *pairs: tuple[str, float]) -> None:
        ts = now_ms()
        self.runtime.push_ticks(
            [
                Tick(token, price, ts, "test", decimals=9 if token == SOL_MINT else 6)
                for token, price in pairs
            ]
        )

    def signal(self, token: str, signal_id: str, side: str = "buy") -> None:
        now = now_ms()
        sig = Signal(
            id=signal_id,
            token=token,
            side=side,
            type="t",
            strength=3,  # type: ignore[arg-type]
            received_at=now,
            expires_at=now + 30_000,
        )
        self.runtime.apply(self.engine.on_signal, sig)

    async def settle(self) -> None:
        assert await self.runtime.wait_orders(5.0)


class Reader:
    """Receives JSON messages and asserts seq is 1, 2, 3, ... with no gap."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        doc: dict[str, Any] = msgspec.json.decode(msg.data)
        assert set(doc) == {"type", "seq", "ts", "data"}, doc
        assert doc["seq"] == len(self.seen) + 1, (doc["seq"], len(self.seen))
        self.seen.append(doc)
        return doc

    async def recv_type(self, type_: str, limit: int = 200) -> dict[str, Any]:
        for _ in range(limit):
            doc = await self.recv()
            if doc["type"] == type_:
                return doc
        raise AssertionError(f"no {type_!r} message in {limit}")

    async def until(self, pred: Any, limit: int = 200) -> list[dict[str, Any]]:
        """Every message received up to and including the first that satisfies `pred`."""
        start = len(self.seen)
        await poll_until_async(self.recv, pred, tries=limit, interval_s=0, what="ws message")
        return self.seen[start:]

    async def subscribe(
        self, channels: list[str], agents: list[str] | None = None, tokens: list[str] | None = None
    ) -> dict[str, Any]:
        await self.ws.send_json(
            {"op": "subscribe", "channels": channels, "agents": agents, "tokens": tokens}
        )
        return await self.recv_type("snapshot")

    async def quiet(self, seconds: float = 0.2) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` (for asserting that nothing of a kind came)."""
        got: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + seconds
        for _ in range(1000):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                got.append(await self.recv(timeout=left))
            except TimeoutError:
                break
        return got

    async def close(self) -> None:
        await self.ws.close()


SOL = (SOL_MINT, 150.0)
