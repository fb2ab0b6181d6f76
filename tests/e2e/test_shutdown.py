"""Graceful shutdown of the real `tradingd run` process: systemd hears READY=1, watchdog pings
and STOPPING=1 on a fake NOTIFY_SOCKET; SIGTERM in the middle of a busy paper flow exits 0 after
every order that was in flight has settled (seen on the WebSocket before it closes with 1001)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

SOL = "So11111111111111111111111111111111111111112"
TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]
AGENTS = 6
SIGNALS_PER_ROUND = 8


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    short_dir = Path(tempfile.mkdtemp(prefix="td-notify-", dir="/tmp"))
    path = str(short_dir / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()
    shutil.rmtree(short_dir, ignore_errors=True)


def test_systemd_hears_ready_watchdog_and_stopping_and_sigterm_exits_0(
    daemon_factory: Any, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    daemon = daemon_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert sock.recv(4096) == b"READY=1"  # only sent once the control port answered ready
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert daemon.stop(signal.SIGTERM) == 0
    rest: list[bytes] = []
    sock.settimeout(0.5)
    for _ in range(1000):
        try:
            rest.append(sock.recv(4096))
        except TimeoutError:
            break
    assert b"STOPPING=1" in rest
    assert set(rest) <= {b"WATCHDOG=1", b"STOPPING=1"}
    assert b"READY=1" not in rest


class Flow:
    """What the WebSocket saw, checked for consecutive seq as it arrives."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            doc = msgspec.json.decode(msg.data)
            assert doc["seq"] == len(self.seen) + 1
            self.seen.append(doc)
        self.close_code = ws.close_code

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d["data"] for d in self.seen if d["type"] == type_]


async def setup_agents(session: aiohttp.ClientSession, daemon: Any) -> None:
    async def ok(method: str, path: str, body: object) -> Any:
        async with session.request(
            method, daemon.base_url + path, json=body, headers=daemon.headers
        ) as r:
            assert r.status < 300, await r.text()
            return await r.json()

    config = {
        "limits": {"max_open_positions": 100000, "max_positions_per_token": 1000},
        "stop_loss": {"mode": "trailing", "trail_pct": 5, "default_pct": -5},
    }
    for i in range(AGENTS):
        agent = await ok(
            "POST", "/v1/agents", {"name": f"drain-{i}", "venue": "paper", "config": config}
        )
        await ok(
            "POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": "100000000000"}
        )
    await ok(
        "POST",
        "/v1/prices",
        {
            "ticks": [{"token": SOL, "price_usd": 150.0}]
            + [{"token": t, "price_usd": 1.0} for t in TOKENS]
        },
    )


async def hammer(
    session: aiohttp.ClientSession, daemon: Any, accepted: list[str], sigterm_round: int
) -> list[int]:
    """Rounds of a price swing plus concurrent signals until the daemon stops taking them. SIGTERM
    goes out while a round of signals is on the wire, so orders are being created as it lands."""
    statuses: list[int] = []

    async def post(path: str, body: object) -> int:
        async with session.post(daemon.base_url + path, headers=daemon.headers, json=body) as r:
            if r.status == 202 and path == "/v1/signals":
                accepted.append((await r.json())["signal_id"])
            return r.status

    for round_ in range(2000):
        token = TOKENS[round_ % len(TOKENS)]
        up = (round_ // len(TOKENS)) % 2 == 1  # up 30% and back down: trailing stops fire
        try:
            price = {"ticks": [{"token": token, "price_usd": 1.3 if up else 1.0}]}
            statuses.append(await post("/v1/prices", price))
        except aiohttp.ClientError:
            break  # the port has closed: the drain is over
        sending = asyncio.gather(
            *[
                post("/v1/signals", {"id": f"drain-{round_}-{k}", "token": token, "strength": 3})
                for k in range(SIGNALS_PER_ROUND)
            ],
            return_exceptions=True,
        )
        if round_ == sigterm_round:
            await asyncio.sleep(0)
            daemon.proc.send_signal(signal.SIGTERM)
        results = await sending
        statuses += [r for r in results if isinstance(r, int)]
        if any(not isinstance(r, int) or r == 503 for r in results):
            break
    return statuses


async def run_until_sigterm(daemon: Any) -> tuple[int, Flow, list[int], list[str]]:
    """Agents, a dashboard on the WebSocket, the hammer with SIGTERM in the middle; then wait for
    the exit and the end of the stream."""
    flow = Flow()
    accepted: list[str] = []
    async with aiohttp.ClientSession() as session:
        await setup_agents(session, daemon)
        url = daemon.base_url.replace("http", "ws") + "/v1/ws"
        async with session.ws_connect(url, headers=daemon.headers) as ws:
            await ws.send_json(
                {"op": "subscribe", "channels": ["signals", "positions", "trades", "alerts"]}
            )
            reader = asyncio.create_task(flow.read(ws))
            statuses = await hammer(session, daemon, accepted, sigterm_round=6)
            exit_code = await asyncio.to_thread(daemon.proc.wait, 60)
            await asyncio.wait_for(reader, 30)
    return exit_code, flow, statuses, accepted


async def test_sigterm_mid_flow_exits_0_and_every_in_flight_order_settles(daemon: Any) -> None:
    exit_code, flow, statuses, accepted = await run_until_sigterm(daemon)

    assert exit_code == 0
    assert flow.close_code == 1001  # closed by the shutdown, after the drain
    assert set(statuses) <= {202, 503} and len(accepted) >= 6 * SIGNALS_PER_ROUND
    received = {s["signal_id"] for s in flow.of("signal") if s["event"] == "received"}
    assert set(accepted) <= received  # nothing accepted was dropped on the floor

    executions = [s for s in flow.of("signal") if s["event"] == "execution"]
    pending = {s["order_id"] for s in executions if s["status"] == "pending"}
    settled = {s["order_id"] for s in executions if s["status"] in ("filled", "failed")}
    assert pending and pending <= settled  # every buy sent to the venue came back

    last_status: dict[str, str] = {}
    for p in flow.of("position"):
        last_status[p["id"]] = p["status"]
    assert "closing" not in last_status.values()  # every sell in flight finished
    assert any(t["side"] == "sell" for t in flow.of("trade"))
    assert "orders still in flight" not in daemon.log_path.read_text()


async def test_sigterm_mid_flow_on_the_embedded_store_leaves_no_order_pending_after_restart(
    daemon_starter: Any, tmp_path: Path
) -> None:
    embedded = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory
    first = daemon_starter(tmp_path / "data", env=embedded)
    try:
        exit_code, _flow, _statuses, accepted = await run_until_sigterm(first)
    finally:
        first.stop()
    assert exit_code == 0
    second = daemon_starter(tmp_path / "data", env=embedded)
    try:
        async with aiohttp.ClientSession(headers=second.headers) as session:

            async def get(path: str) -> Any:
                async with session.get(second.base_url + path) as r:
                    assert r.status == 200, await r.text()
                    return await r.json()

            for signal_id in accepted:
                executions = (await get(f"/v1/signals/{signal_id}"))["executions"]
                assert len(executions) == AGENTS
                assert {e["status"] for e in executions} <= {"filled", "failed", "skipped"}
            for agent in (await get("/v1/agents"))["items"]:
                balances = await get(f"/v1/agents/{agent['id']}/balances")
                assert all(b["reserved"] == "0" for b in balances), balances
                positions = (await get(f"/v1/agents/{agent['id']}/positions?status=open"))["items"]
                assert all(p["status"] == "open" for p in positions)
    finally:
        assert second.stop() == 0
