"""The Jupiter venue as a control-port user meets it: an in-process Daemon wired to the fake
Jupiter and fake Solana RPC (tests/fakes), driven only through the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from tradingd.adapters.http.server import wire_control_port

from tests.fakes.solana_chain import SolanaStack, solana_stack
from tests.integration.http_harness import SOL, TOKEN, Api, make_daemon
from tests.polling import poll_until_async

PASS = "correct horse battery"
SECRET_KEY = "jup-secret-key-123456"


@asynccontextmanager
async def live_daemon(tmp_path: Path, **paper: Any) -> AsyncIterator[tuple[Api, SolanaStack]]:
    async with solana_stack() as stack:
        daemon = make_daemon(tmp_path)
        jup = daemon.settings.venues.jupiter
        jup.enabled = not paper
        jup.url = stack.jupiter_url + "/swap/v1"
        jup.priority_fee = 0
        jup.confirm_poll_ms = 10
        jup.rebroadcast_ms = 40
        jup.receipt_polls = 5
        daemon.settings.solana.rpc_url = stack.rpc_url
        for name, value in paper.items():
            setattr(daemon.settings.venues.paper, name, value)
        stack.jupiter.rates[(SOL, TOKEN)] = Fraction(1500)
        stack.jupiter.rates[(TOKEN, SOL)] = Fraction(1, 1500)
        daemon.live.start()
        daemon.cleanups.append(daemon.live.close)
        app = wire_control_port(daemon)
        daemon.ready = True
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            try:
                yield Api(client, daemon), stack
            finally:
                await daemon.hub.close_all()
                await daemon.shutdown()


async def _live_agent(api: Api, stack: SolanaStack, lamports: int = 5 * 10**9) -> tuple[str, str]:
    wallet = await api.ok("POST", "/v1/wallets", {"name": "main", "passphrase": PASS, "id": "w1"})
    stack.chain.fund(wallet["public_key"], lamports=lamports)
    agent = await api.ok(
        "POST", "/v1/agents",
        {"name": "live", "venue": "jupiter", "wallet_id": "w1",
         "config": {"sizing": {"mode": "fixed", "amount": "500000000"}}},
    )  # fmt: skip
    await api.prices((SOL, 150.0), (TOKEN, 0.0001))
    return agent["id"], wallet["public_key"]


async def _signal(api: Api, signal_id: str) -> dict[str, Any]:
    posted = await api.ok("POST", "/v1/signals", {"id": signal_id, "token": TOKEN, "strength": 5,
                                                   "decimals": 6})  # fmt: skip
    await api.settle()
    return await api.ok("GET", f"/v1/signals/{posted['signal_id']}")  # type: ignore[no-any-return]


async def test_a_live_agent_trades_only_after_unlock_and_allocation(tmp_path: Path) -> None:
    async with live_daemon(tmp_path) as (api, stack):
        agent_id, owner = await _live_agent(api, stack)
        status, err = await api.call("POST", f"/v1/agents/{agent_id}/deposits",
                                     {"asset": "SOL", "amount": str(6 * 10**9)})  # fmt: skip
        assert status == 409 and err["error"]["details"]["unallocated"] == str(5 * 10**9)
        await api.ok("POST", f"/v1/agents/{agent_id}/deposits",
                     {"asset": "SOL", "amount": str(2 * 10**9)})  # fmt: skip
        locked = await _signal(api, "s-locked")
        assert [(x["status"], x["reason"]) for x in locked["executions"]] == [
            ("skipped", "wallet_locked")
        ]
        await api.ok("POST", "/v1/wallets/w1/unlock", {"passphrase": PASS})
        doc = await _signal(api, "s-open")
        assert [x["status"] for x in doc["executions"]] == ["filled"]
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert trade["venue"] == "jupiter" and trade["venue_ref"] == stack.rpc.sends[0][0]
        spent = 5 * 10**9 - stack.chain.balance(owner)
        assert trade["quote_amount"] == str(spent)
        assert trade["amount"] == str(stack.chain.balance(owner, TOKEN))
        health = await api.ok("GET", "/health")
        venue = health["components"]["venues"]["jupiter"]
        assert venue["status"] == "ok" and venue["swaps_in_flight"] == 0
        assert venue["breakers"]["solana_rpc"]["state"] == "closed"
        metrics = await api.ok("GET", "/metrics")
        assert 'tradingd_swap_step_seconds_count{step="persist",venue="jupiter"} 1.0' in metrics


async def test_reconciliation_reports_a_wallet_holding_less_than_its_book(tmp_path: Path) -> None:
    async with live_daemon(tmp_path) as (api, stack):
        agent_id, owner = await _live_agent(api, stack, lamports=3 * 10**9)
        await api.ok("POST", f"/v1/agents/{agent_id}/deposits",
                     {"asset": "SOL", "amount": str(3 * 10**9)})  # fmt: skip
        await api.daemon.live.reconcile()
        assert (await api.ok("GET", "/health"))["components"]["venues"]["jupiter"][
            "reconciliation"]["status"] == "ok"  # fmt: skip
        stack.chain.lamports[owner] -= 10**9  # someone else spent from the wallet
        await api.daemon.live.reconcile()
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["jupiter"]
        sol = venue["reconciliation"]["wallets"]["w1"]["sol"]
        assert venue["status"] == "degraded"
        assert sol == {"chain": str(2 * 10**9), "book": str(3 * 10**9), "short": True}
        assert stack.chain.lamports[owner] == 2 * 10**9  # reported, never "fixed"


async def test_a_jupiter_agent_must_trade_against_sol(tmp_path: Path) -> None:
    async with live_daemon(tmp_path) as (api, _stack):
        await api.ok("POST", "/v1/wallets", {"name": "main", "passphrase": PASS, "id": "w1"})
        status, err = await api.call(
            "POST", "/v1/agents", {"name": "x", "venue": "jupiter", "wallet_id": "w1",
                                   "quote": "USDC"})  # fmt: skip
        assert status == 422 and err["error"]["details"]["path"] == "$.quote"


async def test_jupiter_is_refused_where_it_is_not_enabled(tmp_path: Path) -> None:
    async with live_daemon(tmp_path, quotes="price") as (api, _stack):
        status, err = await api.call(
            "POST", "/v1/agents", {"name": "x", "venue": "jupiter", "wallet_id": "w1"}
        )
        assert status == 422 and "[venues.jupiter] enabled" in err["error"]["message"]


async def test_paper_at_jupiter_quotes_fills_at_the_quote_and_sends_nothing(tmp_path: Path) -> None:
    async with live_daemon(tmp_path, quotes="jupiter") as (api, stack):
        agent = await api.agent({"sizing": {"mode": "fixed", "amount": "100000000"},
                                 "execution": {"fee_bps": 0, "slippage_bps": 50}})  # fmt: skip
        await api.prices((SOL, 150.0), (TOKEN, 0.0001))
        doc = await _signal(api, "s-paper")
        assert [x["status"] for x in doc["executions"]] == ["filled"]
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent}/trades"))["items"]
        assert trade["amount"] == str(100_000_000 * 1500) and trade["venue"] == "paper"
        assert trade["venue_ref"].startswith("paper-jupiter-")
        assert stack.rpc.sends == []


async def test_the_jupiter_api_key_reaches_no_response(tmp_path: Path) -> None:
    async with live_daemon(tmp_path) as (api, _stack):
        api.daemon.settings.venues.jupiter.api_key = SECRET_KEY
        for path in ("/health", "/metrics", "/v1/openapi.json"):
            status, doc = await api.call("GET", path)
            assert SECRET_KEY not in str(doc)
        assert SECRET_KEY not in repr(api.daemon.settings)


async def test_a_live_agent_needs_a_wallet_the_keystore_holds(tmp_path: Path) -> None:
    """Attack case L1: an unknown or malformed wallet id is refused at `$.wallet_id`."""
    async with live_daemon(tmp_path) as (api, _stack):
        for wallet_id in ("nope", "../ok_id-1"):
            status, err = await api.call(
                "POST", "/v1/agents", {"name": "x", "venue": "jupiter", "wallet_id": wallet_id}
            )
            assert status == 422 and err["error"]["details"]["path"] == "$.wallet_id", err
        assert (await api.ok("GET", "/v1/agents"))["items"] == []


async def test_start_up_waits_for_recorded_swaps_not_for_a_locked_wallets_exit(
    tmp_path: Path,
) -> None:
    """After a restart an exit's recorded swap expired and its wallet is locked (it always is
    after a restart): start-up waits for that swap's resolution only, not for the unlock, which
    needs the control port it would otherwise keep closed."""
    import asyncio

    async with live_daemon(tmp_path) as (api, stack):
        daemon = api.daemon
        agent_id, _owner = await _live_agent(api, stack)
        await api.ok("POST", "/v1/wallets/w1/unlock", {"passphrase": PASS})
        await api.ok("POST", f"/v1/agents/{agent_id}/deposits",
                     {"asset": "SOL", "amount": str(2 * 10**9)})  # fmt: skip
        await _signal(api, "s-buy")
        (position,) = (await api.ok("GET", f"/v1/agents/{agent_id}/positions"))["items"]
        stack.rpc.fates.append("never")
        await api.ok("POST", f"/v1/agents/{agent_id}/positions/{position['id']}/close", {})
        await poll_until_async(lambda: _recorded(daemon), bool, tries=400, interval_s=0.01,
                               what="the exit's swap recorded")  # fmt: skip
        for task in list(daemon.runtime.in_flight.values()):  # the process dies here
            task.cancel()
        await poll_until_async(lambda: daemon.runtime.in_flight, lambda f: not f,
                               tries=400, interval_s=0.01, what="the orders' tasks gone")  # fmt: skip
        await api.ok("POST", "/v1/wallets/w1/lock")
        stack.chain.advance(200)  # the recorded swap's blockhash expired unseen
        daemon.runtime.resume_orders(list(daemon.engine.orders.values()))
        async with asyncio.timeout(20):  # a bound, not a timing claim: it must not wait 600 s
            await daemon.live.resolve_recovered(600)
        (order,) = daemon.engine.orders.values()
        assert order.side == "sell" and daemon.live.venue.resolution(order.id).is_set()
        await poll_until_async(lambda: stack.rpc.sends, lambda s: len(s) == 2,
                               tries=100, interval_s=0.01, what="no new send")  # fmt: skip
        await api.ok("POST", "/v1/wallets/w1/unlock", {"passphrase": PASS})
        await api.settle()
        sells = [t for t in (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
                 if t["side"] == "sell"]  # fmt: skip
        assert len(sells) == 1


def _recorded(daemon: Any) -> bool:
    return any(o.swap is not None and o.side == "sell" for o in daemon.engine.orders.values())


async def test_a_missing_wallet_file_is_reported_not_fatal_at_start_up(tmp_path: Path) -> None:
    """Final attack N3: a live agent's wallet file gone must not stop the daemon (every other
    agent's exits would stop with it): the reconciliation reports it and alerts."""
    async with live_daemon(tmp_path) as (api, stack):
        await _live_agent(api, stack)
        (tmp_path / "wallets" / "w1.json").unlink()
        await api.daemon.live.reconcile()  # raised NotFound before: start-up failed
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["jupiter"]
        assert venue["reconciliation"]["wallets"]["w1"]["status"] == "wallet_missing"
        assert venue["status"] == "degraded"
