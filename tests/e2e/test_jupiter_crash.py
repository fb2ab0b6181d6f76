"""The Jupiter venue in the real `tradingd run` process (embedded store) against the fake Jupiter
and fake Solana RPC process: a buy fills with what the chain moved, and a kill -9 between
recording a swap and hearing back from the chain never sends, fills or loses anything twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tradingd.adapters.store.embedded import EmbeddedServers

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"
EMBEDDED = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory; kill -9 needs the disk
PASSPHRASE = "correct horse battery staple e2e"
WALLET_LAMPORTS = 10 * 10**9
DEPOSIT = 2 * 10**9
BUY = 500_000_000  # lamports reserved by one buy
TOKENS_PER_LAMPORT = 1500  # the fake Jupiter's rate; 6-decimal token
SOL_USD, TOKEN_USD = 150.0, 0.0001
BLOCKHASH_LIFETIME = 150
WAIT_S = 20.0
AGENT_CONFIG = {
    "sizing": {"mode": "fixed", "amount": str(BUY)},
    "stop_loss": {"mode": "fixed", "default_pct": -20},
    "take_profit": {"enabled": False},
}

pytestmark = pytest.mark.slow


# -- the fake chain process ---------------------------------------------------------------------


class Chain:
    """The fake Solana RPC + Jupiter process, steered over /control."""

    def __init__(self, tmp: Path) -> None:
        port_file = tmp / "chain.json"
        self.log = open(tmp / "chain.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.solana_chain", "--port-file", str(port_file)],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        urls = poll_until(
            lambda: self._urls(port_file), timeout_s=20, interval_s=0.05, what="chain port file"
        )
        self.rpc_url, self.jupiter_url = urls["rpc_url"], urls["jupiter_url"]

    def _urls(self, port_file: Path) -> dict[str, str] | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the fake chain exited with {self.proc.returncode}")
        return json.loads(port_file.read_text()) if port_file.exists() else None

    def control(self, **doc: Any) -> dict[str, Any]:
        resp = requests.post(self.rpc_url + "/control", json=doc, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def state(self) -> dict[str, Any]:
        resp = requests.get(self.rpc_url + "/control/state", timeout=5)
        resp.raise_for_status()
        return resp.json()

    def tokens(self, owner: str) -> int:
        return sum(a for o, m, a in self.state()["tokens"] if o == owner and m == TOKEN)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def daemon_config(chain: Chain) -> str:
    return f"""
[engine]
max_price_age_ms = 3600000
[feeds.synthetic]
enabled = false
[venues.jupiter]
enabled = true
url = "{chain.jupiter_url}/swap/v1"
priority_fee = 0
confirm_poll_ms = 50
rebroadcast_ms = 200
receipt_polls = 20
[solana]
rpc_url = "{chain.rpc_url}"
timeout_ms = 25000
"""


# -- the daemon -----------------------------------------------------------------------------------


class Api:
    def __init__(self, d: DaemonProcess) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.session.request(method, self.base + path, json=body, timeout=10)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def prices(self, token_usd: float = TOKEN_USD) -> None:
        now = int(time.time() * 1000)
        ticks = [
            {"token": SOL, "price_usd": SOL_USD, "ts": now},
            {"token": TOKEN, "price_usd": token_usd, "ts": now, "decimals": 6},
        ]
        self.ok("POST", "/v1/prices", {"ticks": ticks})

    def until(self, path: str, accept: Callable[[Any], object], what: str) -> Any:
        return poll_until(
            lambda: self.ok("GET", path), accept, timeout_s=WAIT_S, interval_s=0.05, what=what
        )

    def sol(self, agent: str) -> tuple[int, int]:
        """(total, reserved) lamports of the agent's SOL."""
        bal = next(b for b in self.ok("GET", f"/v1/agents/{agent}/balances") if b["asset"] == "SOL")
        return int(bal["total"]), int(bal["reserved"])


