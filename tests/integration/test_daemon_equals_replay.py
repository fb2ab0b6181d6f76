"""Differential test: the same ticks and signals through the daemon (HTTP pushes in batches of
random sizes) and through `tradingd replay` produce identical trades, amounts and reasons; with
resting limit/stop entries and their cancels too."""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from http_harness import TOKEN, Api, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradingd.adapters.app.backtest import run_replay
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.replay import (
    CancelRecord,
    EntryRecord,
    Record,
    SignalRecord,
    TickRecord,
)
from tradingd.engine import events as ev

DEPOSIT = "1000000000"  # 1,000 USDC
CONFIGS: list[dict[str, Any]] = [
    {
        "stop_loss": {"mode": "trailing", "trail_pct": 7, "default_pct": -15},
        "take_profit": {
            "enabled": True,
            "levels": [{"gain_pct": 5, "sell_pct": 33.333}, {"gain_pct": 12, "sell_pct": 66.667}],
            "moon_bag": {"enabled": True, "trigger_gain_pct": 8, "retain_pct": 8.2},
        },
    },
    {
        "stop_loss": {"mode": "fixed", "default_pct": -10},
        "take_profit": {"enabled": True, "levels": [{"gain_pct": 20, "sell_pct": 50}]},
        "dca": {"enabled": True, "levels": [{"drop_pct": -5, "buy_pct": 50}], "cooldown_s": 0},
        "execution": {"slippage_bps": 100, "fee_bps": 30},
    },
    {
        "stop_loss": {"mode": "zones", "default_pct": -8},
        "take_profit": {
            "enabled": True,
            "levels": [{"gain_pct": 10, "sell_pct": 50}, {"gain_pct": 30, "sell_pct": 50}],
        },
        "execution": {"slippage_bps": 0, "fee_bps": 0},
    },
    {
        "stop_loss": {
            "mode": "custom",
            "default_pct": -12,
            "levels": [{"gain_pct": 10, "stop_pct": 2}, {"gain_pct": 25, "stop_pct": 15}],
        },
        "dca": {"enabled": True, "levels": [{"drop_pct": -6, "buy_pct": 33.333}], "max_count": 2},
        "execution": {"slippage_bps": 50, "fee_bps": 0},
    },
]


def records(seed: int, n: int, base_ms: int) -> list[Record]:
    """A random walk of `TOKEN` (6 significant digits), buy signals now and then, a sell
    signal rarely; one record per millisecond."""
    rng = random.Random(seed)
    price = 1.0
    out: list[Record] = [TickRecord(ts=base_ms, token=TOKEN, price_usd=price, decimals=6)]
    for i in range(1, n):
        ts = base_ms + i
        roll = rng.random()
        if roll < 0.07:
            out.append(SignalRecord(ts=ts, token=TOKEN, strength=3))
        elif roll < 0.08:
            out.append(SignalRecord(ts=ts, token=TOKEN, side="sell", strength=3))
        else:
            price = float(f"{price * math.exp(rng.gauss(0.0, 0.05)):.6g}")
            out.append(TickRecord(ts=ts, token=TOKEN, price_usd=price))
    return out


def records_with_entries(seed: int, n: int, base_ms: int) -> list[Record]:
    """As `records`, with resting buys: limits up to 15 % below and stops up to 15 % above the
    price (6 significant digits, resting an hour: none expires within the run), and now and then
    a cancel of an earlier one."""
    rng = random.Random(seed)
    price = 1.0
    out: list[Record] = [TickRecord(ts=base_ms, token=TOKEN, price_usd=price, decimals=6)]
    rested: list[str] = []
    for i in range(1, n):
        ts = base_ms + i
        roll = rng.random()
        if roll < 0.06:
            kind = rng.choice(["limit", "stop"])
            move = rng.uniform(0.0, 0.15) * (-1 if kind == "limit" else 1)
            level = float(f"{price * (1 + move):.6g}")
            sid = f"e{i}"
            rested.append(sid)
            entry = EntryRecord(type=kind, price_usd=level)  # type: ignore[arg-type]
            out.append(
                SignalRecord(ts=ts, token=TOKEN, id=sid, strength=3, entry=entry,
                             expires_in_ms=3_600_000)
            )  # fmt: skip
        elif roll < 0.07 and rested:
            out.append(CancelRecord(ts=ts, signal=rng.choice(rested)))
        elif roll < 0.08:
            out.append(SignalRecord(ts=ts, token=TOKEN, side="sell", strength=3))
        else:
            price = float(f"{price * math.exp(rng.gauss(0.0, 0.05)):.6g}")
            out.append(TickRecord(ts=ts, token=TOKEN, price_usd=price))
    return out


