"""Slowloris against the real `tradingd run` process: N connections that each send a request
without its final blank line, held open. For each N the daemon's open file descriptors, RSS and
`/health/live` latency (a fresh connection per probe) are measured while the attack is open, and
the fds again once `[http] header_timeout_s` has passed.

The attackers are worker processes (this script with `--worker`), each holding at most 5,000
connections, so the client side's own fd limit is not what stops the attack. `--source DIR`
runs the daemon from another checkout (e.g. an older commit, to compare).

    .venv/bin/python benchmarks/slowloris.py [--json PATH] [--sizes 3000,20000] [--source DIR]

Bounded: connects time out after 3 s, each worker stops opening after 60 s, each phase probes
`/health/live` PROBES times with a 5 s timeout; a run takes one to three minutes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _stats import add_json_arg, percentiles, write_json

REPO = Path(__file__).resolve().parents[1]
PER_WORKER = 5000
CONNECT_TIMEOUT_S = 3.0
OPEN_BUDGET_S = 60.0
PROBES = 50
PROBE_TIMEOUT_S = 5.0
START_TIMEOUT_S = 30.0
HEADER_TIMEOUT_S = 10.0  # the daemon's default `[http] header_timeout_s`
HALF_SENT = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n"


def raise_own_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the attacker process --------------------------------------------------------------------


async def hold(port: int, n: int) -> None:
    """Open up to n half-sent connections, report how many on stdout, hold them until stdin
    closes."""
    raise_own_fd_limit()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OPEN_BUDGET_S
    held: list[asyncio.StreamWriter] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            failed += 1
            return
        writer.write(HALF_SENT)
        held.append(writer)

    while len(held) + failed < n and loop.time() < deadline:
        batch = min(200, n - len(held) - failed)
        await asyncio.gather(*(one() for _ in range(batch)))
    print(json.dumps({"opened": len(held), "failed": failed}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for writer in held:
        writer.transport.abort()


# -- the daemon ------------------------------------------------------------------------------


def start_daemon(
    source: Path,
    data_dir: Path,
    admin_key: str | None = None,
    embedded_store: bool = False,
    start_timeout_s: float = START_TIMEOUT_S,
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`tradingd run` from `source` (memory store, or the embedded Redis and Postgres under
    `data_dir`; OS-chosen port): the process, port, log."""
    admin_key = admin_key or "tdk_" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_")}
    env |= {"TRADINGD_ADMIN_KEY": admin_key}
    if embedded_store:
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
    else:
        env["TRADINGD_STORE"] = "memory"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    cmd = [
        sys.executable,
        "-m",
        "tradingd.adapters.app.cli",
        "run",
        "--no-demo",
        "--host",
        "127.0.0.1",
    ]
    cmd += ["--port", "0", "--data-dir", str(data_dir)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tradingd exited: {log_path.read_text()[-2000:]}")
        for line in log_path.read_text(errors="replace").splitlines():
            if '"control port open"' in line:
                return proc, int(json.loads(line)["port"]), log_path
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("tradingd did not open its port")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def probe(port: int) -> float | None:
    """One GET /health/live on a fresh connection: seconds to a 200, None if none in time."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = await reader.read(-1)
            writer.close()
    except (OSError, TimeoutError):
        return None
    return time.perf_counter() - started if raw.startswith(b"HTTP/1.1 200 ") else None


async def health(port: int) -> dict[str, Any]:
    samples = [await probe(port) for _ in range(PROBES)]
    answered = [s * 1000 for s in samples if s is not None]
    return {"answered": len(answered), "probes": PROBES, "latency_ms": percentiles(answered)}


def figures(pid: int) -> dict[str, Any]:
    return {"fds": open_fds(pid), "rss_mib": round(rss_mib(pid), 1)}


async def attack(port: int, pid: int, n: int) -> dict[str, Any]:
    workers = []
    for i in range(0, n, PER_WORKER):
        cmd = [sys.executable, __file__, "--worker", str(min(PER_WORKER, n - i)), str(port)]
        workers.append(
            await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        )
    opened = failed = 0
    for w in workers:
        assert w.stdout is not None
        report = json.loads(await w.stdout.readline())
        opened, failed = opened + report["opened"], failed + report["failed"]
    during = {"attack_opened": opened, "attack_failed": failed, **figures(pid)}
    during["health"] = await health(port)
    await asyncio.sleep(HEADER_TIMEOUT_S + 1)
    after = figures(pid)
    for w in workers:
        assert w.stdin is not None
        w.stdin.close()
        await asyncio.wait_for(w.wait(), 30)
    return {"connections": n, "during": during, "after_header_timeout": after}


async def run(source: Path, sizes: list[int]) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="slowloris-"))
    proc, port, log_path = start_daemon(source, data_dir)
    try:
        await asyncio.sleep(1.0)
        result: dict[str, Any] = {"source": str(source), "idle": figures(proc.pid)}
        result["idle"]["health"] = await health(port)
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        nofile = next(line for line in limits if line.startswith("Max open files"))
        result["fd_limit"] = int(nofile.split()[3])
        result["attacks"] = []
        for n in sizes:
            result["attacks"].append(await attack(port, proc.pid, n))
            await asyncio.sleep(2.0)
        result["alive"] = proc.poll() is None
        return result
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


def show(result: dict[str, Any]) -> None:
    idle = result["idle"]
    print(f"daemon from {result['source']}, fd limit {result['fd_limit']}")
    print(
        f"idle: fds {idle['fds']}, RSS {idle['rss_mib']} MiB, /health/live p50 "
        f"{idle['health']['latency_ms']['p50']:.2f} ms"
    )
    for a in result["attacks"]:
        d, h = a["during"], a["during"]["health"]
        lat = h["latency_ms"]
        print(
            f"{a['connections']:>6} half-sent: opened {d['attack_opened']} (failed "
            f"{d['attack_failed']}); daemon fds {d['fds']}, RSS {d['rss_mib']} MiB; /health/live "
            f"answered {h['answered']}/{h['probes']}, p50 {lat['p50']:.2f} ms, p99 "
            f"{lat['p99']:.2f} ms; fds after the header timeout {a['after_header_timeout']['fds']}"
        )
    print(f"daemon alive at the end: {result['alive']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    parser.add_argument("--sizes", default="3000,20000", help="comma list of attack sizes")
    parser.add_argument("--source", default=str(REPO), help="checkout to run the daemon from")
    parser.add_argument(
        "--worker", nargs=2, type=int, metavar=("N", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        n, port = args.worker
        asyncio.run(hold(port, n))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = asyncio.run(run(Path(args.source).resolve(), sizes))
    show(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
