"""Exchange accounts in the daemon (`[venues.ccxt.<account>]`, adapters/app/exchanges.py): the
settings and what they refuse (naming the failing key), which agents may trade an account, and a
real Daemon against the fake Binance (tests/fakes/binance.py): markets into the registry and the
engine, the request journaled before the fake sees it, restart resolution, reconciliation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from store_harness import StoreServers
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.exchange_settings import ExchangeAccountSettings
from tradingd.adapters.app.settings import engine_options, load_settings
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.adapters.http.server import wire_control_port
from tradingd.engine import events as ev
from tradingd.engine.errors import Conflict, ValidationError

from tests.fakes.binance import FakeBinance
from tests.fakes.binance_ccxt import FAKE_OPTIONS
from tests.integration.http_harness import ADMIN, Api
from tests.polling import poll_until_async

ACCOUNT = """
[venues.ccxt.binance]
exchange = "binance"
sandbox = true
"""


def settings_of(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # noqa: ANN201
    path = tmp_path / "tradingd.toml"
    path.write_text(text)
    return load_settings(str(path), {"TRADINGD_STORE": "memory", **(env or {})})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ValidationError) as err:
        settings_of(tmp_path, text)
    return err.value.message


def agent(venue: str, quote: str, extra: str = "") -> str:
    return f"""
