"""The daemon on real market data, against a fake Pyth Hermes and a fake DexScreener speaking
their wire formats: a signal's new token is fetched and bought on its DexScreener liquidity,
Pyth then prices it, a stale Pyth fails over to DexScreener and back, a divergence blocks buys
until the sources agree, and neither a bad nor a stale Pyth price moves a stop."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import load_settings
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.adapters.http.server import wire_control_port

from tests.fakes.dexscreener import WSOL, FakeDexScreener, sol_usdc_pair
from tests.fakes.hermes import FakeHermes
from tests.integration.http_harness import ADMIN, Api
from tests.polling import poll_until_async

TOKEN = "5446sW7E8jCzLXnT9npZNfDwBnQugVc3XdfEbqPBpump"
FEED = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43"
PYTH_KEY = "pyth-test-key-1234"
MAX_AGE_MS = 1500


def pair(price: str, liquidity: float = 250_000.0) -> dict[str, Any]:
    return {
        "chainId": "solana",
        "dexId": "raydium",
        "pairAddress": "8ittpMFhz8SrxFy5u5xoaSDeVdbF3gS6xjXZwP8G1nFt",
        "baseToken": {"address": TOKEN, "name": "Test", "symbol": "TST"},
        "quoteToken": {"address": WSOL, "name": "Wrapped SOL", "symbol": "SOL"},
        "priceUsd": price,
        "liquidity": {"usd": liquidity, "base": 1, "quote": 1},
        "volume": {"h24": 900_000.0},
        "fdv": 5_000_000,
        "marketCap": 4_000_000,
        "pairCreatedAt": int(time.time() * 1000) - 40 * 86_400_000,
    }


def config(hermes: str, dex: str) -> str:
    return f"""
[prices]
max_price_age_ms = {MAX_AGE_MS}
sources = ["pyth", "dexscreener"]
max_divergence_pct = 5

[feeds]
signal_fetch_timeout_ms = 3000

[feeds.pyth]
enabled = true
url = "{hermes}"
api_key = "{PYTH_KEY}"
ids = {{ {TOKEN} = "{FEED}" }}
backoff_initial_ms = 20
backoff_max_ms = 200
idle_timeout_s = 1.0
watch_interval_ms = 50

[feeds.dexscreener]
enabled = true
url = "{dex}"
interval_ms = 200
max_requests_per_min = 300

[[agents]]
id = "m1"
name = "market"
venue = "paper"
quote = "SOL"
paper_deposit = 10000000000

[agents.config.signals]
min_liquidity_usd = 100000

[agents.config.sizing]
mode = "fixed"
amount = "100000000"

[agents.config.limits]
max_positions_per_token = 5

[agents.config.stop_loss]
mode = "fixed"
default_pct = -20
"""


@dataclass
class Stack:
    api: Api
    daemon: Daemon
    hermes: FakeHermes
    dex: FakeDexScreener

    async def token(self) -> dict[str, Any]:
        return await self.api.ok("GET", f"/v1/tokens/{TOKEN}")

    async def until_token(self, pred: Any, what: str) -> dict[str, Any]:
        return await poll_until_async(self.token, pred, tries=400, interval_s=0.025, what=what)

    async def buy(self) -> dict[str, Any]:
        sig = await self.api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        doc = await self.api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        (execution,) = doc["executions"]
        return execution

    async def hold_and_stream(self) -> dict[str, Any]:
        """Buy the token at 0.0002 USD from both sources; returns once Pyth streams it (held,
        so watched). The buy's execution."""
        self.dex.set_pairs(TOKEN, pair("0.0002"))
        self.pyth_price("0.0002")
        execution = await self.buy()
        await poll_until_async(
            lambda: self.hermes.open_streams,
            lambda streams: any(FEED in s.ids for s in streams),
            tries=400,
            interval_s=0.025,
            what="a Pyth stream for the token",
        )
        return execution

    def pyth_price(self, usd: str, publish_time: int | None = None) -> None:
        mantissa = str(int(float(usd) * 10**8))
        # Whole seconds on the wire: rounded up, so "now" is never already most of the
        # feed's 1 s freshness window old (a truncated second made /health flaky under load).
        now_s = math.ceil(time.time())
        self.hermes.set_price(FEED, mantissa, conf="2000", publish_time=publish_time or now_s)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    hermes, dex = FakeHermes(api_key=PYTH_KEY, keepalive_s=0.2), FakeDexScreener()
    dex.set_pairs(WSOL, sol_usdc_pair())
    hermes_url, dex_url = await hermes.start(), await dex.start()
    path = tmp_path / "tradingd.toml"
    path.write_text(config(hermes_url, dex_url))
    env = {"TRADINGD_STORE": "memory", "TRADINGD_DATA_DIR": str(tmp_path / "var")}
    daemon = Daemon(load_settings(str(path), env), demo=False)
    daemon.keys = KeyStore(keys_path(tmp_path), bootstrap_key=ADMIN)
    app = wire_control_port(daemon)
    daemon.create_configured_agents()
    daemon.start_feeds()
    daemon.ready = True
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            s = Stack(Api(client, daemon), daemon, hermes, dex)
            await poll_until_async(  # SOL, the agent's quote, is watched: DexScreener prices it
                lambda: daemon.engine.prices.get(WSOL),
                lambda t: t is not None,
                tries=400,
                interval_s=0.025,
                what="a SOL price",
            )
            yield s
            await daemon.hub.close_all()
    finally:
        await daemon.shutdown()
        await hermes.close()
        await dex.close()


