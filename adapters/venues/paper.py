"""Paper venue: fills at the latest price with the order's slippage and fee, deterministically.

Prices are USD per whole token; quote amounts convert through the quote asset's USD price.
`paper_fill` is pure (replay and tests call it directly); `PaperVenue` is the async Venue the
runtime uses, reading prices from the engine's price book. An exchange market with loaded rules
(engine/lots.py) fills as the exchange would size it: amounts in multiples of its step, never
below its least amount or notional (`market_fill`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction

from tradingd.engine import events as ev
from tradingd.engine.assets import market_parts, quote_mint
from tradingd.engine.config import MAX_ATOMIC
from tradingd.engine.core import Engine
from tradingd.engine.errors import InvariantViolation, VenueError
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Fill, Order
from tradingd.engine.money import (
    Ratio,
    bps_of,
    decimal_ratio,
    exact,
    quote_value,
    slipped,
    token_amount,
)


class PaperRejected(VenueError):
    """The paper venue cannot fill: no price, or the amount rounds to nothing."""


def _check_bound(order: Order, amount_out: int, unit: str) -> None:
    """Refuse a fill above the order's `max_amount_out` (what keeps the position or the quote
    balance within u64) or, for orders without one, above u64 itself."""
    bound = MAX_ATOMIC if order.max_amount_out is None else order.max_amount_out
    if amount_out > bound:
        raise PaperRejected(
            f"fill of {len(str(amount_out))} digits of {unit} atomic units would take the "
            f"{'position' if order.side == 'buy' else 'quote balance'} above the u64 maximum"
        )


def _buy_price(order: Order, token_usd: float) -> Ratio:
    """What a buy pays per whole token, USD, exact: `token_usd` moved up by the slippage, never
    above a limit buy's limit. Raises PaperRejected "limit_not_met" when the market is above
    the limit."""
    price = slipped(token_usd, order.slippage_bps)
    if order.limit_price_usd is not None:  # a limit buy never pays more than its limit
        if token_usd > order.limit_price_usd:  # the market left the limit: no fill
            raise PaperRejected(  # the message is the order's failure reason: a code
                "limit_not_met",
                details={"price_usd": token_usd, "limit_price_usd": order.limit_price_usd},
            )
        limit = decimal_ratio(order.limit_price_usd)
        if price[0] * limit[1] > limit[0] * price[1]:
            price = limit
    return price


def paper_fill(
    order: Order,
    token_usd: float | None,
    quote_usd: float | None,
    now: int,
    rules: InstrumentRules | None = None,
    market_quote_usd: float = 1.0,
) -> Fill:
    """Fill `order` at `token_usd` moved against the taker by `slippage_bps`, less `fee_bps` of
    the quote side. Exact (engine/money.py): the prices as written, one rounding down per
    amount. With `rules` (an exchange market's, engine/lots.py) the fill is sized as the
    exchange sizes it: see `market_fill` (`market_quote_usd`: USD per whole unit of the market's
    quote currency). Raises PaperRejected without a price, when an amount rounds to zero, or when
    the fill would return more than the order's `max_amount_out` (the position's tokens or the
    quote balance would pass the u64 maximum, the width of SPL amounts: e.g. a buy at 1e-12 USD
    with 9 decimals, a DCA on a huge position, a sell at 1e299 USD)."""
    if not token_usd or token_usd <= 0 or not quote_usd or quote_usd <= 0:
        raise PaperRejected("no price for token or quote")
    if rules is not None:
        return market_fill(order, token_usd, quote_usd, now, rules, market_quote_usd)
    td, qd = order.token_decimals, order.quote_decimals
    if order.side == "buy":
        fee = bps_of(order.amount_in, order.fee_bps)
        price = _buy_price(order, token_usd)
        tokens = token_amount(order.amount_in - fee, qd, quote_usd, price, td)
        if tokens <= 0:
            raise PaperRejected("buy amount rounds to zero tokens")
        _check_bound(order, tokens, "token")
        return _fill(order, order.amount_in, tokens, price, fee, now)
    return _sell_fill(order, order.amount_in, token_usd, quote_usd, now)


def market_fill(
    order: Order,
    token_usd: float,
    quote_usd: float,
    now: int,
    rules: InstrumentRules,
    market_quote_usd: float = 1.0,
) -> Fill:
    """A paper fill of an exchange market sized by its `rules`, as a market order on the
    exchange is: prices (USD per whole unit, > 0), slippage and fee as in `paper_fill`.

    Buy: the tokens `amount_in` less the fee buys, rounded DOWN to the step; they cost their
    value at the slipped price rounded UP to a quote atomic unit, plus `fee_bps` of that cost:
    `amount_in` of the fill is that spend (at most the order's; the engine releases the rest).
    Sell: the amount sent is the order's rounded DOWN to the step (a whole position's residue
    below one step stays, as on an exchange); proceeds are its value at the slipped price less
    `fee_bps`; the fill reports the order's whole `amount_in`. Either side below the market's
    least amount or least notional (in the market's quote currency, worth `market_quote_usd`
    USD per unit) raises PaperRejected "below_venue_minimum" (not transient; `details` give
    the amounts)."""
    td, qd = order.token_decimals, order.quote_decimals
    if order.side == "buy":
        price = _buy_price(order, token_usd)
        tokens = rules.floor(
            token_amount(
                order.amount_in - bps_of(order.amount_in, order.fee_bps), qd, quote_usd, price, td
            )
        )
        _check_minimum(rules, tokens, price, market_quote_usd)
        _check_bound(order, tokens, "token")
        cost = _quote_cost_up(tokens, td, price, quote_usd, qd)
        fee = bps_of(cost, order.fee_bps)
        return _fill(order, cost + fee, tokens, price, fee, now)
    sent = rules.floor(order.amount_in)
    _check_minimum(rules, sent, slipped(token_usd, -order.slippage_bps), market_quote_usd)
    return _sell_fill(order, sent, token_usd, quote_usd, now)


def _sell_fill(order: Order, sent: int, token_usd: float, quote_usd: float, now: int) -> Fill:
    """A sell of `sent` token atomic units (the order's, or its multiple of a market's step) at
    `token_usd` slipped down, less `fee_bps` of the proceeds; the fill reports the order's
    whole `amount_in`. Raises PaperRejected when the proceeds round to zero or pass the bound."""
    price = slipped(token_usd, -order.slippage_bps)
    gross = quote_value(sent, order.token_decimals, price, quote_usd, order.quote_decimals)
    if gross <= 0:
        raise PaperRejected("sell amount rounds to zero quote")
    fee = bps_of(gross, order.fee_bps)
    _check_bound(order, gross - fee, "quote")
    return _fill(order, order.amount_in, gross - fee, price, fee, now)


def _fill(order: Order, amount_in: int, amount_out: int, price: Ratio, fee: int, now: int) -> Fill:
    return Fill(
        order_id=order.id,
        amount_in=amount_in,
        amount_out=amount_out,
        price_usd=price[0] / price[1],
        fee=fee,
        venue_ref=f"paper-{order.id}",
        ts=now,
    )


def _check_minimum(
    rules: InstrumentRules, amount: int, price_usd: Ratio, market_quote_usd: float
) -> None:
    """Raise PaperRejected "below_venue_minimum" for an order of `amount` (atomic, a multiple
    of the step) below the market's least amount, or worth less than its least notional at
    `price_usd` (exact) in a quote currency of `market_quote_usd` USD."""
    in_quote = Fraction(*price_usd) / exact(market_quote_usd)
    if amount < max(rules.min_amount, 1) or rules.notional_below_min(amount, in_quote):
        raise PaperRejected(
            "below_venue_minimum",
            details={
                "amount": str(amount),
                "min_amount": str(rules.min_amount),
                "min_cost": rules.min_cost,
            },
        )


def _quote_cost_up(tokens: int, td: int, price_usd: Ratio, quote_usd: float, qd: int) -> int:
    """Quote atomic units `tokens` cost at `price_usd`, rounded UP (what an exchange charges
    is never less than the amount is worth): ceil(tokens / 10^td × price / quote_usd × 10^qd)."""
    qn, qden = decimal_ratio(quote_usd)
    num = tokens * price_usd[0] * qden * 10**qd
    den = price_usd[1] * qn * 10**td
    return -(-num // den)


def market_quote_usd(token: str, price_of: Callable[[str], float | None]) -> float:
    """USD per whole unit of an exchange market's quote currency (USDT, USDC): its price when
    a feed gives one, else 1 (a USD market quote is pegged at 1 until priced)."""
    parts = market_parts(token)
    price = price_of(quote_mint(parts[2])) if parts is not None else None
    return price if price is not None and price > 0 else 1.0


class PaperVenue:
    """The paper venue (a `Venue`, engine/ports.py). With `fill_delay_ms = 0` it is in-process: the runtime settles its
    orders with `execute_now()` in the loop turn that placed them. With a delay it behaves like
    a live venue: the order is in flight for that long, then fills at the price of that moment."""

    name = "paper"

    def __init__(
        self,
        price_of: Callable[[str], float | None],
        clock: Callable[[], int],
        fill_delay_ms: int = 0,
        rules_of: Callable[[str], InstrumentRules | None] | None = None,
    ) -> None:
        """`price_of(token)`: USD per whole unit, None when unknown (the engine's `price_usd`);
        `clock()`: epoch ms; `rules_of(token)`: an exchange market's order-size rules, None for
        a mint or a market without loaded rules (the engine's `instruments.get`; None: no
        market is sized)."""
        self._price_of = price_of
        self._clock = clock
        self.fill_delay_ms = fill_delay_ms
        self._rules_of = rules_of

    @property
    def in_process(self) -> bool:
        """True without a fill delay: the runtime settles with `execute_now`."""
        return self.fill_delay_ms == 0

    def execute_now(self, order: Order) -> Fill:
        """`paper_fill` at the book's current token and quote prices and the clock's time (ms),
        with the token's market rules when it has some. Raises PaperRejected (a VenueError, not
        transient)."""
        return paper_fill(
            order,
            self._price_of(order.token),
            self._price_of(quote_mint(order.quote)),
            self._clock(),
            self._rules_of(order.token) if self._rules_of is not None else None,
            market_quote_usd(order.token, self._price_of),
        )

    async def execute(self, order: Order) -> Fill:
        """`execute_now` after `fill_delay_ms`, at the prices of that moment."""
        if self.fill_delay_ms:
            await asyncio.sleep(self.fill_delay_ms / 1000)
        return self.execute_now(order)

    async def reconcile(self) -> list[Fill]:
        """Nothing to reconcile: a paper order leaves no trace across a restart."""
        return []


def settle_paper(
    engine: Engine,
    now: int,
    on_events: Callable[[list[ev.Event]], None] | None = None,
    max_rounds: int = 100,
) -> tuple[int, int]:
    """Synchronous settlement for backtests and benchmarks: drain the engine, fill (or fail)
    every order intent with `paper_fill`, repeat until no intent is left. Returns (fills,
    rejections). Exchange markets are sized by the engine's rules for them. Fails loudly if
    fills keep producing orders past `max_rounds`."""
    fills = rejected = 0
    for _ in range(max_rounds):
        out = engine.drain()
        if on_events is not None and out.events:
            on_events(out.events)
        if not out.intents:
            return fills, rejected
        for intent in out.intents:
            order = intent.order
            try:
                fill = paper_fill(
                    order,
                    engine.price_usd(order.token),
                    engine.quote_usd(order.quote),
                    now,
                    engine.instruments.get(order.token),
                    market_quote_usd(order.token, engine.price_usd),
                )
            except PaperRejected as exc:
                rejected += 1
                engine.on_order_failed(order.id, str(exc))
            else:
                fills += 1
                engine.on_fill(fill)
    raise InvariantViolation(f"orders still produced after {max_rounds} settle rounds")
