"""The backtest report's pieces: the bounded series sampler against a naive oracle (kept points,
max drawdown), exposure time, JSON safe inside <script>, escaping of text from a replay file,
no external URL in the page, and the page's files shipped as package data."""

from __future__ import annotations

import json
import re
import tomllib
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.app.backtest import load_agent_specs, run_replay
from tradingd.adapters.app.backtest_report import BacktestResult
from tradingd.adapters.app.backtest_series import ExposureClock, SeriesSampler
from tradingd.adapters.app.report_html import (
    CHART_LIBRARY,
    chart_library,
    duration,
    render_html,
    script_json,
)
from tradingd.adapters.feeds.replay import iter_records
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.assets import SOL_MINT

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
HOSTILE = "</script><script>pwn()</script>"  # 31 characters: a symbol may have 32


def naive_max_drawdown(values: list[int]) -> Fraction:
    best, peak = Fraction(0), None
    for v in values:
        peak = v if peak is None else max(peak, v)
        if peak > 0:
            best = max(best, Fraction(peak - v, peak))
    return best * 100


def sampled(values: list[int], cap: int) -> SeriesSampler[int]:
    s = SeriesSampler[int](cap)
    for i, v in enumerate(values):
        s.add(T0 + i, v)
    return s


# -- the series sampler ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=400),
       st.integers(min_value=4, max_value=40))  # fmt: skip
def test_sampler_keeps_first_last_and_the_max_drawdown_of_every_sample(
    values: list[int], cap: int
) -> None:
    s = sampled(values, cap)
    points = s.points()
    full = {T0 + i: v for i, v in enumerate(values)}
    assert all(full[p.ts] == p.value for p in points)  # a subset of the real samples
    assert [p.ts for p in points] == sorted({p.ts for p in points})
    assert (points[0].value, points[-1].value) == (values[0], values[-1])
    assert len(points) <= cap + 4
    expected = naive_max_drawdown(values)
    assert s.max_drawdown_pct() == float(expected)
    # the kept points alone show the same max drawdown: its peak and trough are among them
    assert naive_max_drawdown([p.value for p in points]) == expected


def test_sampler_stays_bounded_on_a_long_series() -> None:
    values = [1000 + (i * 7919) % 1013 for i in range(200_000)]
    points = sampled(values, 2000).points()
    assert 1000 <= len(points) <= 2004


def test_sampler_point_carries_the_running_high_of_every_sample() -> None:
    points = sampled([100, 50, 200, 150, 120], 4).points()
    assert [(p.value, p.peak) for p in points][-1] == (120, 200)


def test_sampler_is_deterministic() -> None:
    values = [(i * 31337) % 977 + 1 for i in range(5000)]
    assert sampled(values, 64).points() == sampled(values, 64).points()


def test_samples_at_one_time_coalesce_to_the_last_value() -> None:
    s = SeriesSampler[int](10)
    s.add(T0, 100)
    s.add(T0, 80)  # a fill applied at the same record time
    s.add(T0 + 1, 90)
    assert [(p.ts, p.value) for p in s.points()] == [(T0, 80), (T0 + 1, 90)]
    assert s.max_drawdown_pct() == 0.0  # 80 then 90: no fall from a high


def test_pinned_samples_survive_downsampling() -> None:
    s = SeriesSampler[float](8)
    for i in range(10_000):
        s.add(T0 + i, 1.0 + (i % 7) / 100, pin=i in (1234, 5678))
    kept = {p.ts for p in s.points()}
    assert {T0 + 1234, T0 + 5678} <= kept


def test_exposure_counts_time_holding_until_the_end() -> None:
    clock = ExposureClock()
    clock.observe(T0, False)
    clock.observe(T0 + 1000, True)
    clock.observe(T0 + 1500, True)
    clock.observe(T0 + 4000, False)
    clock.observe(T0 + 5000, True)
    assert clock.total(T0 + 6000) == 3000 + 1000


def test_duration_reads_as_hours_minutes_seconds() -> None:
    assert duration(9_825_100) == "2h 43m 45.1s"
    assert duration(601_000) == "10m 1s"
    assert duration(1500) == "1.5s"


# -- the page --------------------------------------------------------------------------------


def test_script_json_cannot_end_its_script_element() -> None:
    text = script_json({"symbol": HOSTILE, "x": "a&b\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"symbol": HOSTILE, "x": "a&b\u2028"}


def hostile_replay() -> BacktestResult:
    token = demo_mint("REPORTXSS")
    records = [
        {"kind": "tick", "ts": T0, "token": SOL_MINT, "price_usd": 150.0, "decimals": 9},
        {"kind": "tick", "ts": T0, "token": token, "price_usd": 1.0, "decimals": 6},
        {"kind": "signal", "ts": T0 + 10, "id": "x1", "token": token, "symbol": HOSTILE,
         "strength": 5},
        {"kind": "tick", "ts": T0 + 20, "token": token, "price_usd": 0.5},
    ]  # fmt: skip
    lines = [json.dumps(r) for r in records]
    return run_replay(iter_records(lines, "hostile.jsonl"), load_agent_specs(None))


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_text_from_the_replay_file_is_escaped_everywhere() -> None:
    result = hostile_replay()
    assert any(t.symbol == HOSTILE for a in result.agents for t in a.trades)
    page = render_html(result, ["<b>hostile</b>.jsonl"], None)
    parser = Elements()
    parser.feed(page)
    # the data, the library and the page's script: no element the file's text made
    assert parser.tags.count("script") == 3
    assert "b" not in parser.tags
    assert HOSTILE in "".join(parser.text)  # shown as text
    assert "pwn()</script>" not in page.split('id="report-data">')[1].split("</script>")[0]


def test_the_page_names_no_external_url_outside_the_chart_library() -> None:
    library, _ = chart_library()
    page = render_html(hostile_replay(), ["hostile.jsonl"], None)
    assert page.count(library) == 1
    own = page.replace(library, "")
    assert re.findall(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}", own, re.IGNORECASE) == []
    assert "default-src 'none'" in own  # and the browser is told to load nothing else


def test_the_footer_names_the_chart_library_and_its_licence() -> None:
    _, version = chart_library()
    assert version == "5.2.1"
    page = render_html(hostile_replay(), ["hostile.jsonl"], None)
    footer = page.split("<footer>")[1].split("</footer>")[0]
    assert f"Lightweight Charts™ {version}" in footer and "Apache License 2.0" in footer
    assert "attributionLogo: true" in page  # TradingView's logo (the licence's link) stays on


def test_the_page_files_and_the_chart_library_are_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    app = data["tradingd.adapters.app"]
    for path in (ROOT / "adapters" / "app" / "report").iterdir():
        assert any(Path("report", path.name).match(p) for p in app), path
    library = Path(*CHART_LIBRARY)
    assert any(library.match(p) for p in data["tradingd.adapters.http"])


def test_pinned_samples_keep_the_most_recent_per_key() -> None:
    s = SeriesSampler[float](8, pin_cap=3)
    for i in range(1000):
        s.add(T0 + i, 1.0, pins=("a",) if i % 2 else ("b",) if i % 5 == 0 else ())
    kept = {p.ts - T0 for p in s.points()}  # constant values: buckets keep their first sample
    assert {960, 970, 980, 990, 993, 995, 997, 999} & kept == {970, 980, 990, 995, 997, 999}
    assert len(kept) <= 8 + 4 + 2 * 3
