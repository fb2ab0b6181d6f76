"""Pyth Hermes wire schemas: msgspec Structs mirroring the JSON of `/v2/updates/price/latest` and
of each `/v2/updates/price/stream` event (../shared/contracts/pyth-hermes.md; upstream
pyth-crosschain `apps/hermes/server/src/api/types.rs`)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Raw, Struct

# i64 / u64 as decimal text on the wire ("6163088000000"): parsed exactly, never as a float.
# Checked in parsing, not by a schema pattern: the regex cost 5x the whole decode (measured,
# benchmarks/feed_ingest.py).
DecimalInt = Annotated[str, Meta(max_length=24)]
# int32 on the wire; real feeds use about -12..0. Bounded so a hostile value cannot make
# 10**expo a huge integer.
Expo = Annotated[int, Meta(ge=-64, le=64)]
UnixSeconds = Annotated[int, Meta(ge=0, le=2**53 // 1000)]


class Price(Struct, frozen=True, gc=False):
    """`price` / `ema_price`: USD = price × 10^expo, ± conf × 10^expo, at `publish_time`."""

    price: DecimalInt
    conf: DecimalInt
    expo: Expo
    publish_time: UnixSeconds


class PriceFeedMetadata(Struct, frozen=True, gc=False):
    """`metadata`: each field may be null on the open-source server (Rust `Option`)."""

    slot: int | None = None
    proof_available_time: int | None = None
    prev_publish_time: int | None = None


class ParsedPriceUpdate(Struct, frozen=True, gc=False):
    """One `parsed[]` entry. `id`: 64 lowercase hex, no `0x` (Hermes' own form)."""

    id: str
    price: Price
    ema_price: Price | None = None
    metadata: PriceFeedMetadata | None = None


class BinaryUpdate(Struct, frozen=True, gc=False):
    """`binary`: Wormhole-signed update data for on-chain verification (hex or base64)."""

    encoding: str
    data: list[str]


class PriceUpdate(Struct, frozen=True, gc=False):
    """A `PriceUpdate` as a price consumer reads it: the `parsed` entries (absent with
    `parsed=false`). `binary` is left out on purpose: tradingd verifies no on-chain proof, and
    skipping it saves copying about 600 hex characters per feed on every event."""

    parsed: list[ParsedPriceUpdate] | None = None


class LoosePriceUpdate(Struct, frozen=True, gc=False):
    """The same envelope with each entry kept raw, to salvage the good entries of an event in
    which one entry does not match `ParsedPriceUpdate`."""

    parsed: list[Raw] | None = None
