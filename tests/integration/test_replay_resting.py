"""Resting entries in replay files: a signal record with `entry` rests, fills when a tick meets
it, expires `expires_in_ms` after its record, and a `cancel` record ends it; the recorder
writes what a replay needs to do the same (the entry, a name for a signal without client id,
the cancel)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tradingd.adapters.app.backtest import run_replay
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.recorder import Recorder
from tradingd.adapters.feeds.replay import (
    CancelRecord,
    ReplayFormatError,
    SignalRecord,
    iter_records,
    parse_line,
    read_records,
)
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.history import HistoryBounds
from tradingd.engine.model import EntryCondition, Signal, Tick
from tradingd.engine.state import EngineOptions

TOKEN = demo_mint("RESTING")
T0 = 1_767_225_600_000
DEPOSIT = "1000000000"  # 1,000 USDC
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},  # 100 USDC a buy
    "execution": {"slippage_bps": 100, "fee_bps": 0},
    "stop_loss": {"mode": "fixed", "default_pct": -50},
}


def tick(ts: int, price: float) -> dict[str, object]:
    return {"kind": "tick", "ts": ts, "token": TOKEN, "price_usd": price, "decimals": 6}


def limit(ts: int, price: float, sid: str | None = None, ttl: int = 60_000) -> dict[str, object]:
    doc: dict[str, object] = {
        "kind": "signal",
        "ts": ts,
        "token": TOKEN,
        "entry": {"type": "limit", "price_usd": price},
        "expires_in_ms": ttl,
    }
    if sid is not None:
        doc["id"] = sid
    return doc


def replay(*docs: dict[str, object], keep_events: bool = False):
    recs = list(iter_records([json.dumps(d) for d in docs]))
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)
    return run_replay(recs, [spec], keep_events=keep_events)


def test_limit_entry_in_a_replay_fills_at_the_limit_not_above_it():
    # 1.00 -> entry at 0.95 rests; 0.97 does not meet it; 0.949 does: the paper fill is
    # 0.949 × 1.01 = 0.95849 moved by slippage, capped at the limit 0.95.
    result = replay(tick(T0, 1.0), limit(T0 + 1, 0.95), tick(T0 + 2, 0.97), tick(T0 + 3, 0.949))
    (a,) = result.agents
    (buy,) = a.trades
    assert (buy.side, buy.price_usd, buy.quote_amount) == ("buy", 0.95, 100_000_000)
    assert buy.amount == 105_263_157  # floor(100 USDC / 0.95 USD, 6 decimals)
    assert buy.ts == T0 + 3 and a.entries_resting == 0


def test_entry_in_a_replay_expires_after_its_expires_in_ms_and_releases_the_quote():
    result = replay(
        tick(T0, 1.0),
        limit(T0 + 1, 0.5, ttl=1000),
        tick(T0 + 1001, 0.9),  # at expires_at exactly: still resting, not met
        tick(T0 + 1002, 0.4),  # expired first, so this price buys nothing
    )
    (a,) = result.agents
    assert a.trades == [] and a.entries_resting == 0
    assert a.signals_skipped == {"expired": 1}
    assert a.balance == int(DEPOSIT)


def test_cancel_record_ends_the_named_entry_and_nothing_else():
    result = replay(
        tick(T0, 1.0),
        limit(T0 + 1, 0.9, sid="keep"),
        limit(T0 + 2, 0.9, sid="drop"),
        {"kind": "cancel", "ts": T0 + 3, "signal": "drop"},
        {"kind": "cancel", "ts": T0 + 4, "signal": "never-sent"},
        tick(T0 + 5, 0.8),
    )
    (a,) = result.agents
    assert len(a.trades) == 1 and a.signals_skipped == {"cancelled": 1}
    assert result.cancels == 2


def test_replay_is_deterministic_with_resting_entries():
    docs = [tick(T0, 1.0)]
    for i in range(1, 40):
        docs.append(limit(T0 + 2 * i, 1.0 - i / 100, sid=f"s{i}", ttl=30 + i))
        docs.append(tick(T0 + 2 * i + 1, 1.0 - (i % 7) / 50))
    first = replay(*docs, keep_events=True)
    second = replay(*docs, keep_events=True)
    assert first.events == second.events and first.events


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "market", "price_usd": 1.0}, "type"),
        ({"type": "limit", "price_usd": 0}, "price_usd"),
        ({"type": "limit"}, "price_usd"),
        ({"type": "limit", "price_usd": 1.0, "extra": 1}, "extra"),
    ],
)
def test_bad_entry_in_a_replay_file_names_the_line(entry, message):
    line = json.dumps({"kind": "signal", "ts": T0, "token": TOKEN, "entry": entry})
    with pytest.raises(ReplayFormatError) as err:
        parse_line(line, 7)
    assert "line 7" in str(err.value.path) and message in err.value.message


def test_a_resting_signal_for_a_sell_or_beyond_the_maximum_is_refused_as_the_daemon_refuses_it():
    sell = limit(T0 + 1, 0.9)
    sell["side"] = "sell"
    result = replay(
        tick(T0, 1.0), sell, limit(T0 + 2, 0.9, ttl=25 * 3600 * 1000), tick(T0 + 3, 0.5)
    )
    (a,) = result.agents
    assert a.trades == [] and a.entries_resting == 0


def test_recorder_writes_entries_and_cancels_a_replay_reads_back(tmp_path: Path):
    async def record() -> None:
        recorder = Recorder(tmp_path / "rec.jsonl", clock_gap_ms=1)
        recorder.start()
        task = asyncio.create_task(recorder.run())
        named = Signal(
            id="sig_1",
            token=TOKEN,
            received_at=T0,
            expires_at=T0 + 5000,
            client_id="prov-7",
            entry=EntryCondition(type="stop", price_usd=1.25),
        )
        anonymous = Signal(
            id="sig_2",
            token=TOKEN,
            received_at=T0 + 1,
            expires_at=T0 + 9001,
            entry=EntryCondition(type="limit", price_usd=0.75),
        )
        recorder.on_signal(named, T0)
        recorder.on_signal(anonymous, T0 + 1)
        recorder.on_cancel("sig_2", T0 + 2)
        recorder.on_cancel("sig_unknown", T0 + 3)
        await recorder.close()
        task.cancel()

    asyncio.run(record())
    (path,) = sorted(tmp_path.glob("rec-*.jsonl"))
    recs = list(read_records(path))
    assert recs == [
        SignalRecord(
            ts=T0,
            token=TOKEN,
            id="prov-7",
            ref="sig_1",
            expires_in_ms=5000,
            entry=recs[0].entry,
            source="",
        ),
        SignalRecord(
            ts=T0 + 1,
            token=TOKEN,
            ref="sig_2",
            expires_in_ms=9000,
            entry=recs[1].entry,
            source="",
        ),
        CancelRecord(ts=T0 + 2, signal="sig_2"),
        CancelRecord(ts=T0 + 3, signal="sig_unknown"),  # a replay finds nothing to cancel
    ]
    assert (recs[0].entry.type, recs[0].entry.price_usd) == ("stop", 1.25)
    assert (recs[1].entry.type, recs[1].entry.price_usd) == ("limit", 0.75)


def test_entry_price_the_api_refuses_is_refused_by_the_replay_format():
    line = json.dumps(
        {"kind": "signal", "ts": T0, "token": TOKEN, "entry": {"type": "limit", "price_usd": 1e308}}
    )
    with pytest.raises(ReplayFormatError):
        parse_line(line, 3)


def test_a_cancel_reaches_an_entry_whose_client_id_left_the_dedupe_window():
    # dedupe window of 2 signals: "first" is forgotten by the window while it still rests
    docs = [
        tick(T0, 1.0),
        limit(T0 + 1, 0.5, sid="first"),
        limit(T0 + 2, 0.1, sid="second"),
        limit(T0 + 3, 0.1, sid="third"),
        {"kind": "cancel", "ts": T0 + 4, "signal": "first"},
        tick(T0 + 5, 0.4),
    ]
    recs = list(iter_records([json.dumps(d) for d in docs]))
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)
    options = EngineOptions(history=HistoryBounds(signals_kept=2))
    (a,) = run_replay(recs, [spec], engine_options=options).agents
    assert a.trades == [] and a.signals_skipped == {"cancelled": 1}
    assert a.entries_resting == 2


def test_a_recorded_entry_that_waited_past_its_expiry_is_skipped_expired_in_the_replay(
    tmp_path: Path,
):
    async def record() -> None:
        recorder = Recorder(tmp_path / "rec.jsonl", clock_gap_ms=1)
        recorder.start()
        task = asyncio.create_task(recorder.run())
        recorder.on_ticks([Tick(TOKEN, 1.0, T0, decimals=6)], T0)
        waited = Signal(  # received at T0, its expiry passed before it was applied at T0 + 900
            id="sig_w", token=TOKEN, received_at=T0, expires_at=T0 + 500, client_id="w",
            entry=EntryCondition(type="limit", price_usd=2.0),
        )  # fmt: skip
        refused = Signal(  # expires before its receipt: the engine answers 422
            id="sig_r", token=TOKEN, received_at=T0 + 950, expires_at=T0 + 900, client_id="r",
            entry=EntryCondition(type="limit", price_usd=2.0),
        )  # fmt: skip
        recorder.on_signal(waited, T0 + 900)
        recorder.on_signal(refused, T0 + 950)
        await recorder.close()
        task.cancel()

    asyncio.run(record())
    (path,) = sorted(tmp_path.glob("rec-*.jsonl"))
    recs = list(read_records(path))
    signals = [r for r in recs if isinstance(r, SignalRecord)]
    assert [(r.id, r.ref, r.expires_in_ms) for r in signals] == [("w", "sig_w", -400)]
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)
    (a,) = run_replay(recs, [spec]).agents
    assert a.trades == [] and a.signals_skipped == {"expired": 1}  # a marketable limit


def test_a_cancel_names_the_latest_signal_given_a_reused_client_id():
    # "A" rests at 0.4, leaves the dedupe window (2 signals), is reused for a new entry at 0.5,
    # and that one is cancelled: the 0.4 entry still rests, and 0.45 buys nothing
    docs = [
        tick(T0, 1.0),
        limit(T0 + 1, 0.4, sid="A"),
        limit(T0 + 2, 0.1, sid="B"),
        limit(T0 + 3, 0.1, sid="C"),
        limit(T0 + 4, 0.5, sid="A"),
        {"kind": "cancel", "ts": T0 + 5, "signal": "A"},
        tick(T0 + 6, 0.45),
    ]
    recs = list(iter_records([json.dumps(d) for d in docs]))
    spec = AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)
    options = EngineOptions(history=HistoryBounds(signals_kept=2))
    (a,) = run_replay(recs, [spec], engine_options=options).agents
    assert a.trades == [] and a.entries_resting == 3 and a.signals_skipped == {"cancelled": 1}


def test_a_recorded_ref_is_never_taken_for_a_client_id():
    # an anonymous entry recorded with ref "sig_9"; a later signal whose client id is "sig_9"
    # is a new signal (the daemon took it as one), and the cancel of "sig_9" is the first's
    first = limit(T0 + 1, 0.5)
    first["ref"] = "sig_9"
    docs = [
        tick(T0, 1.0),
        first,
        limit(T0 + 2, 0.45, sid="sig_9"),
        {"kind": "cancel", "ts": T0 + 3, "signal": "sig_9"},
        tick(T0 + 4, 0.46),  # would meet the first (0.5): it was cancelled
        tick(T0 + 5, 0.4),  # meets the second (0.45): 0.4 × 1.01 slippage
    ]
    (a,) = replay(*docs).agents
    assert [(t.ts, t.price_usd) for t in a.trades] == [(T0 + 5, 0.404)]
    assert a.signals_skipped == {"cancelled": 1}
