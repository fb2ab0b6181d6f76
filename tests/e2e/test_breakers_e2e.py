"""An account breaker trips at the same tick, with the same numbers, in the real daemon (ticks
POSTed to /v1/prices) and in `tradingd replay` of the same scripted price path with the same
config; the daemon's admin reset then lifts the halt and buys are taken again."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tradingd.adapters.app.backtest import run_replay
from tradingd.adapters.app.settings import engine_options, load_settings
from tradingd.adapters.feeds.replay import read_files
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine import events as ev

from tests.e2e.conftest import DaemonProcess, start_daemon
from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
OTHER = demo_mint("E2EBREAKER")
AGENT = "brk"
# 1,000 USDC; 100 USDC a buy; no slippage or fee: every amount below is exact by hand.
CONFIG = f"""
[breakers]
equity_drawdown_pct = 1

[[agents]]
id = "{AGENT}"
name = "breakers"
venue = "paper"
quote = "USDC"
paper_deposit = 1000000000

[agents.config]
sizing = {{ mode = "fixed", amount = 100000000 }}
stop_loss = {{ mode = "fixed", default_pct = -10 }}
execution = {{ slippage_bps = 0, fee_bps = 0 }}
"""


def path(base_ms: int) -> list[dict[str, Any]]:
    """Buy TOKEN and OTHER at 1.0 (equity 1,000, the day's peak at the fills), then TOKEN
    falls: at 0.93 the account is 0.7 % down; 0.9 is the -10 % stop, so 0.89 sells it at 0.89
    and the equity, 800 + 89 + 100 = 989, is 1.1 % below the peak: the breaker (1 %) trips at
    that tick. Nothing before it is more than 1 % down at any moment, so a daemon's clock
    turn between ticks cannot trip it earlier."""
    recs: list[dict[str, Any]] = [
        {"kind": "tick", "token": TOKEN, "price_usd": 1.0, "decimals": 6},
        {"kind": "tick", "token": OTHER, "price_usd": 1.0, "decimals": 6},
        {"kind": "signal", "token": TOKEN, "side": "buy", "strength": 3},
        {"kind": "signal", "token": OTHER, "side": "buy", "strength": 3},
        *({"kind": "tick", "token": TOKEN, "price_usd": p} for p in (0.97, 0.95, 0.93, 0.89)),
        {"kind": "tick", "token": TOKEN, "price_usd": 0.85},
    ]
    return [{**r, "ts": base_ms + 10 * i} for i, r in enumerate(recs)]


TRIP_RECORD = 8  # 1-based: the tick at 0.89
TRIP = {
    "rule": "equity_drawdown",
    "equity_usd": "989.000000",
    "peak_usd": "1000.000000",
    "drawdown_pct": 1.1,
    "threshold_pct": 1,
}


class Api:
    def __init__(self, d: DaemonProcess) -> None:
        self.base = d.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {d.admin_key}"

    def ok(self, method: str, path: str, body: object = None) -> Any:
        resp = self.session.request(method, self.base + path, json=body, timeout=10)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    def settled(self) -> None:
        """Every position open (no order in flight) or closed."""
        poll_until(
            lambda: self.ok("GET", f"/v1/agents/{AGENT}/positions?status=open&limit=100"),
            lambda doc: all(p["status"] == "open" for p in doc["items"]),
            tries=200,
            interval_s=0.02,
            what="orders settled",
        )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(tmp_path / "var", config_text=CONFIG, env={"TRADINGD_LOG_FORMAT": "json"})
    yield d
    d.stop()


def through_daemon(api: Api, recs: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Each record as the API takes it, one at a time; (record number the breaker tripped at,
    its trip)."""
    for n, r in enumerate(recs, 1):
        if r["kind"] == "tick":
            tick = {k: r[k] for k in ("token", "price_usd", "decimals") if k in r}
            doc = api.ok("POST", "/v1/prices", {"ticks": [{**tick, "ts": r["ts"]}]})
            assert doc["accepted"] == 1, doc
        else:
            api.ok("POST", "/v1/signals", {k: r[k] for k in ("token", "side", "strength")})
        api.settled()
        tripped = api.ok("GET", "/v1/breakers")["tripped"]
        if tripped is not None:
            return n, tripped
    raise AssertionError("the breaker never tripped in the daemon")


def test_drawdown_breaker_trips_at_the_same_tick_in_the_daemon_and_in_replay(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    recs = path(int(time.time() * 1000))
    api = Api(daemon)
    n, tripped = through_daemon(api, recs)
    assert (n, tripped["rule"], tripped["details"]) == (TRIP_RECORD, "equity_drawdown", TRIP)
    health = api.ok("GET", "/health")
    assert health["halted"] is True and health["breakers"]["tripped"]["details"] == TRIP

    # `tradingd replay` of the same path with the same config: the same record, same numbers
    file = tmp_path / "path.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in recs))
    config = daemon.data_dir / "tradingd.toml"
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", str(file)]
        + ["--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "account breaker tripped" in ln]
    assert len(lines) == 1, done.stderr
    m = re.search(r"record (\d+): account breaker tripped, buys halted: (\{.*\})", lines[0])
    assert m is not None, lines[0]
    assert (int(m.group(1)), json.loads(m.group(2))) == (TRIP_RECORD, TRIP)

    # and the library's events: the trip, then the halt that carries its rule
    settings = load_settings(str(config), {})
    result = run_replay(
        read_files([str(file)]),
        settings.agents,
        engine_options=engine_options(settings),
        keep_events=True,
    )
    trips = [e for e in result.events if isinstance(e, ev.Alert) and e.code == "breaker_tripped"]
    halts = [e for e in result.events if isinstance(e, ev.HaltChanged)]
    assert [(t.ts, t.details) for t in trips] == [(recs[TRIP_RECORD - 1]["ts"], TRIP)]
    assert [(h.buys, h.rule) for h in halts] == [(True, "equity_drawdown")]


def test_after_an_admin_reset_the_daemon_buys_again(daemon: DaemonProcess) -> None:
    api = Api(daemon)
    through_daemon(api, path(int(time.time() * 1000)))
    doc = api.ok("POST", "/v1/breakers/reset")
    assert doc["cleared"] == "equity_drawdown" and doc["breakers"]["halted"] is False
    api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 0.85}]})
    api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "buy", "strength": 3})
    api.settled()
    items = api.ok("GET", f"/v1/agents/{AGENT}/positions?status=open&limit=100")["items"]
    assert sorted(p["token"] for p in items) == sorted([OTHER, TOKEN])
    assert api.ok("GET", "/health")["breakers"]["tripped"] is None


