"""WebSocket stream `GET /v1/ws`: subscriptions, snapshots, per-connection seq, fan-out.

(Skeleton: the interface is fixed, the implementation lands next.)"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class WsHub:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    async def close_all(self) -> None:
        return None