[[agents]]
id = "x1"
name = "x"
venue = "{venue}"
quote = "{quote}"
{extra}
"""


def test_an_account_parses_with_its_defaults_and_maps_its_venue_to_the_exchange(tmp_path):
    settings = settings_of(tmp_path, ACCOUNT)
    account = settings.venues.ccxt["binance"]
    assert (account.exchange, account.sandbox, account.timeout_ms) == ("binance", True, 10_000)
    assert account.markets_reload_s == 3_600 and account.trading is True
    assert engine_options(settings)["venue_exchanges"] == {"ccxt:binance": "binance"}


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('exchange = "binanse"', "venues.ccxt.binance.exchange", "did you mean 'binance'"),
        ('exchange = "kraken"\nsandbox = true', "venues.ccxt.binance.sandbox", "no testnet"),
        ('exchange = "kraken"', "venues.ccxt.binance.exchange", "supported exchanges are binance"),
        ('exchange = "binance"\ntimeout_ms = 5', "venues.ccxt.binance.timeout_ms", ">= 100"),
        ('exchange = "binance"\nurls = { public = "ftp://x" }', "venues.ccxt.binance.urls", ""),
        ('exchange = "binance"\nmax_order_quote = "1e9"', "venues.ccxt.binance.max_order", ""),
        ('exchange = "binance"\napi_keys = "k"', "venues.ccxt.binance", "api_keys"),
        (
            'exchange = "binance"\noptions = { recvWindow = 60000 }',
            "venues.ccxt.binance",
            "must exceed options.recvWindow (60000 ms)",
        ),
        (
            'exchange = "binance"\noptions = { apiKey = "k" }',
            "venues.ccxt.binance",
            "options.apiKey",
        ),
    ],
)
def test_a_bad_account_is_refused_naming_the_key(tmp_path, text, key, reason):
    message = refusal(tmp_path, f"[venues.ccxt.binance]\n{text}\n")
    assert f": {key}" in message and reason in message


def test_a_binance_account_loads_spot_markets_only_unless_told_otherwise(tmp_path):
    # The attack's F7: without fetchMarkets.types = ["spot"], CCXT's Binance also asks the
    # futures hosts (fapi/dapi) that `urls` does not override: a testnet config reached
    # production. Spot only (all that trades here) is the default; options may still say more.
    account = settings_of(tmp_path, '[venues.ccxt.binance]\nexchange = "binance"\n')
    options = account.venues.ccxt["binance"].ccxt_config()["options"]
    assert options["fetchMarkets"] == {"types": ["spot"]} and options["fetchCurrencies"] is False


def test_an_account_name_is_lower_case(tmp_path):
    message = refusal(tmp_path, '[venues.ccxt.Main]\nexchange = "binance"\n')
    assert ": venues.ccxt:" in message


def test_two_accounts_of_one_exchange_must_share_its_testnet_choice(tmp_path):
    text = ACCOUNT + '[venues.ccxt.second]\nexchange = "binance"\n'
    assert "venues.ccxt.second.sandbox" in refusal(tmp_path, text)


def test_an_exchange_agent_in_usdt_is_accepted(tmp_path):
    settings = settings_of(tmp_path, ACCOUNT + agent("ccxt:binance", "USDT"))
    assert settings.agents[0].venue == "ccxt:binance"


@pytest.mark.parametrize(
    ("venue", "quote", "extra", "key"),
    [
        ("ccxt:binance", "SOL", "", "agents[id=x1].quote"),
        ("ccxt:kraken", "USDT", "", "agents[id=x1].venue"),
        ("ccxt", "USDT", "", "agents[id=x1].venue"),
        ("ccxt:binance", "USDC", 'wallet_id = "w"', "agents[id=x1].wallet_id"),
    ],
)
def test_an_exchange_agent_is_refused_naming_the_key(tmp_path, venue, quote, extra, key):
    assert f": {key}:" in refusal(tmp_path, ACCOUNT + agent(venue, quote, extra))


def test_secrets_come_from_the_environment_and_never_show_in_a_repr(tmp_path):
    text = ACCOUNT + 'api_key = "file-key"\n'
    env = {"TRADINGD_CCXT_BINANCE_API_KEY": "env-key-1234", "TRADINGD_CCXT_BINANCE_SECRET": "s3"}
    settings = settings_of(tmp_path, text, env)
    account = settings.venues.ccxt["binance"]
    assert (account.api_key, account.secret, account.password) == ("env-key-1234", "s3", None)
    shown = repr(settings)
    assert "env-key-1234" not in shown and "s3'" not in shown and "[redacted]" in shown
    assert {"env-key-1234", "s3"} <= set(settings.secret_values())


# -- a real Daemon against the fake Binance ---------------------------------------------------

USDT = 10**6  # the agent's quote atomic units per USDT
BTC = "binance:BTC/USDT"
AGENT = {
    "name": "cex",
    "venue": "ccxt:binance",
    "quote": "USDT",
    "config": {"sizing": {"mode": "fixed", "amount": str(100 * USDT)},
               "stop_loss": {"mode": "fixed", "default_pct": -20},
               "take_profit": {"enabled": False}},
}  # fmt: skip


def account_settings(fake: FakeBinance, **overrides: Any) -> ExchangeAccountSettings:
    """The account as a config would write it for the fake: its REST and WebSocket URLs in
    `urls`, the fake's keys, and Binance options that keep load_markets on /api/v3."""
    rest, ws = fake.url + "/api/v3", fake.ws_url + "/ws"
    fields: dict[str, Any] = {
        "exchange": "binance", "api_key": fake.api_key, "secret": fake.secret,
        "urls": {"public": rest, "private": rest, "ws": {"spot": ws}},
        "options": dict(FAKE_OPTIONS), "timeout_ms": 2_000, "order_lookup_interval_ms": 50,
        "retry_backoff_ms": 20, "ticker_poll_ms": 200,
    }  # fmt: skip
    return ExchangeAccountSettings(**{**fields, **overrides})


