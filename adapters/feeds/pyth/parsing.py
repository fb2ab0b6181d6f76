"""Hermes wire -> Tick: the only place that knows both `PriceUpdate` and the engine's Tick.

USD = price × 10^expo, computed exactly: for expo < 0 `int(price) / 10**-expo` is Python's
correctly rounded integer division, the same float as `float(Decimal(price) * 10**expo)` at a
tenth of the cost (the tests check both agree)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import msgspec
from tradingd.adapters.feeds import MAX_FEED_PRICE_USD, MIN_FEED_PRICE_USD
from tradingd.engine.model import Tick

from .schemas import LoosePriceUpdate, ParsedPriceUpdate, PriceUpdate

SOURCE = "pyth"
_POW10 = tuple(10**k for k in range(65))
_FLOAT_POW10 = tuple(float(10**k) for k in range(23))  # exact as floats up to 1e22
_decode_update = msgspec.json.Decoder(PriceUpdate).decode
_decode_loose = msgspec.json.Decoder(LoosePriceUpdate).decode
_decode_entry = msgspec.json.Decoder(ParsedPriceUpdate).decode


def normalize_id(feed_id: str) -> str:
    """A feed id in Hermes' own form: lowercase hex without `0x` (the wire accepts either)."""
    feed_id = feed_id.strip().lower()
    return feed_id[2:] if feed_id.startswith("0x") else feed_id


def is_feed_id(feed_id: str) -> bool:
    """True for 64 hex characters (after normalize_id)."""
    return len(feed_id) == 64 and all(c in "0123456789abcdef" for c in feed_id)


def mantissa(text: str) -> int:
    """A decimal integer as Hermes writes it: ASCII digits, an optional leading `-`. Stricter
    than int() (no `+`, `_`, spaces or non-ASCII digits). Raises ValueError."""
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"not a decimal integer: {text[:30]!r}")
    return int(text)


def scaled(text: str, expo: int) -> float:
    """`text × 10^expo` (text: a decimal integer) as the nearest float. Raises ValueError for
    text that is not a decimal integer, OverflowError past the float range."""
    m = mantissa(text)
    if expo < 0:
        return m / _POW10[-expo]
    return float(m * _POW10[expo])


EXPO_CONFIRMATIONS = 3  # updates in a row with a feed's new exponent before it prices


class ParsedEvent(NamedTuple):
    ticks: list[Tick]
    malformed: int  # entries (or a whole event) dropped: bad JSON, schema, non-positive price
    unknown: int  # entries for a feed id that is not ours


