"""Asset identities: instruments (a Solana mint, or an exchange market `<exchange>:<BASE>/<QUOTE>`),
the well-known quote assets and their decimals."""

from __future__ import annotations

import re
from typing import Final

from solders.pubkey import Pubkey

from .errors import ValidationError

SOL_MINT: Final = "So11111111111111111111111111111111111111112"
USDC_MINT: Final = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_MINT: Final = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"

# Quote symbols an agent may name instead of a mint. USD stablecoins are pegged at 1 unless a
# feed publishes a price for their mint (a de-peg must show in valuations, so the feed wins).
QUOTE_SYMBOLS: Final = {"SOL": SOL_MINT, "USDC": USDC_MINT, "USDT": USDT_MINT}
KNOWN_DECIMALS: Final = {SOL_MINT: 9, USDC_MINT: 6, USDT_MINT: 6}
PEGGED_USD: Final = frozenset({USDC_MINT, USDT_MINT})
# The venue that moves no real money: its agents need no wallet (every other venue trades from
# one, and only while it is unlocked).
PAPER_VENUE: Final = "paper"


def is_mint(text: str) -> bool:
    """True when `text` is a base58 32-byte public key (a Solana mint address)."""
    if not 32 <= len(text) <= 44:
        return False
    try:
        Pubkey.from_string(text)  # base58 (Bitcoin alphabet) decoding to exactly 32 bytes
    except ValueError:
        return False
    return True


# An exchange market: the CCXT exchange id (lower case, as `ccxt.exchanges` names it), then
# CCXT's unified spot symbol BASE/QUOTE (upper-case currency codes; digits, '.', '_' and '-'
# occur in real codes such as 1000SATS or BTC.B). Source: CCXT Manual, "Market structure",
# `symbol`.
_MARKET = re.compile(
    r"([a-z][a-z0-9_]{0,31}):([A-Z0-9][A-Z0-9._-]{0,19})/([A-Z0-9][A-Z0-9._-]{0,19})"
)
# The venue prefix of an agent trading an exchange account: "ccxt:<account>".
CCXT_VENUE_PREFIX: Final = "ccxt:"
# Market quote currencies taken as USD (pegged at 1 until a feed prices the agent's quote): an
# exchange agent's quote is one of these and names the same currency as its markets' quote.
USD_MARKET_QUOTES: Final = frozenset({"USDT", "USDC"})


def market_parts(token: str) -> tuple[str, str, str] | None:
    """(exchange, base, quote) of an exchange instrument id such as "binance:BTC/USDT"; None
    for anything else (a mint)."""
    m = _MARKET.fullmatch(token)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def is_market(token: str) -> bool:
    """True when `token` is an exchange instrument id `<exchange>:<BASE>/<QUOTE>`."""
    return _MARKET.fullmatch(token) is not None


def is_instrument(text: str) -> bool:
    """True when `text` names something tradable: a Solana mint or an exchange market."""
    return is_market(text) or is_mint(text)


def require_instrument(text: str, path: str = "$.token") -> str:
    """`text` itself when it is an instrument id (a base58 32-byte Solana mint, or
    `<exchange>:<BASE>/<QUOTE>` such as "binance:BTC/USDT"); raises ValidationError naming
    `path` otherwise. Whether the exchange is configured and lists the market is the edge's
    check (the engine knows no markets)."""
    if not is_instrument(text):
        raise ValidationError(
            "not an instrument: a base58 32-byte mint address or <exchange>:<BASE>/<QUOTE> "
            f"(e.g. binance:BTC/USDT): {text[:60]!r}",
            path,
        )
    return text


def venue_exchange(venue: str) -> str | None:
    """The account name of an exchange venue ("ccxt:binance" -> "binance"); None otherwise."""
    return venue[len(CCXT_VENUE_PREFIX) :] if venue.startswith(CCXT_VENUE_PREFIX) else None


def require_mint(text: str, path: str = "$.token") -> str:
    """`text` itself when it is a Solana mint address (base58, 32 bytes); raises ValidationError
    naming `path` (the JSON path of the field, for the one error shape) otherwise."""
    if not is_mint(text):
        raise ValidationError(f"not a base58 32-byte mint address: {text[:60]!r}", path)
    return text


def quote_mint(quote: str) -> str:
    """The mint that prices a quote asset named by symbol or mint."""
    return QUOTE_SYMBOLS.get(quote.upper(), quote)


def normalize_quote(quote: str, path: str = "$.quote") -> str:
    """Canonical quote id: a known symbol in upper case, else a validated mint."""
    if quote.upper() in QUOTE_SYMBOLS:
        return quote.upper()
    return require_mint(quote, path)
