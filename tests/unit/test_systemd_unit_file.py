"""The shipped unit file keeps the operator contract: notify + watchdog, reload by SIGHUP, a
stop timeout above the drain grace period, and a sandbox that can still write the data dir."""

from __future__ import annotations

from pathlib import Path

from tradingd.adapters.app.settings import ShutdownSettings

UNIT = Path(__file__).resolve().parents[2] / "scripts" / "tradingd.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_type_notify_with_a_watchdog() -> None:
    d = directives()
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"] and d["WatchdogSec"] == ["30"]


def test_unit_runs_and_reloads_the_daemon() -> None:
    d = directives()
    assert d["ExecStart"] == ["/usr/local/bin/tradingd run --config /etc/tradingd/tradingd.toml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]


def test_stop_timeout_is_above_the_default_grace_period() -> None:
    assert float(directives()["TimeoutStopSec"][0]) > ShutdownSettings().grace_s + 5


def test_sandbox_keeps_the_data_dir_writable() -> None:
    d = directives()
    assert "TRADINGD_DATA_DIR=/var/lib/tradingd" in d["Environment"]
    assert d["StateDirectory"] == ["tradingd"] and "/var/lib/tradingd" in d["ReadWritePaths"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert d[key] == ["yes"], key
    assert d["ProtectSystem"] == ["strict"]
    assert d.get("DynamicUser") == ["yes"] or "User" in d