@asynccontextmanager
async def exchange_daemon(
    tmp_path: Path,
    fake: FakeBinance,
    store: tuple[StoreServers, str] | None = None,
    **account: Any,
) -> AsyncIterator[Api]:
    """A Daemon with account "binance" on the fake, started as `tradingd run` starts it (venues,
    markets, store and rules, resolution, reconciliation), its control port on 127.0.0.1."""
    env = {"TRADINGD_DATA_DIR": str(tmp_path)}
    settings = load_settings(None, env if store else {**env, "TRADINGD_STORE": "memory"})
    settings.feeds.synthetic.enabled = False
    settings.shutdown.grace_s = 0.5
    settings.venues.ccxt["binance"] = account_settings(fake, **account)
    if store is not None:
        settings.store.kind = "external"
        settings.store.redis_url, settings.store.database_url = (
            store[0].redis_url,
            store[0].database_url,
        )
    daemon = Daemon(settings, demo=False)
    daemon.keys = KeyStore(keys_path(tmp_path), bootstrap_key=ADMIN)
    daemon.exchanges.start()
    daemon.cleanups.append(daemon.exchanges.close)
    await daemon.exchanges.load_markets()
    await daemon.open_store(namespace=store[1] if store else None)
    await daemon.exchanges.resolve_recovered(5.0)
    await daemon.exchanges.reconcile()
    daemon.exchanges.start_tasks()
    app = wire_control_port(daemon)
    daemon.ready = True
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        try:
            yield Api(client, daemon)
        finally:
            await daemon.hub.close_all()
            await daemon.shutdown()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    exchange = FakeBinance()
    await exchange.start()
    exchange.set_balance("USDT", "10000")
    try:
        yield exchange
    finally:
        await exchange.close()


async def funded_agent(api: Api, usdt: int = 1_000) -> str:
    agent_id = str((await api.ok("POST", "/v1/agents", AGENT))["id"])
    api.daemon.runtime.apply(api.daemon.engine.deposit, agent_id, "USDT", usdt * USDT)
    return agent_id


async def buy(api: Api, signal_id: str = "s1") -> dict[str, Any]:
    """A buy signal for BTC/USDT at the fake's price; returns its record once executed."""
    await api.prices((BTC, 65_000.0))
    posted = await api.ok("POST", "/v1/signals", {"id": signal_id, "token": BTC, "strength": 5})
    return await api.wait_for(  # type: ignore[no-any-return]
        f"/v1/signals/{posted['signal_id']}",
        lambda doc: doc["executions"] and doc["executions"][0]["status"] in ("filled", "failed"),
    )


async def test_markets_load_into_the_registry_and_the_engine(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake) as api:
        daemon = api.daemon
        assert (
            daemon.markets.market(BTC) is not None
            and daemon.markets.market("binance:BTC/EUR") is None
        )
        rules = daemon.engine.instruments[BTC]
        assert (rules.decimals, rules.step, rules.min_amount, rules.min_cost) == (
            8,
            1000,
            1000,
            5.0,
        )
        assert set(daemon.engine.instruments) == {BTC, "binance:ETH/USDT", "binance:BNB/USDT"}


async def test_a_market_whose_step_changes_reaches_the_engine_on_reload(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake, markets_reload_s=1) as api:
        assert api.daemon.engine.instruments[BTC].step == 1_000
        fake.set_lot("BTC/USDT", step="0.001")
        await poll_until_async(
            lambda: api.daemon.engine.instruments[BTC].step,
            lambda step: step == 100_000,
            tries=300, timeout_s=5, interval_s=0.05, what="the reloaded step",
        )  # fmt: skip
        health = (await api.ok("GET", "/health"))["components"]["venues"]["ccxt:binance"]
        assert health["markets"]["status"] == "ok" and health["markets"]["tradable"] == 3


async def test_an_exchange_agent_is_created_in_usdt_and_refused_otherwise(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake) as api:
        created = await api.ok("POST", "/v1/agents", AGENT)
        assert created["venue"] == "ccxt:binance"
        for change, path in (({"quote": "SOL"}, "$.quote"), ({"venue": "ccxt:kraken"}, "$.venue")):
            status, err = await api.call("POST", "/v1/agents", {**AGENT, **change})
            assert status == 422 and err["error"]["details"]["path"] == path


