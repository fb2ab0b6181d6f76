"""Numbers for people: atomic amounts in decimal units with their asset, prices to a fixed number
of significant digits. Exact (Decimal), never through float arithmetic; the pretty log uses it."""

from __future__ import annotations

import math
from decimal import Context, Decimal

PRICE_DIGITS = 6  # significant digits of a displayed price
_PRICE_CONTEXT = Context(prec=PRICE_DIGITS)


def _plain(value: Decimal) -> str:
    """Fixed-point with thousands separators and no trailing zeros: 5,005.2 / 0.0000202 / 1,000."""
    text = f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimal_amount(atomic: int, decimals: int) -> str:
    """An atomic amount in whole units: (5_005_200_000, 6) -> "5,005.2"; exact at any size."""
    return _plain(Decimal(atomic).scaleb(-decimals))


def amount(atomic: int, decimals: int, asset: str) -> str:
    """(100_000_000, 9, "SOL") -> "0.1 SOL"."""
    return f"{decimal_amount(atomic, decimals)} {asset}"


def price(value: float, digits: int = PRICE_DIGITS) -> str:
    """A float price to `digits` significant digits, without float noise and without exponent:
    2.0200000000000003e-05 -> "0.0000202", 123456.789 -> "123,457"."""
    if not math.isfinite(value):
        return str(value)
    exact = Decimal(repr(value))  # the shortest decimal that round-trips, not the binary value
    context = _PRICE_CONTEXT if digits == PRICE_DIGITS else Context(prec=digits)
    return _plain(context.plus(exact))


def usd(value: float) -> str:
    """A USD price: "$1.7", "$0.0000202"."""
    text = price(value)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def short_mint(mint: str) -> str:
    """A mint without a known symbol, shortened the way explorers do: "DezX…B263"; an exchange
    market by its symbol ("binance:BTC/USDT" -> "BTC/USDT"), which names what it trades."""
    if ":" in mint and "/" in mint:
        return mint.split(":", 1)[1]
    return mint if len(mint) <= 12 else f"{mint[:4]}…{mint[-4:]}"
