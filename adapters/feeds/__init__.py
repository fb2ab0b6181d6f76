"""Price and signal sources: live market data (pyth/, dexscreener/), synthetic, replay, demo, and
the recorder of what the daemon receives."""

# The `source` names of the daemon's own feeds. A pushed tick may not take one: a feed key must
# not pass its prices off as Pyth's or DexScreener's and outrank them (docs/market-data.md).
DAEMON_SOURCES = frozenset({"pyth", "dexscreener", "synthetic", "replay"})

# A price a market-data feed sends outside these bounds (USD per whole token) is a fault, never
# a market: the cheapest tokens trade near 1e-10 USD, the dearest near 1e5. Dropped and counted
# (errors_malformed), so one absurd update (say a Pyth `expo` of 60) cannot move a stop.
MIN_FEED_PRICE_USD = 1e-15
MAX_FEED_PRICE_USD = 1e12
