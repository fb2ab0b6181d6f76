"""Exchange instrument ids (`binance:BTC/USDT`) at the control port of a real in-process Daemon:
signals and pushed ticks for loaded markets, refusals by kind in the one 422 shape, paths with
the id percent-encoded or as written, WebSocket filters, and replay files and `tradingd replay`
with market ids (no exchange needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from http_harness import ADMIN, TOKEN, Api, serve
from test_ws_stack import Reader
from tradingd.adapters.app.backtest import run_replay, run_replay_cli
from tradingd.adapters.app.settings import AgentSpec, load_settings
from tradingd.adapters.feeds.replay import ReplayFormatError, iter_records, parse_line
from tradingd.adapters.venues.ccxt.markets import TICK_SIZE, market_rules
from tradingd.engine.errors import ValidationError

from tests.unit.test_instruments import BINANCE_BTC_USDT, binance_market

BTC = "binance:BTC/USDT"
BTC_PATH = "binance%3ABTC%2FUSDT"
USDT = 10**6
T0 = 1_767_225_600_000
PAPER = {
    "sizing": {"mode": "fixed", "amount": str(100 * USDT)},
    "execution": {"slippage_bps": 10, "fee_bps": 0},
    "stop_loss": {"enabled": False},
}


def load_binance(api: Api) -> None:
    """What the exchange adapters do at start-up: binance's markets into the registry, and
    BTC/USDT's order-size rules into the engine."""
    daemon = api.daemon
    daemon.markets.load(
        "binance", {"BTC/USDT": BINANCE_BTC_USDT, "ETH/USDT": binance_market("ETH/USDT")}
    )
    rules = market_rules(BINANCE_BTC_USDT, TICK_SIZE)
    daemon.runtime.apply(daemon.engine.set_instrument_rules, BTC, rules)


async def usdt_agent(api: Api) -> str:
    doc = await api.ok("POST", "/v1/agents", {"name": "btc", "quote": "USDT", "config": PAPER})
    deposit = {"asset": "USDT", "amount": str(1_000 * USDT)}
    await api.ok("POST", f"/v1/agents/{doc['id']}/deposits", deposit)
    return str(doc["id"])


def refused(status: int, doc: Any, path: str) -> str:
    assert status == 422, doc
    assert doc["error"]["code"] == "validation_error"
    assert doc["error"]["details"]["path"] == path
    return str(doc["error"]["message"])


# -- signals ---------------------------------------------------------------------------------


