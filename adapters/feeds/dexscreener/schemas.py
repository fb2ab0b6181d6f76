"""DexScreener wire schemas: msgspec Structs mirroring a `Pair` of `/tokens/v1/{chainId}/{addresses}`
(../shared/contracts/dexscreener.md, "Payloads"). The reference marks every field optional, so
every field here has a default; nullable ones take None; unknown fields are ignored."""

from __future__ import annotations

from msgspec import Struct


class PairToken(Struct, frozen=True, gc=False):
    """`baseToken` / `quoteToken`. EVM addresses come back checksummed (mixed case)."""

    address: str | None = None
    name: str | None = None
    symbol: str | None = None


class TxnCounts(Struct, frozen=True, gc=False):
    """One `txns` window (`m5`, `h1`, `h6`, `h24`)."""

    buys: int | None = None
    sells: int | None = None


class Liquidity(Struct, frozen=True, gc=False):
    """`liquidity`: pool depth, `usd` in USD (absent on some pools), `base`/`quote` in whole
    tokens of each side."""

    usd: float | None = None
    base: float | None = None
    quote: float | None = None


class Website(Struct, frozen=True, gc=False):
    url: str | None = None
    label: str | None = None  # observed, not in the reference


class Social(Struct, frozen=True, gc=False):
    """`info.socials[]`: the reference documents `{platform, handle}`, real responses carry
    `{type, url}`; both decode."""

    platform: str | None = None
    handle: str | None = None
    type: str | None = None
    url: str | None = None


class PairInfo(Struct, frozen=True, gc=False, rename="camel"):
    """`info`: `header`/`open_graph` are observed image URLs, not in the reference."""

    image_url: str | None = None
    header: str | None = None
    open_graph: str | None = None
    websites: list[Website] | None = None
    socials: list[Social] | None = None


class Boosts(Struct, frozen=True, gc=False):
    active: float | None = None


class Pair(Struct, frozen=True, gc=False, rename="camel"):
    """One DEX pool. `price_usd` (`priceUsd`): USD per whole base token as decimal text, or
    null; `price_native` in quote-token units; `volume` USD by window, `price_change` percent
    by window (windows may be missing); `fdv`/`market_cap` USD; `pair_created_at` epoch ms."""

    chain_id: str | None = None
    dex_id: str | None = None
    url: str | None = None
    pair_address: str | None = None
    labels: list[str] | None = None
    base_token: PairToken | None = None
    quote_token: PairToken | None = None
    price_native: str | None = None
    price_usd: str | None = None
    txns: dict[str, TxnCounts] | None = None
    volume: dict[str, float | None] | None = None
    price_change: dict[str, float | None] | None = None
    liquidity: Liquidity | None = None
    fdv: float | None = None
    market_cap: float | None = None
    pair_created_at: int | None = None
    info: PairInfo | None = None
    boosts: Boosts | None = None


class PricedPair(Struct, frozen=True, gc=False, rename="camel"):
    """The fields of a `Pair` a price is built from: what a pair is read as when one of its
    other fields (info, txns, labels...) changed shape, so the price is not lost with it."""

    chain_id: str | None = None
    pair_address: str | None = None
    base_token: PairToken | None = None
    quote_token: PairToken | None = None
    price_usd: str | None = None
    volume: dict[str, float | None] | None = None
    liquidity: Liquidity | None = None
    fdv: float | None = None
    market_cap: float | None = None
    pair_created_at: int | None = None
