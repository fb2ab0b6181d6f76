"""The local spill file: where entries go while Redis is down, fsync'd a batch at a time.

Append-only frames of `length, crc32, msgpack(Entry)`. A kill -9 mid-append can leave a torn last
frame; reading stops at the first frame that is short or fails its checksum, and that frame was
never acknowledged (acknowledgement waits for the fsync). So that a torn frame never hides what
is appended after it, the file is cut back to its last whole frame when opened and before
every append (an append that failed half-way, e.g. a full disk, raises and is cut back too).
Replay into Redis happens in order and the file is emptied only once Redis holds every entry."""

from __future__ import annotations

import logging
import os
import struct
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
        """Opens (creating the directory) and cuts a torn tail; blocking, at start-up."""
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries, self._end = self._read()  # `_end`: the byte after the last whole frame
        self.count = len(entries)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._end:
            log.warning(
                "spill file: a torn tail cut (an append that never completed)",
                extra={"path": str(path), "bytes": size - self._end, "entries": self.count},
            )
            self._cut()

    def append(self, entries: list[Entry]) -> None:
        """Blocking (write + fsync): call it from a worker thread. Raises OSError (nothing of
        the batch kept) when the file cannot take it whole."""
        frames = bytearray()
        for e in entries:
            body = _encode(e)
            frames += _HEADER.pack(len(body), zlib.crc32(body))
            frames += body
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != self._end:  # an earlier append failed half-way
                os.ftruncate(fd, self._end)
            try:
                view = memoryview(frames)
                while view:  # os.write may take part of it (a nearly full disk): go on
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self._end)  # best effort; the next append cuts it anyway
                raise
        finally:
            os.close(fd)
        self._end += len(frames)
        self.count += len(entries)

    def read(self) -> list[Entry]:
        """Every whole frame's entry, in order (a torn tail is left out)."""
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
            if len(body) < length or zlib.crc32(body) != crc:
                break  # torn tail of an append that was never acknowledged
            out.append(_decode(body))
            pos += _HEADER.size + length
        return out, pos

    def _cut(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, self._end)
            os.fsync(fd)
        finally:
            os.close(fd)

    def clear(self) -> None:
        """Called once Redis holds every spilled entry."""
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count = 0
        self._end = 0
