"""An order's amounts on an exchange, both ways, in the engine's integers: what a request asks
(`order_request`: a sell's amount rounded down to the market's step, a buy's quote cost or its
amount at the last price) and what it filled: CCXT's order structure (and its trades) parsed
once into `ExchangeOrder`, then turned into a `Fill` for the order it carried. Pure.

Source: CCXT Manual, "Order structure" (`id`, `clientOrderId`, `status`, `filled`, `cost`,
`average`, `fee`/`fees`, `trades`) and "Trade structure" (`order`, `amount`, `cost`, `fee`).
CCXT gives numbers as floats parsed from the exchange's decimal strings; each is read back as
the decimal it was written as (`Decimal(repr(x))`), so nothing is lost to binary floats."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

import msgspec
from msgspec import Struct
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure
from tradingd.engine.assets import USD_MARKET_QUOTES, market_parts
from tradingd.engine.config import MAX_ATOMIC
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Fill, Order

# CCXT's order statuses: "open" may still fill; the others are final.
OPEN = "open"
FINAL_STATUSES = frozenset({"closed", "canceled", "expired", "rejected"})


class FeePaid(Struct, frozen=True):
    """A fee the exchange took: `currency` code and `amount` in whole units of it."""

    currency: str
    amount: Decimal


class ExchangeOrder(Struct, frozen=True, kw_only=True):
    """What the exchange says of one order: its `id` and `client_order_id`, `symbol`, `side`
    ("buy"/"sell"), `status` (CCXT's: open, closed, canceled, expired, rejected), `filled`
    (base, whole units), `cost` (quote, whole units), its `fees` (None: not told, read the
    trades) and `ts` (ms, or None)."""

    id: str
    client_order_id: str | None
    symbol: str
    side: str
    status: str
    filled: Decimal
    cost: Decimal
    fees: tuple[FeePaid, ...] | None
    ts: int | None = None

    @property
    def final(self) -> bool:
        """True when the order can fill no more."""
        return self.status in FINAL_STATUSES

    @property
    def needs_trades(self) -> bool:
        """True when it filled something but did not say what fees it paid (Binance's GET
        /api/v3/order): its trades tell."""
        return self.fees is None and self.filled > 0


def decimal_of(value: object) -> Decimal | None:
    """A CCXT number as the decimal it was written as: a float by its shortest repr (what the
    exchange's string parsed to), an int or a numeric string as is; None when absent or not a
    finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except ArithmeticError:
        return None
    return d if d.is_finite() else None


def _fees(items: Iterable[Mapping[str, Any] | None]) -> tuple[FeePaid, ...]:
    """Fees summed per currency, in first-seen order; zero and unreadable ones left out."""
    total: dict[str, Decimal] = {}
    for item in items:
        if not item:
            continue
        currency, amount = item.get("currency"), decimal_of(item.get("cost"))
        if not isinstance(currency, str) or amount is None or amount == 0:
            continue
        total[currency] = total.get(currency, Decimal(0)) + amount
    return tuple(FeePaid(c, a) for c, a in total.items())


def _order_fees(raw: Mapping[str, Any]) -> tuple[FeePaid, ...] | None:
    """The fees of a CCXT order: from its `trades` when it carries any (Binance's FULL answer to
    a new order), else `fees`/`fee` when given, else None (unknown)."""
    trades = raw.get("trades") or []
    if trades:
        return trade_fees(trades)
    listed = raw.get("fees") or []
    if listed:
        return _fees(listed)
    fee = raw.get("fee")
    if isinstance(fee, Mapping) and fee.get("cost") is not None:
        return _fees([fee])
    return None


def trade_fees(trades: Iterable[Mapping[str, Any]]) -> tuple[FeePaid, ...]:
    """The fees of CCXT trades (each trade's `fees` list, else its `fee`), per currency."""
    items: list[Mapping[str, Any] | None] = []
    for trade in trades:
        listed = trade.get("fees")
        items.extend(listed) if listed else items.append(trade.get("fee"))
    return _fees(items)


def parse_order(raw: Mapping[str, Any]) -> ExchangeOrder:
    """One CCXT order structure as an ExchangeOrder. `cost` falls back to filled × average
    when the exchange gives no cost. Raises ValueError when it has no id."""
    order_id = raw.get("id")
    if not order_id:
        raise ValueError("the exchange's order has no id")
    filled = decimal_of(raw.get("filled")) or Decimal(0)
    cost = decimal_of(raw.get("cost"))
    if cost is None:
        average = decimal_of(raw.get("average")) or Decimal(0)
        cost = filled * average
    client_id = raw.get("clientOrderId")
    return ExchangeOrder(
        id=str(order_id),
        client_order_id=str(client_id) if client_id else None,
        symbol=str(raw.get("symbol") or ""),
        side=str(raw.get("side") or ""),
        status=str(raw.get("status") or OPEN),
        filled=max(filled, Decimal(0)),
        cost=max(cost, Decimal(0)),
        fees=_order_fees(raw),
        ts=raw.get("timestamp") if isinstance(raw.get("timestamp"), int) else None,
    )


def with_trades(placed: ExchangeOrder, trades: Iterable[Mapping[str, Any]]) -> ExchangeOrder:
    """`placed` with the fees its trades (CCXT trade structures of this order) paid."""
    mine = [t for t in trades if t.get("order") in (None, placed.id)]
    return msgspec.structs.replace(placed, fees=trade_fees(mine))


def _atomic(amount: Decimal, decimals: int, rounding: str) -> int:
    return int((amount.scaleb(decimals)).to_integral_value(rounding=rounding))


PriceOf = Callable[[str], float | None]


def _fee_parts(
    placed: ExchangeOrder, base: str, quote: str
) -> tuple[Decimal, Decimal, list[FeePaid]]:
    """(fee in base units, fee in quote units, fees in other currencies)."""
    in_base = in_quote = Decimal(0)
    others: list[FeePaid] = []
    for fee in placed.fees or ():
        if fee.amount == 0:
            continue
        if fee.currency == base:
            in_base += fee.amount
        elif fee.currency == quote:
            in_quote += fee.amount
        else:
            others.append(fee)
    return in_base, in_quote, others


def third_currency_value(exchange: str, fee: FeePaid, quote: str, price_of: PriceOf) -> Decimal:
    """A fee in a third currency (BNB) valued in the market's quote (a USD stablecoin) at the
    price of `<exchange>:<CUR>/<QUOTE>`, the order's quote first, then the other USD quotes;
    0 when none is priced."""
    for q in (quote, *sorted(USD_MARKET_QUOTES - {quote})):
        price = price_of(f"{exchange}:{fee.currency}/{q}")
        if price is not None and price > 0:
            return fee.amount * Decimal(repr(float(price)))
    return Decimal(0)


class FillOutcome(Struct, frozen=True):
    """`fill`, and the atomic units of output the order's `max_amount_out` cut off (0
    normally; above 0 the book and the exchange differ by that much: alert)."""

    fill: Fill
    cut: int = 0


def order_fill(
    order: Order,
    placed: ExchangeOrder,
    *,
    sent_amount: int | None,
    price_of: PriceOf,
    now: int,
) -> FillOutcome | None:
    """The Fill of `order` from what the exchange filled (`placed`, with its fees known), or
    None when nothing filled. `sent_amount`: the base atomic amount a sell asked for
    (`rules.floor(order.amount_in)`), None for a buy.

    Buy: `amount_out` = base filled less a fee taken in base (rounded down), `amount_in` = cost
    plus a fee taken in quote (rounded up), capped at the reservation (the rest is `charge`).
    Sell: `amount_in` = `order.amount_in` when the sent amount filled in full (the residue
    below one step stays on the exchange: the engine's contract), else base filled plus a
    base fee (rounded up); `amount_out` = cost less a quote fee (rounded down; below 0 it is 0
    and the rest `charge`). `fee` = every fee's value in quote atomic units (a third-currency
    fee at `price_of("<exchange>:<CUR>/<QUOTE>")`, 0 unpriced; it is then named in
    `fee_currency`/`fee_amount`, not deducted from the quote amounts, and its value, rounded up,
    is added to `charge`: the agent pays it from its quote balance). `price_usd` = cost /
    filled (the quote is a USD stablecoin). `amount_out` never exceeds `max_amount_out`."""
    parts = market_parts(order.token)
    if parts is None:
        raise ValueError(f"not an exchange market: {order.token[:60]!r}")
    exchange, base, quote = parts
    if placed.filled <= 0:
        return None
    td, qd = order.token_decimals, order.quote_decimals
    fee_base, fee_quote, others = _fee_parts(placed, base, quote)
    price = placed.cost / placed.filled
    other_value = sum(
        (third_currency_value(exchange, f, quote, price_of) for f in others), Decimal(0)
    )
    fee = _atomic(fee_quote + fee_base * price + other_value, qd, ROUND_FLOOR)
    charge = 0
    if order.side == "buy":
        got = _atomic(placed.filled - fee_base, td, ROUND_FLOOR)
        if got <= 0:
            return None
        spent = _atomic(placed.cost + fee_quote, qd, ROUND_CEILING)
        charge = max(spent - order.amount_in, 0)
        spent -= charge
    else:
        filled = _atomic(placed.filled, td, ROUND_CEILING)
        if sent_amount is not None and filled >= sent_amount:
            spent = order.amount_in
        else:
            spent = min(_atomic(placed.filled + fee_base, td, ROUND_CEILING), order.amount_in)
        proceeds = placed.cost - fee_quote
        got = _atomic(max(proceeds, Decimal(0)), qd, ROUND_FLOOR)
        charge = _atomic(max(-proceeds, Decimal(0)), qd, ROUND_CEILING)
    # A fee paid in a third currency (BNB) left the quote amounts untouched: its value is
    # charged to the agent's quote balance as a cost, so its PnL is net of every fee.
    charge += _atomic(other_value, qd, ROUND_CEILING)
    bound = MAX_ATOMIC if order.max_amount_out is None else order.max_amount_out
    cut = max(got - bound, 0)
    first_other = others[0] if others else None
    fill = Fill(
        order_id=order.id,
        amount_in=spent,
        amount_out=got - cut,
        price_usd=float(price),
        fee=fee,
        venue_ref=placed.id,
        ts=now,
        charge=charge,
        fee_currency=first_other.currency if first_other else None,
        fee_amount=format(first_other.amount.normalize(), "f") if first_other else None,
    )
    return FillOutcome(fill, cut)


# -- what a request asks -------------------------------------------------------------------------


class OrderRequest(Struct, frozen=True):
    """What one attempt asks on `symbol` (CCXT's): `amount` base atomic (a sell, or a buy by
    amount) or `cost` quote atomic (a buy by cost)."""

    symbol: str
    side: str
    amount: int = 0
    cost: int = 0


def whole(atomic: int, decimals: int) -> Decimal:
    """Atomic units as whole units, exactly."""
    return Decimal(atomic).scaleb(-decimals)


def _refuse(reason: str, transient: bool = False) -> ExchangeFailure:
    return ExchangeFailure(reason, reason, transient=transient)


def order_request(
    order: Order,
    rules: InstrumentRules | None,
    *,
    exchange: str,
    buys_by_cost: bool,
    last_price: Decimal | None,
) -> OrderRequest:
    """The request for `order` on `exchange` under the market's current `rules`: a sell of
    `rules.tradable(order.amount_in)` (the step's floor; its notional checked at `last_price`
    when known); a buy by cost of `order.amount_in` when the exchange takes a cost, else by the
    amount `last_price` moved by the order's slippage buys (rounded down to the step), so the
    spend stays within the reservation unless the market moves further. Raises ExchangeFailure
    `venue_cannot_trade` / `unknown_market` / `below_venue_minimum` (final) or `no_price`
    (transient)."""
    parts = market_parts(order.token)
    if parts is None or parts[0] != exchange:
        raise _refuse("venue_cannot_trade")
    symbol = f"{parts[1]}/{parts[2]}"
    if rules is None or rules.decimals != order.token_decimals:
        raise _refuse("unknown_market")
    if order.side == "sell":
        amount = rules.tradable(order.amount_in)
        if amount <= 0 or (
            last_price is not None and rules.notional_below_min(amount, Fraction(last_price))
        ):
            raise _refuse("below_venue_minimum")
        return OrderRequest(symbol, "sell", amount=amount)
    cost = whole(order.amount_in, order.quote_decimals)
    if rules.min_cost > 0 and cost < Decimal(repr(rules.min_cost)):
        raise _refuse("below_venue_minimum")
    if buys_by_cost:
        return OrderRequest(symbol, "buy", cost=order.amount_in)
    if last_price is None:
        raise _refuse("no_price", transient=True)
    worst = last_price * (1 + Decimal(order.slippage_bps) / 10_000)
    base = int((cost / worst).scaleb(order.token_decimals).to_integral_value(ROUND_FLOOR))
    amount = rules.tradable(base)
    if amount <= 0:
        raise _refuse("below_venue_minimum")
    return OrderRequest(symbol, "buy", amount=amount)
