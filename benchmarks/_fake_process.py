"""A fake server run as a process of its own for a benchmark (`python -m <module> --port-file
PATH`, 127.0.0.1), so its work is not on the event loop under test. Benchmarks run as scripts
(this directory is on sys.path):

    from _fake_process import fake_process

    async with fake_process("tests.fakes.binance_process", "ccxt_path") as doc:
        ...  # doc: the JSON the fake wrote to its port file (its URLs)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START_S = 20.0  # the fake process must write its port file within this


@contextlib.asynccontextmanager
async def fake_process(module: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    """Start `python -m <module> --port-file PATH`, yield what it wrote to PATH, then SIGTERM it
    by its own PID (SIGKILL after 5 s). Raises RuntimeError if it does not write its port file
    within START_S."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}_") as tmp:
        port_file = Path(tmp) / "fake.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port-file", str(port_file)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_S
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the fake process {module} did not start")
                await asyncio.sleep(0.05)
            yield json.loads(port_file.read_text())
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
