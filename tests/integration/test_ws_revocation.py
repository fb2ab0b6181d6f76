"""Revoking an API key closes that key's WebSockets: at once through `DELETE /v1/keys/{id}`,
and within the key-file check interval through `tradingd keys revoke` (another process writing
the key file the daemon reads). Each closed socket hears `alert` `key_revoked`, then 1008;
sockets of other keys keep streaming."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType
from http_harness import Api, serve

REPO = Path(__file__).resolve().parents[2]
RECV_TIMEOUT_S = 5.0
CLI_TIMEOUT_S = 60.0


def patient_close(settings: Any) -> None:
    """The server waits max_lag_ms (at least 2 s; 5 s by default) for the client's close reply
    before cutting the socket. Client and server share this test's loop: on a loaded machine
    (a CI run beside other work) the client read its close too late and saw the cut, 1006,
    instead of 1008."""
    settings.ws.max_lag_ms = 30_000


async def open_subscribed(api: Api, key: str) -> Any:
    ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {key}"})
    await ws.send_json({"op": "subscribe", "channels": ["agents"]})
    snapshot = await ws.receive_json(timeout=RECV_TIMEOUT_S)
    assert snapshot["type"] == "snapshot"
    return ws


async def assert_revoked(ws: Any, timeout: float) -> None:
    alert = await ws.receive_json(timeout=timeout)
    assert alert["type"] == "alert" and alert["data"]["code"] == "key_revoked"
    assert alert["seq"] == 2  # right after the snapshot: no gap
    closing = await ws.receive(timeout=RECV_TIMEOUT_S)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    assert ws.close_code == 1008


async def assert_still_streaming(ws: Any) -> None:
    await ws.send_json({"op": "ping"})
    pong = await ws.receive_json(timeout=RECV_TIMEOUT_S)
    assert pong["type"] == "pong" and pong["seq"] == 2


async def test_delete_key_closes_that_keys_websockets_at_once(tmp_path: Path) -> None:
    async with serve(tmp_path, configure=patient_close) as api:
        revoked = await api.ok("POST", "/v1/keys", {"name": "dash", "scopes": ["read"]})
        other = await api.key("read")
        sockets = [await open_subscribed(api, revoked["key"]) for _ in range(2)]
        survivor = await open_subscribed(api, other)

        status, _ = await api.call("DELETE", f"/v1/keys/{revoked['id']}")
        assert status == 204
        for ws in sockets:
            # already on its way when DELETE answered: nothing else is due (heartbeats are 15 s)
            await assert_revoked(ws, RECV_TIMEOUT_S)
        await assert_still_streaming(survivor)
        assert len(api.daemon.hub.clients) == 1
        status, _ = await api.call("GET", "/v1/keys", key=revoked["key"])
        assert status == 401


async def test_cli_revoke_closes_that_keys_websockets_while_the_daemon_runs(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, configure=patient_close) as api:
        revoked = await api.ok("POST", "/v1/keys", {"name": "dash", "scopes": ["read"]})
        other = await api.key("read")
        ws = await open_subscribed(api, revoked["key"])
        survivor = await open_subscribed(api, other)

        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradingd.adapters.app.cli",
            "keys",
            "revoke",
            "--data-dir",
            str(tmp_path),
            revoked["id"],
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(cli.communicate(), CLI_TIMEOUT_S)
        assert cli.returncode == 0, out
        await assert_revoked(ws, 10.0)  # the key file is checked every second
        await assert_still_streaming(survivor)
