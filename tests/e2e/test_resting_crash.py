"""Resting entries (issue 15) survive kill -9 of the real `tradingd run` process on the embedded
store. One daemon gets three paper agents, each allowed one token, and a resting limit buy each:
the first is left resting, the second cancelled, the third expires while the daemon is down.
Then kill -9 and a restart on the same data dir; each test checks one agent's outcome."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.conftest import DaemonProcess
from tests.polling import poll_until

SOL = "So11111111111111111111111111111111111111112"
TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]
EMBEDDED = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory
DEPOSIT = 10 * 10**9
SIZE = 10**9  # quote reserved by each resting buy
EXPIRES_SOON_MS = 5_000  # the third entry: long enough to rest and kill -9 before it expires
TEN_MINUTES_MS = 600_000


class Api:
    def __init__(self, d: DaemonProcess) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return self.session.request(method, self.base + path, json=body, timeout=10)

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.call(method, path, body)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def prices(self, prices: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        ticks = [{"token": t, "price_usd": p, "ts": now} for t, p in prices.items()]
        self.ok("POST", "/v1/prices", {"ticks": ticks})

    def until(self, path: str, predicate: Any, timeout: float = 15) -> Any:
        return poll_until(
            lambda: self.ok("GET", path), predicate, timeout_s=timeout, interval_s=0.05, what=path
        )

    def sol(self, agent: str) -> dict[str, Any]:
        (bal,) = [
            b for b in self.ok("GET", f"/v1/agents/{agent}/balances") if b["asset"] in ("SOL", SOL)
        ]
        return bal

    def execution(self, signal_id: str, agent: str) -> dict[str, Any]:
        return execution_of(self.ok("GET", f"/v1/signals/{signal_id}"), agent)

    def until_status(self, signal_id: str, agent: str, status: str) -> dict[str, Any]:
        doc = self.until(
            f"/v1/signals/{signal_id}", lambda d: execution_of(d, agent)["status"] == status
        )
        return execution_of(doc, agent)


def execution_of(signal_doc: dict[str, Any], agent: str) -> dict[str, Any]:
    (x,) = [x for x in signal_doc["executions"] if x["agent_id"] == agent]
    return x


def agent_for(api: Api, name: str, token: str) -> str:
    config = {
        "signals": {"token_filter": "allow", "tokens": [token]},
        "sizing": {"amount": str(SIZE)},
    }
    body = {"name": name, "venue": "paper", "quote": "SOL", "config": config}
    aid = api.ok("POST", "/v1/agents", body)["id"]
    api.ok("POST", f"/v1/agents/{aid}/deposits", {"asset": "SOL", "amount": str(DEPOSIT)})
    return aid


def rest(api: Api, token: str, limit: float, expires_in_ms: int) -> str:
    expires_at = int(time.time() * 1000) + expires_in_ms
    body = {
        "token": token,
        "entry": {"type": "limit", "price_usd": limit},
        "expires_at": expires_at,
    }
    resp = api.call("POST", "/v1/signals", body)
    assert resp.status_code == 202, resp.text
    return resp.json()["signal_id"]


class Scene:
    """The daemon after the restart, and what was set up before the kill."""

    def __init__(self) -> None:
        self.daemon: DaemonProcess | None = None
        self.agents: dict[str, str] = {}  # case -> agent id
        self.signals: dict[str, str] = {}  # case -> signal id
        self.expires_at = 0

    @property
    def api(self) -> Api:
        assert self.daemon is not None
        return Api(self.daemon)


@pytest.fixture(scope="module")
def scene(daemon_starter, tmp_path_factory) -> Iterator[Scene]:
    data = tmp_path_factory.mktemp("resting") / "data"
    s = Scene()
    d = daemon_starter(data, env=EMBEDDED)
    try:
        api = Api(d)
        for case, token in zip(("rests", "cancelled", "expires"), TOKENS, strict=True):
            s.agents[case] = agent_for(api, case, token)
        api.prices({SOL: 150.0, TOKENS[0]: 1.0, TOKENS[1]: 2.0, TOKENS[2]: 3.0})
        s.signals["rests"] = rest(api, TOKENS[0], 0.8, TEN_MINUTES_MS)
        s.signals["cancelled"] = rest(api, TOKENS[1], 1.5, TEN_MINUTES_MS)
        cancelled = api.ok("DELETE", f"/v1/signals/{s.signals['cancelled']}")
        assert cancelled["cancelled"] == 1, cancelled
        s.expires_at = int(time.time() * 1000) + EXPIRES_SOON_MS
        s.signals["expires"] = rest(api, TOKENS[2], 2.5, EXPIRES_SOON_MS)
        # acknowledged (2xx) means durable in Redis: kill -9 at once
        for case in ("rests", "expires"):
            assert api.execution(s.signals[case], s.agents[case])["status"] == "resting"
        d.stop(signal.SIGKILL)
        while time.time() * 1000 <= s.expires_at + 100:  # the third expires while down
            time.sleep(0.1)
        s.daemon = d = daemon_starter(data, env=EMBEDDED, admin_key=d.admin_key)
        yield s
    finally:
        d.stop()
        from tradingd.adapters.store.embedded import EmbeddedServers

        EmbeddedServers(data).stop()


def test_a_resting_entry_keeps_its_reservation_across_kill_9_and_fills_at_its_price(scene):
    api, agent, sid = scene.api, scene.agents["rests"], scene.signals["rests"]
    bal = api.sol(agent)
    assert (bal["total"], bal["reserved"]) == (str(DEPOSIT), str(SIZE))
    assert api.execution(sid, agent)["status"] == "resting"
    (entry,) = api.ok("GET", f"/v1/agents/{agent}/entries")["items"]
    assert (entry["signal_id"], entry["amount"], entry["price_usd"]) == (sid, str(SIZE), 0.8)

    api.prices({SOL: 150.0, TOKENS[0]: 0.75})
    api.until_status(sid, agent, "filled")
    (position,) = api.ok("GET", f"/v1/agents/{agent}/positions?status=open")["items"]
    assert position["token"] == TOKENS[0]
    (trade,) = api.ok("GET", f"/v1/agents/{agent}/trades")["items"]
    assert trade["side"] == "buy" and trade["price_usd"] <= 0.8
    bal = api.sol(agent)
    assert bal["reserved"] == "0" and int(bal["total"]) == DEPOSIT - int(trade["quote_amount"])
    assert not api.ok("GET", f"/v1/agents/{agent}/entries")["items"]


def test_an_entry_cancelled_before_kill_9_stays_cancelled(scene):
    api, agent, sid = scene.api, scene.agents["cancelled"], scene.signals["cancelled"]
    x = api.execution(sid, agent)
    assert (x["status"], x["reason"]) == ("skipped", "cancelled")
    bal = api.sol(agent)
    assert (bal["total"], bal["reserved"]) == (str(DEPOSIT), "0")
    assert not api.ok("GET", f"/v1/agents/{agent}/entries")["items"]
    assert api.ok("DELETE", f"/v1/signals/{sid}")["cancelled"] == 0


def test_an_entry_whose_expiry_passed_while_down_expires_after_restart(scene):
    api, agent, sid = scene.api, scene.agents["expires"], scene.signals["expires"]
    x = api.until_status(sid, agent, "skipped")
    assert (x["status"], x["reason"]) == ("skipped", "expired")
    bal = api.sol(agent)
    assert (bal["total"], bal["reserved"]) == (str(DEPOSIT), "0")
    assert not api.ok("GET", f"/v1/agents/{agent}/entries")["items"]
    api.prices({SOL: 150.0, TOKENS[2]: 2.0})  # its price comes too late: nothing is bought
    assert not api.ok("GET", f"/v1/agents/{agent}/trades")["items"]
