"""An in-process control port over a real Daemon (memory store, paper venue, no feeds) served by
aiohttp's TestServer on 127.0.0.1, and a small client that speaks its API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import Settings, load_settings
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.adapters.http.server import wire_control_port

from tests.polling import poll_until_async

ADMIN = "tdk_test_admin_bootstrap_key"
SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"  # BONK
TOKEN2 = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


class Api:
    def __init__(self, client: TestClient, daemon: Daemon) -> None:
        self.client = client
        self.daemon = daemon

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = ADMIN,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            if resp.content_type == "application/json" and text:
                return resp.status, json.loads(text)
            return resp.status, text

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, doc = await self.call(method, path, body, **kw)
        assert status < 300, (method, path, status, doc)
        return doc

    async def key(self, *scopes: str) -> str:
        doc = await self.ok("POST", "/v1/keys", {"name": "-".join(scopes), "scopes": list(scopes)})
        return str(doc["key"])

    async def agent(
        self, config: dict[str, Any] | None = None, deposit: str = "10000000000"
    ) -> str:
        doc = await self.ok("POST", "/v1/agents", {"name": "t", "config": config or {}})
        await self.ok(
            "POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "SOL", "amount": deposit}
        )
        return str(doc["id"])

    async def prices(self, *pairs: tuple[str, float]) -> None:
        ticks = [{"token": t, "price_usd": p} for t, p in pairs]
        await self.ok("POST", "/v1/prices", {"ticks": ticks})

    async def settle(self) -> None:
        """Let paper orders in flight fill (they complete within a few loop iterations)."""
        await self.daemon.runtime.wait_orders(5.0)

    async def wait_for(self, path: str, predicate: Any, tries: int = 100) -> Any:
        """GET `path` until its document satisfies `predicate`; returns that document."""
        return await poll_until_async(
            lambda: self.ok("GET", path), predicate, tries=tries, what=path
        )


def make_daemon(
    data_dir: Path,
    prices: dict[str, Any] | None = None,
    *,
    configure: Callable[[Settings], None] | None = None,
    **http: Any,
) -> Daemon:
    """A Daemon on the memory store with `[http]` and `[prices]` values changed, and then
    whatever `configure` changes in the settings (a whole section) before it is built."""
    settings = load_settings(None, {"TRADINGD_STORE": "memory", "TRADINGD_DATA_DIR": str(data_dir)})
    settings.feeds.synthetic.enabled = False  # only the prices a test pushes
    for name, value in http.items():
        setattr(settings.http, name, value)
    for name, value in (prices or {}).items():
        setattr(settings.prices, name, value)
    if configure is not None:
        configure(settings)
    daemon = Daemon(settings, demo=False)
    daemon.keys = KeyStore(keys_path(data_dir), bootstrap_key=ADMIN)
    return daemon


@asynccontextmanager
async def serve(
    data_dir: Path,
    *,
    ready: bool = True,
    prices: dict[str, Any] | None = None,
    configure: Callable[[Settings], None] | None = None,
    **http: Any,
) -> AsyncIterator[Api]:
    daemon = make_daemon(data_dir, prices, configure=configure, **http)
    app = wire_control_port(daemon)
    daemon.ready = ready
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        try:
            yield Api(client, daemon)
        finally:
            await daemon.hub.close_all()
            await daemon.shutdown()
