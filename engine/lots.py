"""An exchange market's order-size rules in the engine's integers: the amount step (lot size),
the least amount and the least notional an order may have.

Source: CCXT Manual, "Market structure" (`precision.amount`, `limits.amount.min`,
`limits.cost.min`); the adapters convert a loaded market into `InstrumentRules`, exactly from the
decimals as written. The engine applies them where an order is sized: a sell is rounded DOWN to
the step, a remainder below the minimum is sold with the slice before it (the dust rule), and a
buy or sell below the minimum is not placed (skip reason / alert `below_venue_minimum`)."""

from __future__ import annotations

from fractions import Fraction

from msgspec import Struct

from .money import exact


class InstrumentRules(Struct, frozen=True, kw_only=True):
    """Order-size rules of one instrument: `decimals` is the scale of its atomic units (an
    amount of 1 atomic unit is 10^-decimals of the base currency); `step` the amount step
    (atomic, >= 1): every order's amount is a multiple of it; `min_amount` the least amount an
    order may have (atomic, 0: none); `min_cost` the least notional, in the market's quote
    currency per order, as the exchange writes it (0: none); `cost_step` the step a buy's quote
    amount is cut to when sent (CCXT truncates `quoteOrderQty` to the market's cost or price
    precision: 0.01 USDT on Binance BTC/USDT), as written (0: none)."""

    decimals: int
    step: int = 1
    min_amount: int = 0
    min_cost: float = 0.0
    cost_step: float = 0.0

    def floor(self, amount: int) -> int:
        """`amount` rounded DOWN to a multiple of the step, atomic units."""
        return amount - amount % self.step if self.step > 1 else amount

    def tradable(self, amount: int) -> int:
        """The largest amount an order may carry out of `amount` (a multiple of the step, at
        least `min_amount`), or 0 when none may."""
        sendable = self.floor(amount)
        return sendable if sendable >= max(self.min_amount, 1) else 0

    def notional_below_min(self, amount: int, price_quote: Fraction) -> bool:
        """Whether `amount` (atomic) at `price_quote` (market quote per whole base, exact) is
        worth less than `min_cost`."""
        if self.min_cost <= 0:
            return False
        return bool(amount * price_quote < exact(self.min_cost) * 10**self.decimals)

    def buy_below_min(self, cost_quote: Fraction, price_quote: Fraction) -> bool:
        """Whether a buy for `cost_quote` (market quote currency, whole units, exact) at
        `price_quote` (per whole base) is refused by the market: the amount it buys, rounded
        DOWN to the step as the exchange rounds a buy by quote amount, is less than the least
        amount, or worth less than the least notional (Binance: 5 USDT at 64,800 buys 0.00007
        BTC = 4.536 USDT, refused NOTIONAL)."""
        if self.cost_step > 0:  # what is sent: the cost cut to its step
            step = exact(self.cost_step)
            cost_quote = (cost_quote // step) * step
        if price_quote <= 0:
            return self.min_cost > 0 and cost_quote < exact(self.min_cost)
        amount = self.floor(int(cost_quote * 10**self.decimals / price_quote))
        if amount < max(self.min_amount, 1):
            return True
        return self.notional_below_min(amount, price_quote)
