"""`tradingd run` on a data dir without keys creates an admin key, writes it once to
`<data_dir>/admin.key` (0600) and logs only that file's path; a restart creates nothing new."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

NO_ENV_KEY = {"TRADINGD_ADMIN_KEY": ""}
CREATED = "created an admin key"


def _health(base_url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return requests.get(base_url + "/health", headers=headers, timeout=10).status_code


def test_first_start_writes_an_owner_only_admin_key_that_works_and_is_not_logged(
    tmp_path: Path, daemon_starter: Callable[..., Any]
) -> None:
    data_dir = tmp_path / "var"
    first = daemon_starter(data_dir, env=NO_ENV_KEY)
    try:
        key_file = data_dir / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("tdk_")
        assert _health(first.base_url, key) == 200
        log_text = first.log_path.read_text()
        assert key not in log_text
        created = [line for line in first.logs() if CREATED in line["msg"]]
        assert [line["path"] for line in created] == [str(key_file)]
    finally:
        first.stop()

    written = key_file.stat().st_mtime_ns
    second = daemon_starter(data_dir, env=NO_ENV_KEY)
    try:
        assert key_file.read_text().strip() == key
        assert key_file.stat().st_mtime_ns == written
        assert not [line for line in second.logs() if CREATED in line["msg"]]
        assert _health(second.base_url, key) == 200
    finally:
        second.stop()


def test_the_environment_admin_key_keeps_working_beside_the_file(
    tmp_path: Path, daemon_starter: Callable[..., Any]
) -> None:
    d = daemon_starter(tmp_path / "var")
    try:
        assert _health(d.base_url, d.admin_key) == 200
        assert _health(d.base_url, (d.data_dir / "admin.key").read_text().strip()) == 200
    finally:
        d.stop()
