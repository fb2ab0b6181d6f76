"""Paper trading at real Jupiter quotes (`[venues.paper] quotes = "jupiter"`): every paper order
is quoted by Jupiter as a live swap would be and fills at that quote; nothing is signed or sent.
An exchange market has no Jupiter route: it fills at the book's price, sized by its market
rules, as on the plain paper venue."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.errors import SwapFailure
from tradingd.adapters.venues.jupiter.guards import check_price_impact, tokens_at_limit
from tradingd.adapters.venues.jupiter.schemas import U64_MAX
from tradingd.adapters.venues.paper import PaperRejected, market_quote_usd, paper_fill
from tradingd.engine.assets import PAPER_VENUE, is_market, quote_mint
from tradingd.engine.config import MAX_ATOMIC
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import Fill, Order
from tradingd.engine.money import bps_of


class JupiterQuotedPaper:
    """A `Venue` (engine/ports.py) for paper agents that fills at Jupiter's ExactIn quote of the
    order, the reference engine's "simulation with real routing".

    Buy: Jupiter quotes `amount_in` less the paper fee (`fee_bps` of `amount_in`, rounded down)
    from the quote mint into the token, with the order's `slippage_bps`; the fill spends the
    whole `amount_in`, receives the quote's `outAmount` and books the fee. Sell: Jupiter quotes
    `amount_in` tokens into the quote mint; the fill receives `outAmount` less `fee_bps` of it.

    Why `outAmount` and not `otherAmountThreshold`: `outAmount` is what the route Jupiter found
    delivers at the moment of the quote, after its AMM and platform fees; a live swap of the same
    quote lands at about that amount and never below the threshold, which only bounds the worst
    case the slippage tolerates (the live venue's fill is the wallet's real delta, in the same
    neighbourhood). Filling every paper order at the threshold would make each one worse than
    live by the whole slippage (1-3 % per trade with common settings), so paper results could
    not be compared with live ones. What paper cannot see (the price moving between quote and
    landing, network and priority fees) is what the paper `fee_bps` stands for; the slippage
    still refuses nothing here, as it refuses nothing live when the price holds.

    Like the live venue, a buy whose quote has a price impact above the order's
    `max_price_impact_pct` is refused (SwapFailure "price_impact_too_high", not transient); an
    exit is never held back by price impact. Jupiter's failures leave as the SwapFailure the
    client raises (a transient one, e.g. a 429 or a timeout, lets the runtime try again)."""

    name = PAPER_VENUE
    in_process = False

    def __init__(
        self,
        jupiter: JupiterClient,
        price_of: Callable[[str], float | None],
        clock: Callable[[], int],
        restrict_intermediate_tokens: bool = True,
        rules_of: Callable[[str], InstrumentRules | None] | None = None,
    ) -> None:
        """`price_of(mint)`: USD per whole unit, None when unknown (the engine's `price_usd`);
        `clock()`: epoch ms for the fill's `ts`; `restrict_intermediate_tokens` as the live
        venue's `[venues.jupiter]` setting, so paper routes like live ones; `rules_of(token)`:
        an exchange market's order-size rules (the engine's `instruments.get`), for the markets
        that fill at the book's price."""
        self.jupiter = jupiter
        self._price_of = price_of
        self._clock = clock
        self.restrict_intermediate_tokens = restrict_intermediate_tokens
        self._rules_of = rules_of

    def execute_now(self, order: Order) -> Fill:
        """Never called (`in_process` is False): a quote needs I/O. Raises SwapFailure."""
        raise SwapFailure(
            "not_in_process", "paper at Jupiter quotes settles asynchronously", transient=False
        )

    async def reconcile(self) -> list[Fill]:
        """Nothing to reconcile: nothing was ever sent."""
        return []

    async def execute(self, order: Order) -> Fill:
        """Quote `order` at Jupiter and fill at the quote (see the class); amounts in atomic
        units, `price_usd` the swap's effective USD per whole token, `ts` the clock's ms.
        Raises SwapFailure (Jupiter's failures; "price_impact_too_high"; "limit_not_met": a
        limit buy quoted above its limit) and PaperRejected (an
        amount that rounds to nothing or a fill above the order's `max_amount_out`; neither
        transient). An exchange market fills as on the paper venue (`paper_fill` with its
        rules)."""
        qmint = quote_mint(order.quote)
        if is_market(order.token):  # no Jupiter route: the book's price, the market's rules
            return paper_fill(
                order,
                self._price_of(order.token),
                self._price_of(qmint),
                self._clock(),
                self._rules_of(order.token) if self._rules_of is not None else None,
                market_quote_usd(order.token, self._price_of),
            )
        if order.side == "buy":
            fee = bps_of(order.amount_in, order.fee_bps)
            input_mint, output_mint, amount = qmint, order.token, order.amount_in - fee
        else:
            fee = 0  # taken from the proceeds once they are known
            input_mint, output_mint, amount = order.token, qmint, order.amount_in
        if not 0 < amount <= U64_MAX:
            raise PaperRejected(f"{order.side} amount {amount} is outside 1..u64: nothing to quote")
        quote = await self.jupiter.quote(
            input_mint=input_mint,
            output_mint=output_mint,
            amount=amount,
            slippage_bps=order.slippage_bps,
            restrict_intermediate_tokens=self.restrict_intermediate_tokens,
        )
        check_price_impact(order, quote)
        if order.side == "buy" and order.limit_price_usd is not None:
            least = tokens_at_limit(quote.in_amount, order, self._price_of(qmint))
            if least is None or quote.out_amount < least:  # fills at the quote: never above it
                raise SwapFailure(
                    "limit_not_met",
                    f"the Jupiter quote is above the limit {order.limit_price_usd} USD",
                    transient=False,
                )
        if order.side == "buy":
            got = quote.out_amount
            if got <= 0:
                raise PaperRejected("buy amount rounds to zero tokens at the Jupiter quote")
            tokens, quote_units = got, quote.in_amount
        else:
            fee = bps_of(quote.out_amount, order.fee_bps)
            got = quote.out_amount - fee
            if got <= 0:
                raise PaperRejected("sell amount rounds to zero quote at the Jupiter quote")
            tokens, quote_units = quote.in_amount, quote.out_amount
        _check_bound(order, got)
        return Fill(
            order_id=order.id,
            amount_in=order.amount_in,
            amount_out=got,
            price_usd=self._usd_per_token(order, tokens, quote_units),
            fee=fee,
            venue_ref=f"paper-jupiter-{order.id}",
            ts=self._clock(),
        )

    def _usd_per_token(self, order: Order, tokens: int, quote_units: int) -> float:
        """The swap's own price, fee excluded as in `paper_fill` and the live venue: quote units
        per whole token (exact, Decimal) at the quote asset's USD price, rounded once to a float;
        `decision_price_usd` when the quote asset has no price."""
        quote_usd = self._price_of(quote_mint(order.quote))
        if not quote_usd or quote_usd <= 0 or tokens <= 0:
            return order.decision_price_usd or 0.0
        per_token = (Decimal(quote_units) / Decimal(10) ** order.quote_decimals) / (
            Decimal(tokens) / Decimal(10) ** order.token_decimals
        )
        return float(per_token * Decimal(repr(quote_usd)))


def _check_bound(order: Order, amount_out: int) -> None:
    """Refuse a fill above the order's `max_amount_out` (or u64 without one), as `paper_fill`
    does: the position or the quote balance must stay within the width of SPL amounts."""
    bound = MAX_ATOMIC if order.max_amount_out is None else order.max_amount_out
    if amount_out > bound:
        what = "position" if order.side == "buy" else "quote balance"
        raise PaperRejected(
            f"fill of {amount_out} atomic units is above the order's bound of {bound}: "
            f"the {what} would pass the u64 maximum"
        )
