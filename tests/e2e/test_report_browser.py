"""The backtest report in a real browser: the real `tradingd replay FILE --report r.html --json`
writes the page, headless Chromium opens it from disk with nothing but file:// allowed, the
equity chart's last point is the JSON's final equity, each trade is a marker naming its reason,
nothing is logged as an error, and text from the replay file never runs as script."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser import WAIT_MS, chromium, screenshot  # noqa: F401 (chromium: fixture)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "adapters" / "samples" / "sample.jsonl"


def run_replay(files: list[str], cwd: Path) -> dict[str, Any]:
    """The real CLI as a user runs it; the JSON result from its stdout, also kept as r.json."""
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", *files]
        + ["--report", "r.html", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (cwd / "r.json").write_text(done.stdout)
    return json.loads(done.stdout)


class Opened:
    """A page opened from disk, with every console error, page error and non-file request."""

    def __init__(self, browser: Any, path: Path, init_script: str = "") -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r: Any) -> None:
            if r.request.url.startswith("file://"):
                r.continue_()
            else:  # offline: a request to anywhere else fails the test
                self.outside.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)
        if init_script:
            self.page.add_init_script(init_script)
        self.page.goto(path.as_uri())
        self.page.wait_for_function("window.tradingdReport !== undefined", timeout=WAIT_MS)


@pytest.fixture
def sample_report(chromium: Any, tmp_path: Path) -> Iterator[tuple[dict[str, Any], Opened]]:  # noqa: F811
    result = run_replay([str(SAMPLE)], tmp_path)
    opened = Opened(chromium, tmp_path / "r.html")
    yield result, opened
    opened.page.close()


def test_equity_charts_end_at_the_json_final_equity(
    sample_report: tuple[dict[str, Any], Opened],
) -> None:
    result, opened = sample_report
    last = opened.page.evaluate(
        """() => window.tradingdReport.charts.map((c) => {
            const d = c.equity.data(); return d[d.length - 1]; })"""
    )
    assert len(last) == len(result["agents"]) == 2
    for point, agent in zip(last, result["agents"], strict=True):
        assert point["customValues"]["atomic"] == agent["final_equity"]
        assert point["value"] == int(agent["final_equity"]) / 10 ** agent["quote_decimals"]
    path = screenshot(opened.page, "backtest-report")
    assert path.stat().st_size > 10_000
    assert opened.errors == [] and opened.outside == []


def test_each_trade_is_a_marker_on_its_tokens_price_chart(
    sample_report: tuple[dict[str, Any], Opened],
) -> None:
    result, opened = sample_report
    markers = opened.page.evaluate(
        """() => window.tradingdReport.charts.map((c) => Object.fromEntries(
            Object.entries(c.prices).map(([token, p]) => [token, p.markers.map((m) => m.text)])))"""
    )
    for agent, by_token in zip(result["agents"], markers, strict=True):
        texts = [text for token in by_token.values() for text in token]
        assert len(texts) == len(agent["trades"])
        sells = sorted(t["reason"] for t in agent["trades"] if t["side"] == "sell")
        exits = [text.split(" ", 1) for text in texts if text.split(" ")[1] != "buy"]
        assert sorted(reason for _, reason in exits) == sells  # "#3 take_profit"
    drawn = opened.page.locator("[data-chart] canvas").count()
    assert drawn > 0
    assert opened.errors == [] and opened.outside == []


def test_a_hostile_symbol_is_shown_and_never_run(chromium: Any, tmp_path: Path) -> None:  # noqa: F811
    hostile = "<img src=x onerror=pwn()>"
    records = (SAMPLE.read_text()).replace(
        '"symbol":"SAMPLEA"', json.dumps({"symbol": hostile})[1:-1]
    )
    (tmp_path / "hostile.jsonl").write_text(records)
    result = run_replay(["hostile.jsonl"], tmp_path)
    assert any(t["symbol"] == hostile for a in result["agents"] for t in a["trades"])
    # were the symbol markup, the image would fail to load and call pwn()
    opened = Opened(
        chromium,
        tmp_path / "r.html",
        "window.pwned = false; window.pwn = () => { window.pwned = true; };",
    )
    try:
        shown = opened.page.evaluate("(s) => document.body.textContent.includes(s)", hostile)
        assert shown
        assert opened.page.locator("img").count() == 0
        assert opened.page.evaluate("() => window.pwned") is False
        assert opened.errors == [] and opened.outside == []
    finally:
        opened.page.close()


def test_a_churning_agent_gets_its_last_fills_marked_not_every_fill(
    chromium: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from tradingd.adapters.app.report_html import MARKERS_SHOWN

    from tests.integration.test_replay_report import CHURN_CONFIG, churn_replay

    churn_replay(tmp_path / "churn.jsonl", 700)
    (tmp_path / "churn.toml").write_text(CHURN_CONFIG)
    result = run_replay(["churn.jsonl", "--config", "churn.toml"], tmp_path)
    trades = result["agents"][0]["trades"]
    assert len(trades) == 1400
    opened = Opened(chromium, tmp_path / "r.html")
    try:
        markers = opened.page.evaluate(
            """() => Object.values(window.tradingdReport.charts[0].prices)
                .map((p) => p.markers.map((m) => m.time))"""
        )
        assert [len(m) for m in markers] == [MARKERS_SHOWN]
        shown = sorted(datetime.fromisoformat(t["ts"]).timestamp() for t in trades[-MARKERS_SHOWN:])
        assert markers[0] == shown
        assert opened.errors == [] and opened.outside == []
    finally:
        opened.page.close()
