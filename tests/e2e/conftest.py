"""Start the real `tradingd run` process for end-to-end tests.

`start_daemon(...)` runs `python -m tradingd.adapters.app.cli run` on 127.0.0.1 with an OS-chosen port
(`--port 0`; the port is read back from the "control port open" log line), the memory store,
`--no-demo`, a private data dir and a random `TRADINGD_ADMIN_KEY`, and returns once
`/health/ready` answers 200. Extra env, args or a TOML config can be passed. The `daemon_factory`
fixture stops every process it started (SIGTERM to exactly that PID, SIGKILL after a bound)."""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from tests.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
_PRETTY_PORT = re.compile(r" control port open .*\bport=(\d+)")
STOP_TIMEOUT_S = 20.0


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    admin_key: str
    data_dir: Path
    log_path: Path
    port: int
    exit_code: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def admin_session(self) -> requests.Session:
        """A requests session with the admin key that waits out a 429 (the key's rate limit,
        200/s by default) as a client should, honouring Retry-After: a test polling many
        agents would otherwise read the error body as its answer."""
        s = requests.Session()
        s.headers.update(self.headers)
        retry = Retry(
            total=20, connect=0, read=0, status_forcelist=(429,), allowed_methods=None,
            respect_retry_after_header=True, backoff_factor=0.05, raise_on_status=False,
        )  # fmt: skip
        s.mount("http://", HTTPAdapter(max_retries=retry))
        return s

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        return json_logs(self.log_path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal exactly this PID and wait; SIGKILL if it outlives `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        return self.exit_code


def json_logs(log_path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a process's log written so far (non-JSON lines are skipped)."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _logged_port(log_path: Path, proc: subprocess.Popen[bytes]) -> int | None:
    """The control port the log announces so far, None before; raises if the process exited."""
    if proc.poll() is not None:
        raise RuntimeError(
            f"tradingd exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
        )
    for line in log_path.read_text(errors="replace").splitlines():
        if '"control port open"' in line:
            return int(json.loads(line)["port"])
        pretty = _PRETTY_PORT.search(line)  # `--log-format pretty`
        if pretty:
            return int(pretty.group(1))
    return None


def _read_port(log_path: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    port = poll_until(
        lambda: _logged_port(log_path, proc),
        lambda found: found is not None,
        tries=1_000_000,  # bounded by the start-up deadline
        timeout_s=max(0.0, deadline - time.monotonic()),
        interval_s=0.05,
        what="the control port in tradingd's log",
    )
    assert port is not None
    return port


def _ready_status(base_url: str, proc: subprocess.Popen[bytes]) -> int | str:
    """/health/ready's status, or why there is none yet; raises if the process exited."""
    if proc.poll() is not None:
        raise RuntimeError(f"tradingd exited with {proc.returncode} before ready")
    try:
        with urllib.request.urlopen(base_url + "/health/ready", timeout=2) as resp:
            return int(resp.status)
    except (urllib.error.URLError, OSError) as exc:
        return repr(exc)


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    poll_until(
        lambda: _ready_status(base_url, proc),
        lambda status: status == 200,
        tries=1_000_000,  # bounded by the start-up deadline
        timeout_s=max(0.0, deadline - time.monotonic()),
        interval_s=0.05,
        what="tradingd ready",
    )


def _limit_open_files(n: int) -> Callable[[], None]:
    """A preexec_fn: the child's RLIMIT_NOFILE soft and hard limits both set to `n`."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


def start_daemon(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    config_text: str | None = None,
    admin_key: str | None = None,
    timeout: float = START_TIMEOUT_S,
    max_open_files: int | None = None,
    command: str = "run",
    demo: bool = False,
) -> DaemonProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_key = admin_key or "tdk_e2e_" + secrets.token_urlsafe(24)
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_")},
        "TRADINGD_STORE": "memory",
        "TRADINGD_ADMIN_KEY": admin_key,
        "TRADINGD_LOG_LEVEL": "info",
        **(env or {}),
    }
    cmd = [
        sys.executable,
        "-m",
        "tradingd.adapters.app.cli",
        command,
        *(() if demo else ("--no-demo",)),  # demo: the built-in demo agent and its signals
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    if config_text is not None:
        config = data_dir / "tradingd.toml"
        config.write_text(config_text)
        cmd += ["--config", str(config)]
    log_path = data_dir / "tradingd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, *args],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if max_open_files is None else _limit_open_files(max_open_files),
        )
    deadline = time.monotonic() + timeout
    try:
        port = _read_port(log_path, proc, deadline)
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url, proc, deadline)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        raise
    return DaemonProcess(proc, base_url, admin_key, data_dir, log_path, port)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """`daemon_factory(env=..., args=..., config_text=...)`; every daemon is stopped at the end."""
    started: list[DaemonProcess] = []

    def factory(**kwargs: Any) -> DaemonProcess:
        d = start_daemon(tmp_path / f"daemon{len(started)}", **kwargs)
        started.append(d)
        return d

    yield factory
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_factory()


@pytest.fixture(scope="session")
def daemon_starter() -> Callable[..., DaemonProcess]:
    """`start_daemon` itself, for module- or session-scoped fixtures (which must stop it)."""
    return start_daemon