class World:
    """A fake chain, a data dir and the daemons started on it (each stopped at the end)."""

    def __init__(self, tmp: Path) -> None:
        self.chain = Chain(tmp)
        self.data = tmp / "data"
        self.daemons: list[DaemonProcess] = []
        self.admin_key: str | None = None
        self.wallet = self.public_key = self.agent = ""

    def start(self) -> Api:
        d = start_daemon(
            self.data,
            env=EMBEDDED,
            config_text=daemon_config(self.chain),
            admin_key=self.admin_key,
            timeout=60,
        )
        self.admin_key = d.admin_key
        self.daemons.append(d)
        return Api(d)

    def kill(self) -> None:
        self.daemons[-1].stop(signal.SIGKILL)

    def setup_agent(self, api: Api) -> None:
        """A wallet funded on chain and unlocked, one jupiter agent allocated DEPOSIT, prices,
        and the fake Jupiter's rates both ways."""
        w = api.ok("POST", "/v1/wallets", {"name": "hot", "passphrase": PASSPHRASE})
        self.wallet, self.public_key = w["id"], w["public_key"]
        self.chain.control(
            fund={"owner": self.public_key, "lamports": WALLET_LAMPORTS},
            rates=[
                [SOL, TOKEN, f"{TOKENS_PER_LAMPORT}/1"],
                [TOKEN, SOL, f"1/{TOKENS_PER_LAMPORT}"],
            ],
        )
        api.ok("POST", f"/v1/wallets/{self.wallet}/unlock", {"passphrase": PASSPHRASE})
        agent = {"name": "live", "venue": "jupiter", "quote": "SOL", "wallet_id": self.wallet,
                 "config": AGENT_CONFIG}  # fmt: skip
        self.agent = api.ok("POST", "/v1/agents", agent)["id"]
        api.ok(
            "POST", f"/v1/agents/{self.agent}/deposits", {"asset": "SOL", "amount": str(DEPOSIT)}
        )
        api.prices()

    def buy(self, api: Api, sid: str, expires_in_ms: int = 30_000) -> str:
        """POST a buy signal with client id `sid`; returns the daemon's signal_id."""
        return api.ok(
            "POST",
            "/v1/signals",
            {"id": sid, "token": TOKEN, "strength": 5, "decimals": 6,
             "expires_in_ms": expires_in_ms},
        )["signal_id"]  # fmt: skip

    def open_positions(self, api: Api) -> list[dict[str, Any]]:
        return api.ok("GET", f"/v1/agents/{self.agent}/positions?status=open")["items"]

    def trades(self, api: Api) -> list[dict[str, Any]]:
        return api.ok("GET", f"/v1/agents/{self.agent}/trades")["items"]

    def close(self) -> None:
        for d in self.daemons:
            d.stop(signal.SIGKILL)
        EmbeddedServers(self.data).stop()
        self.chain.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def execution(api: Api, signal_id: str) -> dict[str, Any]:
    """The signal's execution for the one agent (its status and reason)."""
    doc = api.until(
        f"/v1/signals/{signal_id}",
        lambda s: s["executions"] and s["executions"][0]["status"] in ("filled", "failed"),
        what=f"signal {signal_id} executed",
    )
    return doc["executions"][0]


# -- the tests --------------------------------------------------------------------------------------


def test_a_buy_fills_with_exactly_what_the_chain_moved(world):
    api = world.start()
    world.setup_agent(api)
    sid = world.buy(api, "happy")
    assert execution(api, sid)["status"] == "filled"
    (position,) = world.open_positions(api)
    (trade,) = world.trades(api)
    state = world.chain.state()
    assert state["executions"] == 1
    (signature,) = state["landed"]
    assert trade["venue_ref"] == signature and state["sends"] == [signature]
    assert int(position["amount"]) == world.chain.tokens(world.public_key) > 0
    left_wallet = WALLET_LAMPORTS - state["lamports"][world.public_key]
    total, reserved = api.sol(world.agent)
    assert (DEPOSIT - total, reserved) == (left_wallet, 0)


def lose_a_recorded_swap(world: World, expires_in_ms: int) -> tuple[str, str, int]:
    """Buy with fate "drop" (the send is held and never reaches the chain), kill -9 the daemon
    while the send is held, then move the chain past the swap's last valid block height.
    Returns (signal id, the swap's signature, sends the fake RPC had seen), the signal sent
    `expires_in_ms` before the returned moment at the latest."""
    api = world.start()
    world.setup_agent(api)
    world.chain.control(fates=["drop"])
    sid = world.buy(api, "lost", expires_in_ms=expires_in_ms)
    expires_by = time.time() * 1000 + expires_in_ms  # received before now
    state = poll_until(
        world.chain.state, lambda st: len(st["dropped"]) == 1, timeout_s=WAIT_S,
        interval_s=0.02, what="the dropped send held by the fake RPC",
    )  # fmt: skip
    (signature,) = state["dropped"]
    world.kill()
    # Past the swap's last valid block height: the recorded signature can be proven dead.
    world.chain.control(advance=BLOCKHASH_LIFETIME + 10)
    if expires_in_ms < WAIT_S * 1000:
        poll_until(
            lambda: time.time() * 1000, lambda now: now > expires_by + 50, timeout_s=5,
            interval_s=0.05, what="the signal expired",
        )  # fmt: skip
    return sid, signature, len(world.chain.state()["sends"])


def assert_nothing_happened(world: World, api: Api, signature: str, sends_before: int) -> None:
    """The buy left no trace: reservation released, nothing sent again, nothing executed."""
    assert api.sol(world.agent) == (DEPOSIT, 0)
    assert world.open_positions(api) == [] and world.trades(api) == []
    after = world.chain.state()
    assert after["sends"][sends_before:] == [] and after["sends"].count(signature) == 1
    assert after["executions"] == 0 and after["landed"] == {}
    assert after["lamports"][world.public_key] == WALLET_LAMPORTS


