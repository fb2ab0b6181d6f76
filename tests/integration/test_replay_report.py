"""`tradingd replay FILE --report out.html` as a process: the page embeds the very result `--json`
prints, its summary table shows those numbers (exact decimals), the equity curve ends at the
final equity and shows the max drawdown, long replays stay bounded, and without `--report`
nothing changes."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from tradingd.adapters.app.backtest import load_agent_specs, run_replay, run_replay_cli
from tradingd.adapters.app.backtest_report import format_atomic
from tradingd.adapters.app.backtest_series import EQUITY_POINTS, PRICE_POINTS
from tradingd.adapters.feeds.replay import read_records
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.assets import SOL_MINT

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "adapters" / "samples" / "sample.jsonl"
T0 = 1_767_225_600_000


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Page(HTMLParser):
    """The embedded data and the summary table's cells (per agent, per data-field)."""

    def __init__(self) -> None:
        super().__init__()
        self.data_text = ""
        self.cells: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._in_data = False
        self._agent: str | None = None
        self._cell: tuple[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("id") == "report-data":
            self._in_data = True
        elif tag == "tr" and "data-agent" in a and a["data-agent"] is not None:
            self._agent = a["data-agent"]
            self.cells[self._agent] = {}
        elif tag == "td" and self._agent is not None and a.get("data-field"):
            self._cell = (str(a["data-field"]), a.get("data-atomic"))
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data = False
        elif tag == "td" and self._cell is not None and self._agent is not None:
            field, atomic = self._cell
            self.cells[self._agent][field] = ("".join(self._text), atomic)
            self._cell = None
        elif tag == "tr":
            self._agent = None

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_text += data
        elif self._cell is not None:
            self._text.append(data)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Page]:
    out = tmp_path_factory.mktemp("report")
    done = replay(str(SAMPLE), "--report", "r.html", "--json", cwd=out)
    assert done.returncode == 0, done.stderr
    page = Page()
    page.feed((out / "r.html").read_text(encoding="utf-8"))
    return json.loads(done.stdout), page


def test_the_page_embeds_the_result_json_prints(sample_run: tuple[dict[str, Any], Page]) -> None:
    result, page = sample_run
    assert json.loads(page.data_text) == result
    assert [len(a["trades"]) for a in result["agents"]] == [13, 5]  # the sample's fills


def test_the_summary_table_shows_the_json_numbers(
    sample_run: tuple[dict[str, Any], Page],
) -> None:
    result, page = sample_run
    assert set(page.cells) == {a["agent_id"] for a in result["agents"]}
    for a in result["agents"]:
        cells, q, qd = page.cells[a["agent_id"]], a["quote"], a["quote_decimals"]
        assert cells["trades"][0] == str(len(a["trades"]))
        assert cells["round_trips"][0] == str(a["round_trips"])
        assert cells["win_rate"][0] == f"{a['win_rate'] * 100:.2f}%"
        for field in ("realized_pnl", "unrealized_pnl", "final_equity"):
            text, atomic = cells[field]
            assert atomic == a[field]  # the JSON's atomic string, as it is
            shown = text.removesuffix(f" {q}").removeprefix("+")
            assert shown == format_atomic(int(a[field]), qd)
            assert Decimal(shown) == Decimal(a[field]).scaleb(-qd)  # exact decimals
        assert cells["equity_max_drawdown_pct"][0] == f"{a['equity_max_drawdown_pct']:.2f}%"
        assert cells["max_drawdown_pct"][0] == f"{a['max_drawdown_pct']:.2f}%"
        assert cells["exposure_ms"][0].endswith(f"({a['exposure_pct']:.1f}%)")


def test_final_equity_is_balance_plus_positions_and_the_curves_last_point(
    sample_run: tuple[dict[str, Any], Page],
) -> None:
    result, _ = sample_run
    for a in result["agents"]:
        cost = sum(int(p["cost"]) for p in a["open_positions"])
        assert int(a["final_equity"]) == int(a["balance"]) + cost + int(a["unrealized_pnl"])
        assert a["equity_curve"][-1]["equity"] == a["final_equity"]
        assert a["equity_curve"][-1]["ts"] == result["last_ts"]
        assert a["equity_curve"][0]["equity"] == a["deposited"]


def curve_max_drawdown(curve: list[dict[str, Any]]) -> float:
    best, peak = Fraction(0), 0
    for p in curve:
        peak = max(peak, int(p["equity"]))
        best = max(best, Fraction(peak - int(p["equity"]), peak))
    return float(best * 100)


