"""ReplayFeed: playing a recording into a live runtime (paper venue, wall clock)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.feeds.replay import ReplayFeed
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.errors import ValidationError
from tradingd.engine.model import Signal, Tick

TOKEN = demo_mint("FEEDTEST")
T0 = 1_700_000_000_000  # long ago: the feed must rebase onto the wall clock


def write(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write(
        tmp_path / "rec.jsonl",
        {"kind": "tick", "ts": T0, "token": SOL_MINT, "price_usd": 150.0, "decimals": 9},
        {"kind": "tick", "ts": T0, "token": TOKEN, "price_usd": 1.0},
        {"kind": "signal", "ts": T0 + 1000, "token": TOKEN, "id": "s1", "strength": 3},
        {"kind": "tick", "ts": T0 + 2000, "token": TOKEN, "price_usd": 1.1},
        {"kind": "clock", "ts": T0 + 2000},
    )


async def test_ticks_of_one_timestamp_go_out_as_one_batch_rebased_on_the_wall_clock(
    recording: Path,
) -> None:
    batches: list[list[Tick]] = []
    signals: list[Signal] = []
    clocks: list[int] = []
    started = wall_clock_ms()
    feed = ReplayFeed(recording, speed=100)
    await feed.run(batches.append, signals.append, lambda: clocks.append(1))
    assert [[t.token for t in b] for b in batches] == [[SOL_MINT, TOKEN], [TOKEN]]
    assert batches[0][0].ts >= started
    # 2000 recorded ms at speed 100 are at least 20 wall-clock ms.
    assert batches[1][0].ts - batches[0][0].ts >= 20
    (signal,) = signals
    assert signal.client_id == "s1" and signal.expires_at - signal.received_at == 30_000
    assert clocks == [1] and feed.records_played == 5


async def test_a_played_recording_trades_through_the_runtime_and_paper_venue(
    recording: Path,
) -> None:
    engine = Engine(wall_clock_ms)
    runtime = Runtime(engine, {"paper": PaperVenue(engine.price_usd, wall_clock_ms)})
    agent = runtime.apply(engine.create_agent, "replayed", "paper", config_from_builtins({}), "SOL")
    runtime.apply(engine.deposit, agent.id, "SOL", 10 * 10**9)
    feed = ReplayFeed(recording, speed=math.inf)
    await feed.run(
        runtime.push_ticks,
        lambda s: runtime.apply(engine.on_signal, s),
        lambda: runtime.apply(engine.on_clock),
    )
    assert await runtime.wait_orders(5.0)
    (position,) = engine.agent_positions[agent.id].values()
    assert position.status == "open" and position.amount > 0
    assert engine.prices[TOKEN].price_usd == 1.1


def test_speed_must_be_positive(recording: Path) -> None:
    with pytest.raises(ValidationError, match="speed"):
        ReplayFeed(recording, speed=0)
