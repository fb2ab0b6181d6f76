"""DexScreener wire -> Tick: decodes a `/tokens/v1` body, picks each watched token's best pair
and builds its Tick. The only place that knows both `Pair` and the engine's Tick."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

import msgspec
from tradingd.adapters.feeds import MAX_FEED_PRICE_USD, MIN_FEED_PRICE_USD
from tradingd.engine.assets import QUOTE_SYMBOLS
from tradingd.engine.model import Tick

from .schemas import Pair, PricedPair

SOURCE = "dexscreener"
MAX_PRICE_TEXT = 64  # priceUsd is short decimal text; longer is not a price
# Decimal text as DexScreener writes it ("0.0002035", "0.0000000001575"); an exponent is
# accepted should it ever come. Decimal() alone would also take "NaN", "1_000" and spaces.
_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")
_decode_pairs = msgspec.json.Decoder(list[Pair]).decode
_decode_raw = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_pair = msgspec.json.Decoder(Pair).decode
_decode_priced = msgspec.json.Decoder(PricedPair).decode

AnyPair = Pair | PricedPair


class MalformedBody(ValueError):
    """The body is not a JSON array (HTML, truncated JSON, another shape)."""


class DecodedPairs(NamedTuple):
    pairs: list[AnyPair]
    malformed: int  # array items that are not a readable pair (dropped)


class Priced(NamedTuple):
    ticks: list[Tick]
    no_pair: list[str]  # asked tokens with no usable pair in the response


def decode_pairs(body: bytes) -> DecodedPairs:
    """The pairs of a `/tokens/v1` body. An item that does not match `Pair` is read for its
    price fields alone (`PricedPair`) and dropped (counted) only if that fails too. Raises
    MalformedBody when the body is not a JSON array."""
    try:
        return DecodedPairs(list(_decode_pairs(body)), 0)
    except msgspec.DecodeError:
        pass
    try:
        raws = _decode_raw(body)
    except msgspec.DecodeError as exc:
        raise MalformedBody(str(exc)[:200]) from None
    pairs: list[AnyPair] = []
    malformed = 0
    for raw in raws:
        try:
            pairs.append(_decode_pair(raw))
        except msgspec.DecodeError:
            try:
                pairs.append(_decode_priced(raw))
            except msgspec.DecodeError:
                malformed += 1
    return DecodedPairs(pairs, malformed)


def price_usd(text: str | None) -> float | None:
    """`priceUsd` decimal text -> float USD per whole token, parsed with Decimal; None unless it
    is plain decimal text whose value is finite and > 0 as a float."""
    if text is None or len(text) > MAX_PRICE_TEXT or not _DECIMAL_TEXT.fullmatch(text):
        return None
    try:
        value = float(Decimal(text))
    except (InvalidOperation, OverflowError):
        return None
    return value if MIN_FEED_PRICE_USD <= value <= MAX_FEED_PRICE_USD else None


def same_address(wire: str | None, token: str) -> bool:
    """Whether a wire address names `token`: exactly (base58 is case-sensitive), or
    case-insensitively for 0x (EVM) addresses, which come back checksummed."""
    if wire is None:
        return False
    if wire == token:
        return True
    return token[:2] in ("0x", "0X") and wire.lower() == token.lower()


def _usd(value: float | None) -> float | None:
    # a market figure we pass on: a finite, non-negative number, else unknown
    return value if value is not None and 0 <= value < math.inf else None


def _rank(pair: AnyPair) -> tuple[float, str]:
    # highest liquidity first, missing liquidity last; equal ones by pair address so the same
    # response always picks the same pool
    liq = _usd(pair.liquidity.usd) if pair.liquidity is not None else None
    return (-liq if liq is not None else math.inf, pair.pair_address or "")


def quote_addresses(chain: str, quotes: Iterable[str]) -> frozenset[str]:
    """The quote tokens `[feeds.dexscreener] quote_symbols` names, as addresses: on Solana the
    symbols SOL, USDC and USDT are their mints; anything else is taken as an address. A pool is
    matched by its quote token's address, never its symbol (anyone can name a token "SOL")."""
    known = QUOTE_SYMBOLS if chain == "solana" else {}
    return frozenset(known.get(q.upper(), q) for q in quotes)


def best_pair(
    pairs: Iterable[AnyPair], token: str, chain: str, quote_symbols: Collection[str] = ()
) -> tuple[AnyPair, float] | None:
    """The pool that prices `token` and its USD price: among pairs on `chain` whose base token
    is `token` (pools where it is the quote side are not its price), with a usable `priceUsd`
    and, when `quote_symbols` (quote token addresses, see `quote_addresses`) is not empty, a
    quote token among them, the one with the highest `liquidity.usd`. None when no pair
    qualifies."""
    best: tuple[tuple[float, str], AnyPair, float] | None = None
    for pair in pairs:
        if pair.chain_id != chain:
            continue
        base = pair.base_token
        if base is None or not same_address(base.address, token):
            continue
        if quote_symbols:
            quote = pair.quote_token
            address = quote.address if quote is not None else None
            if address is None or not any(same_address(address, q) for q in quote_symbols):
                continue
        price = price_usd(pair.price_usd)
        if price is None:
            continue
        rank = _rank(pair)
        if best is None or rank < best[0]:
            best = (rank, pair, price)
    return None if best is None else (best[1], best[2])


def tick_of(token: str, pair: AnyPair, price: float, ts: int) -> Tick:
    """The Tick of `token` from its chosen pair: `price` USD per whole token at `ts` (epoch ms:
    when the response arrived; DexScreener gives no price time), with the pool's liquidity,
    market cap, FDV and 24 h volume in USD and its creation time (epoch ms) when known."""
    volume = pair.volume.get("h24") if pair.volume is not None else None
    created = pair.pair_created_at
    return Tick(
        token,
        price,
        ts,
        SOURCE,
        liquidity_usd=_usd(pair.liquidity.usd) if pair.liquidity is not None else None,
        market_cap_usd=_usd(pair.market_cap),
        fdv_usd=_usd(pair.fdv),
        volume_24h_usd=_usd(volume),
        pair_created_at=created if created is not None and created > 0 else None,
    )


def price_tokens(
    pairs: list[AnyPair],
    tokens: Iterable[str],
    chain: str,
    ts: int,
    quote_symbols: Collection[str] = (),
) -> Priced:
    """One Tick per token of `tokens` that has a usable pair among `pairs` (see best_pair), in
    the order of `tokens`; the others are listed in `no_pair`."""
    ticks: list[Tick] = []
    missing: list[str] = []
    for token in tokens:
        found = best_pair(pairs, token, chain, quote_symbols)
        if found is None:
            missing.append(token)
        else:
            ticks.append(tick_of(token, found[0], found[1], ts))
    return Priced(ticks, missing)