async def test_the_request_is_journaled_before_the_exchange_sees_it(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake) as api:
        seen_at_record: list[int] = []

        def on_events(events: list[ev.Event]) -> None:
            for e in events:
                if isinstance(e, ev.ExchangeOrderSent):
                    seen_at_record.append(len(fake.order_posts()))

        api.daemon.runtime.event_subscribers.insert(0, on_events)
        agent_id = await funded_agent(api)
        doc = await buy(api)
        assert doc["executions"][0]["status"] == "filled"
        assert seen_at_record == [0]
        (post,) = fake.order_posts()
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        (order,) = fake.orders_for(post.params["newClientOrderId"])
        assert trade["venue"] == "ccxt:binance" and trade["amount"] == received(fake, order)


async def test_a_request_answered_after_a_restart_is_settled_from_its_lookup(
    tmp_path, fake, store_servers, namespace
):
    store = (store_servers, namespace)
    async with exchange_daemon(tmp_path, fake, store) as api:
        agent_id = await funded_agent(api)
        fake.accept_then_hang(delay_s=60)  # filled on the exchange, the answer held
        await api.prices((BTC, 65_000.0))
        await api.ok("POST", "/v1/signals", {"id": "held", "token": BTC, "strength": 5})
        await poll_until_async(
            lambda: len(fake.order_posts()), lambda n: n == 1, what="the order at the fake"
        )
    async with exchange_daemon(tmp_path, fake, store) as api:
        positions = await api.wait_for(
            f"/v1/agents/{agent_id}/positions?status=open", lambda doc: len(doc["items"]) == 1
        )
        (post,) = fake.order_posts()
        (order,) = fake.orders_for(post.params["newClientOrderId"])
        assert positions["items"][0]["amount"] == received(fake, order)


async def test_an_account_holding_less_than_the_book_shows_in_health(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake) as api:
        alerts: list[ev.Alert] = []
        api.daemon.runtime.event_subscribers.append(
            lambda events: alerts.extend(e for e in events if isinstance(e, ev.Alert))
        )
        await funded_agent(api, usdt=20_000)  # the fake holds 10,000 USDT
        await api.daemon.exchanges.reconcile()
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["ccxt:binance"]
        assert venue["status"] == "degraded" and venue["reconciliation"]["status"] == "mismatch"
        assert venue["reconciliation"]["balances"]["USDT"] == {
            "exchange": "10000", "book": "20000", "short": True, "unallocated": "0"}  # fmt: skip
        assert [a.code for a in alerts] == ["exchange_book_mismatch"]
        assert fake.balance("USDT") == Decimal("10000")  # reported, never "fixed"


def received(fake: FakeBinance, order: Any) -> str:
    """BTC atomic units a filled buy brought: its quantity less the fee the fake took in BTC."""
    return str(int(order.executed_qty * (1 - fake.fee_rate) * 10**8))


async def test_an_allocation_is_checked_against_what_the_account_holds_beyond_the_book(
    tmp_path, fake
):
    async with exchange_daemon(tmp_path, fake) as api:
        exchanges, engine = api.daemon.exchanges, api.daemon.engine
        agent = engine.agents[await funded_agent(api, usdt=6_000)]  # the fake holds 10,000
        await exchanges.check_allocation(agent, "usdt", 4_000 * USDT)
        with pytest.raises(Conflict) as err:
            await exchanges.check_allocation(agent, "USDT", 4_001 * USDT)
        assert err.value.details["unallocated"] == "4000"
        with pytest.raises(ValidationError) as bad:
            await exchanges.check_allocation(agent, "BTC", 1)
        assert bad.value.path == "$.asset"


