"""History that left the engine's memory is served from Postgres, the system of record, with the
same shape and paging: signal ids past the dedupe window (answered as duplicates, also after a
restart that restores only the window), signals, closed positions and trades. Real Redis and
Postgres, the real control port, the in-memory bounds set small through the config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from http_harness import ADMIN, SOL, TOKEN, Api
from store_harness import StoreServers
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import load_settings
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.adapters.http.server import wire_control_port


@asynccontextmanager
async def persistent(
    data_dir: Path, servers: StoreServers, namespace: str, **engine: Any
) -> AsyncIterator[Api]:
    settings = load_settings(None, {"TRADINGD_DATA_DIR": str(data_dir)})
    settings.feeds.synthetic.enabled = False
    settings.store.kind = "external"
    settings.store.redis_url, settings.store.database_url = servers.redis_url, servers.database_url
    for name, value in engine.items():
        setattr(settings.engine, name, value)
    daemon = Daemon(settings, demo=False)
    daemon.keys = KeyStore(keys_path(data_dir), bootstrap_key=ADMIN)
    await daemon.open_store(namespace=namespace)
    app = wire_control_port(daemon)
    daemon.ready = True
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        try:
            yield Api(client, daemon)
        finally:
            await daemon.hub.close_all()
            await daemon.shutdown()


async def written_behind(api: Api) -> None:
    assert await api.daemon.store.writer.drain(10.0), "write-behind did not drain"


async def walk(api: Api, path: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a paged list, following next_cursor (bounded)."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        sep = "&" if "?" in path else "?"
        query = f"{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await api.ok("GET", path + query)
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path}: more than 100 pages")


async def test_an_id_past_the_dedupe_window_is_a_duplicate_from_postgres(
    tmp_path, store_servers, namespace
):
    bounds = {"dedupe_max_ids": 3}
    async with persistent(tmp_path, store_servers, namespace, **bounds) as api:
        await api.agent()  # no price for TOKEN: every signal reaches it and skips (no_price)
        first: dict[str, dict[str, Any]] = {}
        shown: dict[str, dict[str, Any]] = {}
        for i in range(5):
            status, doc = await api.call("POST", "/v1/signals", {"id": f"prov-{i}", "token": TOKEN})
            assert status == 202
            first[f"prov-{i}"] = doc
            shown[f"prov-{i}"] = await api.ok("GET", f"/v1/signals/{doc['signal_id']}")
        engine = api.daemon.engine
        assert sorted(engine.signal_by_client) == ["prov-2", "prov-3", "prov-4"]
        await written_behind(api)

        status, again = await api.call("POST", "/v1/signals", {"id": "prov-0", "token": TOKEN})
        assert status == 200 and again == {**first["prov-0"], "duplicate": True}
        assert sorted(engine.signal_by_client) == ["prov-2", "prov-3", "prov-4"]  # nothing new
        old = await api.ok("GET", f"/v1/signals/{first['prov-0']['signal_id']}")
        assert old == shown["prov-0"] and old["executions"][0]["reason"] == "no_price"
        status, doc = await api.call("POST", "/v1/signals", {"id": "prov-new", "token": TOKEN})
        assert status == 202 and doc["duplicate"] is False
        status, _ = await api.call("GET", "/v1/signals/sig_unknown")
        assert status == 404

    # a restart restores only the window; the ids before it are still answered from Postgres
    async with persistent(tmp_path, store_servers, namespace, **bounds) as api:
        engine = api.daemon.engine
        assert sorted(engine.signal_by_client) == ["prov-3", "prov-4", "prov-new"]
        assert engine.signal_window.forgotten == 0
        for client_id in ("prov-0", "prov-1"):
            status, again = await api.call("POST", "/v1/signals", {"id": client_id, "token": TOKEN})
            assert status == 200 and again == {**first[client_id], "duplicate": True}


async def test_closed_positions_and_trades_past_memory_are_paged_from_postgres(
    tmp_path, store_servers, namespace, monkeypatch
):
    async with persistent(tmp_path, store_servers, namespace, closed_positions_kept=2) as api:
        agent_id = await api.agent()
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        closed: list[dict[str, Any]] = []
        for _ in range(5):
            await api.ok("POST", "/v1/signals", {"token": TOKEN})
            await api.settle()
            await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "sell"})
            await api.settle()
            page = await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=closed")
            closed.append(page["items"][-1])
        engine = api.daemon.engine
        assert len(engine.agent_positions[agent_id]) == 2
        oldest = closed[0]["id"]
        assert oldest not in engine.positions
        await written_behind(api)

        assert await api.ok("GET", f"/v1/positions/{oldest}") == closed[0]
        status, doc = await api.call("POST", f"/v1/agents/{agent_id}/positions/{oldest}/close")
        assert status == 409 and doc["error"]["details"]["status"] == "closed"
        path = f"/v1/agents/{agent_id}/positions"
        assert await walk(api, path + "?status=closed", 2) == closed
        assert await walk(api, path, 3) == closed
        assert await walk(api, path + "?status=open", 2) == []

        trades = await walk(api, f"/v1/agents/{agent_id}/trades", 100)
        assert len(trades) == 10 and {t["position_id"] for t in trades} == {p["id"] for p in closed}
        # what settlement does to an agent's trades past its in-memory bound: the oldest go
        from tradingd.adapters.http import routes_positions

        monkeypatch.setattr(routes_positions, "TRADES_KEPT", 3)
        del engine.trades[agent_id][:7]
        assert await walk(api, f"/v1/agents/{agent_id}/trades", 3) == trades


async def test_a_postgres_that_does_not_answer_blocks_neither_intake_nor_lists_memory_holds(
    tmp_path, store_servers, namespace
):
    import asyncpg

    async with persistent(tmp_path, store_servers, namespace, dedupe_max_ids=3) as api:
        api.daemon.store.history.timeout_s = 0.3
        agent = await api.agent()
        for i in range(5):  # ids leave the window: a new id would be looked up in Postgres
            await api.ok("POST", "/v1/signals", {"id": f"p-{i}", "token": TOKEN})
        await written_behind(api)
        for path in ("/v1/signals/%00", "/v1/positions/x%00"):  # Postgres refuses NUL: not 503
            status, _ = await api.call("GET", path)
            assert status == 404, path
        conn = await asyncpg.connect(store_servers.database_url)
        try:
            tx = conn.transaction()
            await tx.start()  # Postgres holds every read of these tables: it does not answer
            await conn.execute(
                f'LOCK TABLE "{namespace}".signals, "{namespace}".positions, '
                f'"{namespace}".trades IN ACCESS EXCLUSIVE MODE'
            )
            status, doc = await api.call("POST", "/v1/signals", {"id": "p-new", "token": TOKEN})
            assert status == 202 and doc["duplicate"] is False
            for path in ("/trades", "/positions", "/positions?status=closed"):
                status, doc = await api.call("GET", f"/v1/agents/{agent}{path}")
                assert status == 200 and doc["items"] == [], path
            await tx.rollback()
        finally:
            await conn.close()
