"""The local spill file: where entries go while Redis is down, fsync'd a batch at a time.

Append-only frames of `length, crc32, msgpack(Entry)`. A kill -9 mid-append can leave a torn last
frame; reading stops at the first frame that is short or fails its checksum, and that frame was
never acknowledged (acknowledgement waits for the fsync). Replay into Redis happens in order and
the file is emptied only once Redis holds every entry."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec
from tradingd.adapters.store.records import Entry

_HEADER = struct.Struct(">II")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Entry).decode


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = len(self.read()) if self.path.exists() else 0

    def append(self, entries: list[Entry]) -> None:
        """Blocking (write + fsync): call it from a worker thread."""
        frames = bytearray()
        for e in entries:
            body = _encode(e)
            frames += _HEADER.pack(len(body), zlib.crc32(body))
            frames += body
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, frames)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += len(entries)

    def read(self) -> list[Entry]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[Entry] = []
        pos, end = 0, len(data)
        while pos + _HEADER.size <= end:
            length, crc = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break  # torn tail of an append that was never acknowledged
            out.append(_decode(body))
            pos += _HEADER.size + length
        return out

    def clear(self) -> None:
        """Called once Redis holds every spilled entry."""
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count = 0
