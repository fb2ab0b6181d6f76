"""The files of a recording: domain ticks and signals as replay records (docs/replay-format.md),
appended as whole lines to files named by time and rotated by size and by UTC day. Used by the
recorder's writer thread only (adapters/feeds/recorder.py)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec
from tradingd.adapters.feeds.replay import (
    CancelRecord,
    ClockRecord,
    EntryRecord,
    MarketRecord,
    Record,
    ReplayFormatError,
    SignalRecord,
    TickRecord,
    market_record,
    parse_line,
)
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine.assets import is_instrument
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Signal, Tick

MAX_MS = 2**53  # the replay format's bound on a timestamp
_TOKEN_CACHE = 100_000  # instrument ids known valid (a mint's check decodes base58: cached)


class Cancel(msgspec.Struct, frozen=True):
    """A cancel of the resting buys of the signal recorded under `name` (its record `id`)."""

    name: str


# What the intake observers enqueue: (record ts, payload): a batch of ticks, a signal, a cancel,
# or None for a clock turn. Records are built and encoded in the writer thread, not on the loop.
Entry = tuple[int, list[Tick] | Signal | Cancel | None]


def file_name(stem: str, suffix: str, ms: int, n: int = 0) -> str:
    """`<stem>-YYYY-MM-DDTHHMMSSZ<suffix>` for a file started at `ms` (epoch ms, UTC); the `n`th
    file of the same second adds `_NNNNNN`, which sorts after it (`.` < `_`)."""
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(ms // 1000))
    return f"{stem}-{stamp}{f'_{n:06d}' if n else ''}{suffix}"


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and x >= 0 and math.isfinite(x) else None


class RecordFiles:
    """The files of one recording, used by the writer thread only: appends encoded lines to the
    current file, and starts a new one when a line would take it past `max_bytes`, or (with
    `rotate_daily`) when a record's UTC day differs from the file's. `base` gives the directory
    and the names: `dir/ticks.jsonl` -> `dir/ticks-2026-11-30T201500Z.jsonl`, ..."""

    def __init__(
        self,
        base: Path,
        max_bytes: int,
        rotate_daily: bool,
        rules_of: Callable[[str], InstrumentRules | None] | None = None,
    ) -> None:
        self.dir = base.parent
        self.stem = base.stem or "record"
        self.suffix = base.suffix or ".jsonl"
        self.max_bytes = max_bytes
        self.rotate_daily = rotate_daily
        self.path: Path | None = None
        self.bytes = 0  # of the current file
        self.files = 0
        self.unrecordable = 0  # ticks or signals no replay could read (not an instrument id, ...)
        self._file: BinaryIO | None = None
        self._day = -1
        self._encoder = msgspec.json.Encoder()
        self._tokens: set[str] = set()
        # An exchange market's rules (engine.instruments.get, read from this thread: a dict
        # lookup of an immutable value) and the rules already written to the current file.
        self._rules_of = rules_of
        self._rules_written: dict[str, InstrumentRules] = {}

    def prepare(self) -> None:
        """Create the directory (0700). Raises OSError."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(self, entries: list[Entry]) -> tuple[int, int]:
        """Encode and append `entries`, whole lines only; returns (records, bytes) written.
        Raises OSError (the current file is then closed: the next write starts a new one, so a
        line cut by the error can only be the last line of a file)."""
        buf = bytearray()
        records = total = 0
        try:
            for record in self._records(entries):
                start = len(buf)
                self._encoder.encode_into(record, buf, -1)
                buf += b"\n"
                size = len(buf) - start
                if self._file is None or self._rotate_due(record.ts, size):
                    self._flush(buf[:start])
                    del buf[:start]
                    self._open(record.ts)
                    if isinstance(record, MarketRecord):  # it opens the file: it is in it
                        self._rules_written[record.token] = record.rules()
                self.bytes += size
                total += size
                records += 1
            self._flush(buf)
        except OSError:
            self._close_after_error()
            raise
        return records, total

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _rotate_due(self, ms: int, size: int) -> bool:
        if self.rotate_daily and ms // 86_400_000 != self._day:
            return True
        return self.bytes > 0 and self.bytes + size > self.max_bytes

    def _flush(self, data: bytes | bytearray) -> None:
        if data and self._file is not None:
            self._file.write(data)
            self._file.flush()

    def _open(self, ms: int) -> None:
        self.close()
        self.prepare()  # again: an operator may have moved the directory away
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        for n in range(1_000_000):
            path = self.dir / file_name(self.stem, self.suffix, ms, n)
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:  # a restart or a rotation within the same second
                continue
            break
        else:  # pragma: no cover - a million files of one second
            raise FileExistsError(f"no free file name for {self.stem} at {iso_ms(ms)}")
        self._file = os.fdopen(fd, "ab")
        # A file must stand alone: the markets' rules are written again before their next use
        # (the line that opened this file may be a market's tick: its rules precede its next one).
        self._rules_written.clear()
        self.path, self.bytes, self._day = path, 0, ms // 86_400_000
        self.files += 1

    def _close_after_error(self) -> None:
        path, empty = self.path, self.bytes == 0
        with contextlib.suppress(OSError):
            self.close()
        self._file = None
        if empty and path is not None:  # a failing disk must not leave a trail of empty files
            with contextlib.suppress(OSError):
                path.unlink()

    # -- domain -> records ------------------------------------------------------------------

    def _records(self, entries: list[Entry]) -> Iterator[Record]:
        for ms, payload in entries:
            if payload is None:
                yield ClockRecord(ts=ms)
            elif isinstance(payload, Cancel):
                yield CancelRecord(ts=ms, signal=payload.name)
            elif isinstance(payload, list):
                for tick in payload:
                    record = self._tick_record(ms, tick)
                    if record is None:
                        self.unrecordable += 1
                    else:
                        yield from self._market_rules(ms, record.token)
                        yield record
            else:
                signal_record = self._signal_record(ms, payload)
                if signal_record is None:
                    self.unrecordable += 1
                else:
                    yield from self._market_rules(ms, signal_record.token)
                    yield signal_record

    def _market_rules(self, ms: int, token: str) -> Iterator[MarketRecord]:
        """A market record of `token` when its rules are not yet in the current file as they
        are now (a replay then sizes its orders as the exchange did)."""
        if self._rules_of is None:
            return
        rules = self._rules_of(token)
        if rules is None or self._rules_written.get(token) == rules:
            return
        if len(self._rules_written) >= _TOKEN_CACHE:
            self._rules_written.clear()
        self._rules_written[token] = rules
        yield market_record(ms, token, rules)

    def _instrument(self, token: str) -> bool:
        """Whether a replay can read `token`: a mint or an exchange market id."""
        if token in self._tokens:
            return True
        if not is_instrument(token):
            return False
        if len(self._tokens) >= _TOKEN_CACHE:
            self._tokens.clear()
        self._tokens.add(token)
        return True

    def _tick_record(self, ms: int, t: Tick) -> TickRecord | None:
        """The tick as received at `ms`; None for one no replay could read (the engine refuses
        such ticks too, or they come from a source the replay format cannot name)."""
        if not (
            t.price_usd > 0
            and math.isfinite(t.price_usd)
            and 0 <= t.ts <= MAX_MS
            and (t.decimals is None or 0 <= t.decimals <= 18)
            and self._instrument(t.token)
        ):
            return None
        created = t.pair_created_at
        return TickRecord(
            ts=ms,
            token=t.token,
            price_usd=t.price_usd,
            tick_ts=None if t.ts == ms else t.ts,
            decimals=t.decimals,
            source=t.source,
            liquidity_usd=_finite_or_none(t.liquidity_usd),
            confidence=_finite_or_none(t.confidence),
            conf_usd=_finite_or_none(t.conf_usd),
            market_cap_usd=_finite_or_none(t.market_cap_usd),
            fdv_usd=_finite_or_none(t.fdv_usd),
            volume_24h_usd=_finite_or_none(t.volume_24h_usd),
            pair_created_at=created if created is not None and 0 <= created <= MAX_MS else None,
        )

    def _signal_record(self, ms: int, s: Signal) -> SignalRecord | None:
        """The signal as applied at `ms`: its expiry kept (`expires_in_ms` from `ms`, <= 0 for one
        applied at or past its expiry, so the replay skips or refuses it as the daemon did), its client
        id as the record `id`, and a resting buy's daemon signal id as its `ref` (what a cancel
        names). Checked by decoding it back (signals are rare):
        None if a replay would refuse the line."""
        if s.entry is not None and s.expires_at <= s.received_at:
            return None  # refused by the engine (422): nothing a replay must refuse again
        record = SignalRecord(
            ts=ms,
            token=s.token,
            id=s.client_id,
            ref=s.id if s.entry is not None else None,
            side=s.side,
            type=s.type,
            strength=s.strength,
            symbol=s.symbol,
            source=s.source,
            reason=s.reason,
            expires_in_ms=s.expires_at - ms,  # <= 0: applied past its expiry, as it was
            decimals=s.decimals,
            entry=None
            if s.entry is None
            else EntryRecord(type=s.entry.type, price_usd=s.entry.price_usd),
        )
        try:
            parse_line(self._encoder.encode(record))
        except ReplayFormatError:
            return None
        return record
