"""Run one `tradingd` command to its end with a bound, and find the embedded servers a data dir
owns through /proc (command line or working directory under that dir), to assert none survive
and to stop them by PID if one does."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER_NAMES = ("redis-server", "postgres")


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without any tradingd setting or external store URL, plus `extra`."""
    skip = ("REDIS_URL", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_") and k not in skip}
    return {**env, **extra}


@contextlib.contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A data dir for the embedded servers outside pytest's base temp dir: each pytest session
    resets that dir to 0700, which (as root) cuts the Postgres account off its cluster while
    another session runs. Removed afterwards, once its servers are stopped."""
    parent = Path(tempfile.mkdtemp(prefix="tradingd-e2e-"))
    try:
        yield parent / "var"
    finally:
        stop_servers(parent / "var")
        shutil.rmtree(parent, ignore_errors=True)


def run_cli(args: list[str], env: dict[str, str], data_dir: Path, timeout: float) -> Finished:
    """`python -m tradingd.adapters.app.cli *args`; after `timeout` seconds the process (exactly that PID)
    and the servers of `data_dir` are killed and AssertionError is raised."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradingd.adapters.app.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        stop_servers(data_dir)
        raise AssertionError(
            f"tradingd {' '.join(args)} still running after {timeout} s: {stderr[-1000:]}"
        ) from None
    return Finished(proc.returncode, stdout, stderr)


def server_pids(data_dir: Path) -> list[int]:
    """redis-server / postgres processes whose command line names `data_dir` or whose working
    directory is inside it."""
    root = str(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not any(name in cmdline for name in SERVER_NAMES):
            continue
        cwd = ""
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
        if root in cmdline or cwd == root or cwd.startswith(root + "/"):
            found.append(int(entry.name))
    return found


def stop_servers(data_dir: Path, timeout: float = 10.0) -> list[int]:
    """SIGTERM then SIGKILL to exactly the PIDs `server_pids` finds; returns them."""
    pids = server_pids(data_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(pids) & set(server_pids(data_dir)):
            time.sleep(0.1)
    return pids
