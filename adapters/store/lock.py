"""The data-dir lock: one tradingd per data dir, held with flock for the life of the process.

The kernel drops the lock when the process dies (kill -9 included), so a stale lock file never
blocks a restart. The embedded servers do not inherit the descriptor (close_fds)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tradingd.adapters.store.errors import DataDirLocked


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "tradingd.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"data dir {self.path.parent} is in use by another tradingd (pid {holder}); "
                "stop it or use another --data-dir (two tradingd processes on one machine, "
                "such as an active and its standby, each need their own data dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