async def test_a_signal_for_a_new_token_is_priced_bought_and_then_streamed(stack: Stack):
    stack.dex.set_pairs(TOKEN, pair("0.0002"))
    stack.pyth_price("0.0002")
    assert TOKEN not in stack.daemon.engine.prices
    execution = await stack.buy()  # one fetch: DexScreener's liquidity clears the filter
    assert execution["status"] in ("pending", "filled") and execution["reason"] == ""
    assert TOKEN in stack.dex.asked()
    # held now, so watched: Pyth streams it and prices it (highest priority)
    await poll_until_async(
        lambda: stack.hermes.open_streams,
        lambda streams: any(FEED in s.ids for s in streams),
        tries=400,
        interval_s=0.025,
        what="a Pyth stream for the token",
    )
    assert all(r.authorization == f"Bearer {PYTH_KEY}" for r in stack.hermes.requests)
    stack.pyth_price("0.00021")
    await stack.hermes.publish()
    view = await stack.until_token(lambda v: v["source"] == "pyth", "pyth pricing the token")
    assert view["price_usd"] == 0.00021
    assert view["liquidity_usd"] == 250_000.0 and view["market_source"] == "dexscreener"
    health = await stack.api.ok("GET", "/health")
    assert health["components"]["feeds"]["pyth"]["status"] == "ok"
    assert PYTH_KEY not in str(health)


async def test_a_silent_pyth_fails_over_to_dexscreener_and_takes_back(stack: Stack):
    await stack.hold_and_stream()
    await stack.hermes.publish()
    await stack.until_token(lambda v: v["source"] == "pyth", "pyth first")
    # Pyth goes silent (keep-alives only): past max_price_age_ms DexScreener's ticks apply
    view = await stack.until_token(lambda v: v["source"] == "dexscreener", "failover")
    assert [s["source"] for s in view["sources"] if s["fresh"]] == ["dexscreener"]
    health = await stack.api.ok("GET", "/health")
    assert health["components"]["feeds"]["pyth"]["status"] == "stale"
    assert health["status"] == "degraded"
    stack.pyth_price("0.0002")
    await stack.hermes.publish()
    await stack.until_token(lambda v: v["source"] == "pyth", "pyth back")


async def test_divergence_blocks_buys_until_the_sources_agree_again(stack: Stack):
    assert (await stack.hold_and_stream())["reason"] == ""
    stack.dex.set_pairs(TOKEN, pair("0.00025"))  # 25 % above Pyth
    await stack.hermes.publish()
    view = await stack.until_token(lambda v: v["divergence"] is not None, "divergence")
    assert view["buys_blocked"] is True
    assert (await stack.buy())["reason"] == "price_divergence"
    stack.dex.set_pairs(TOKEN, pair("0.000201"))
    for _ in range(3):
        await stack.hermes.publish()
        await asyncio.sleep(0.1)
    await stack.until_token(lambda v: v["divergence"] is None, "agreement")
    assert (await stack.buy())["reason"] == ""


async def test_neither_a_malformed_nor_a_stale_pyth_price_moves_a_stop(stack: Stack):
    await stack.hold_and_stream()
    await stack.hermes.publish()
    await stack.until_token(lambda v: v["source"] == "pyth", "pyth pricing")
    await stack.api.settle()
    positions = await stack.api.ok("GET", "/v1/agents/m1/positions?status=open")
    (position,) = positions["items"]
    stop = position["stop_price_usd"]
    # a broken event, then a price far below the stop published ten minutes ago
    await stack.hermes.send_raw(b'data:{"parsed":[{"id":"' + FEED.encode() + b'","price":\n\n')
    stack.pyth_price("0.00001", publish_time=int(time.time()) - 600)
    await stack.hermes.publish()
    await poll_until_async(
        lambda: stack.daemon.runtime.ticks_rejected.get("stale", 0),
        lambda n: n >= 1,
        tries=400,
        interval_s=0.025,
        what="the stale tick refused",
    )
    positions = await stack.api.ok("GET", "/v1/agents/m1/positions?status=open")
    (still,) = positions["items"]
    assert still["id"] == position["id"] and still["stop_price_usd"] == stop
    assert stack.daemon.engine.prices[TOKEN].price_usd > 0.0001