def test_tradingd_replay_trips_stale_feeds_at_the_clock_record(tmp_path: Path) -> None:
    """A recording holds the daemon's clock turns: the stale-feeds rule trips at the first
    one more than `stale_feeds_s` after the held token's last tick, not before."""
    config = tmp_path / "tradingd.toml"
    config.write_text(CONFIG.replace("equity_drawdown_pct = 1", "stale_feeds_s = 30"))
    base = 1_767_225_600_000
    recs = [
        {"kind": "tick", "ts": base, "token": TOKEN, "price_usd": 1.0, "decimals": 6},
        {"kind": "signal", "ts": base + 1, "token": TOKEN, "side": "buy", "strength": 3},
        # another token's tick does not make the held one fresh
        {"kind": "tick", "ts": base + 20_000, "token": OTHER, "price_usd": 1.0, "decimals": 6},
        {"kind": "clock", "ts": base + 30_000},  # exactly 30 s: not more
        {"kind": "clock", "ts": base + 30_001},
    ]
    file = tmp_path / "stale.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in recs))
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "replay", str(file)]
        + ["--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "account breaker tripped" in ln]
    assert len(lines) == 1, done.stderr
    m = re.search(r"record (\d+): account breaker tripped, buys halted: (\{.*\})", lines[0])
    assert m is not None, lines[0]
    assert int(m.group(1)) == 5  # the clock record at +30.001 s
    assert json.loads(m.group(2)) == {
        "rule": "stale_feeds",
        "token": TOKEN,
        "age_s": 30.001,
        "threshold_s": 30,
    }
