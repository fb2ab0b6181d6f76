"""An exchange account in the real `tradingd run` process (embedded store) against the fake
Binance (tests/fakes/binance.py, REST and WebSocket on 127.0.0.1, run in a thread of this
process): an agent trading BTC/USDT buys on a signal, takes profit and is stopped out by its
trailing stop as the fake's ticker stream moves; a kill -9 while the fake holds an order's answer
ends with the order settled from its lookup by client id, never placed twice; the account's
secrets appear in no log line and no /health."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from tradingd.adapters.store.embedded import EmbeddedServers

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.fakes.binance import FakeBinance
from tests.polling import poll_until

T = TypeVar("T")
BTC = "binance:BTC/USDT"
API_KEY = "e2e-binance-api-key-7f3a9c"
SECRET = "e2e-binance-secret-51d0be"
EMBEDDED = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory; kill -9 needs the disk
USDT = 10**6
WAIT_S = 20.0
AGENT_ID = "cex-1"

pytestmark = pytest.mark.slow


class FakeThread:
    """The fake Binance on its own event loop in a thread; `call` runs a function there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeBinance(API_KEY, SECRET)
        self.run(self.fake.start())
        self.call(self.fake.set_balance, "USDT", "10000")

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def inside() -> T:
            return fn(*args)

        return self.run(inside())  # type: ignore[no-any-return]

    def orders(self) -> list[Any]:
        """Every order the fake accepted, oldest first."""
        return self.call(lambda: sorted(self.fake.orders.values(), key=lambda o: o.order_id))

    def order_posts(self) -> int:
        return len(self.call(self.fake.order_posts))

    def streaming(self) -> bool:
        """Whether a WebSocket connection streams BTCUSDT."""
        return self.call(
            lambda: any("btcusdt" in s.lower() for c in self.fake.ws.conns for s in c.streams)
        )

    def stop(self) -> None:
        self.run(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def daemon_config(fake: FakeBinance, extra: str = "") -> str:
    """An account on the fake (URLs through `urls`, keys from the environment), one agent
    trading BTC/USDT with a take-profit and a trailing stop."""
    rest, ws = fake.url + "/api/v3", fake.ws_url + "/ws"
    return f"""
[engine]
max_price_age_ms = 60000
[feeds.synthetic]
enabled = false
[shutdown]
grace_s = 2

[venues.ccxt.binance]
exchange = "binance"
urls = {{ public = "{rest}", private = "{rest}", ws = {{ spot = "{ws}" }} }}
options = {{ fetchMarkets = {{ types = ["spot"] }}, fetchCurrencies = false, fetchMargins = false, adjustForTimeDifference = false, defaultType = "spot" }}
timeout_ms = 10000
order_lookup_interval_ms = 100
ticker_poll_ms = 500
{extra}
[[agents]]
id = "{AGENT_ID}"
name = "btc trailer"
venue = "ccxt:binance"
quote = "USDT"
allocation = {1_000 * USDT}

[agents.config.sizing]
mode = "fixed"
amount = "{100 * USDT}"

[agents.config.stop_loss]
mode = "trailing"
default_pct = -10
trail_pct = 5

[agents.config.take_profit]
enabled = true
levels = [{{ gain_pct = 5, sell_pct = 50 }}]
"""


class Api:
    def __init__(self, d: DaemonProcess) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.session.request(method, self.base + path, json=body, timeout=10)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def until(self, path: str, accept: Callable[[Any], object], what: str) -> Any:
        return poll_until(
            lambda: self.ok("GET", path), accept, timeout_s=WAIT_S, interval_s=0.05, what=what
        )

    def signal(self, sid: str) -> str:
        return self.ok("POST", "/v1/signals", {"id": sid, "token": BTC, "strength": 5})["signal_id"]

    def positions(self, status: str) -> list[dict[str, Any]]:
        return self.ok("GET", f"/v1/agents/{AGENT_ID}/positions?status={status}")["items"]

    def trades(self) -> list[dict[str, Any]]:
        return self.ok("GET", f"/v1/agents/{AGENT_ID}/trades")["items"]


class World:
    """The fake exchange, a data dir, and the daemons started on it (stopped at the end)."""

    def __init__(self, tmp: Path) -> None:
        self.exchange = FakeThread()
        self.data = tmp / "data"
        self.daemons: list[DaemonProcess] = []
        self.admin_key: str | None = None
        self.extra_config = ""  # more keys of [venues.ccxt.binance]

    def start(self) -> Api:
        env = {**EMBEDDED, "TRADINGD_CCXT_BINANCE_API_KEY": API_KEY,
               "TRADINGD_CCXT_BINANCE_SECRET": SECRET}  # fmt: skip
        d = start_daemon(
            self.data, env=env, config_text=daemon_config(self.exchange.fake, self.extra_config),
            admin_key=self.admin_key, timeout=60,
        )  # fmt: skip
        self.admin_key = d.admin_key
        self.daemons.append(d)
        return Api(d)

    def kill(self) -> None:
        self.daemons[-1].stop(signal.SIGKILL)

    def price(self, api: Api, price: str) -> None:
        """Move the fake's BTC/USDT (pushed on its ticker stream)."""
        self.exchange.call(self.exchange.fake.set_price, "BTC/USDT", price)

    def close(self) -> None:
        for d in self.daemons:
            d.stop(signal.SIGKILL)
        EmbeddedServers(self.data).stop()
        self.exchange.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.close()


def execution(api: Api, signal_id: str) -> dict[str, Any]:
    doc = api.until(
        f"/v1/signals/{signal_id}",
        lambda s: s["executions"] and s["executions"][0]["status"] in ("filled", "failed"),
        what=f"signal {signal_id} executed",
    )
    return doc["executions"][0]  # type: ignore[no-any-return]


def atomic_btc(qty: Decimal) -> int:
    return int(qty * 10**8)


def test_an_exchange_agent_buys_takes_profit_and_is_stopped_out_through_the_exchange(world):
    api = world.start()
    assert execution(api, api.signal("entry"))["status"] == "filled"
    (position,) = api.positions("open")
    (buy,) = world.exchange.orders()
    fee = buy.executed_qty * world.exchange.fake.fee_rate  # taken in BTC
    assert (buy.side, buy.client_order_id.startswith("td-")) == ("BUY", True)
    assert int(position["amount"]) == atomic_btc(buy.executed_qty - fee)
    poll_until(world.exchange.streaming, timeout_s=WAIT_S, interval_s=0.05, what="BTC streamed")

    world.price(api, "68300")  # +5.08 %: the take-profit sells half
    api.until(
        f"/v1/agents/{AGENT_ID}/trades",
        lambda doc: len(doc["items"]) == 2,
        what="the take-profit sell",
    )
    world.price(api, "70000")  # a new high: the trailing stop moves up to 66,500
    api.until(
        f"/v1/agents/{AGENT_ID}/positions?status=open",
        lambda doc: doc["items"] and doc["items"][0]["peak_price_usd"] == 70000,
        what="the peak at 70,000",
    )
    world.price(api, "66000")  # under 70,000 - 5 %: the trailing stop sells the rest
    (closed,) = api.until(
        f"/v1/agents/{AGENT_ID}/positions?status=closed",
        lambda doc: len(doc["items"]) == 1,
        what="the position closed by the trailing stop",
    )["items"]
    assert closed["id"] == position["id"] and closed["exit_reason"] == "stop_loss"

    orders = world.exchange.orders()
    assert [(o.side, o.status) for o in orders] == [("BUY", "FILLED")] + [("SELL", "FILLED")] * 2
    trades = api.trades()
    assert [t["reason"] for t in trades] == ["signal", "take_profit", "stop_loss"]
    sold = [atomic_btc(o.executed_qty) for o in orders[1:]]
    assert [int(t["amount"]) for t in trades[1:]][0] == sold[0]
    # The whole-position sell sends what the step allows; the sub-step rest stays on Binance.
    residue = int(position["amount"]) - sum(sold)
    assert 0 <= residue < 1000 and world.exchange.fake.balance("BTC") == Decimal(residue) / 10**8


def test_an_order_filled_while_the_daemon_was_killed_is_settled_once_after_restart(world):
    api = world.start()
    world.exchange.call(world.exchange.fake.accept_then_hang, 60.0)  # filled, the answer held
    sid = api.signal("held")
    poll_until(
        world.exchange.order_posts, lambda n: n == 1, timeout_s=WAIT_S, interval_s=0.01,
        what="the order at the fake",
    )  # fmt: skip
    world.kill()  # the request was journaled before it left; its answer never came
    (order,) = world.exchange.orders()
    assert order.status == "FILLED"

    api = world.start()
    assert execution(api, sid)["status"] == "filled"
    (position,) = api.positions("open")
    fee = order.executed_qty * world.exchange.fake.fee_rate
    assert int(position["amount"]) == atomic_btc(order.executed_qty - fee)
    assert world.exchange.order_posts() == 1 and len(world.exchange.orders()) == 1
    lookups = world.exchange.call(
        lambda: [
            r for r in world.exchange.fake.requests
            if r.method == "GET" and r.path == "/api/v3/order"
            and r.params.get("origClientOrderId") == order.client_order_id
        ]
    )  # fmt: skip
    assert lookups, "settled without looking the order up by its client id"
    (trade,) = api.trades()
    assert trade["venue"] == "ccxt:binance"


def test_the_account_secrets_appear_in_no_log_line_and_no_health(world):
    api = world.start()
    assert execution(api, api.signal("entry"))["status"] == "filled"
    health = requests.get(api.base + "/health", timeout=10).text
    components = api.until(
        "/health",
        lambda doc: len(doc["components"]["feeds"]["binance"]["tokens"]) == 2,
        what="the ticker feed pricing BTC/USDT and BNB/USDT (fees paid in BNB are valued)",
    )["components"]
    assert components["feeds"]["binance"]["tokens"] == ["binance:BNB/USDT", BTC]
    venue = components["venues"]["ccxt:binance"]
    assert venue["status"] == "ok" and venue["reconciliation"]["status"] == "ok"
    unauthorized = requests.get(api.base + "/v1/agents", timeout=10).text
    logs = world.daemons[-1].log_path.read_text(errors="replace")
    assert "exchange account ready" in logs
    for text in (health, unauthorized, logs, repr(api.ok("GET", "/v1/agents"))):
        assert API_KEY not in text and SECRET not in text


def test_run_starts_without_an_exchanges_markets_and_loads_them_when_it_answers(world):
    # The exchange refuses exchangeInfo at start-up: the daemon starts anyway (other venues'
    # exits must keep running), /health shows the account down, a signal for BTC/USDT is a
    # 503; once the exchange answers, the markets load and the agent trades.
    fake = world.exchange
    fake.call(lambda: fake.fake.server_error(503, 1_000, path="/api/v3/exchangeInfo"))
    world.extra_config = "markets_retry_s = 0.5\n"
    api = world.start()
    venue = api.ok("GET", "/health")["components"]["venues"]["ccxt:binance"]
    assert venue["status"] == "down" and venue["markets"]["status"] == "down", venue
    resp = api.session.post(
        api.base + "/v1/signals", json={"token": BTC, "strength": 5}, timeout=10
    )
    assert resp.status_code == 503 and "not loaded yet" in resp.text, resp.text
    fake.call(lambda: [fake.fake.take_fault("/api/v3/exchangeInfo") for _ in range(1_000)])
    api.until(
        "/health",
        lambda doc: doc["components"]["venues"]["ccxt:binance"]["markets"]["status"] == "ok",
        what="markets loaded",
    )
    assert execution(api, api.signal("after-outage"))["status"] == "filled"


def test_a_shortfall_found_when_the_stream_reconnects_shows_in_health(world):
    api = world.start()
    assert execution(api, api.signal("entry"))["status"] == "filled"
    poll_until(world.exchange.streaming, timeout_s=WAIT_S, interval_s=0.05, what="BTC streamed")
    venue = api.ok("GET", "/health")["components"]["venues"]["ccxt:binance"]
    assert venue["reconciliation"]["status"] == "ok"
    world.exchange.call(world.exchange.fake.set_balance, "USDT", "100")  # spent elsewhere
    world.exchange.run(world.exchange.fake.drop_ws())
    poll_until(world.exchange.streaming, timeout_s=WAIT_S, interval_s=0.05, what="reconnected")
    world.price(api, "65100")  # the stream delivers again
    doc = api.until(
        "/health",
        lambda d: (
            d["components"]["venues"]["ccxt:binance"]["reconciliation"]["status"] == "mismatch"
        ),
        what="the shortfall found after the reconnect",
    )
    usdt = doc["components"]["venues"]["ccxt:binance"]["reconciliation"]["balances"]["USDT"]
    assert (usdt["exchange"], usdt["short"]) == ("100", True)
    alerts = [line for line in world.daemons[-1].logs() if line.get("alert") == "exchange_book_mismatch"]  # fmt: skip
    assert alerts, "no exchange_book_mismatch alert logged"