def test_the_curve_shows_the_reported_max_drawdown(
    sample_run: tuple[dict[str, Any], Page],
) -> None:
    result, _ = sample_run
    for a in result["agents"]:
        assert a["equity_max_drawdown_pct"] > 0
        assert curve_max_drawdown(a["equity_curve"]) == a["equity_max_drawdown_pct"]
        assert max(p["drawdown_pct"] for p in a["equity_curve"]) == a["equity_max_drawdown_pct"]


def test_each_trade_time_is_a_point_of_its_tokens_price_series(
    sample_run: tuple[dict[str, Any], Page],
) -> None:
    result, _ = sample_run
    series = {s["token"]: {p["ts"] for p in s["points"]} for s in result["prices"]}
    for a in result["agents"]:
        for t in a["trades"]:
            assert t["ts"] in series[t["token"]], t


def test_without_report_replay_prints_the_same_and_writes_nothing(tmp_path: Path) -> None:
    plain = replay(str(SAMPLE), cwd=tmp_path)
    with_report = replay(str(SAMPLE), "--report", "r.html", cwd=tmp_path)
    assert plain.returncode == with_report.returncode == 0
    assert plain.stdout == with_report.stdout and plain.stderr == ""
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_an_unwritable_report_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    err = io.StringIO()
    out = io.StringIO()
    sys_stderr, sys.stderr = sys.stderr, err
    try:
        code = run_replay_cli([str(SAMPLE)], None, out, report=str(tmp_path / "no" / "r.html"))
    finally:
        sys.stderr = sys_stderr
    assert code == 2
    assert err.getvalue().startswith("tradingd replay: cannot write the report ")
    assert err.getvalue().count("\n") == 1


