"""Exchange markets as the engine sees them: a CCXT market's precision and limits turned into
`InstrumentRules` (exactly, from the decimals as written), and the registry of loaded markets
per configured exchange that validates instrument ids at the edge.

Source: CCXT Manual, "Market structure" and "Precision and limits" (`precision.amount` is a
tick size under `precisionMode` TICK_SIZE, a count of decimal places under DECIMAL_PLACES;
`limits.amount.min`, `limits.cost.min`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from tradingd.engine.assets import USD_MARKET_QUOTES, market_parts
from tradingd.engine.errors import Unavailable, ValidationError
from tradingd.engine.lots import InstrumentRules

# CCXT's precisionMode constants (ccxt/base/decimal_to_precision.py).
DECIMAL_PLACES: Final = 2
SIGNIFICANT_DIGITS: Final = 3
TICK_SIZE: Final = 4
# The scale of a market's atomic units: at least 8 decimals (Binance's and most exchanges'
# balances), more when the market's step or minimum needs them; at most 18.
MIN_DECIMALS: Final = 8
MAX_DECIMALS: Final = 18


def _decimal(value: object) -> Decimal | None:
    """A number from a CCXT market as the decimal it is written as (floats by their repr)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _places(d: Decimal | None) -> int:
    if d is None or d <= 0:
        return 0
    exponent = d.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def amount_step(market: Mapping[str, Any], precision_mode: int) -> Decimal | None:
    """The market's amount step in base units (0.00001 BTC), or None when it has none we can
    use (no precision, or SIGNIFICANT_DIGITS, which has no fixed step)."""
    raw = _decimal((market.get("precision") or {}).get("amount"))
    if raw is None:
        return None
    if precision_mode == TICK_SIZE:
        return raw if raw > 0 else None
    if precision_mode == DECIMAL_PLACES and raw >= 0 and raw == raw.to_integral_value():
        return Decimal(1).scaleb(-int(raw))  # 0 places: whole units
    return None


def market_rules(
    market: Mapping[str, Any], precision_mode: int, decimals: int | None = None
) -> InstrumentRules:
    """The engine's rules for one CCXT market. `decimals`: the scale the instrument already has
    (positions hold amounts at it; a reloaded market keeps it), else chosen from the market.
    The step is rounded UP to an atomic unit (never finer than the scale allows), the least
    amount UP to an atomic unit (an order at it is never below the exchange's minimum)."""
    step = amount_step(market, precision_mode)
    limits = market.get("limits") or {}
    min_amount = _decimal((limits.get("amount") or {}).get("min"))
    min_cost = _decimal((limits.get("cost") or {}).get("min"))
    if decimals is None:
        decimals = min(MAX_DECIMALS, max(MIN_DECIMALS, _places(step), _places(min_amount)))
    scale = Decimal(10) ** decimals
    step_atomic = 1
    if step is not None:
        step_atomic = max(1, int((step * scale).to_integral_value(rounding="ROUND_CEILING")))
    min_atomic = 0
    if min_amount is not None and min_amount > 0:
        min_atomic = int((min_amount * scale).to_integral_value(rounding="ROUND_CEILING"))
    precision = market.get("precision") or {}
    # CCXT cuts a buy's cost to precision.cost, else precision.price (cost_to_precision).
    cost_precision = precision.get("cost")
    if cost_precision is None:
        cost_precision = precision.get("price")
    cost_step = amount_step({"precision": {"amount": cost_precision}}, precision_mode)
    return InstrumentRules(
        decimals=decimals,
        step=step_atomic,
        min_amount=min_atomic,
        min_cost=float(min_cost) if min_cost is not None and min_cost > 0 else 0.0,
        cost_step=float(cost_step) if cost_step is not None else 0.0,
    )


def instrument_id(exchange: str, symbol: str) -> str:
    """The instrument id of a CCXT market: "binance" + "BTC/USDT" -> "binance:BTC/USDT"."""
    return f"{exchange}:{symbol}"


def tradable_market(market: Mapping[str, Any]) -> bool:
    """A spot market, active (or not saying), quoted in a USD stablecoin the engine prices at
    1 USD (USD_MARKET_QUOTES): the markets an instrument id may name."""
    return (
        market.get("spot", market.get("type") == "spot") is True
        and market.get("active") is not False
        and market.get("quote") in USD_MARKET_QUOTES
    )


class MarketRegistry:
    """The markets loaded per exchange id (CCXT `load_markets()`), as instrument ids with their
    rules; the edge's check of an instrument id. Filled by the exchange adapters at start-up
    and on every reload; read by the control port and the config check."""

    def __init__(self) -> None:
        self._markets: dict[str, dict[str, Mapping[str, Any]]] = {}  # exchange -> symbol -> market
        self._configured: set[str] = set()  # exchanges with an account, loaded or not

    def configure(self, exchange: str) -> None:
        """An account trades `exchange`: until its markets load, its instruments are refused
        as unavailable (503), not as unknown (422)."""
        self._configured.add(exchange)

    @property
    def exchanges(self) -> frozenset[str]:
        """Exchange ids with markets loaded."""
        return frozenset(self._markets)

    @property
    def configured(self) -> frozenset[str]:
        """Exchange ids an account trades (their ticker feeds' sources), loaded or not."""
        return frozenset(self._configured)

    def load(self, exchange: str, markets: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the exchange's markets with `markets` (CCXT's `exchange.markets`: symbol ->
        market), keeping the tradable ones only."""
        self._markets[exchange] = {s: m for s, m in markets.items() if tradable_market(m)}

    def market(self, token: str) -> Mapping[str, Any] | None:
        """The loaded CCXT market an instrument id names, or None."""
        parts = market_parts(token)
        if parts is None:
            return None
        exchange, base, quote = parts
        return self._markets.get(exchange, {}).get(f"{base}/{quote}")

    def check(self, token: str, path: str = "$.token") -> None:
        """For an exchange instrument id: its exchange is configured and lists the market (a
        spot market quoted in USDT or USDC). Raises ValidationError naming `path` otherwise,
        Unavailable while a configured exchange's markets have not loaded; does nothing for a
        mint."""
        parts = market_parts(token)
        if parts is None:
            return
        exchange = parts[0]
        if exchange not in self._markets and exchange in self._configured:
            raise Unavailable(
                f"the markets of {exchange} are not loaded yet (the exchange did not answer): "
                "try again later",
                {"exchange": exchange},
            )
        if exchange not in self._markets:
            raise ValidationError(
                f"exchange {exchange!r} is not configured ([venues.ccxt.<name>] exchange)", path
            )
        if self.market(token) is None:
            raise ValidationError(
                f"{token[:80]!r}: no such spot market on {exchange} quoted in "
                f"{' or '.join(sorted(USD_MARKET_QUOTES))}",
                path,
            )
