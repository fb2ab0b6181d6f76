"""The per-source breaker decides alike in the daemon and in `tradingd replay`: a scripted price
path where one source's buys keep stopping out trips its breaker at the same signal in both,
and both then skip the same signals `source_breaker` while the other source still trades."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from http_harness import TOKEN, Api, serve
from tradingd.adapters.app.backtest import run_replay
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.replay import Record, SignalRecord, TickRecord

DEPOSIT = "1000000000"  # 1,000 USDC
CONFIG: dict[str, Any] = {
    "sizing": {"mode": "fixed", "amount": "50000000"},
    "limits": {"max_open_positions": 50, "max_positions_per_token": 50},
    "stop_loss": {"mode": "fixed", "default_pct": -5},
    "execution": {"slippage_bps": 30, "fee_bps": 10},
    "source_breaker": {"enabled": True, "consecutive_losses": 3, "max_drawdown_pct": 0.6},
}


def scripted(base_ms: int) -> list[Record]:
    """Six rounds of: a buy from `loser` at 1.0 and a dip to 0.94 that stops it out; back at
    1.0, a buy from `winner`, a rise to 1.1 and a sell signal from `winner` that takes it."""
    out: list[Record] = [TickRecord(ts=base_ms, token=TOKEN, price_usd=1.0, decimals=6)]
    ts = base_ms

    def add(record_at: Any, **kw: Any) -> None:
        nonlocal ts
        ts += 10
        out.append(record_at(ts=ts, **kw))

    for _ in range(6):
        add(SignalRecord, token=TOKEN, strength=3, source="loser")
        add(TickRecord, token=TOKEN, price_usd=0.97)
        add(TickRecord, token=TOKEN, price_usd=0.94)
        add(TickRecord, token=TOKEN, price_usd=1.0)
        add(SignalRecord, token=TOKEN, strength=3, source="winner")
        add(TickRecord, token=TOKEN, price_usd=1.1)
        add(SignalRecord, token=TOKEN, side="sell", strength=3, source="winner")
        add(TickRecord, token=TOKEN, price_usd=1.0)
    return out


Row = tuple[str, int, int, float, str]


def replayed(recs: list[Record]) -> tuple[list[Row], dict[str, int]]:
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)
    agent = run_replay(recs, [spec]).agents[0]
    rows = [(t.side, t.amount, t.quote_amount, t.price_usd, t.reason) for t in agent.trades]
    return rows, dict(agent.signals_skipped)


async def through_daemon(api: Api, recs: list[Record]) -> tuple[list[Row], dict[str, Any]]:
    doc = await api.ok("POST", "/v1/agents", {"name": "a", "quote": "USDC", "config": CONFIG})
    agent = doc["id"]
    await api.ok("POST", f"/v1/agents/{agent}/deposits", {"asset": "USDC", "amount": DEPOSIT})
    for r in recs:
        if isinstance(r, SignalRecord):
            body = {"token": r.token, "side": r.side, "strength": 3, "source": r.source}
            await api.ok("POST", "/v1/signals", body)
        else:
            assert isinstance(r, TickRecord)
            tick: dict[str, Any] = {"token": r.token, "price_usd": r.price_usd, "ts": r.ts}
            if r.decimals is not None:
                tick["decimals"] = r.decimals
            await api.ok("POST", "/v1/prices", {"ticks": [tick]})
        await api.settle()
    trades = (await api.ok("GET", f"/v1/agents/{agent}/trades?limit=1000"))["items"]
    rows = [
        (t["side"], int(t["amount"]), int(t["quote_amount"]), t["price_usd"], t["reason"])
        for t in trades
    ]
    cards = (await api.ok("GET", f"/v1/agents/{agent}/sources?window=all"))["items"]
    return rows, {c["source"]: c for c in cards}


async def test_the_source_breaker_trips_alike_in_the_daemon_and_in_replay(tmp_path: Path) -> None:
    recs = scripted(int(time.time() * 1000))
    want_rows, want_skipped = replayed(recs)
    async with serve(tmp_path) as api:
        rows, cards = await through_daemon(api, recs)
    assert rows == want_rows
    loser, winner = cards["loser"], cards["winner"]
    assert loser["breaker"]["state"] == "tripped"
    # two stop-outs of 50 USDC at -6 % lose more than 0.6 % of 1,000 USDC: before 3 in a row
    assert loser["breaker"]["rule"] == "max_drawdown_pct"
    skipped = loser["stats"]["signals"]["skipped"]
    assert skipped["source_breaker"] == want_skipped["source_breaker"] >= 3
    assert winner["breaker"]["state"] == "armed"
    assert winner["stats"]["signals"]["executed"] > loser["stats"]["signals"]["executed"]