async def test_a_signal_for_a_loaded_market_is_executed_by_a_paper_agent(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        agent_id = await usdt_agent(api)
        await api.prices((BTC, 65_000.0))
        accepted = await api.ok("POST", "/v1/signals", {"token": BTC, "symbol": "BTC"})
        assert accepted["agents_matched"] == 1
        await api.settle()
        record = await api.ok("GET", f"/v1/signals/{accepted['signal_id']}")
        assert record["token"] == BTC
        assert record["executions"][0]["status"] == "filled"
        (position,) = (await api.ok("GET", f"/v1/agents/{agent_id}/positions"))["items"]
        # 100 USDT at 65,065 (10 bps up): 0.0015369 BTC -> 0.00153, at 8 decimals
        assert (position["token"], position["amount"], position["decimals"]) == (BTC, "153000", 8)
        (trade,) = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert (trade["token"], trade["amount"], trade["quote_amount"]) == (
            BTC,
            "153000",
            "99549450",
        )
        balances = await api.ok("GET", f"/v1/agents/{agent_id}/balances")
        usdt = next(b for b in balances if b["asset"] == "USDT")
        assert usdt["total"] == str(1_000 * USDT - 99_549_450)


async def test_a_market_buy_below_the_least_notional_is_skipped(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        doc = await api.ok(
            "POST",
            "/v1/agents",
            {"name": "tiny", "quote": "USDT", "config": {**PAPER, "sizing": {"amount": "4000000"}}},
        )
        await api.ok(
            "POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "USDT", "amount": "1000000000"}
        )
        await api.prices((BTC, 65_000.0))
        accepted = await api.ok("POST", "/v1/signals", {"token": BTC})
        record = await api.ok("GET", f"/v1/signals/{accepted['signal_id']}")
        assert record["executions"][0]["reason"] == "below_venue_minimum"


async def test_a_signal_for_an_exchange_not_configured_is_422_naming_the_token(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        message = refused(
            *await api.call("POST", "/v1/signals", {"token": "kraken:BTC/USDT"}), "$.token"
        )
        assert "'kraken' is not configured" in message


async def test_a_signal_for_a_market_the_exchange_does_not_list_is_422(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        for token in ("binance:DOGE/USDT", "binance:ETH/BTC"):
            message = refused(*await api.call("POST", "/v1/signals", {"token": token}), "$.token")
            assert "no such spot market" in message


async def test_a_market_signal_without_any_exchange_is_422(tmp_path):
    async with serve(tmp_path) as api:
        refused(*await api.call("POST", "/v1/signals", {"token": BTC}), "$.token")


@pytest.mark.parametrize(
    "token",
    [
        "binance:btc/usdt",
        "binance:BTCUSDT",
        "Binance:BTC/USDT",
        "binance:BTC/USDT:USDT",
        "binance:" + "B" * 66,  # 74 characters: within the bound, still malformed
        "binance:BTC/" + "\u00e9" * 30,
    ],
)
async def test_malformed_ids_are_422_and_echoed_at_most_60_characters(tmp_path, token):
    async with serve(tmp_path) as api:
        load_binance(api)
        status, doc = await api.call("POST", "/v1/signals", {"token": token})
        message = refused(status, doc, "$.token")
        assert len(message) < 200
        assert token[:61] not in json.dumps(doc, ensure_ascii=False) or len(token) <= 60


async def test_an_overlong_id_is_422_and_never_echoed(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        token = "binance:" + "X" * 192
        status, doc = await api.call("POST", "/v1/signals", {"token": token})
        refused(status, doc, "$.token")
        assert "X" * 61 not in json.dumps(doc)


async def test_a_control_character_in_an_id_is_422_and_not_echoed_raw(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        raw = b'{"token": "binance:BTC/US\\u001bDT"}'
        status, doc = await api.call("POST", "/v1/signals", raw=raw)
        assert status == 422 and doc["error"]["code"] == "validation_error"
        assert "\x1b" not in json.dumps(doc, ensure_ascii=False)


# -- prices ----------------------------------------------------------------------------------


async def test_pushed_ticks_for_a_loaded_market_apply_and_read_back_by_path(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        accepted = await api.ok(
            "POST", "/v1/prices", {"ticks": [{"token": BTC, "price_usd": 65_000.5}]}
        )
        assert accepted["accepted"] == 1
        for path in (
            f"/v1/prices/{BTC_PATH}",
            f"/v1/prices/{BTC}",
            "/v1/prices/binance:BTC%2FUSDT",
        ):
            price = await api.ok("GET", path)
            assert (price["token"], price["price_usd"], price["decimals"]) == (BTC, 65_000.5, 8)
        for path in (f"/v1/tokens/{BTC_PATH}", f"/v1/tokens/{BTC}"):
            view = await api.ok("GET", path)
            assert (view["token"], view["price_usd"], view["decimals"]) == (BTC, 65_000.5, 8)


async def test_a_market_tick_naming_decimals_is_422(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        ticks = [{"token": BTC, "price_usd": 1.0, "decimals": 8}]
        refused(*await api.call("POST", "/v1/prices", {"ticks": ticks}), "$.ticks[0].decimals")


async def test_a_pushed_tick_cannot_pose_as_an_exchange_accounts_ticker_feed(tmp_path):
    # The exchange's ticker feed has source "binance": a push client naming it (in any case)
    # would pass its prices off as the exchange's.
    async with serve(tmp_path) as api:
        load_binance(api)
        api.daemon.markets.configure("binance")
        for source in ("binance", " Binance", "ccxt:binance", "CCXT:main"):
            ticks = [{"token": BTC, "price_usd": 1.0, "source": source}]
            refused(*await api.call("POST", "/v1/prices", {"ticks": ticks}), "$.ticks[0].source")
        accepted = await api.ok(
            "POST", "/v1/prices", {"ticks": [{"token": BTC, "price_usd": 1.0, "source": "mine"}]}
        )
        assert accepted["accepted"] == 1


async def test_a_batch_with_a_tick_for_an_unknown_market_applies_nothing(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        ticks = [{"token": BTC, "price_usd": 1.0}, {"token": "kraken:BTC/USDT", "price_usd": 1.0}]
        refused(*await api.call("POST", "/v1/prices", {"ticks": ticks}), "$.ticks[1].token")
        status, _ = await api.call("GET", f"/v1/prices/{BTC_PATH}")
        assert status == 404


async def test_reads_take_any_well_formed_id_and_refuse_malformed_ones(tmp_path):
    async with serve(tmp_path) as api:
        for route in ("prices", "tokens"):
            status, doc = await api.call("GET", f"/v1/{route}/kraken%3AETH%2FUSDC")
            assert status == 404 and doc["error"]["code"] == "not_found", doc
            status, doc = await api.call("GET", f"/v1/{route}/binance%3Abtc%2Fusdt")
            refused(status, doc, "path.token")
            status, doc = await api.call("GET", f"/v1/{route}/{TOKEN}")
            assert status in (200, 404)  # mints as before


async def test_openapi_documents_token_paths_without_the_routing_pattern(tmp_path):
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        for path in ("/v1/prices/{token}", "/v1/tokens/{token}"):
            (param,) = doc["paths"][path]["get"]["parameters"]
            assert param["name"] == "token" and "percent-encoded" in param["description"]
        assert not [p for p in doc["paths"] if ":" in p]
        signal = doc["components"]["schemas"]["SignalIn"]["properties"]["token"]
        assert signal["maxLength"] == 74


# -- WebSocket -------------------------------------------------------------------------------


async def test_ws_subscribe_filters_prices_by_a_market_id(tmp_path):
    async with serve(tmp_path) as api:
        load_binance(api)
        ws = await api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"})
        client = Reader(ws)
        try:
            await ws.send_json({"op": "subscribe", "channels": ["prices"], "tokens": [BTC]})
            snapshot = await client.recv_type("snapshot")
            assert snapshot["data"]["subscription"]["tokens"] == [BTC]
            await api.prices((TOKEN, 1.0), (BTC, 65_000.0))
            batch = await client.recv_type("prices")
            assert [t["token"] for t in batch["data"]["ticks"]] == [BTC]
            await ws.send_json({"op": "subscribe", "channels": ["prices"], "tokens": ["BTC/USDT"]})
            error = await client.recv_type("error")
            assert error["data"]["code"] == "validation_error"
            assert error["data"]["details"]["path"] == "$.tokens"
        finally:
            await ws.close()


# -- replay ----------------------------------------------------------------------------------


def replay_lines() -> list[str]:
    records: list[dict[str, Any]] = [
        {"kind": "tick", "ts": T0, "token": BTC, "price_usd": 65_000.0},
        {"kind": "signal", "ts": T0 + 1, "token": BTC, "symbol": "BTC"},
        {"kind": "tick", "ts": T0 + 60_000, "token": BTC, "price_usd": 70_000.0},
        {"kind": "tick", "ts": T0 + 120_000, "token": BTC, "price_usd": 62_000.0},
    ]
    return [json.dumps(r) + "\n" for r in records]


def test_replay_records_carry_market_ids_unchanged():
    record = parse_line(replay_lines()[0])
    assert record.token == BTC  # type: ignore[union-attr]
    with pytest.raises(ReplayFormatError, match=":3: "):
        parse_line('{"kind": "tick", "ts": 1, "token": "binance:btc/usdt", "price_usd": 1}', 3)


def test_replay_backtests_a_btc_usdt_paper_agent_without_an_exchange():
    spec = AgentSpec(
        id="btc",
        name="btc",
        quote="USDT",
        paper_deposit=str(1_000 * USDT),
        config={**PAPER, "stop_loss": {"mode": "trailing", "trail_pct": 10}},
    )
    result = run_replay(iter_records(replay_lines()), [spec])
    (report,) = result.agents
    assert [(t.side, t.token, t.reason) for t in report.trades] == [
        ("buy", BTC, "signal"),
        ("sell", BTC, "stop_loss"),
    ]
    # No exchange, no market rules: the engine's default decimals (6), amounts not stepped.
    assert (report.trades[0].decimals, report.trades[0].amount) == (6, 100 * 10**6 // 65_065)


def test_tradingd_replay_cli_runs_a_file_of_market_ids(tmp_path: Path):
    replay = tmp_path / "btc.jsonl"
    replay.write_text("".join(replay_lines()))
    config = tmp_path / "agents.toml"
    config.write_text(
        '[[agents]]\nid = "btc"\nname = "btc"\nquote = "USDT"\n'
        f'paper_deposit = "{1_000 * USDT}"\n'
        '[agents.config.sizing]\nmode = "fixed"\namount = "100000000"\n'
        '[agents.config.stop_loss]\nmode = "trailing"\ntrail_pct = 10\n'
    )
    out = io.StringIO()
    assert run_replay_cli(str(replay), str(config), out, as_json=True) == 0
    doc = json.loads(out.getvalue())
    (agent,) = doc["agents"]
    assert [(t["side"], t["token"]) for t in agent["trades"]] == [("buy", BTC), ("sell", BTC)]


# -- check-config ----------------------------------------------------------------------------

ACCOUNT = '[venues.ccxt.main]\nexchange = "binance"\n'


def config_file(tmp_path: Path, tokens: list[str], account: bool = True) -> str:
    path = tmp_path / "tradingd.toml"
    path.write_text(
        (ACCOUNT if account else "")
        + '[[agents]]\nid = "a"\nname = "a"\nquote = "USDT"\n'
        + f'[agents.config.signals]\ntoken_filter = "allow"\ntokens = {json.dumps(tokens)}\n'
    )
    return str(path)


def test_check_config_takes_market_ids_of_the_configs_exchanges(tmp_path: Path):
    settings = load_settings(config_file(tmp_path, [BTC, TOKEN]), {})
    assert settings.agents[0].config["signals"]["tokens"] == [BTC, TOKEN]
    # without accounts a market id names any exchange: paper agents trade on real tickers
    load_settings(config_file(tmp_path, ["kraken:BTC/USDT"], account=False), {})


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("kraken:BTC/USDT", "exchange 'kraken' has no account in this config"),
        ("binance:btc/usdt", "<exchange>:<BASE>/<QUOTE>"),
        ("BTC/USDT", "<exchange>:<BASE>/<QUOTE>"),
    ],
)
def test_check_config_refuses_market_ids_naming_the_key(tmp_path: Path, token: str, reason: str):
    with pytest.raises(ValidationError) as caught:
        load_settings(config_file(tmp_path, [TOKEN, token]), {})
    assert "agents[id=a].config.signals.tokens[1]" in caught.value.message
    assert reason in caught.value.message