def long_replay(path: Path, ticks: int) -> None:
    """SOL and one token on a deterministic wave, one buy early on."""
    token = demo_mint("REPORTLONG")
    lines = [
        {"kind": "tick", "ts": T0, "token": SOL_MINT, "price_usd": 150.0, "decimals": 9},
        {"kind": "tick", "ts": T0, "token": token, "price_usd": 1.0, "decimals": 6},
        {"kind": "signal", "ts": T0 + 5, "id": "long-1", "token": token, "strength": 5},
    ]
    for i in range(1, ticks):
        price = 1.0 + 0.05 * math.sin(i / 500) + 0.01 * math.sin(i / 7)
        lines.append({"kind": "tick", "ts": T0 + 10 * i, "token": token, "price_usd": price})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_a_long_replay_keeps_its_series_bounded(tmp_path: Path) -> None:
    long_replay(tmp_path / "long.jsonl", 30_000)
    done = replay("long.jsonl", "--report", "r.html", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ticks"] == 30_001
    assert all(a["trades"] and a["equity_max_drawdown_pct"] > 0 for a in result["agents"])
    for a in result["agents"]:
        curve = a["equity_curve"]
        assert 1000 <= len(curve) <= EQUITY_POINTS + 4
        assert curve[-1]["equity"] == a["final_equity"] and curve[0]["ts"] == result["first_ts"]
        assert curve_max_drawdown(curve) == a["equity_max_drawdown_pct"]
    for s in result["prices"]:
        assert len(s["points"]) <= PRICE_POINTS + 4 + sum(
            len(a["trades"]) for a in result["agents"]
        )
    assert (tmp_path / "r.html").stat().st_size < 2_000_000


def test_the_equity_curve_is_the_full_valuation_after_any_record() -> None:
    """The curve is kept incrementally (a tick revalues the ticked token's positions only); a
    replay cut after record k values everything afresh (equity_atomic) as its final equity."""
    records = list(read_records(SAMPLE))
    specs = load_agent_specs(None)
    curves = {a.agent_id: a.equity_curve for a in run_replay(records, specs).agents}
    cuts = [k for k in range(1, len(records), 16) if records[k - 1].ts != records[k].ts]
    assert len(cuts) > 30
    for k in cuts:
        ts = records[k - 1].ts
        for a in run_replay(records[:k], specs).agents:
            shown = [p.equity for p in curves[a.agent_id] if p.ts <= ts][-1]
            assert shown == a.final_equity, (k, a.agent_id)


# -- many fills, the report file itself ------------------------------------------------------

CHURN_CONFIG = """
[[agents]]
id = "churn"
name = "churn"
paper_deposit = "1000000000000000"
[agents.config.stop_loss]
mode = "trailing"
trail_pct = 10
"""


def churn_replay(path: Path, cycles: int) -> None:
    """A buy and a stop-loss exit per cycle: two fills a cycle on one token."""
    token = demo_mint("REPORTCHURN")
    lines: list[dict[str, Any]] = [
        {"kind": "tick", "ts": T0, "token": SOL_MINT, "price_usd": 150.0, "decimals": 9}
    ]
    for i in range(cycles):
        t = T0 + 1000 * (i + 1)
        lines.append({"kind": "tick", "ts": t, "token": token, "price_usd": 1.0, "decimals": 6})
        lines.append({"kind": "signal", "ts": t + 1, "id": f"c{i}", "token": token,
                      "symbol": "CHURN", "strength": 5})  # fmt: skip
        lines.append({"kind": "tick", "ts": t + 500, "token": token, "price_usd": 0.5})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


class TradeRows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.summaries: list[str] = []
        self.notes: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("class") in ("buy", "sell"):
            self.rows += 1
        elif tag == "summary":
            self._in = "summary"
            self.summaries.append("")
        elif tag == "p" and a.get("data-field") == "markers_shown":
            self._in = "note"
            self.notes.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("summary", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "summary":
            self.summaries[-1] += data
        elif self._in == "note":
            self.notes[-1] += data


def test_many_fills_show_a_bounded_table_and_price_series_and_say_so(tmp_path: Path) -> None:
    from tradingd.adapters.app.backtest_series import PRICE_PINS_PER_AGENT
    from tradingd.adapters.app.report_html import MARKERS_SHOWN, TRADE_ROWS_SHOWN

    churn_replay(tmp_path / "churn.jsonl", 700)
    (tmp_path / "churn.toml").write_text(CHURN_CONFIG)
    done = replay("churn.jsonl", "--config", "churn.toml", "--report", "r.html", "--json",
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    trades = result["agents"][0]["trades"]
    assert len(trades) == 1400  # the JSON keeps every fill
    html_text = (tmp_path / "r.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html_text)
    assert json.loads(page.data_text) == result
    table = TradeRows()
    table.feed(html_text)
    assert table.rows == TRADE_ROWS_SHOWN
    assert any("1,400; the last 1,000 shown" in s for s in table.summaries), table.summaries
    assert table.notes == [f"Markers: the last {MARKERS_SHOWN} of 1,400 fills on this token "
                           "(every fill is in the embedded data, as --json prints it)."]  # fmt: skip
    assert f'data-markers="{MARKERS_SHOWN}"' in html_text
    (series,) = result["prices"]
    assert len(series["points"]) <= PRICE_POINTS + 4 + PRICE_PINS_PER_AGENT
    kept = {p["ts"] for p in series["points"]}
    assert all(t["ts"] in kept for t in trades[-MARKERS_SHOWN:])  # each marker on the line


@pytest.mark.parametrize("how", ["same name", "absolute path", "symlink", "hard link", "config"])
def test_a_report_naming_an_input_file_is_refused_before_anything_runs(
    tmp_path: Path, how: str
) -> None:
    (tmp_path / "in.jsonl").write_bytes(SAMPLE.read_bytes())
    (tmp_path / "agents.toml").write_text(CHURN_CONFIG)
    target = {
        "same name": "in.jsonl",
        "absolute path": str(tmp_path / "in.jsonl"),
        "symlink": "link.html",
        "hard link": "hard.html",
        "config": "agents.toml",
    }[how]
    (tmp_path / "link.html").symlink_to("in.jsonl")
    (tmp_path / "hard.html").hardlink_to(tmp_path / "in.jsonl")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    done = replay("in.jsonl", "--config", "agents.toml", "--report", target, "--json",
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"tradingd replay: --report {target} is the input file ")
    assert done.stderr.count("\n") == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_failed_write_leaves_the_earlier_report_whole_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    import resource

    assert replay(str(SAMPLE), "--report", "r.html", cwd=tmp_path).returncode == 0
    earlier = (tmp_path / "r.html").read_bytes()
    assert len(earlier) > 100_000

    def small_files() -> None:  # writing past 50 kB fails with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", str(SAMPLE),
         "--report", "r.html"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=small_files,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("tradingd replay: cannot write the report r.html: ")
    assert (tmp_path / "r.html").read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_the_report_file_mode_follows_the_users_umask(
    tmp_path: Path, umask: int, mode: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", str(SAMPLE),
         "--report", "r.html"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, umask=umask,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == mode
