"""Replay feed: the recorded ticks/signals file (JSON lines, docs/replay-format.md).

`read_records` streams a file (`read_files` several, in order) as typed records, rejecting a bad
line or a step back in time with the line number; `to_tick` / `to_signal` turn records into
domain values at a given time; `ReplayFeed` plays a file into a running daemon at a speed factor
(paper mode, demos)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.assets import is_instrument, is_market
from tradingd.engine.errors import ValidationError
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import EntryCondition, Signal, Tick

log = logging.getLogger("tradingd.replay")

EpochMs = Annotated[int, Meta(ge=0, le=2**53)]
NonNegative = Annotated[float, Meta(ge=0)]
DEFAULT_SIGNAL_TTL_MS = 30_000  # API.md: a signal's default `expires_in_ms`
MAX_ENTRY_NAMES = (
    100_000  # resting signals a cancel may name while a file plays (the engine's bound)
)


# omit_defaults: a written record (the recorder) carries only what differs from the defaults.
class _Record(
    Struct,
    frozen=True,
    forbid_unknown_fields=True,
    tag_field="kind",
    kw_only=True,
    omit_defaults=True,
):
    ts: EpochMs  # epoch ms; non-decreasing through the file


class TickRecord(_Record, tag="tick", frozen=True):
    """A price as the daemon received it at `ts`; `tick_ts` is the price's own time when it
    differs (a feed's publish time, a pushed tick's `ts`). Market fields as in `model.Tick`."""

    token: str
    price_usd: Annotated[float, Meta(gt=0)]
    tick_ts: EpochMs | None = None  # default: ts
    decimals: Annotated[int, Meta(ge=0, le=18)] | None = None
    source: str = "replay"
    liquidity_usd: NonNegative | None = None
    confidence: NonNegative | None = None
    conf_usd: NonNegative | None = None
    market_cap_usd: NonNegative | None = None
    fdv_usd: NonNegative | None = None
    volume_24h_usd: NonNegative | None = None
    pair_created_at: EpochMs | None = None


class EntryRecord(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A resting buy's condition, as in the API's `entry`: `limit` (buy at or below
    `price_usd`) or `stop` (at or above it)."""

    type: Literal["limit", "stop"]
    price_usd: Annotated[float, Meta(gt=0, lt=1e300)]  # the API's bound on a price


class SignalRecord(_Record, tag="signal", frozen=True):
    """A signal as received at `ts`. With `entry` the buy rests until its price comes or
    `expires_in_ms` after `ts` (the daemon's `expires_at`)."""

    token: str
    id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    side: Literal["buy", "sell"] = "buy"
    type: Annotated[str, Meta(max_length=64)] = ""
    strength: Annotated[int, Meta(ge=1, le=5)] = 1
    symbol: Annotated[str, Meta(max_length=32)] | None = None
    source: str = "replay"
    reason: str = ""
    # <= 0: the signal was applied at or after its expiry (a recording writes what the daemon
    # saw, e.g. a signal that waited for its first price): every agent skips it `expired`, and
    # a resting buy is refused as the daemon refused it.
    expires_in_ms: Annotated[int, Meta(ge=-(2**53), le=2**53)] = DEFAULT_SIGNAL_TTL_MS
    decimals: Annotated[int, Meta(ge=0, le=18)] | None = None
    entry: EntryRecord | None = None
    # The daemon's id of a recorded signal with an entry: what a `cancel` record names (a
    # recording never reuses one; a client id may be reused once it left the dedupe window).
    ref: Annotated[str, Meta(min_length=1, max_length=128)] | None = None


class ClockRecord(_Record, tag="clock", frozen=True):
    """Time passes without a price: lets max-hold and stale-trade deadlines fire."""