class PriceParser:
    """Turns one `PriceUpdate` document (an SSE event's data, or a /latest body) into ticks for
    our mints: token = the mint, price_usd / conf_usd in USD per whole token, ts = publish_time
    in epoch ms, source "pyth". Never raises: what cannot be used is counted and dropped."""

    def __init__(self, mints_by_id: Mapping[str, tuple[str, ...]]) -> None:
        self.mints_by_id = mints_by_id  # normalised feed id -> the mints it prices
        # A feed's exponent is fixed in practice: an update with another one (a price 1000x
        # off that is still plausible) is dropped until EXPO_CONFIRMATIONS updates in a row
        # agree on the new exponent.
        self.expo_of: dict[str, int] = {}
        self._new_expo: dict[str, tuple[int, int]] = {}  # feed id -> (exponent, times seen)

    def expo_ok(self, feed_id: str, expo: int) -> bool:
        """Whether an update of `feed_id` with `expo` may price: the first one sets the feed's
        exponent; a different one must repeat EXPO_CONFIRMATIONS times in a row."""
        known = self.expo_of.get(feed_id)
        if known is None or known == expo:
            self.expo_of[feed_id] = expo
            self._new_expo.pop(feed_id, None)
            return True
        seen = self._new_expo.get(feed_id)
        count = seen[1] + 1 if seen is not None and seen[0] == expo else 1
        if count >= EXPO_CONFIRMATIONS:
            self.expo_of[feed_id] = expo
            del self._new_expo[feed_id]
            return True
        self._new_expo[feed_id] = (expo, count)
        return False

    def parse(self, data: bytes) -> ParsedEvent:
        try:
            entries = _decode_update(data).parsed
        except msgspec.DecodeError:
            return self._parse_loose(data)
        ticks: list[Tick] = []
        if not entries:
            return ParsedEvent(ticks, 0, 0)
        append, mints_of, pow10 = ticks.append, self.mints_by_id.get, _FLOAT_POW10
        new_expo = self._new_expo
        slow: list[ParsedPriceUpdate] = []
        for entry in entries:
            # Fast path (every entry Hermes sends): known id, positive price and conf of at
            # most 15 digits (< 2**53, so exact as floats) and 0 > expo >= -22 (10**-expo
            # exact too): one IEEE division of exact values is the correctly rounded quotient,
            # the same float as the Decimal formula.
            mints = mints_of(entry.id)
            p = entry.price
            text, conf_text, expo = p.price, p.conf, p.expo
            if (
                mints is None
                or not -23 < expo < 0
                or len(text) > 15
                or len(conf_text) > 15
                or not (text.isdigit() and text.isascii())
                or not (conf_text.isdigit() and conf_text.isascii())
            ):
                slow.append(entry)
                continue
            if self.expo_of.get(entry.id) != expo:  # first sight or a new exponent: slow path
                slow.append(entry)
                continue
            if new_expo and entry.id in new_expo:  # the known exponent again: not "in a row"
                del new_expo[entry.id]
            scale = pow10[-expo]
            price = float(text) / scale
            if not MIN_FEED_PRICE_USD <= price <= MAX_FEED_PRICE_USD:
                slow.append(entry)
                continue
            conf = float(conf_text) / scale
            ts = p.publish_time * 1000
            for mint in mints:
                # positional (token, price_usd, ts, source, decimals, liquidity_usd,
                # confidence, conf_usd): keywords cost a third more here
                append(Tick(mint, price, ts, SOURCE, None, None, None, conf))
        malformed = unknown = 0
        for entry in slow:
            n = self._add(entry, ticks)
            if n < 0:
                malformed += 1
            elif n == 0:
                unknown += 1
        return ParsedEvent(ticks, malformed, unknown)

    def _parse_loose(self, data: bytes) -> ParsedEvent:
        # One bad entry (a price sent as a number, an expo out of range) must not cost the
        # other feeds of the event their tick: decode entry by entry.
        try:
            raws = _decode_loose(data).parsed
        except msgspec.DecodeError:
            return ParsedEvent([], 1, 0)
        ticks: list[Tick] = []
        malformed = unknown = 0
        for raw in raws or ():
            try:
                entry = _decode_entry(raw)
            except msgspec.DecodeError:
                malformed += 1
                continue
            n = self._add(entry, ticks)
            if n < 0:
                malformed += 1
            elif n == 0:
                unknown += 1
        return ParsedEvent(ticks, malformed, unknown)

    def _add(self, entry: ParsedPriceUpdate, ticks: list[Tick]) -> int:
        """Appends the entry's ticks; returns how many, 0 for an unknown id, -1 if unusable."""
        mints = self.mints_by_id.get(entry.id)
        if mints is None:
            mints = self.mints_by_id.get(normalize_id(entry.id))
            if mints is None:
                return 0
        p = entry.price
        try:
            price = scaled(p.price, p.expo)
            conf = scaled(p.conf, p.expo)
        except (ValueError, OverflowError):
            return -1
        if not MIN_FEED_PRICE_USD <= price <= MAX_FEED_PRICE_USD or not conf >= 0:
            return -1
        feed_id = entry.id if entry.id in self.mints_by_id else normalize_id(entry.id)
        if self.expo_of.get(feed_id) != p.expo and not self.expo_ok(feed_id, p.expo):
            return -1  # a changed exponent, not yet confirmed
        ts = p.publish_time * 1000
        for mint in mints:
            # positional (token, price_usd, ts, source, decimals, liquidity_usd, confidence,
            # conf_usd): a keyword call costs a third more on the hot path
            ticks.append(Tick(mint, price, ts, SOURCE, None, None, None, conf))
        return len(mints)