async def test_a_deposit_to_an_exchange_agent_allocates_what_the_account_holds(tmp_path, fake):
    # The fake holds 10,000 USDT: 6,000 then 4,000 are allocated; 1 more is a 409 naming what
    # is left; BTC is a 422 at $.asset; the exchange not answering is a 503.
    async with exchange_daemon(tmp_path, fake) as api:
        agent_id = str((await api.ok("POST", "/v1/agents", AGENT))["id"])
        path = f"/v1/agents/{agent_id}/deposits"
        await api.ok("POST", path, {"asset": "USDT", "amount": str(6_000 * USDT)})
        await api.ok("POST", path, {"asset": "usdt", "amount": str(4_000 * USDT)})
        status, doc = await api.call("POST", path, {"asset": "USDT", "amount": "1"})
        assert status == 409 and doc["error"]["details"]["unallocated"] == "0", doc
        status, doc = await api.call("POST", path, {"asset": "BTC", "amount": "1"})
        assert status == 422 and doc["error"]["details"]["path"] == "$.asset", doc
        fake.server_error(503, n=20)
        status, doc = await api.call("POST", path, {"asset": "USDT", "amount": "1"})
        assert status == 503, doc
        balances = await api.ok("GET", f"/v1/agents/{agent_id}/balances")
        assert balances[0]["total"] == str(10_000 * USDT), balances


async def test_an_account_without_keys_gives_paper_agents_its_markets_and_prices(tmp_path, fake):
    # No keys: market data only. A paper agent trades BTC/USDT at the exchange's ticker price
    # (65,000, streamed by the account's feed) with the market's step: 100 USDT buys
    # floor(100 / 65,000 / 0.00001) x 0.00001 = 0.00153 BTC (no slippage, no fee). An agent on
    # the account itself is refused: nothing can be sent without keys.
    async with exchange_daemon(tmp_path, fake, api_key=None, secret=None) as api:
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["ccxt:binance"]
        assert venue["mode"] == "market_data" and venue["status"] == "ok", venue
        status, doc = await api.call("POST", "/v1/agents", AGENT)
        assert status == 422 and doc["error"]["details"]["path"] == "$.venue", doc
        paper = {**AGENT, "venue": "paper", "config": {
            **AGENT["config"], "execution": {"slippage_bps": 0, "fee_bps": 0}}}  # fmt: skip
        agent_id = str((await api.ok("POST", "/v1/agents", paper))["id"])
        await api.ok(
            "POST",
            f"/v1/agents/{agent_id}/deposits",
            {"asset": "USDT", "amount": str(1_000 * USDT)},
        )
        api.daemon.exchanges.start_feeds()  # the account's ticker feed, as `tradingd run`
        # No price yet: the signal waits for the exchange's first (fetched on demand).
        posted = await api.ok("POST", "/v1/signals", {"token": BTC, "strength": 5})
        done = await api.wait_for(
            f"/v1/signals/{posted['signal_id']}",
            lambda doc: doc["executions"] and doc["executions"][0]["status"] == "filled",
        )
        position = await api.ok("GET", f"/v1/positions/{done['executions'][0]['position_id']}")
        assert (position["amount"], position["decimals"]) == ("153000", 8), position
        price = await api.ok("GET", "/v1/prices/binance%3ABTC%2FUSDT")
        assert (price["price_usd"], price["source"]) == (65_000.0, "binance"), price
        assert fake.order_posts() == []


async def test_balances_are_compared_again_when_the_account_comes_back(tmp_path, fake):
    async with exchange_daemon(tmp_path, fake, breaker_failures=1, breaker_reset_s=0.3) as api:
        await funded_agent(api, usdt=1_000)
        fake.server_error(503, path="/api/v3/account")  # the account's API goes away
        await api.daemon.exchanges.reconcile()
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["ccxt:binance"]
        assert venue["reconciliation"]["status"] == "unknown"
        assert venue["breaker"]["state"] == "open" and venue["status"] == "degraded"
        fake.set_balance("USDT", "500")  # meanwhile, someone spent from the account
        venue = await api.wait_for(
            "/health",
            lambda doc: (
                doc["components"]["venues"]["ccxt:binance"]["reconciliation"]["status"]
                == "mismatch"
            ),
            tries=1_000,
        )
        assert venue["components"]["venues"]["ccxt:binance"]["breaker"]["state"] == "closed"


