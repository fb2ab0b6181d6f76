"""Asset identities: Solana mint validation, the well-known quote assets and their decimals."""

from __future__ import annotations

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
