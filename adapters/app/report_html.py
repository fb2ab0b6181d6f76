"""The backtest report as one self-contained HTML file (`tradingd replay FILE --report out.html`):
the replay's result as `--json` gives it, embedded as data, with tables rendered here (exact
decimals from format_atomic) and charts drawn by the page's script with the vendored
Lightweight Charts, inlined: the file loads nothing from anywhere, so it opens offline."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import msgspec
from tradingd.adapters.app.backtest_report import (
    AgentReport,
    BacktestResult,
    Json,
    format_atomic,
    to_json_obj,
)
from tradingd.adapters.app.backtest_series import PRICE_PINS_PER_AGENT
from tradingd.adapters.app.version import VERSION
from tradingd.adapters.timestamps import iso_ms

CHART_LIBRARY = ("dashboard", "vendor", "lightweight-charts.standalone.production.js")
# Inside a <script> element only "</script" (any case) ends it, and "<!--" changes how the
# parser reads on: the inlined library must hold neither (checked, not assumed, on upgrade).
_SCRIPT_BREAKERS = re.compile(r"</script|<!--", re.IGNORECASE)
# JSON inside <script type="application/json">: no "<" may reach the HTML parser ("</script>"
# in a symbol would end the element), and U+2028/2029 are escaped for older JS parsers.
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}  # fmt: skip
TRADES_SHOWN_OPEN = 200  # a longer trade list starts collapsed
# A churning agent makes tens of thousands of fills: the page shows the most recent ones only
# (the embedded data, like --json, keeps every fill), so it stays readable and quick to open.
TRADE_ROWS_SHOWN = 1000  # rows of an agent's trade table
MARKERS_SHOWN = PRICE_PINS_PER_AGENT  # markers on one agent's price chart of one token


def _asset(*parts: str, package: str = "tradingd.adapters.app") -> str:
    return (resources.files(package).joinpath(*parts)).read_text(encoding="utf-8")


def chart_library() -> tuple[str, str]:
    """The vendored Lightweight Charts (package data of tradingd.adapters.http) and its version
    as its licence header states it."""
    text = _asset(*CHART_LIBRARY, package="tradingd.adapters.http")
    if _SCRIPT_BREAKERS.search(text):
        raise ValueError("the chart library holds '</script' or '<!--': it cannot be inlined")
    found = re.search(r"Lightweight Charts™ v(\S+)", text)
    return text, found.group(1) if found else "unknown"


def script_json(data: Json) -> str:
    """`data` as JSON text that is safe inside a <script> element."""
    text = msgspec.json.encode(data).decode()
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group(0)], text)


def render_html(result: BacktestResult, files: Sequence[str], config_path: str | None) -> str:
    """The whole report page. `files`: the replay files as given; `config_path`: the agents'
    config file (None: the packaged sample agents)."""
    data = to_json_obj(result)
    price_index = {s.token: i for i, s in enumerate(result.prices)}
    library, version = chart_library()
    page = _asset("report", "report.html")
    parts = {
        "title": html.escape(f"tradingd backtest: {_source(files)}"),
        "style": _asset("report", "report.css"),
        "header": _header(result, files),
        "summary": _summary(result.agents),
        "agents": "\n".join(_agent(i, a, price_index) for i, a in enumerate(result.agents)),
        "config": _config(result, files, config_path),
        "footer": html.escape(
            f"tradingd {VERSION}. Charts: TradingView Lightweight Charts™ {version}, "
            "Copyright TradingView, Inc., Apache License 2.0 (inlined in this file)."
        ),
        "data": script_json(data),
        "library": library,
        "script": _asset("report", "report.js"),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], page)


def write_report(
    path: str,
    result: BacktestResult,
    files: Sequence[str],
    config_path: str | None,
    mode: int | None = None,
) -> None:
    """Writes the page to `path` atomically: a temporary file in the same directory, renamed
    over `path` once complete, so a failure (a full disk) leaves an earlier report whole and no
    temporary file behind. A symlink is followed (its target is replaced, as writing through it
    would); a path that exists but is no regular file (/dev/stdout, a FIFO) is written through.
    `mode`: the file's permission bits, by default 0o666 less the process umask (the CLI passes
    the user's umask: the page is meant to be shared, unlike the data dir's 0600 files)."""
    body = render_html(result, files, config_path).encode("utf-8")
    if path.endswith(os.sep) or path == "":
        raise IsADirectoryError(21, "Is a directory", path)
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isfile(target):
        Path(target).write_bytes(body)  # a directory raises EISDIR here
        return
    if mode is None:
        mode = 0o666 & ~_current_umask()
    folder = os.path.dirname(target)
    try:
        fd, temp = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp"
        )
    except OSError as exc:  # name the folder, not the temporary file the user never chose
        raise type(exc)(exc.errno, exc.strerror, folder) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), mode)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- pieces of the page ---------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value))


def _source(files: Sequence[str]) -> str:
    names = [Path(f).name for f in files]
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]} ({len(names)} files)"


def _label(token: str, symbol: str | None) -> str:
    return symbol or f"{token[:4]}…{token[-4:]}"


def _signed(amount: int, decimals: int) -> str:
    return ("+" if amount > 0 else "") + format_atomic(amount, decimals)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def duration(ms: int) -> str:
    """9_825_100 -> '2h 43m 45.1s'."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.1f}".rstrip("0").rstrip(".") + "s"
    parts = [f"{hours}h"] if hours else []
    if hours or minutes:
        parts.append(f"{minutes}m")
    return " ".join([*parts, seconds])


