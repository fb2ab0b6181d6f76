"""The recorder on a real Runtime/Engine with the paper venue and an injected clock: what the
runtime receives becomes replay lines in arrival order, the lines replay to the same trades,
files rotate by size and by UTC day, a full queue drops and counts, and a line cut short by a
crash is skipped by the replay."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from tradingd.adapters.app.backtest import run_replay, run_replay_cli
from tradingd.adapters.app.recording import wire_recorder
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.record_files import file_name
from tradingd.adapters.feeds.recorder import Recorder
from tradingd.adapters.feeds.replay import (
    ClockRecord,
    ReplayFeed,
    SignalRecord,
    TickRecord,
    read_files,
    read_records,
)
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine import events as ev
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.errors import ValidationError
from tradingd.engine.model import EntryCondition, Signal, Tick

from tests.polling import poll_until_async

TOKEN = demo_mint("RECORDER")
OTHER = demo_mint("RECORDER2")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEPOSIT = "1000000000"  # 1,000 USDC
CONFIG: dict[str, Any] = {
    "stop_loss": {"mode": "fixed", "default_pct": -10},
    "take_profit": {"enabled": True, "levels": [{"gain_pct": 20, "sell_pct": 50}]},
    "max_hold_s": 60,
    "limits": {"max_positions_per_token": 5},
}


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Rig:
    """A runtime over a fresh engine (clock injected, paper venue), one agent `a` funded with
    USDC, and a recorder wired to it as the daemon wires it."""

    def __init__(self, base: Path, clock: Clock, **recorder: Any) -> None:
        self.clock = clock
        self.engine = Engine(clock)
        self.runtime = Runtime(
            self.engine, {"paper": PaperVenue(self.engine.price_usd, clock)}, clock
        )
        self.trades: list[tuple[str, int, int, float, str, int]] = []
        self.runtime.event_subscribers.append(self._on_events)
        self.recorder = Recorder(base, **recorder)
        self.recorder.start()
        wire_recorder(self.recorder, self.runtime)
        self.runtime.apply(
            self.engine.create_agent, "a", "paper", config_from_builtins(CONFIG), "USDC", None, "a"
        )
        self.runtime.apply(self.engine.deposit, "a", "USDC", int(DEPOSIT))

    def _on_events(self, events: list[ev.Event]) -> None:
        for e in events:
            if isinstance(e, ev.OrderFilled):
                t = e.trade
                self.trades.append((t.side, t.amount, t.quote_amount, t.price_usd, t.reason, t.ts))

    def ticks(self, *prices: float, token: str = TOKEN, **fields: Any) -> None:
        self.runtime.push_ticks([Tick(token, p, self.clock.now, **fields) for p in prices])

    def signal(self, client_id: str | None = None, **fields: Any) -> None:
        now = self.clock.now
        signal = Signal(
            id=f"sig-{now}-{client_id}",
            token=fields.pop("token", TOKEN),
            received_at=now,
            expires_at=now + 30_000,
            client_id=client_id,
            strength=3,
            **fields,
        )
        self.runtime.submit_signal(signal)


def spec() -> AgentSpec:
    return AgentSpec(id="a", name="a", quote="USDC", paper_deposit=DEPOSIT, config=CONFIG)


def files_of(base: Path) -> list[Path]:
    return sorted(base.parent.glob(f"{base.stem}-*{base.suffix}"))


def lines_of(base: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in files_of(base) for line in f.read_text().splitlines()]


async def test_ticks_signals_and_clock_turns_become_lines_in_arrival_order(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    rig.ticks(1.0, token=TOKEN, decimals=6, liquidity_usd=5e5, market_cap_usd=1e6)
    clock.now += 5
    rig.runtime.push_ticks([Tick(OTHER, 2.5, T0 - 700, "pyth", conf_usd=0.01, confidence=0.9)])
    clock.now += 5
    rig.signal("c1", symbol="REC", type="breakout", reason="r", source="prov")
    clock.now += 2000
    rig.runtime.clock_turn()
    await rig.recorder.close()

    assert [r["kind"] for r in lines_of(base)] == ["tick", "tick", "signal", "clock"]
    records = list(read_records(files_of(base)[0]))
    first, second, sig, turn = records
    assert isinstance(first, TickRecord) and isinstance(second, TickRecord)
    assert (first.ts, first.tick_ts, first.decimals, first.liquidity_usd) == (T0, None, 6, 5e5)
    assert (first.market_cap_usd, first.source) == (1e6, "push")
    # the price's own time kept apart from when the daemon received it
    assert (second.ts, second.tick_ts, second.source) == (T0 + 5, T0 - 700, "pyth")
    assert (second.conf_usd, second.confidence) == (0.01, 0.9)
    assert isinstance(sig, SignalRecord)
    assert (sig.ts, sig.id, sig.symbol, sig.type, sig.reason, sig.source) == (
        T0 + 10,
        "c1",
        "REC",
        "breakout",
        "r",
        "prov",
    )
    assert sig.expires_in_ms == 30_000 and sig.strength == 3
    assert isinstance(turn, ClockRecord) and turn.ts == T0 + 2010
    assert rig.recorder.counters()["records"] == 4


async def test_the_writer_task_writes_while_running_and_health_reports_the_file(
    tmp_path: Path,
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    task = asyncio.create_task(rig.recorder.run())
    try:
        rig.ticks(1.0, 1.01, decimals=6)
        health = await poll_until_async(
            rig.recorder.health, lambda h: h["records"] == 2, what="two records written"
        )
        assert health["status"] == "ok" and health["dropped"] == 0
        assert health["path"] == str(files_of(base)[0])
        assert health["bytes"] == files_of(base)[0].stat().st_size > 0
        assert files_of(base)[0].read_text().endswith("\n")  # whole lines only
    finally:
        task.cancel()
        await rig.recorder.close()


async def test_directory_is_owner_only_and_files_are_0600(tmp_path: Path) -> None:
    base = tmp_path / "deep" / "rec" / "ticks.jsonl"
    rig = Rig(base, Clock(T0))
    rig.ticks(1.0)
    await rig.recorder.close()
    assert stat.S_IMODE(base.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(files_of(base)[0].stat().st_mode) == 0o600


async def test_a_recording_replays_to_the_same_trades(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    rig.ticks(1.0, decimals=6)
    clock.now += 10
    rig.signal("buy-1")
    clock.now += 10
    rig.signal("buy-1")  # a duplicate: trades once, in the daemon and in the replay
    for price in (1.05, 1.12, 1.25, 1.1, 1.0, 0.95, 0.89):  # take-profit, then the stop
        clock.now += 100
        rig.ticks(price)
    clock.now += 100
    rig.signal("buy-2")
    with pytest.raises(ValidationError):  # refused (422 in the daemon); recorded all the same
        rig.signal("bad", decimals=9)
    for _ in range(400):  # clock turns every 200 ms up to past the max hold (60 s)
        clock.now += 200
        rig.runtime.clock_turn()
    await rig.recorder.close()

    reasons = [t[4] for t in rig.trades]
    assert reasons == ["signal", "take_profit", "stop_loss", "signal", "max_hold"]
    replayed = run_replay(read_files(files_of(base)), [spec()])
    got = [
        (t.side, t.amount, t.quote_amount, t.price_usd, t.reason, t.ts)
        for t in replayed.agents[0].trades
    ]
    assert got == rig.trades
    # turns every 200 ms, written at most once a second, plus the one that closed the position
    clocks = [r for r in lines_of(base) if r["kind"] == "clock"]
    assert 80 <= len(clocks) <= 82
    assert rig.trades[-1][5] in {r["ts"] for r in clocks}


async def test_a_recording_with_resting_entries_and_a_cancel_replays_to_the_same_trades(
    tmp_path: Path,
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    rig.ticks(1.0, decimals=6)
    for n, (kind, level) in enumerate([("limit", 0.9), ("limit", 0.95), ("stop", 1.1)]):
        clock.now += 10
        rig.signal(None if n == 1 else f"e{n}", entry=EntryCondition(type=kind, price_usd=level))
    clock.now += 10
    (anonymous,) = [s for s, r in rig.engine.signals.items() if r.signal.client_id is None]
    cancelled = rig.runtime.cancel_resting(anonymous)  # the 0.95 limit: never fills
    assert len(cancelled) == 1
    # the 0.9 limit fills at 0.89; at 1.12 its take-profit (+20 %) sells first, then the stop buys
    for price in (0.97, 0.94, 0.89, 1.0, 1.12):
        clock.now += 100
        rig.ticks(price)
    await rig.recorder.close()

    assert [t[4] for t in rig.trades] == ["signal", "take_profit", "signal"]
    assert [r["kind"] for r in lines_of(base)].count("cancel") == 1
    replayed = run_replay(read_files(files_of(base)), [spec()])
    got = [
        (t.side, t.amount, t.quote_amount, t.price_usd, t.reason, t.ts)
        for t in replayed.agents[0].trades
    ]
    assert got == rig.trades


async def test_clock_turns_are_coalesced_to_one_a_second_when_nothing_moves(
    tmp_path: Path,
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    for _ in range(50):
        clock.now += 100
        rig.runtime.clock_turn()
    await rig.recorder.close()
    assert [r["ts"] - T0 for r in lines_of(base)] == [100, 1100, 2100, 3100, 4100]


async def test_files_rotate_by_size_in_name_order(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock, max_bytes=1024)
    for i in range(200):
        clock.now += 7
        rig.ticks(1.0 + i / 1000)
    await rig.recorder.close()

    files = files_of(base)
    assert len(files) >= 10
    assert all(f.stat().st_size <= 1024 for f in files)
    assert files[0].name == "ticks-2026-01-01T000000Z.jsonl"
    assert files[1].name == "ticks-2026-01-01T000000Z_000001.jsonl"  # same second: sorts after
    records = list(read_files(files))
    assert [r.ts for r in records] == [T0 + 7 * (i + 1) for i in range(200)]
    assert rig.recorder.counters()["files"] == len(files)


async def test_files_rotate_when_the_utc_day_changes(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    midnight = T0 + 86_400_000
    clock = Clock(midnight - 1500)
    rig = Rig(base, clock)
    rig.ticks(1.0)
    clock.now = midnight - 1
    rig.ticks(1.1)
    clock.now = midnight
    rig.ticks(1.2)
    clock.now = midnight + 3_723_000  # 01:02:03
    rig.ticks(1.3)
    await rig.recorder.close()

    assert [f.name for f in files_of(base)] == [
        "ticks-2026-01-01T235958Z.jsonl",
        "ticks-2026-01-02T000000Z.jsonl",
    ]
    assert [len(f.read_text().splitlines()) for f in files_of(base)] == [2, 2]


def test_file_names_sort_in_time_order() -> None:
    names = [
        file_name("t", ".jsonl", T0 + 999),
        file_name("t", ".jsonl", T0, 1),
        file_name("t", ".jsonl", T0 + 1000),
        file_name("t", ".jsonl", T0 + 86_400_000),
    ]
    assert sorted(names) == names


async def test_a_full_queue_drops_counts_and_logs_once_per_burst(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock, max_queue=100)
    caplog.set_level(logging.WARNING, "tradingd.recorder")
    # the writer is not running yet: nothing leaves the queue
    rig.ticks(*[1.0 + i / 1000 for i in range(60)])
    rig.ticks(*[1.1 + i / 1000 for i in range(60)])  # 40 fit, 20 dropped
    rig.signal("s")  # dropped
    health = rig.recorder.health()
    assert (health["status"], health["dropped"], health["queued"]) == ("degraded", 21, 100)
    assert "queue full" in str(health["reason"])
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]  # burst still on

    task = asyncio.create_task(rig.recorder.run())
    try:
        await poll_until_async(
            rig.recorder.health, lambda h: h["queued"] == 0, what="the queue written"
        )
        rig.ticks(2.0)  # fits again: the burst ends, logged once with its count
    finally:
        task.cancel()
        await rig.recorder.close()
    logged = [r for r in caplog.records if "dropped records" in r.getMessage()]
    assert [r.__dict__["dropped"] for r in logged] == [21]
    assert len(list(read_files(files_of(base)))) == 101
    assert rig.recorder.counters()["dropped"] == 21


async def test_a_write_error_is_counted_shown_in_health_and_recovered_from(
    tmp_path: Path,
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    task = asyncio.create_task(rig.recorder.run())
    try:
        rig.ticks(1.0)
        await poll_until_async(rig.recorder.health, lambda h: h["records"] == 1, what="written")
        base.parent.rename(tmp_path / "moved")
        base.parent.write_text("a file where the directory was")
        clock.now += 86_400_000  # a new day: a new file, which cannot be made
        rig.ticks(1.1)
        health = await poll_until_async(
            rig.recorder.health, lambda h: h["status"] == "error", what="write error shown"
        )
        assert health["dropped"] == 1 and "write failed" in str(health["reason"])
        base.parent.unlink()
        clock.now += 1000
        rig.ticks(1.2)
        health = await poll_until_async(
            rig.recorder.health, lambda h: h["records"] == 2, what="writing again"
        )
        assert health["status"] == "ok"
    finally:
        task.cancel()
        await rig.recorder.close()
    assert rig.recorder.counters()["write_errors"] == 1
    assert [r["price_usd"] for r in lines_of(base)] == [1.2]
    assert [r["price_usd"] for r in lines_of(tmp_path / "moved" / "ticks.jsonl")] == [1.0]


async def test_a_line_cut_short_by_a_crash_is_skipped_by_the_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    rig.ticks(1.0, decimals=6)
    clock.now += 10
    rig.signal("s1")
    await rig.recorder.close()
    (file,) = files_of(base)
    with open(file, "ab") as f:  # what a crash mid-write leaves
        f.write(b'{"kind":"tick","token":"' + TOKEN.encode() + b'","price_u')

    caplog.set_level(logging.WARNING, "tradingd.replay")
    assert [type(r).__name__ for r in read_records(file)] == ["TickRecord", "SignalRecord"]
    assert any("cut short" in r.getMessage() for r in caplog.records)
    out = io.StringIO()
    assert run_replay_cli([str(file)], None, out, as_json=True) == 0
    assert json.loads(out.getvalue())["records"] == 2


def test_a_bad_line_that_ends_in_a_newline_is_still_an_error(tmp_path: Path) -> None:
    file = tmp_path / "r.jsonl"
    file.write_text('{"kind":"clock","ts":1}\n{"kind":"clock","ts":\n{"kind":"clock","ts":3}')
    with pytest.raises(ValidationError, match=r"r\.jsonl:2: "):
        list(read_records(file))


def test_replaying_several_files_refuses_a_step_back_in_time_across_them(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"kind":"clock","ts":10}\n')
    b.write_text('{"kind":"clock","ts":9}\n')
    assert [r.ts for r in read_files([a])] == [10]
    with pytest.raises(ValidationError, match=r"b\.jsonl:1: ts 9 is before"):
        list(read_files([a, b]))


async def test_a_tick_no_replay_could_read_is_counted_not_written(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    rig = Rig(base, Clock(T0))
    rig.runtime.push_ticks([Tick("binance:btc/usdt", 1.0, T0), Tick(TOKEN, 1.0, T0)])
    await rig.recorder.close()
    assert [r["token"] for r in lines_of(base)] == [TOKEN]
    assert rig.recorder.counters()["unrecordable"] == 1


async def test_the_clock_never_goes_back_in_a_recording(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "ticks.jsonl"
    clock = Clock(T0)
    rig = Rig(base, clock)
    rig.ticks(1.0)
    clock.now -= 500  # the wall clock stepped back (NTP)
    rig.ticks(1.1)
    await rig.recorder.close()
    assert [(r["ts"], r.get("tick_ts")) for r in lines_of(base)] == [
        (T0, None),
        (T0, T0 - 500),
    ]
    assert len(list(read_files(files_of(base)))) == 2


async def test_the_replay_feed_moves_a_ticks_own_time_by_the_same_offset(tmp_path: Path) -> None:
    file = tmp_path / "r.jsonl"
    line = {"kind": "tick", "ts": T0, "token": TOKEN, "price_usd": 1.0, "tick_ts": T0 - 400}
    file.write_text(json.dumps(line) + "\n")
    batches: list[list[Tick]] = []
    await asyncio.wait_for(ReplayFeed(file, clock=Clock(T0 + 10_000)).run(batches.append), 5)
    assert [t.ts for b in batches for t in b] == [T0 + 10_000 - 400]
