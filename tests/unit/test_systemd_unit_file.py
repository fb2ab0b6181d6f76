"""The shipped unit file keeps the operator contract, checked against the code it starts rather
than against copies of its own values: notify readiness from the main process, a watchdog the
daemon's pings keep fed, ExecStart running the installed console script with arguments its CLI
accepts, SIGHUP for reload, SIGTERM for the drain with a stop timeout above its grace period, and
a sandbox that can still write the data dir."""

from __future__ import annotations

import os
import re
import shlex
import signal
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from tradingd.adapters.app.cli import build_parser
from tradingd.adapters.app.settings import ShutdownSettings
from tradingd.adapters.app.systemd import watchdog_interval_s

UNIT = Path(__file__).resolve().parents[2] / "scripts" / "tradingd.service"

SPAN_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(d: dict[str, list[str]], key: str) -> str:
    values = d.get(key, [])
    assert len(values) == 1, f"{key} must be set exactly once, found {values}"
    return values[0]


def seconds(span: str) -> float:
    """A systemd time span ("45", "30s", "1min 30s") in seconds; a bare number is seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    return sum(float(n) * SPAN_UNITS[u or "s"] for n, u in parts)


def test_seconds_reads_systemd_time_spans() -> None:
    assert [seconds(s) for s in ("45", "30s", "1min 30s", "500ms")] == [45.0, 30.0, 90.0, 0.5]
    with pytest.raises(AssertionError):
        seconds("soon")


def test_readiness_is_notified_by_the_main_process() -> None:
    d = directives()
    assert one(d, "Type") == "notify"
    # the daemon writes READY=1 and WATCHDOG=1 itself, from its main pid
    assert one(d, "NotifyAccess") in ("main", "all")


def test_the_daemons_watchdog_pings_come_well_within_watchdog_sec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeout_s = seconds(one(directives(), "WatchdogSec"))
    assert timeout_s > 0
    # what systemd hands the process it starts, read by the daemon's own watchdog loop
    monkeypatch.setenv("WATCHDOG_USEC", str(int(timeout_s * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    interval = watchdog_interval_s()
    assert interval is not None and 0 < interval <= timeout_s / 2


def test_exec_start_runs_the_installed_console_script_with_arguments_its_cli_accepts() -> None:
    argv = shlex.split(one(directives(), "ExecStart"))
    program = Path(argv[0])
    assert program.is_absolute(), "systemd needs an absolute path"
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get(program.name) == "tradingd.adapters.app.cli:main", (program, scripts)
    args = build_parser().parse_args(argv[1:])  # exits (SystemExit) on anything it refuses
    assert args.command == "run"
    assert args.config and Path(args.config).is_absolute()


def test_reload_sends_sighup_to_the_main_process() -> None:
    argv = shlex.split(one(directives(), "ExecReload"))
    assert Path(argv[0]).name == "kill" and argv[-1] == "$MAINPID"
    assert signal.Signals["SIG" + argv[1].lstrip("-")] is signal.SIGHUP


def test_stop_is_sigterm_to_the_daemon_with_time_to_drain_before_sigkill() -> None:
    d = directives()
    # SIGTERM is the signal the daemon drains on (systemd's default when KillSignal is unset)
    assert signal.Signals[d.get("KillSignal", ["SIGTERM"])[0]] is signal.SIGTERM
    # SIGTERM to the main process only: the embedded Redis/Postgres it started must stay up
    # until it has flushed, then it stops them (control-group would signal them at once)
    assert one(d, "KillMode") in ("mixed", "process")
    stop_s = seconds(one(d, "TimeoutStopSec"))
    grace_s = ShutdownSettings().grace_s
    assert stop_s >= grace_s + 10, (stop_s, grace_s)  # room to flush the write-behind


def test_sandbox_keeps_the_data_dir_writable() -> None:
    d = directives()
    data_dirs = [e.split("=", 1)[1] for e in d["Environment"] if e.startswith("TRADINGD_DATA_DIR=")]
    assert len(data_dirs) == 1
    data_dir = data_dirs[0]
    assert data_dir in d["ReadWritePaths"]
    # StateDirectory=X is /var/lib/X, created for the (dynamic) user
    assert f"/var/lib/{one(d, 'StateDirectory')}" == data_dir
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one(d, key) == "yes", key
    assert one(d, "ProtectSystem") == "strict"  # read-only everywhere but ReadWritePaths
    assert d.get("DynamicUser") == ["yes"] or "User" in d