class CancelRecord(_Record, tag="cancel", frozen=True):
    """`DELETE /v1/signals/{id}` at `ts`: what still rests of the signal whose record `ref` is
    `signal` (a recording's), else of the latest signal whose record `id` is `signal` (a
    hand-written file's), is cancelled; nothing if no such signal rests."""

    signal: Annotated[str, Meta(min_length=1, max_length=128)]


class MarketRecord(_Record, tag="market", frozen=True):
    """An exchange market's order-size rules from `ts` on (engine/lots.py InstrumentRules):
    `decimals` (the scale of its atomic units), `step` and `min_amount` (atomic, decimal
    strings), `min_cost` (the least notional, in the market's quote currency, as written). A
    recording writes one before the first tick or signal of a market in each file and again when
    the exchange changed them, so a backtest sizes orders as the exchange did."""

    token: str
    decimals: Annotated[int, Meta(ge=0, le=18)]
    step: Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,18}$")] = "1"
    min_amount: Annotated[str, Meta(pattern=r"^(0|[1-9][0-9]{0,18})$")] = "0"
    min_cost: Annotated[float, Meta(ge=0, lt=1e300)] = 0.0
    cost_step: Annotated[float, Meta(ge=0, lt=1e300)] = 0.0  # a buy's quote amount step

    def rules(self) -> InstrumentRules:
        """The engine's rules this record carries."""
        return InstrumentRules(
            decimals=self.decimals,
            step=int(self.step),
            min_amount=int(self.min_amount),
            min_cost=self.min_cost,
            cost_step=self.cost_step,
        )


def market_record(ts: int, token: str, rules: InstrumentRules) -> MarketRecord:
    """The record of `token`'s rules at `ts`."""
    return MarketRecord(
        ts=ts,
        token=token,
        decimals=rules.decimals,
        step=str(rules.step),
        min_amount=str(rules.min_amount),
        min_cost=rules.min_cost,
        cost_step=rules.cost_step,
    )


Record = TickRecord | SignalRecord | ClockRecord | CancelRecord | MarketRecord


