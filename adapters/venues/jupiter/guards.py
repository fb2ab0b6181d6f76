"""Checks a Jupiter buy's quote must pass before anything is signed: the agent's price impact
limit, and a resting limit entry's price (the least output the swap accepts must buy at or
below the limit)."""

from __future__ import annotations

from decimal import Decimal

from tradingd.adapters.venues.jupiter.errors import SwapFailure
from tradingd.adapters.venues.jupiter.schemas import Quote
from tradingd.engine.model import Order
from tradingd.engine.money import decimal_ratio


def tokens_at_limit(in_amount: int, order: Order, quote_usd: float | None) -> int | None:
    """The fewest token atomic units `in_amount` quote atomic units may buy at the order's
    `limit_price_usd` (USD per whole token), valued at `quote_usd`: ceil(in / 10^qd × quote_usd
    / limit × 10^td), exact from the prices as written. None without a quote price."""
    assert order.limit_price_usd is not None
    if not quote_usd or quote_usd <= 0:
        return None
    qn, qd = decimal_ratio(quote_usd)
    ln, ld = decimal_ratio(order.limit_price_usd)
    num = in_amount * qn * ld * 10**order.token_decimals
    den = qd * ln * 10**order.quote_decimals
    return -(-num // den)


def check_price_impact(order: Order, quote: Quote) -> None:
    """Refuse a buy whose quoted price impact (percent) is above the agent's
    `max_price_impact_pct`: SwapFailure `price_impact_too_high`, permanent. An exit is never held
    back by price impact."""
    if order.side != "buy" or order.max_price_impact_pct is None:
        return
    limit = Decimal(repr(order.max_price_impact_pct))
    if quote.price_impact_percent > limit:
        raise SwapFailure(
            "price_impact_too_high",
            f"price impact {quote.price_impact_percent}% over the agent's {limit}%",
            transient=False,
        )