Row = tuple[str, int, int, float, str]


def replayed(recs: list[Record], config: dict[str, Any]) -> list[Row]:
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=config)
    result = run_replay(recs, [spec])
    return [
        (t.side, t.amount, t.quote_amount, t.price_usd, t.reason) for t in result.agents[0].trades
    ]


async def through_daemon(recs: list[Record], config: dict[str, Any], seed: int) -> list[Row]:
    rng = random.Random(seed ^ 0x5EED)
    with tempfile.TemporaryDirectory() as tmp:
        async with serve(Path(tmp)) as api:
            agent = await _agent(api, config)
            names: dict[str, str] = {}  # record id -> the daemon's signal id
            i = 0
            while i < len(recs):
                record = recs[i]
                if isinstance(record, SignalRecord):
                    body: dict[str, Any] = {
                        "token": record.token,
                        "side": record.side,
                        "strength": 3,
                    }
                    if record.entry is not None:
                        now = int(time.time() * 1000)
                        body["id"] = record.id
                        body["entry"] = {
                            "type": record.entry.type,
                            "price_usd": record.entry.price_usd,
                        }
                        body["expires_at"] = now + record.expires_in_ms
                    doc = await api.ok("POST", "/v1/signals", body)
                    if record.id is not None:
                        names[record.id] = doc["signal_id"]
                    i += 1
                    continue
                if isinstance(record, CancelRecord):
                    await api.ok("DELETE", f"/v1/signals/{names[record.signal]}")
                    i += 1
                    continue
                batch: list[dict[str, Any]] = []
                size = rng.randint(1, 20)
                while i < len(recs) and isinstance(recs[i], TickRecord) and len(batch) < size:
                    t = recs[i]
                    assert isinstance(t, TickRecord)
                    tick: dict[str, Any] = {"token": t.token, "price_usd": t.price_usd, "ts": t.ts}
                    if t.decimals is not None:
                        tick["decimals"] = t.decimals
                    batch.append(tick)
                    i += 1
                doc = await api.ok("POST", "/v1/prices", {"ticks": batch})
                assert doc["accepted"] == len(batch), doc
            await api.settle()
            trades = (await api.ok("GET", f"/v1/agents/{agent}/trades?limit=1000"))["items"]
            return [
                (
                    t["side"],
                    int(t["amount"]),
                    int(t["quote_amount"]),
                    t["price_usd"],
                    t["reason"],
                )
                for t in trades
            ]


async def _agent(api: Api, config: dict[str, Any]) -> str:
    doc = await api.ok("POST", "/v1/agents", {"name": "a", "quote": "USDC", "config": config})
    await api.ok("POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "USDC", "amount": DEPOSIT})
    return str(doc["id"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from(range(len(CONFIGS))))
def test_daemon_pushes_in_random_batches_trade_exactly_like_replay(seed, which):
    config = CONFIGS[which]
    recs = records(seed, 250, int(time.time() * 1000))
    expected = replayed(recs, config)
    got = asyncio.run(through_daemon(recs, config, seed))
    assert got == expected
    assert any(row[0] == "sell" for row in expected) or len(expected) <= 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from(range(len(CONFIGS))))
def test_resting_entries_through_the_daemon_trade_exactly_like_replay(seed, which):
    config = CONFIGS[which]
    recs = records_with_entries(seed, 250, int(time.time() * 1000))
    expected = replayed(recs, config)
    got = asyncio.run(through_daemon(recs, config, seed))
    assert got == expected
    assert entries_triggered(recs, config) > 0  # the run exercised resting entries


def entries_triggered(recs: list[Record], config: dict[str, Any]) -> int:
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=config)
    events = run_replay(recs, [spec], keep_events=True).events
    return sum(1 for e in events if isinstance(e, ev.EntryEnded) and e.order_id is not None)