def test_a_swap_lost_before_the_chain_is_proven_expired_after_a_kill_9_and_never_resent(world):
    # The signal is still valid after the restart, and the wallet is locked again (never
    # persisted): the venue resolves the recorded signature first, then cannot sign a new swap.
    sid, signature, sends_before = lose_a_recorded_swap(world, expires_in_ms=600_000)
    statuses_before = world.chain.state()["calls"].get("getSignatureStatuses", 0)
    api = world.start()
    got = execution(api, sid)
    assert (got["status"], got["reason"]) == ("failed", "wallet_locked")
    assert world.chain.state()["calls"]["getSignatureStatuses"] > statuses_before
    assert_nothing_happened(world, api, signature, sends_before)


def test_a_swap_lost_before_the_chain_of_an_expired_signal_fails_as_blockhash_expired(world):
    sid, signature, sends_before = lose_a_recorded_swap(world, expires_in_ms=1_000)
    api = world.start()
    got = execution(api, sid)
    assert (got["status"], got["reason"]) == ("failed", "blockhash_expired")
    assert_nothing_happened(world, api, signature, sends_before)


def land_an_unanswered_buy(world: World, expires_in_ms: int = 30_000) -> tuple[str, str, list]:
    """Buy with fate "timeout" (the swap lands, the send's answer is held), kill -9 the daemon
    while it waits. Returns (signal id, the swap's signature, the sends the fake RPC saw)."""
    api = world.start()
    world.setup_agent(api)
    world.chain.control(fates=["timeout"])
    sid = world.buy(api, "unanswered", expires_in_ms=expires_in_ms)
    expires_by = time.time() * 1000 + expires_in_ms
    state = poll_until(
        world.chain.state, lambda st: len(st["landed"]) == 1, timeout_s=WAIT_S,
        interval_s=0.02, what="the landed swap whose send the fake RPC holds",
    )  # fmt: skip
    (signature,) = state["landed"]
    world.kill()
    if expires_in_ms < WAIT_S * 1000:
        poll_until(
            lambda: time.time() * 1000, lambda now: now > expires_by + 50, timeout_s=5,
            interval_s=0.05, what="the signal expired",
        )  # fmt: skip
    return sid, signature, world.chain.state()["sends"]


def assert_filled_once(world: World, api: Api, sid: str, signature: str, sends: list) -> None:
    assert execution(api, sid)["status"] == "filled"
    (trade,) = world.trades(api)
    (position,) = world.open_positions(api)
    after = world.chain.state()
    assert trade["venue_ref"] == signature
    assert after["executions"] == 1 and after["sends"] == sends
    assert int(position["amount"]) == world.chain.tokens(world.public_key) > 0
    left_wallet = WALLET_LAMPORTS - after["lamports"][world.public_key]
    assert api.sol(world.agent) == (DEPOSIT - left_wallet, 0)


def test_a_swap_that_landed_while_its_send_was_unanswered_fills_once_after_a_kill_9(world):
    sid, signature, sends = land_an_unanswered_buy(world)
    api = world.start()
    assert_filled_once(world, api, sid, signature, sends)


def test_a_landed_swap_of_a_signal_that_expired_meanwhile_fills_once_after_a_kill_9(world):
    sid, signature, sends = land_an_unanswered_buy(world, expires_in_ms=1_000)
    api = world.start()
    assert_filled_once(world, api, sid, signature, sends)


def test_a_stop_loss_sell_that_landed_while_its_send_was_unanswered_closes_once_after_a_kill_9(
    world,
):
    api = world.start()
    world.setup_agent(api)
    sid = world.buy(api, "entry")
    assert execution(api, sid)["status"] == "filled"
    (position,) = world.open_positions(api)
    world.chain.control(fates=["timeout"])
    api.prices(TOKEN_USD * 0.5)  # under the -20 % stop
    state = poll_until(
        world.chain.state, lambda st: len(st["landed"]) == 2, timeout_s=WAIT_S,
        interval_s=0.02, what="the landed sell whose send the fake RPC holds",
    )  # fmt: skip
    (sell_sig,) = set(state["landed"]) - {world.trades(api)[0]["venue_ref"]}
    world.kill()
    sends_before = world.chain.state()["sends"]

    api = world.start()
    closed = api.until(
        f"/v1/agents/{world.agent}/positions?status=closed",
        lambda doc: len(doc["items"]) == 1,
        what="the position closed by the resolved sell",
    )["items"][0]
    assert closed["id"] == position["id"] and closed["exit_reason"] == "stop_loss"
    sells = [t for t in world.trades(api) if t["side"] == "sell"]
    assert [t["venue_ref"] for t in sells] == [sell_sig]
    after = world.chain.state()
    assert after["executions"] == 2 and after["sends"] == sends_before
    assert world.chain.tokens(world.public_key) == 0
    total, reserved = api.sol(world.agent)
    assert (DEPOSIT - total, reserved) == (WALLET_LAMPORTS - after["lamports"][world.public_key], 0)