class ReplayFormatError(ValidationError):
    """A replay file line that cannot be used; `line` is 1-based."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}", path=f"line {line}")
        self.line = line


_decoder: msgspec.json.Decoder[Record] = msgspec.json.Decoder(Record)


def parse_line(text: str | bytes, line: int = 1, source: str = "<replay>") -> Record:
    """One JSON line to one record; raises ReplayFormatError naming the line."""
    try:
        record = _decoder.decode(text)
    except msgspec.DecodeError as exc:  # also ValidationError: unknown field, wrong type, ...
        raise ReplayFormatError(source, line, str(exc)) from None
    # Any well-formed instrument id: a replay runs without exchanges, so a market id is not
    # checked against loaded markets (a daemon playing the file checks nothing more either).
    if isinstance(record, MarketRecord) and not is_market(record.token):
        raise ReplayFormatError(
            source,
            line,
            f"a market record's token is <exchange>:<BASE>/<QUOTE>: {record.token[:60]!r}",
        )
    if isinstance(record, (TickRecord, SignalRecord)) and not is_instrument(record.token):
        raise ReplayFormatError(
            source,
            line,
            "token is not a base58 32-byte mint nor an exchange market "
            f"<exchange>:<BASE>/<QUOTE>: {record.token[:60]!r}",
        )
    return record


def _unterminated(text: str | bytes) -> bool:
    return not (text.endswith(b"\n") if isinstance(text, bytes) else text.endswith("\n"))


def iter_records(
    lines: Iterable[str | bytes],
    source: str = "<replay>",
    *,
    after_ts: int = -1,
    tolerate_cut_tail: bool = False,
) -> Iterator[Record]:
    """Records from JSON lines, streaming. Blank lines are skipped; `ts` must not decrease (nor
    go below `after_ts`). With `tolerate_cut_tail` (lines read from a file, each ending in a
    newline but the last), a last line without its newline that does not decode is what a
    recorder that stopped mid-write leaves: it is skipped with a warning, not an error."""
    last_ts = after_ts
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = parse_line(text, number, source)
        except ReplayFormatError:
            if tolerate_cut_tail and _unterminated(text):
                log.warning(
                    "%s:%d: the last line is cut short (a recording stopped mid-write): ignored",
                    source,
                    number,
                )
                return
            raise
        if record.ts < last_ts:
            raise ReplayFormatError(
                source, number, f"ts {record.ts} is before the previous record's ts {last_ts}"
            )
        last_ts = record.ts
        yield record


def read_records(path: str | Path, *, after_ts: int = -1) -> Iterator[Record]:
    """Stream the records of a replay file. Raises ReplayFormatError (with the line number) or
    ValidationError (file missing/unreadable) lazily, as the bad line is reached. A last line
    cut short (no newline, not decodable: a recording that stopped mid-write) is skipped with a
    warning."""
    try:
        with open(path, "rb") as f:
            yield from iter_records(f, str(path), after_ts=after_ts, tolerate_cut_tail=True)
    except OSError as exc:
        raise ValidationError(f"cannot read replay file {path}: {exc.strerror or exc}") from None


def read_files(paths: Sequence[str | Path]) -> Iterator[Record]:
    """The records of several replay files as one stream, in the order given (a recorder's
    rotated files sort by name in time order): `ts` must not go back across files either."""
    last_ts = -1
    for path in paths:
        for record in read_records(path, after_ts=last_ts):
            last_ts = record.ts
            yield record


def to_tick(record: TickRecord, ts: int) -> Tick:
    """The record as a tick applied at `ts` (epoch ms): the tick's own time is `tick_ts` moved
    by the same offset as the record's `ts` (none in a backtest, where `ts` is the record's)."""
    tick_ts = ts if record.tick_ts is None else max(0, record.tick_ts + ts - record.ts)
    return Tick(
        record.token,
        record.price_usd,
        tick_ts,
        record.source,
        decimals=record.decimals,
        liquidity_usd=record.liquidity_usd,
        confidence=record.confidence,
        conf_usd=record.conf_usd,
        market_cap_usd=record.market_cap_usd,
        fdv_usd=record.fdv_usd,
        volume_24h_usd=record.volume_24h_usd,
        pair_created_at=record.pair_created_at,
    )


def to_signal(record: SignalRecord, ts: int, signal_id: str) -> Signal:
    """The record as a signal received at `ts`, named `signal_id` (the replay names its
    signals, as the daemon does). A record `id` is the client id, as in the API: the same id
    twice in a file trades once."""
    return Signal(
        id=signal_id,
        client_id=record.id,
        token=record.token,
        side=record.side,
        symbol=record.symbol,
        type=record.type,
        strength=record.strength,
        source=record.source,
        reason=record.reason,
        # A recorded signal applied at or past its expiry (it waited, e.g. for its first price)
        # was received before it: so the engine skips it `expired` here as it did there.
        received_at=min(ts, ts + record.expires_in_ms - 1),
        expires_at=ts + record.expires_in_ms,
        decimals=record.decimals,
        entry=None
        if record.entry is None
        else EntryCondition(type=record.entry.type, price_usd=record.entry.price_usd),
    )


class EntryNames:
    """What a `cancel` record may name, for the signals with an entry seen so far: a record's
    `ref` (a recording's: unique), else its `id` (the latest signal given that id). Holds at
    most `MAX_ENTRY_NAMES` of each, the oldest leaving first."""

    def __init__(self, resting: Callable[[str], bool] | None = None) -> None:
        """`resting(signal_id)`: whether the signal still has a buy resting (the engine's
        `entries_by_signal`); past the bound, the names of signals with none leave first."""
        self.refs: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self._resting = resting

    def add(self, record: SignalRecord, signal_id: str) -> None:
        """`record` (with an entry) was applied as signal `signal_id`."""
        for table, name in ((self.refs, record.ref), (self.ids, record.id)):
            if name is not None:
                table.pop(name, None)
                table[name] = signal_id
                if len(table) > MAX_ENTRY_NAMES:
                    self._trim(table)

    def _trim(self, table: dict[str, str]) -> None:
        if self._resting is not None:
            kept = {n: s for n, s in table.items() if self._resting(s)}
            table.clear()
            table.update(kept)
        while len(table) > MAX_ENTRY_NAMES:
            del table[next(iter(table))]

    def get(self, name: str) -> str | None:
        """The signal id a cancel of `name` means, or None."""
        return self.refs.get(name) or self.ids.get(name)


class ReplayFeed:
    """Plays a replay file into a live runtime: recorded gaps are slept (divided by `speed`) and
    every timestamp is rebased onto the wall clock, so the daemon's staleness and expiry checks
    see fresh data. `speed=math.inf` plays without sleeping. Ticks of one timestamp go out as
    one batch, like a feed's push."""

    source = "replay"

    def __init__(
        self, path: str | Path, speed: float = 1.0, clock: Callable[[], int] = wall_clock_ms
    ) -> None:
        if not speed > 0:
            raise ValidationError("replay speed must be > 0", "$.speed")
        self.path = Path(path)
        self.speed = speed
        self.clock = clock
        self.last_tick_ms: int | None = None
        self.records_played = 0

    def _rebase(self, ts: int, first_ts: int, started: int) -> int:
        if math.isinf(self.speed):
            return self.clock()
        return started + int((ts - first_ts) / self.speed)

    async def run(
        self,
        push_ticks: Callable[[list[Tick]], object],
        submit_signal: Callable[[Signal], object] | None = None,
        on_clock: Callable[[], Any] | None = None,
        cancel_signal: Callable[[str], object] | None = None,
    ) -> None:
        """Play the file: ticks to `push_ticks` (batched per timestamp), signals to
        `submit_signal` (None: played as a price feed, ticks only), clock records to `on_clock`,
        cancels to `cancel_signal` with the signal's daemon id (signals named by their record
        `id` in this play). Market records are skipped: a daemon's exchanges give the rules."""
        names = EntryNames()  # a cancel's name -> the daemon's signal id
        first_ts: int | None = None
        started = self.clock()
        batch: list[Tick] = []
        batch_ts = -1  # recorded ts of the ticks in `batch`
        for n, record in enumerate(read_records(self.path), start=1):
            if first_ts is None:
                first_ts = record.ts
            if batch and (record.ts != batch_ts or not isinstance(record, TickRecord)):
                self._flush(batch, push_ticks)
                batch = []
            due = self._rebase(record.ts, first_ts, started)
            wait_ms = due - self.clock()
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000)
            elif n % 1000 == 0:
                await asyncio.sleep(0)  # a file without gaps must not starve the loop
            now = self.clock() if math.isinf(self.speed) else max(due, self.clock())
            if isinstance(record, TickRecord):
                batch.append(to_tick(record, now))
                batch_ts = record.ts
            elif isinstance(record, SignalRecord):
                if submit_signal is not None:  # played as a price feed: ticks only
                    signal_id = f"replay-{started:x}-{n}"
                    submit_signal(to_signal(record, now, signal_id))
                    if record.entry is not None:
                        names.add(record, signal_id)
            elif isinstance(record, CancelRecord):
                known = names.get(record.signal)
                if cancel_signal is not None and known is not None:
                    cancel_signal(known)
            elif isinstance(record, ClockRecord) and on_clock is not None:
                on_clock()
            # A market record: a daemon sizes orders by its own exchanges' loaded rules.
            self.records_played = n
        if batch:
            self._flush(batch, push_ticks)

    def _flush(self, batch: list[Tick], push_ticks: Callable[[list[Tick]], Any]) -> None:
        push_ticks(batch)
        self.last_tick_ms = batch[-1].ts
