"""Real `tradingd run` processes on one Redis and one Postgres, for the cluster end-to-end tests
(tests/e2e/test_shards.py, tests/e2e/test_standby_failover.py).

`Nodes.launch(...)` starts one process on the external store with its own data dir, a config
file, the shared admin key and JSON logs, and returns its `Node` once the control port is logged
(not yet ready: `wait_ready` / `wait_standby` poll for that). `embedded_servers` gives the store
URLs (REDIS_URL / DATABASE_URL if both are set, else embedded servers it starts and stops)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tradingd.adapters.store.embedded import EmbeddedServers

from tests.e2e.conftest import REPO, _read_port, json_logs
from tests.polling import poll_until

START_TIMEOUT_S = 40.0


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    log_path: Path
    session: requests.Session
    request_timeout_s: float

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=self.request_timeout_s)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=self.request_timeout_s)

    def health(self) -> dict[str, Any]:
        return self.get("/health").json()

    def ready_status(self) -> int | str:
        if self.proc.poll() is not None:
            raise RuntimeError(f"tradingd exited with {self.proc.returncode}: {self.tail()}")
        try:
            return self.get("/health/ready").status_code
        except requests.RequestException as exc:
            return repr(exc)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def logs(self) -> list[dict[str, Any]]:
        return json_logs(self.log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one must be able to die
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class Nodes:
    """The processes of one test on one store namespace; `stop_all` ends each by its PID."""

    redis_url: str
    database_url: str
    namespace: str
    admin_key: str  # the same key on every data dir
    root: Path
    nodes: list[Node]

    def launch(
        self,
        name: str,
        config_text: str,
        args: Sequence[str] = (),
        *,
        namespace: str | None = None,
        request_timeout_s: float = 10.0,
    ) -> Node:
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "tradingd.toml"
        config.write_text(config_text)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_")},
            "TRADINGD_STORE": "",
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "TRADINGD_STORE_NAMESPACE": namespace or self.namespace,
            "TRADINGD_ADMIN_KEY": self.admin_key,
            "TRADINGD_LOG_LEVEL": "info",
            "TRADINGD_LOG_FORMAT": "json",
        }
        cmd = [
            sys.executable, "-m", "tradingd.adapters.app.cli", "run", "--no-demo",
            "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir),
            "--config", str(config), *args,
        ]  # fmt: skip
        log_path = data_dir / f"tradingd-{len(self.nodes)}.log"  # one per process
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.admin_key}"
        try:
            port = _read_port(log_path, proc, time.monotonic() + START_TIMEOUT_S)
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            raise
        node = Node(
            proc, f"http://127.0.0.1:{port}", data_dir, log_path, session, request_timeout_s
        )
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


def new_nodes(servers: tuple[str, str], root: Path, prefix: str) -> Nodes:
    """Nodes on `servers` (redis_url, database_url) under a fresh namespace `<prefix>_<hex>`,
    with a fresh admin key."""
    namespace = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return Nodes(*servers, namespace, "tdk_e2e_" + secrets.token_urlsafe(24), root, [])


def embedded_servers(
    tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[tuple[str, str]]:
    """For a module-scoped fixture: (redis_url, database_url)."""
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    embedded = None
    if not (redis_url and database_url):
        embedded = EmbeddedServers(Path(tmp_path_factory.mktemp(prefix)))
        redis_url, database_url = embedded.start()
    yield redis_url, database_url
    if embedded is not None:
        embedded.stop()


def wait_ready(
    node: Node, what: str, timeout: float = START_TIMEOUT_S, interval_s: float = 0.05
) -> None:
    poll_until(
        node.ready_status,
        lambda s: s == 200,
        tries=100_000,
        timeout_s=timeout,
        interval_s=interval_s,
        what=what,
    )


def wait_standby(node: Node, what: str = "the node standing by") -> None:
    poll_until(
        lambda: node.health().get("cluster") or {},
        lambda c: c.get("role") == "standby",
        timeout_s=START_TIMEOUT_S,
        interval_s=0.05,
        what=what,
    )
