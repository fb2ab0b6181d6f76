"""A JSON file of records in the data dir that the CLI and the daemon both write (keys.json,
hooks.json): re-read when another process changed it, edited under a lock and replaced
atomically, mode 0600."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import msgspec
from tradingd.engine.errors import ValidationError

RELOAD_CHECK_S = 1.0  # how often a reader looks at the file for another process' change

R = TypeVar("R")


class RecordFile(Generic[R]):
    """The file's side of a store: the store gives the wire format (`decode`, `encode`) and
    `on_load`, which gets every list of records loaded (at `load`, after an `edit`, and when
    another process changed the file) so the store can index it. With `path` None the records
    live in memory only and `edit` changes them there."""

    def __init__(
        self,
        path: Path | None,
        *,
        decode: Callable[[bytes], list[R]],
        encode: Callable[[list[R]], bytes],
        on_load: Callable[[list[R]], None],
        what: str,
        plural: str,
        log: logging.Logger,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._decode = decode
        self._encode = encode
        self._on_load = on_load
        self._what = what  # "key file": names the file in errors and logs
        self._plural = plural  # "keys": what a reader keeps when the file is unreadable
        self._log = log
        self._monotonic = monotonic
        self._records: list[R] = []
        self._file_id: tuple[int, int, int] | None = None
        self._checked_at = monotonic()

    @property
    def records(self) -> list[R]:
        """The records as last loaded."""
        return self._records

    def _identity(self) -> tuple[int, int, int] | None:
        """The file's identity: timestamps are coarse (a jiffy), so inode and size join them."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def _read(self) -> list[R]:
        if self.path is None or not self.path.exists():
            return []
        try:
            return self._decode(self.path.read_bytes())
        except msgspec.DecodeError as exc:
            raise ValidationError(f"{self._what} {self.path} is corrupt: {exc}") from None

    def _loaded(self, records: list[R]) -> None:
        self._records = records
        self._on_load(records)

    def load(self) -> None:
        """Read the file now. Raises ValidationError when it is corrupt."""
        self._file_id = self._identity()
        self._loaded(self._read())

    def refresh(self) -> None:
        """Re-read the file now if another process (the CLI) changed it; a corrupt file is
        logged and the records loaded before are kept."""
        self._checked_at = self._monotonic()
        if self._identity() != self._file_id:
            try:
                self.load()
            except ValidationError:
                self._log.exception(
                    f"{self._what} unreadable; keeping the {self._plural} loaded before"
                )

    def refresh_if_due(self) -> None:
        """`refresh` at most every RELOAD_CHECK_S: cheap enough for the request path."""
        if self._monotonic() - self._checked_at >= RELOAD_CHECK_S:
            self.refresh()

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[R]]:
        """Read-modify-write under an exclusive lock: the caller changes the list it is given,
        which is written (replaced atomically, durably) and loaded when the block ends. An
        exception in the block leaves the file as it was."""
        if self.path is None:
            records = list(self._records)
            yield records
            self._loaded(records)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            records = self._read()
            yield records
            write_atomic(self.path, self._encode(records), durable=True)
            self.load()
        finally:
            os.close(lock_fd)


def write_atomic(path: Path, data: bytes, *, durable: bool) -> None:
    """`data` to `path`, mode 0600 whatever the umask, replaced atomically. `durable`: the file
    and the rename are on disk before this returns (fsync of the file and of its directory)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
