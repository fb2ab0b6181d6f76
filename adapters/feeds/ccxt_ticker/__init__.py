"""Exchange tickers through CCXT: ccxt.pro `watch_tickers` with REST `fetch_tickers` polling as
the fallback (CCXT Manual, "Ticker structure")."""

from .feed import CcxtTickerFeed

__all__ = ["CcxtTickerFeed"]
