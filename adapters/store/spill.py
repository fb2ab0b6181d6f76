"""The local spill file: where entries go while Redis is down, fsync'd a batch at a time.

Append-only frames of `length, crc32, msgpack(Entry)`. A kill -9 mid-append can leave a torn last
frame; reading stops at the first frame that is short or fails its checksum, and that frame was
never acknowledged (acknowledgement waits for the fsync). So that a torn frame never hides what
is appended after it, the file is cut back to its last whole frame when opened and before
every append, the bytes cut kept beside it (an append that failed half-way, e.g. a full disk,
raises and is cut back too; a file deleted or replaced under the daemon is read again, never
padded).
Replay into Redis happens in order and the file is emptied only once Redis holds every entry."""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from pathlib import Path

import msgspec
from tradingd.adapters.store.records import Entry

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">II")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Entry).decode


class SpillFile:
    def __init__(self, path: Path) -> None:
        """Opens (creating the directory) and cuts what follows the last whole frame; blocking,
        at start-up."""
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries, self._end = self._read()  # `_end`: the byte after the last whole frame
        self.count = len(entries)
        self._cut_tail(self._stat())
        self._file = _identity(self._stat())  # (device, inode): a file replaced is told by it

    def append(self, entries: list[Entry]) -> None:
        """Blocking (write + fsync): call it from a worker thread. Raises OSError (nothing of
        the batch kept) when the file cannot take it whole."""
        frames = bytearray()
        for e in entries:
            body = _encode(e)
            frames += _HEADER.pack(len(body), zlib.crc32(body))
            frames += body
        self._check()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try:
                _write_all(fd, frames)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self._end)  # best effort; the next append cuts it anyway
                raise
            self._file = _identity(os.fstat(fd))
        finally:
            os.close(fd)
        self._end += len(frames)
        self.count += len(entries)

    def read(self) -> list[Entry]:
        """Every whole frame's entry, in order, up to the first frame that is not one."""
        return self._read()[0]

    def _read(self) -> tuple[list[Entry], int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        out: list[Entry] = []
        pos, end = 0, len(data)
        while pos + _HEADER.size <= end:
            length, crc = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if not length or len(body) < length or zlib.crc32(body) != crc:
                break  # a torn tail (never acknowledged), zeros a crash left, or damage
            try:
                out.append(_decode(body))
            except msgspec.MsgspecError:  # DecodeError, ValidationError
                break
            pos += _HEADER.size + length
        return out, pos

    def _check(self) -> None:
        """Before an append: the file must end at its last whole frame. Longer, an append
        failed half-way (or the file was damaged): cut. Shorter or gone, it was deleted or
        replaced under the daemon: what it holds now is read again (what was lost is logged)."""
        st = self._stat()
        if (st.st_size if st else 0) < self._end or _identity(st) != self._file:
            before = self.count
            entries, self._end = self._read()
            self.count = len(entries)
            log.error(
                "spill file deleted, shortened or replaced while the daemon ran: read again",
                extra={"path": str(self.path), "entries_before": before, "entries": self.count},
            )
        self._cut_tail(st)

    def _cut_tail(self, st: os.stat_result | None) -> None:
        """Cut the bytes after the last whole frame, keeping them beside the file
        (`<name>.cut-<ms>`): a torn tail is a few bytes never acknowledged, but frames after a
        damaged one were, and an operator may want them."""
        if st is None or st.st_size <= self._end:
            return
        aside = self.path.with_name(f"{self.path.name}.cut-{time.time_ns() // 1_000_000}")
        n = 0
        while aside.exists():  # two cuts in one ms
            n += 1
            aside = aside.with_name(f"{self.path.name}.cut-{time.time_ns() // 1_000_000}-{n}")
        with self.path.open("rb") as f:
            f.seek(self._end)
            tail = f.read()
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, tail)  # whole, or it raises and the file is not cut
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, self._end)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning(
            "spill file: bytes after the last whole frame cut (a torn append, or damage)",
            extra={"path": str(self.path), "bytes": len(tail), "kept_in": str(aside)},
        )

    def _stat(self) -> os.stat_result | None:
        try:
            return self.path.stat()
        except FileNotFoundError:
            return None

    def clear(self) -> None:
        """Called once Redis holds every spilled entry."""
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
            self._file = _identity(os.fstat(fd))
        finally:
            os.close(fd)
        self.count = 0
        self._end = 0


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:  # os.write may take part of it (a nearly full disk): go on
        view = view[os.write(fd, view) :]


def _identity(st: os.stat_result | None) -> tuple[int, int] | None:
    return None if st is None else (st.st_dev, st.st_ino)
