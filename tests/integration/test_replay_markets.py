"""Exchange markets in recordings and backtests: the recorder writes a market's order-size rules
(a `market` record) before the first tick or signal of that market in each file and when they
change, and a backtest sizes paper orders by them, as the daemon did with the exchange's rules.

Binance BTC/USDT: 8 decimals, step 0.00001 BTC (1,000 atomic), least amount 0.00001 BTC, least
notional 5 USDT. A USDT agent buying 100 USDT at 65,000 (no slippage, no fee) gets
floor(0.00153846 BTC / 0.00001) × 0.00001 = 0.00153 BTC = 153,000 atomic."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tradingd.adapters.app.backtest import run_replay
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.recorder import Recorder
from tradingd.adapters.feeds.replay import (
    MarketRecord,
    ReplayFormatError,
    TickRecord,
    iter_records,
    parse_line,
    read_records,
)
from tradingd.engine.errors import ValidationError
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Signal, Tick

BTC = "binance:BTC/USDT"
RULES = InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0)
T0 = 1_767_225_600_000
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},  # 100 USDT a buy
    "execution": {"slippage_bps": 0, "fee_bps": 0},
    "stop_loss": {"enabled": False},
}
MARKET = {
    "kind": "market", "ts": T0, "token": BTC, "decimals": 8, "step": "1000",
    "min_amount": "1000", "min_cost": 5.0,
}  # fmt: skip


def replay(*docs: dict[str, object], amount: str = "100000000"):
    recs = list(iter_records([json.dumps(d) for d in docs]))
    config = {**CONFIG, "sizing": {"mode": "fixed", "amount": amount}}
    spec = AgentSpec(id="a", name="a", quote="USDT", paper_deposit="1000000000", config=config)
    return run_replay(recs, [spec])


def tick(ts: int, price: float) -> dict[str, object]:
    return {"kind": "tick", "ts": ts, "token": BTC, "price_usd": price}


def buy(ts: int) -> dict[str, object]:
    return {"kind": "signal", "ts": ts, "token": BTC}


def test_a_backtest_buys_whole_steps_of_a_market_with_its_rules():
    result = replay(MARKET, tick(T0, 65_000.0), buy(T0 + 1))
    (a,) = result.agents
    (trade,) = a.trades
    assert (trade.amount, trade.decimals) == (153_000, 8)  # 0.00153 BTC


def test_without_the_market_record_the_buy_is_not_sized_by_the_exchange():
    result = replay(tick(T0, 65_000.0), buy(T0 + 1))
    (a,) = result.agents
    (trade,) = a.trades
    assert (trade.amount, trade.decimals) == (1_538, 6)  # default decimals, no step: not Binance


def test_a_backtest_skips_a_buy_below_the_markets_notional():
    result = replay(MARKET, tick(T0, 65_000.0), buy(T0 + 1), amount="4000000")  # 4 USDT
    (a,) = result.agents
    assert a.trades == []
    assert a.signals_skipped == {"below_venue_minimum": 1}


def test_a_market_record_needs_a_market_id_and_whole_atomic_strings():
    with pytest.raises(ReplayFormatError):
        parse_line(json.dumps({**MARKET, "token": "So11111111111111111111111111111111111111112"}))
    for bad in ({"step": "0"}, {"step": "1.5"}, {"min_amount": "-1"}, {"decimals": 19}):
        with pytest.raises(ReplayFormatError):
            parse_line(json.dumps({**MARKET, **bad}))
    assert parse_line(json.dumps(MARKET)).rules() == RULES


def test_a_market_record_contradicting_known_decimals_stops_the_replay():
    other = {**MARKET, "ts": T0 + 2, "decimals": 6}
    with pytest.raises(ValidationError):
        replay(MARKET, tick(T0, 65_000.0), other)


def test_the_recorder_writes_a_markets_rules_before_its_first_tick_and_when_they_change(
    tmp_path: Path,
):
    rules = {BTC: RULES}

    async def record() -> None:
        recorder = Recorder(tmp_path / "rec.jsonl", clock_gap_ms=1, rules_of=rules.get)
        recorder.start()
        task = asyncio.create_task(recorder.run())
        recorder.on_ticks([Tick(BTC, 65_000.0, T0)], T0)
        recorder.on_ticks([Tick(BTC, 65_001.0, T0 + 1)], T0 + 1)
        recorder.on_signal(Signal(id="s", token=BTC, received_at=T0 + 2, expires_at=T0 + 9), T0 + 2)
        await asyncio.sleep(0.05)  # written before the rules change
        rules[BTC] = InstrumentRules(decimals=8, step=10_000, min_amount=10_000, min_cost=10.0)
        recorder.on_ticks([Tick(BTC, 65_002.0, T0 + 3)], T0 + 3)
        await recorder.close()
        task.cancel()

    asyncio.run(record())
    (path,) = sorted(tmp_path.glob("rec-*.jsonl"))
    kinds = [(type(r).__name__, r.ts) for r in read_records(path)]
    assert kinds == [
        ("MarketRecord", T0),
        ("TickRecord", T0),
        ("TickRecord", T0 + 1),
        ("SignalRecord", T0 + 2),
        ("MarketRecord", T0 + 3),
        ("TickRecord", T0 + 3),
    ]
    records = list(read_records(path))
    assert isinstance(records[0], MarketRecord) and records[0].rules() == RULES
    assert isinstance(records[4], MarketRecord) and records[4].rules().step == 10_000
    assert isinstance(records[1], TickRecord)


def test_an_exchange_agent_replays_with_its_allocation_and_without_paper_slippage():
    # The attack's F4: a ccxt:binance agent (default slippage 100 bps, allocation 300 USDT)
    # bought at the exchange's price live; its replay must too: 20 USDT at 65,000 buys
    # 0.00030 BTC (30,000 units) at 65,000, and it starts with its 300 USDT allocation.
    config = {**CONFIG, "sizing": {"mode": "fixed", "amount": "20000000"}, "execution": {}}
    spec = AgentSpec(
        id="cex", name="cex", venue="ccxt:binance", quote="USDT", allocation="300000000",
        config=config,
    )  # fmt: skip
    recs = list(iter_records([json.dumps(d) for d in (MARKET, tick(T0, 65_000.0), buy(T0 + 1))]))
    (a,) = run_replay(recs, [spec]).agents
    (trade,) = a.trades
    assert (trade.amount, trade.price_usd) == (30_000, 65_000.0)
    assert a.deposited == 300_000_000


def test_an_allocation_on_a_paper_agent_is_refused_naming_it(tmp_path: Path):
    # The attack's F5: it was silently ignored (balance 0, every signal insufficient_balance).
    from tradingd.adapters.app.settings import load_settings

    path = tmp_path / "c.toml"
    path.write_text(
        '[[agents]]\nid = "pap"\nname = "p"\nvenue = "paper"\nquote = "USDT"\n'
        "allocation = 300000000\n"
    )
    with pytest.raises(ValidationError) as err:
        load_settings(str(path), {})
    assert "agents[id=pap]" in err.value.message and "allocation" in err.value.message