def _span(result: BacktestResult) -> str:
    if result.first_ts is None or result.last_ts is None:
        return "no records"
    return (
        f"{iso_ms(result.first_ts)} .. {iso_ms(result.last_ts)} "
        f"({duration(result.last_ts - result.first_ts)})"
    )


def _header(result: BacktestResult, files: Sequence[str]) -> str:
    counts = (
        f"{result.records} records: {result.ticks} ticks, {result.signals} signals, "
        f"{result.clocks} clock, {result.cancels} cancel"
    )
    return (
        f"<h1>Backtest: {_e(_source(files))}</h1>"
        f'<p class="meta">{_e(counts)}; {_e(_span(result))}</p>'
    )


def _cell(field: str, text: str, atomic: int | None = None) -> str:
    attr = f' data-atomic="{atomic}"' if atomic is not None else ""
    return f'<td data-field="{field}"{attr}>{_e(text)}</td>'


SUMMARY_COLUMNS = (
    "agent", "trades", "closed positions", "wins / losses", "win rate", "realized PnL",
    "unrealized PnL", "final equity", "max drawdown (equity)", "max drawdown (realized)",
    "exposure time", "open at end",
)  # fmt: skip


def _summary(agents: Iterable[AgentReport]) -> str:
    rows = []
    for a in agents:
        q, qd = a.quote, a.quote_decimals
        exposure = duration(a.exposure_ms) + (
            f" ({a.exposure_pct:.1f}%)" if a.exposure_pct is not None else ""
        )
        rate = None if a.win_rate is None else a.win_rate * 100
        rows.append(
            f'<tr data-agent="{_e(a.agent_id)}">'
            + f'<th scope="row">{_e(a.agent_id)}<small>{_e(a.name)}</small></th>'
            + _cell("trades", str(len(a.trades)))
            + _cell("round_trips", str(a.round_trips))
            + _cell("wins_losses", f"{a.wins} / {a.losses}")
            + _cell("win_rate", _pct(rate))
            + _cell("realized_pnl", f"{_signed(a.realized_pnl, qd)} {q}", a.realized_pnl)
            + _cell("unrealized_pnl", f"{_signed(a.unrealized_pnl, qd)} {q}", a.unrealized_pnl)
            + _cell("final_equity", f"{format_atomic(a.final_equity, qd)} {q}", a.final_equity)
            + _cell("equity_max_drawdown_pct", _pct(a.equity_max_drawdown_pct))
            + _cell("max_drawdown_pct", _pct(a.max_drawdown_pct))
            + _cell("exposure_ms", exposure)
            + _cell("open_positions", str(len(a.open_positions)))
            + "</tr>"
        )
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in SUMMARY_COLUMNS)
    return (
        f'<table class="summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Equity: quote balance plus open positions at the last prices, after '
        "every record; its max drawdown is the largest fall from a running high. The realized "
        "drawdown counts deposits plus realized PnL only. Exposure: time holding at least one "
        "position.</p>"
    )


def _agent(index: int, a: AgentReport, price_index: dict[str, int]) -> str:
    tokens: dict[str, str | None] = {}
    fills: Counter[str] = Counter()
    for t in a.trades:
        tokens.setdefault(t.token, t.symbol)
        fills[t.token] += 1
    charts = [
        f"<h3>Price of {_e(_label(token, symbol))} <small>{_e(token)}</small></h3>"
        + _markers_note(fills[token])
        + f'<div class="chart price" data-chart="price" data-agent="{index}" '
        f'data-series="{price_index[token]}" data-markers="{MARKERS_SHOWN}"></div>'
        for token, symbol in tokens.items()
        if token in price_index
    ]
    return (
        f'<section class="agent" data-agent="{index}">'
        f"<h2>{_e(a.agent_id)} <small>{_e(a.name)}</small></h2>"
        f'<p class="meta">quote {_e(a.quote)}, deposited '
        f"{_e(format_atomic(a.deposited, a.quote_decimals))} {_e(a.quote)}, venue "
        f"{_e(a.venue)} (filled on paper)</p>"
        f"<h3>Equity ({_e(a.quote)})</h3>"
        f'<div class="chart equity" data-chart="equity" data-agent="{index}"></div>'
        "<h3>Drawdown from the running high (%)</h3>"
        f'<div class="chart drawdown" data-chart="drawdown" data-agent="{index}"></div>'
        + "".join(charts)
        + _trades(a)
        + _open_positions(a)
        + "</section>"
    )