@pytest.mark.parametrize("fault", ["unavailable", "slow"])
async def test_a_daemon_whose_markets_do_not_load_starts_degraded_and_loads_them_later(
    tmp_path, fake, fault
):
    # The other venues' exits must keep running through an exchange outage: the daemon starts,
    # the account is "down" in /health with an alert, its instruments are refused with a 503
    # (not a 422: they exist), and the markets load once the exchange answers.
    if fault == "unavailable":
        fake.server_error(503, n=100, path="/api/v3/exchangeInfo")
    else:
        fake.delays["/api/v3/exchangeInfo"] = 5.0
    async with exchange_daemon(tmp_path, fake, markets_timeout_s=0.3, markets_retry_s=0.1) as api:
        daemon = api.daemon
        venue = (await api.ok("GET", "/health"))["components"]["venues"]["ccxt:binance"]
        assert venue["status"] == "down" and venue["markets"]["status"] == "down", venue
        assert fake.secret not in str(venue) and fake.api_key not in str(venue)
        status, doc = await api.call("POST", "/v1/signals", {"token": BTC, "strength": 5})
        assert status == 503 and "not loaded yet" in doc["error"]["message"], doc
        fake.delays.clear()
        while fake.take_fault("/api/v3/exchangeInfo") is not None:  # the exchange is back
            pass
        await api.wait_for(
            "/health",
            lambda doc: doc["components"]["venues"]["ccxt:binance"]["markets"]["status"] == "ok",
            tries=1_000,
        )
        assert BTC in daemon.engine.instruments
        await funded_agent(api)
        assert (await buy(api))["executions"][0]["status"] == "filled"


def test_the_watchlist_takes_markets_of_the_accounts_exchanges(tmp_path):
    settings = settings_of(tmp_path, '[prices]\nwatchlist = ["binance:BTC/USDT"]\n' + ACCOUNT)
    assert settings.prices.watchlist == ["binance:BTC/USDT"]
    message = refusal(tmp_path, '[prices]\nwatchlist = ["kraken:BTC/USDT"]\n' + ACCOUNT)
    assert ": prices.watchlist[0]:" in message


async def test_a_proxys_password_in_urls_reaches_no_log_health_or_repr(tmp_path, fake, caplog):
    # The attack's F11: a proxy's user:password in `urls`, the exchange unreachable through it.
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    rest = f"http://produser:PROXYPASS99@127.0.0.1:{port}/api/v3"
    urls = {"public": rest, "private": rest, "ws": {"spot": f"ws://127.0.0.1:{port}/ws"}}
    async with exchange_daemon(tmp_path, fake, urls=urls, markets_timeout_s=0.5) as api:
        health = await api.ok("GET", "/health")
        assert health["components"]["venues"]["ccxt:binance"]["markets"]["status"] == "down"
        shown = json.dumps(health) + repr(api.daemon.settings.venues.ccxt["binance"])
    shown += caplog.text
    assert "PROXYPASS99" not in shown and "produser" not in shown


async def test_an_ip_ban_shows_the_account_degraded_until_it_ends(tmp_path, fake):
    # The attack's F13: a 418 with Retry-After 20 on the order: the buy waits it out (one order
    # in the end) and /health says degraded with the ban's end, not ok.
    async with exchange_daemon(tmp_path, fake, max_retry_wait_ms=100) as api:
        await funded_agent(api)
        fake.ban(1, 20, path="/api/v3/order")
        await api.prices((BTC, 65_000.0))
        await api.ok("POST", "/v1/signals", {"id": "b1", "token": BTC, "strength": 5})
        doc = await api.wait_for(
            "/health",
            lambda d: d["components"]["venues"]["ccxt:binance"]["banned_until"] is not None,
            tries=300,
        )
        venue = doc["components"]["venues"]["ccxt:binance"]
        assert venue["status"] == "degraded", venue
