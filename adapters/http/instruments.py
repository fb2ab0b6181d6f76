"""The control port's check of an instrument id (a Solana mint or an exchange market
`<exchange>:<BASE>/<QUOTE>`, engine/assets.py): well-formed by kind, and for what will trade or
move a price (signals, pushed ticks), a market its exchange has loaded."""

from __future__ import annotations

from tradingd.adapters.venues.ccxt.markets import MarketRegistry
from tradingd.engine.assets import require_instrument


def check_instrument(token: str, path: str, markets: MarketRegistry | None = None) -> str:
    """`token` itself when it is an instrument id and, with `markets` (the daemon's
    registry), a mint or a market of a configured exchange that lists it. Raises
    ValidationError naming `path` otherwise (the one 422 shape; the id is echoed at most 80
    characters, as a repr)."""
    require_instrument(token, path)
    if markets is not None:
        markets.check(token, path)
    return token