def _markers_note(fills: int) -> str:
    if fills <= MARKERS_SHOWN:
        return ""
    return (
        f'<p class="note" data-field="markers_shown">Markers: the last {MARKERS_SHOWN:,} of '
        f"{fills:,} fills on this token (every fill is in the embedded data, as --json prints "
        "it).</p>"
    )


def _trades(a: AgentReport) -> str:
    if not a.trades:
        return "<p>No trades.</p>"
    numbers: dict[str, int] = {}
    rows = []
    q, qd = a.quote, a.quote_decimals
    first_shown = len(a.trades) - TRADE_ROWS_SHOWN
    for i, t in enumerate(a.trades):
        n = numbers.setdefault(t.position_id, len(numbers) + 1)  # over every fill, as markers
        if i < first_shown:
            continue
        rows.append(
            f'<tr class="{_e(t.side)}"><td>{_e(iso_ms(t.ts))}</td><td>#{n}</td>'
            f"<td>{_e(t.side)}</td><td>{_e(_label(t.token, t.symbol))}</td>"
            f'<td class="num">{_e(format_atomic(t.amount, t.decimals))}</td>'
            f'<td class="num">{_e(format_atomic(t.quote_amount, qd))}</td>'
            f'<td class="num">{_e(f"{t.price_usd:.6g}")}</td>'
            f'<td class="num">{_e(format_atomic(t.fee, qd))}</td><td>{_e(t.reason)}</td></tr>'
        )
    head = "".join(
        f"<th>{_e(c)}</th>"
        for c in (
            "time",
            "position",
            "side",
            "token",
            "amount",
            f"quote {q}",
            "price USD",
            f"fee {q}",
            "reason",
        )  # fmt: skip
    )
    opened = " open" if len(rows) <= TRADES_SHOWN_OPEN else ""
    total = len(a.trades)
    shown = (
        f"Trades ({total})"
        if total <= TRADE_ROWS_SHOWN
        else f"Trades ({total:,}; the last {TRADE_ROWS_SHOWN:,} shown, every fill is in the "
        "embedded data, as --json prints it)"
    )
    return (
        f"<details{opened}><summary>{_e(shown)}</summary>"
        f'<table class="trades"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def _open_positions(a: AgentReport) -> str:
    if not a.open_positions:
        return ""
    q, qd = a.quote, a.quote_decimals
    rows = "".join(
        f"<tr><td>{_e(_label(p.token, p.symbol))}</td>"
        f'<td class="num">{_e(format_atomic(p.amount, p.decimals))}</td>'
        f'<td class="num">{_e(format_atomic(p.cost, qd))}</td>'
        f'<td class="num">{_e("n/a" if p.last_price_usd is None else f"{p.last_price_usd:.6g}")}</td>'
        f'<td class="num">{_e("n/a" if p.unrealized_pnl is None else _signed(p.unrealized_pnl, qd))}</td></tr>'
        for p in a.open_positions
    )
    return (
        '<h3>Open at the end</h3><table class="trades"><thead><tr><th>token</th>'
        f"<th>amount</th><th>cost {_e(q)}</th><th>last price USD</th><th>unrealized {_e(q)}</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _config(result: BacktestResult, files: Sequence[str], config_path: str | None) -> str:
    source = config_path or "the packaged sample agents (no --config)"
    listed = "".join(f"<li>{_e(f)}</li>" for f in files)
    agents = "".join(
        f"<details><summary>{_e(a.agent_id)}: venue {_e(a.venue)}, quote {_e(a.quote)}, "
        f"deposit {_e(format_atomic(a.deposited, a.quote_decimals))} {_e(a.quote)}</summary>"
        f"<pre>{_e(json.dumps(a.config, indent=2, sort_keys=True))}</pre></details>"
        for a in result.agents
    )
    return (
        f"<p>Replay files ({len(files)}):</p><ul>{listed}</ul>"
        f"<p>Agents from {_e(source)}, configs as applied:</p>{agents}"
    )
