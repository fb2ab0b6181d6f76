"""Exact money: every amount derived from a price or a percentage, and every trigger price.

Rule (README "Exact money", docs/api.md): a price or percentage is taken as the decimal it is
written as (a float's shortest repr: 0.944 is 944/1000, never 0.94399999999999994...), the
amount is computed exactly in integers, and only the result is rounded, once, DOWN to atomic
units, so nothing is ever credited, bought or sold beyond the exact value. A trigger price
(stop-loss, take-profit, DCA, stale band, moon bag) is computed exactly once from the entry and
rounded to a float toward triggering by at most one ulp, so a price exactly on a configured
level always triggers it; crossings compare prices, never a recomputed float percentage.

Conversions are cached: a few thousand distinct prices and percentages are live at a time, and
the hot path (per tick) never calls into this module unless an amount is produced."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

__all__ = [
    "bps_of",
    "decimal_ratio",
    "exact",
    "level_price",
    "level_price_nearest",
    "market_value",
    "pct_of",
    "pct_sum",
    "quote_value",
    "ratio_of_sum",
    "slipped",
    "to_float_down",
    "to_float_up",
    "token_amount",
    "units_float",
    "usd_float",
]


@lru_cache(maxsize=65_536)
def decimal_ratio(x: float) -> tuple[int, int]:
    """(numerator, denominator > 0) of `x` read as the decimal it is written as: repr(x).
    Raises ValueError for NaN or infinities (never a price or a percentage)."""
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {x!r}")
    return Decimal(repr(x)).as_integer_ratio()


def exact(x: float) -> Fraction:
    """`x` as the exact rational of its decimal form (0.1 -> 1/10)."""
    n, d = decimal_ratio(x)
    return Fraction(n, d)


def pct_of(amount: int, pct: float) -> int:
    """floor(amount × pct / 100), atomic units; `pct` as written (33.333 -> 33333/1000)."""
    n, d = decimal_ratio(pct)
    return amount * n // (100 * d)


def pct_sum(pcts: Iterable[float]) -> Fraction:
    """Σ pcts, exact, as written: 33.333 + 33.333 + 33.334 is 100."""
    return sum((exact(p) for p in pcts), Fraction(0))


def ratio_of_sum(amount: int, pcts: list[float]) -> int:
    """floor(amount × (Σ pcts) / 100): a sum of percentages, exact, rounded once."""
    total = pct_sum(pcts)
    return amount * total.numerator // (100 * total.denominator)


def bps_of(amount: int, bps: int) -> int:
    """floor(amount × bps / 10 000), atomic units."""
    return amount * bps // 10_000


Ratio = tuple[int, int]  # (numerator, denominator > 0): an exact price or factor in integers


def _ratio(x: float | Ratio) -> Ratio:
    return x if isinstance(x, tuple) else decimal_ratio(x)


def slipped(price_usd: float, bps: int) -> Ratio:
    """`price_usd` × (1 + bps/10 000), exact; a negative `bps` moves it down."""
    n, d = decimal_ratio(price_usd)
    return n * (10_000 + bps), d * 10_000


def quote_value(
    tokens: int,
    token_decimals: int,
    token_usd: float | Ratio,
    quote_usd: float,
    quote_decimals: int,
    scale: Ratio = (1, 1),
) -> int:
    """Quote atomic units worth `tokens` token atomic units (times `scale`, e.g. a DCA buy_pct),
    rounded down once: floor(tokens / 10^td × token_usd / quote_usd × 10^qd × scale). Prices in
    USD per whole unit; all in integers."""
    tn, td_ = _ratio(token_usd)
    qn, qd = decimal_ratio(quote_usd)
    num: int = tokens * tn * qd * 10**quote_decimals * scale[0]
    den: int = td_ * qn * 10**token_decimals * scale[1]
    return num // den


def market_value(
    tokens: int,
    token_decimals: int,
    token_usd: float | None,
    quote_usd: float | None,
    quote_decimals: int,
) -> int | None:
    """What `tokens` token atomic units are worth at the last prices, in quote atomic units,
    exact, rounded down once (quote_value); None when the token or the quote has no price (a
    caller then counts the cost basis, or nothing). The one valuation of a held amount: equity,
    unrealized PnL and the backtest's open positions all use it."""
    if not token_usd or not quote_usd:
        return None
    return quote_value(tokens, token_decimals, token_usd, quote_usd, quote_decimals)


def units_float(atomic: int, decimals: int) -> float:
    """For display and metrics only, never for money: `atomic` in whole units as the float
    nearest the exact value (1_500_000_000, 9 -> 1.5). Use adapters/units.py for text."""
    scale: int = 10**decimals
    return atomic / scale


def usd_float(atomic: int, decimals: int, usd_per_unit: float) -> float:
    """For display and metrics only, never for money: the USD worth of `atomic` units of an
    asset priced `usd_per_unit` per whole unit, computed exactly and rounded once to the
    nearest float."""
    n, d = decimal_ratio(usd_per_unit)
    den: int = d * 10**decimals
    return (atomic * n) / den


def token_amount(
    quote: int,
    quote_decimals: int,
    quote_usd: float,
    token_usd: float | Ratio,
    token_decimals: int,
) -> int:
    """Token atomic units bought by `quote` quote atomic units, rounded down:
    floor(quote / 10^qd × quote_usd / token_usd × 10^td); all in integers."""
    tn, td_ = _ratio(token_usd)
    qn, qd = decimal_ratio(quote_usd)
    num: int = quote * qn * td_ * 10**token_decimals
    den: int = qd * tn * 10**quote_decimals
    return num // den


def to_float_down(x: Fraction) -> float:
    """The largest float <= x (round toward -inf): for levels crossed from below."""
    f = x.numerator / x.denominator  # correctly rounded to nearest
    if Fraction(f) > x:
        f = math.nextafter(f, -math.inf)
    return f


def to_float_up(x: Fraction) -> float:
    """The smallest float >= x (round toward +inf): for levels crossed from above."""
    f = x.numerator / x.denominator
    if Fraction(f) < x:
        f = math.nextafter(f, math.inf)
    return f


@lru_cache(maxsize=65_536)
def level_price(entry_usd: float, pct: float, above: bool) -> float:
    """entry × (1 + pct/100), exact, as a float rounded toward triggering: down for a level
    crossed from below (take-profit, moon bag: fires when price >= it), up for a level crossed
    from above (stop-loss, DCA: fires when price <= it). At most one ulp from the exact value."""
    x = exact(entry_usd) * (1 + exact(pct) / 100)
    return to_float_down(x) if above else to_float_up(x)


@lru_cache(maxsize=65_536)
def level_price_nearest(entry_usd: float, pct: float) -> float:
    """entry × (1 + pct/100), exact, as the nearest float: the level as shown to a person or
    client (0.0000202, never 0.000020200000000000003). Never compared with prices: the engine
    triggers on level_price, which is at most one ulp from this."""
    x = exact(entry_usd) * (1 + exact(pct) / 100)
    return x.numerator / x.denominator
