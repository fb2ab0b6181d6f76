"""The state of one WebSocket connection (the hub in ws.py owns and drives it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from tradingd.adapters.http.auth import RateLimiter
from tradingd.adapters.http.ws_dispatch import Filter
from tradingd.adapters.http.ws_outbox import Counters, Outbox

if TYPE_CHECKING:
    from tradingd.adapters.app.settings import WsSettings


class Client:
    """One WebSocket connection: its key, bounded outbox, subscriptions (live and waiting for
    their snapshot), subscribe rate limiter, writer and timers."""

    __slots__ = (
        "id",
        "ws",
        "transport",
        "key_id",
        "outbox",
        "subs",
        "pending",
        "subscribes",
        "snapshot_at",
        "writer",
        "timers",
        "closer",
    )

    def __init__(
        self,
        cid: int,
        ws: web.WebSocketResponse,
        transport: Any,
        settings: WsSettings,
        counters: Counters,
        subscribes: RateLimiter,
        on_overflow: Callable[[Client, str], None],
    ) -> None:
        self.id = cid
        self.ws = ws
        self.transport = transport
        self.key_id: str | None = None
        self.outbox = Outbox(
            settings.queue_size,
            settings.max_queue_bytes,
            settings.max_lag_ms / 1000,
            counters,
            lambda _outbox, reason: on_overflow(self, reason),
        )
        self.subs: dict[str, Filter] = {}
        self.pending: dict[str, Filter] = {}
        self.subscribes = subscribes
        self.snapshot_at: float | None = None
        self.writer: asyncio.Task[None] | None = None
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.closer: asyncio.Task[None] | None = None
