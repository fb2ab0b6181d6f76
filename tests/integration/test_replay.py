"""Backtests: the sample recording through the real engine and paper venue, determinism, the
strict replay file format, and `tradingd replay` as a process."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from tradingd.adapters.app.backtest import (
    AgentReport,
    BacktestResult,
    load_agent_specs,
    run_replay,
    run_replay_cli,
)
from tradingd.adapters.app.settings import AgentSpec
from tradingd.adapters.feeds.replay import ReplayFormatError, iter_records, read_records
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.assets import SOL_MINT

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "adapters" / "samples" / "sample.jsonl"
TOKEN = demo_mint("REPLAYTEST")
T0 = 1_767_225_600_000


@pytest.fixture(scope="module")
def sample() -> BacktestResult:
    return run_replay(read_records(SAMPLE), load_agent_specs(None))


def agent(result: BacktestResult, agent_id: str) -> AgentReport:
    return next(a for a in result.agents if a.agent_id == agent_id)


def sells(report: AgentReport, symbol: str) -> list[str]:
    return [t.reason for t in report.trades if t.side == "sell" and t.symbol == symbol]


def lines(*records: dict[str, object]) -> list[str]:
    return [json.dumps(r) for r in records]


def tick(ts: int, price: float, token: str = TOKEN) -> dict[str, object]:
    return {"kind": "tick", "ts": ts, "token": token, "price_usd": price}


# -- the sample ------------------------------------------------------------------------------


def test_sample_crash_is_closed_by_stop_loss(sample: BacktestResult) -> None:
    assert sells(agent(sample, "ladder"), "SAMPLEA") == ["stop_loss"]
    assert sells(agent(sample, "trailing"), "SAMPLEA") == ["stop_loss"]


def test_sample_run_up_takes_profit_in_a_ladder_and_keeps_the_moon_bag(
    sample: BacktestResult,
) -> None:
    ladder = agent(sample, "ladder")
    assert sells(ladder, "SAMPLEB") == ["take_profit"] * 3
    (bag,) = [p for p in ladder.open_positions if p.symbol == "SAMPLEB"]
    assert bag.moon_bag_amount > 0
    assert 0 <= bag.amount - bag.moon_bag_amount <= 1  # the ladder sold the rest (atomic rounding)
    assert bag.unrealized_pnl is not None and bag.unrealized_pnl > 0


def test_sample_dips_are_bought_by_dca(sample: BacktestResult) -> None:
    dca = [
        t.symbol for t in agent(sample, "ladder").trades if t.side == "buy" and t.reason == "dca"
    ]
    assert sorted(dca) == ["SAMPLEA", "SAMPLEC"]


def test_sample_sell_signal_closes_the_position_for_every_agent(sample: BacktestResult) -> None:
    assert sells(agent(sample, "ladder"), "SAMPLED") == ["signal"]
    assert sells(agent(sample, "trailing"), "SAMPLED") == ["signal"]


def test_sample_summary_agrees_with_the_trades(sample: BacktestResult) -> None:
    for report in sample.agents:
        spent = sum(t.quote_amount for t in report.trades if t.side == "buy")
        received = sum(t.quote_amount for t in report.trades if t.side == "sell")
        assert report.balance == report.deposited - spent + received
        open_cost = sum(p.cost for p in report.open_positions)
        assert report.realized_pnl == received - spent + open_cost
        assert report.wins + report.losses == report.round_trips


def test_sample_signals_filtered_by_an_agent_are_counted_as_skipped(sample: BacktestResult) -> None:
    assert agent(sample, "trailing").signals_skipped == {
        "max_positions_per_token": 1,
        "strength_below_min": 1,
    }


def test_sample_first_realized_loss_counts_as_drawdown(sample: BacktestResult) -> None:
    # The trailing agent's first close is a loss of ~0.24 SOL on a 10 SOL deposit.
    assert agent(sample, "trailing").max_drawdown_pct > 2.0


# -- determinism ------------------------------------------------------------------------------


def test_replaying_the_same_file_twice_gives_identical_events_and_report() -> None:
    runs = [
        run_replay(read_records(SAMPLE), load_agent_specs(None), keep_events=True) for _ in range(2)
    ]
    encode = msgspec.json.encode
    assert len(runs[0].events) > 100
    assert [encode(e) for e in runs[0].events] == [encode(e) for e in runs[1].events]
    texts = []
    for _ in range(2):
        out = io.StringIO()
        assert run_replay_cli(str(SAMPLE), None, out) == 0
        texts.append(out.getvalue())
    assert texts[0] == texts[1]


# -- the file format --------------------------------------------------------------------------


def test_malformed_json_line_is_rejected_with_its_line_number() -> None:
    text = lines(tick(T0, 1.0), tick(T0 + 1, 1.1)) + ['{"kind":"tick","ts":']
    with pytest.raises(ReplayFormatError, match=r"^f\.jsonl:3: ") as err:
        list(iter_records(text, "f.jsonl"))
    assert err.value.line == 3


def test_unknown_field_is_rejected_with_its_line_number() -> None:
    bad = {"kind": "tick", "ts": T0, "token": TOKEN, "prise_usd": 1.0, "price_usd": 1.0}
    with pytest.raises(ReplayFormatError, match=r"f\.jsonl:2: .*unknown field `prise_usd`"):
        list(iter_records(lines(tick(T0, 1.0), bad), "f.jsonl"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"kind": "trade", "ts": T0}, "Invalid value 'trade'"),
        ({"kind": "tick", "ts": T0, "token": TOKEN}, "missing required field `price_usd`"),
        (
            {"kind": "tick", "ts": T0, "token": TOKEN, "price_usd": 0},
            "Expected `float` >= 0|Expected `float` > 0",
        ),
        ({"kind": "tick", "ts": "2026-01-01", "token": TOKEN, "price_usd": 1.0}, "Expected `int`"),
        (
            {"kind": "tick", "ts": T0, "token": "not-a-mint", "price_usd": 1.0},
            "not a base58 32-byte mint",
        ),
        (
            {"kind": "signal", "ts": T0, "token": TOKEN, "side": "short"},
            "Invalid enum value 'short'",
        ),
        ({"kind": "signal", "ts": T0, "token": TOKEN, "strength": 9}, "Expected `int` <= 5"),
    ],
)
def test_invalid_records_are_rejected_naming_the_line(
    record: dict[str, object], message: str
) -> None:
    with pytest.raises(ReplayFormatError, match=rf"^f\.jsonl:1: .*({message})"):
        list(iter_records(lines(record), "f.jsonl"))


def test_out_of_order_ts_is_rejected_with_its_line_number() -> None:
    text = lines(tick(T0, 1.0), tick(T0 + 5, 1.1), tick(T0 + 4, 1.2))
    with pytest.raises(ReplayFormatError, match=r"f\.jsonl:3: ts .* before the previous"):
        list(iter_records(text, "f.jsonl"))


def test_equal_timestamps_and_blank_lines_are_accepted() -> None:
    text = lines(tick(T0, 1.0), tick(T0, 1.1)) + ["", "  "] + lines({"kind": "clock", "ts": T0})
    assert [r.ts for r in iter_records(text)] == [T0, T0, T0]


def test_the_documented_example_decodes() -> None:
    doc = (ROOT / "docs" / "replay-format.md").read_text()
    example = re.search(r"```jsonl\n(.*?)```", doc, re.S)
    assert example is not None
    records = list(iter_records(example.group(1).splitlines()))
    assert [type(r).__name__ for r in records] == [
        "TickRecord",
        "TickRecord",
        "SignalRecord",
        "ClockRecord",
        "SignalRecord",
    ]


def test_the_sample_file_is_what_its_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_sample_replay.py"), str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    assert out.read_bytes() == SAMPLE.read_bytes()


# -- execution details ----------------------------------------------------------------------


def spec(agent_id: str, config: dict[str, object], deposit: int = 10 * 10**9) -> AgentSpec:
    return AgentSpec(id=agent_id, name=agent_id, paper_deposit=str(deposit), config=config)


def signal(ts: int, **fields: object) -> dict[str, object]:
    return {"kind": "signal", "ts": ts, "token": TOKEN, "strength": 3, **fields}


def test_an_order_the_paper_venue_rejects_fails_and_releases_the_reservation() -> None:
    # 1 lamport cannot buy one atomic unit of a 0-decimal token at 1000 USD.
    records = iter_records(
        lines(
            tick(T0, 150.0, SOL_MINT),
            {**tick(T0, 1000.0), "decimals": 0},
            signal(T0 + 1, id="s1"),
        )
    )
    result = run_replay(records, [spec("tiny", {"sizing": {"amount": "1"}})])
    report = result.agents[0]
    assert report.orders_failed == 1
    assert report.trades == [] and report.balance == report.deposited


def test_a_clock_record_lets_max_hold_fire_between_ticks() -> None:
    records = iter_records(
        lines(
            tick(T0, 150.0, SOL_MINT),
            tick(T0, 1.0),
            signal(T0 + 1),
            {"kind": "clock", "ts": T0 + 61_000},
        )
    )
    result = run_replay(records, [spec("holder", {"max_hold_s": 60})])
    assert [(t.side, t.reason, t.ts) for t in result.agents[0].trades] == [
        ("buy", "signal", T0 + 1),
        ("sell", "max_hold", T0 + 61_000),
    ]


def test_a_repeated_signal_id_trades_once() -> None:
    records = iter_records(
        lines(
            tick(T0, 150.0, SOL_MINT),
            tick(T0, 1.0),
            signal(T0 + 1, id="dup"),
            signal(T0 + 2, id="dup"),
        )
    )
    result = run_replay(records, [spec("a", {"limits": {"max_positions_per_token": 5}})])
    assert [t.side for t in result.agents[0].trades] == ["buy"]


def test_a_buy_on_a_stale_price_is_skipped() -> None:
    records = iter_records(lines(tick(T0, 150.0, SOL_MINT), tick(T0, 1.0), signal(T0 + 61_000)))
    result = run_replay(records, [spec("a", {})])
    assert result.agents[0].signals_skipped == {"price_stale": 1}


# -- the command line -----------------------------------------------------------------------


def tradingd() -> list[str]:
    script = Path(sys.executable).parent / "tradingd"
    if script.exists():
        return [str(script)]
    found = shutil.which("tradingd")
    return [found] if found else [sys.executable, "-m", "tradingd.adapters.app.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tradingd(), "replay", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cli_replays_the_sample_and_prints_trades_and_summaries() -> None:
    proc = run_cli(str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for reason in ("stop_loss", "take_profit", "dca", "signal:breakout", " signal\n"):
        assert reason in out
    assert "agent ladder" in out and "agent trailing" in out
    assert out.count("  realized PnL") == 2
    assert "moon bag" in out and "unrealized" in out


def test_cli_sample_flag_replays_the_bundled_sample_from_any_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*tradingd(), "replay", "--sample"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run_cli(str(SAMPLE)).stdout  # the same file, found where it is installed


@pytest.mark.parametrize("args", [(), ("--sample", "x.jsonl")])
def test_cli_needs_exactly_one_of_a_file_or_the_sample(args: tuple[str, ...]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2 and proc.stderr == (
        "tradingd replay: give a FILE or --sample (not both)\n"
    )


def test_cli_with_a_config_file_runs_its_agents(tmp_path: Path) -> None:
    config = tmp_path / "agents.toml"
    config.write_text(
        '[[agents]]\nid = "solo"\nname = "solo"\npaper_deposit = "5000000000"\n'
        '[agents.config.stop_loss]\nmode = "trailing"\ntrail_pct = 5\n'
    )
    proc = run_cli(str(SAMPLE), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "agent solo" in proc.stdout and "agent ladder" not in proc.stdout


@pytest.mark.parametrize(
    "content", ['{"kind":"tick"\n', '{"kind":"tick","ts":1,"token":"x","price_usd":1}\n']
)
def test_cli_bad_file_prints_one_line_and_exits_2(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    proc = run_cli(str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert re.fullmatch(r"tradingd replay: .*bad\.jsonl:1: .+\n", proc.stderr)


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_json_output_carries_atomic_amounts_as_strings() -> None:
    out = io.StringIO()
    assert run_replay_cli(str(SAMPLE), None, out, as_json=True) == 0
    data = json.loads(out.getvalue())
    ladder = next(a for a in data["agents"] if a["agent_id"] == "ladder")
    assert isinstance(ladder["realized_pnl"], str) and isinstance(
        ladder["trades"][0]["quote_amount"], str
    )
    assert "events" not in data


def test_json_output_gives_times_in_the_api_form() -> None:
    out = io.StringIO()
    assert run_replay_cli(str(SAMPLE), None, out, as_json=True) == 0
    data = json.loads(out.getvalue())
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    trades = [t for a in data["agents"] for t in a["trades"]]
    assert trades and all(iso.fullmatch(t["ts"]) for t in trades)
    assert iso.fullmatch(data["first_ts"]) and iso.fullmatch(data["last_ts"])
    assert data["first_ts"] <= trades[0]["ts"] <= data["last_ts"]


def test_bad_agent_config_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agents.toml"
    config.write_text(
        '[[agents]]\nid = "x"\nname = "x"\n[agents.config.stop_loss]\nmode = "sideways"\n'
    )
    assert run_replay_cli(str(SAMPLE), str(config), io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{config}: agents[id=x].config.stop_loss.mode: " in err
