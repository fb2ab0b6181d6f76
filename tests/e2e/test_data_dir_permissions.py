"""The data dir (every balance in Redis' AOF, keys, wallets) is owner-only: a fresh one is
created so by the real daemon and its embedded servers, and an open one is tightened at start-up."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import requests
from cli_harness import embedded_data_dir

EMBEDDED = {"TRADINGD_STORE": ""}  # the e2e fixture defaults to memory
START_TIMEOUT_S = 120.0  # initdb of a fresh embedded cluster on a loaded machine


def _open_to_others(data_dir: Path) -> list[str]:
    """Entries with any group/other permission. As root the top dir may be 0710 for the group
    of the account the embedded Postgres runs as (it traverses to its cluster, cannot list)."""
    found = []
    top = data_dir.lstat()
    cluster = data_dir / "postgres"
    pg = cluster.stat() if cluster.exists() else None
    as_other = pg is not None and pg.st_uid != top.st_uid and pg.st_gid == top.st_gid
    top_ok = 0o010 if as_other else 0
    if top.st_mode & 0o077 & ~top_ok:
        found.append(f"{oct(stat.S_IMODE(top.st_mode))} {data_dir}")
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{oct(stat.S_IMODE(mode))} {path}")
    return found


def _use(daemon: Any) -> None:
    """Writes that reach every file kind: an agent and a deposit (AOF, Postgres), an API key."""
    s = requests.Session()
    s.headers.update(daemon.headers)
    agent = s.post(daemon.base_url + "/v1/agents", json={"name": "a"}, timeout=10).json()
    resp = s.post(
        f"{daemon.base_url}/v1/agents/{agent['id']}/deposits",
        json={"asset": "SOL", "amount": "1000000000"},
        timeout=10,
    )
    assert resp.status_code < 300, resp.text
    resp = s.post(daemon.base_url + "/v1/keys", json={"name": "k", "scopes": ["read"]}, timeout=10)
    assert resp.status_code < 300, resp.text
    deadline = time.monotonic() + 10  # the write-behind reaches Postgres
    while time.monotonic() < deadline:
        if s.get(daemon.base_url + "/health", timeout=10).json().get("status") == "ok":
            break
        time.sleep(0.05)


def test_fresh_data_dir_and_everything_in_it_are_owner_only(daemon_factory: Any) -> None:
    with embedded_data_dir() as data_dir:
        args = ("--data-dir", str(data_dir))
        d = daemon_factory(env=EMBEDDED, args=args, timeout=START_TIMEOUT_S)
        _use(d)
        assert (data_dir / "redis").is_dir() and (data_dir / "postgres").is_dir()
        assert _open_to_others(data_dir) == []  # running: sockets, pid files, AOF
        assert d.stop() == 0
        assert _open_to_others(data_dir) == []


def test_an_open_data_dir_is_tightened_at_start_up_with_a_log_line(
    tmp_path: Path, daemon_factory: Any
) -> None:
    data_dir = tmp_path / "old"
    (data_dir / "redis").mkdir(parents=True)
    aof = data_dir / "redis" / "appendonly.aof"
    aof.write_text("*1\r\n$4\r\nPING\r\n")
    data_dir.chmod(0o755)
    (data_dir / "redis").chmod(0o755)
    aof.chmod(0o644)
    d = daemon_factory(args=("--data-dir", str(data_dir)))  # memory store: no server grants
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "redis").stat().st_mode) == 0o700
    assert stat.S_IMODE(aof.stat().st_mode) == 0o600
    lines = [r for r in d.logs() if r.get("msg") == "data dir permissions tightened to owner-only"]
    assert len(lines) == 1
    assert lines[0]["data_dir"] == str(data_dir) and lines[0]["old_mode"] == "0o755"
