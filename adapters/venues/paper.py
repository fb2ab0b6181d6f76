"""Paper venue: fills at the latest price with the order's slippage and fee, deterministically.

Prices are USD per whole token; quote amounts convert through the quote asset's USD price.
`paper_fill` is pure (replay and tests call it directly); `PaperVenue` is the async Venue the
runtime uses, reading prices from the engine's price book."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tradingd.engine import events as ev
from tradingd.engine.assets import quote_mint
from tradingd.engine.config import MAX_ATOMIC
from tradingd.engine.core import Engine
from tradingd.engine.errors import InvariantViolation, VenueError
from tradingd.engine.model import Fill, Order
from tradingd.engine.money import bps_of, decimal_ratio, quote_value, slipped, token_amount


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


def paper_fill(order: Order, token_usd: float | None, quote_usd: float | None, now: int) -> Fill:
    """Fill `order` at `token_usd` moved against the taker by `slippage_bps`, less `fee_bps` of
    the quote side. Exact (engine/money.py): the prices as written, one rounding down per
    amount. Raises PaperRejected without a price, when an amount rounds to zero, or when the fill
    would return more than the order's `max_amount_out` (the position's tokens or the quote
    balance would pass the u64 maximum, the width of SPL amounts: e.g. a buy at 1e-12 USD with 9
    decimals, a DCA on a huge position, a sell at 1e299 USD)."""
    if not token_usd or token_usd <= 0 or not quote_usd or quote_usd <= 0:
        raise PaperRejected("no price for token or quote")
    td, qd = order.token_decimals, order.quote_decimals
    if order.side == "buy":
        fee = bps_of(order.amount_in, order.fee_bps)
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
        tokens = token_amount(order.amount_in - fee, qd, quote_usd, price, td)
        if tokens <= 0:
            raise PaperRejected("buy amount rounds to zero tokens")
        _check_bound(order, tokens, "token")
        return Fill(
            order_id=order.id,
            amount_in=order.amount_in,
            amount_out=tokens,
            price_usd=price[0] / price[1],
            fee=fee,
            venue_ref=f"paper-{order.id}",
            ts=now,
        )
    price = slipped(token_usd, -order.slippage_bps)
    gross = quote_value(order.amount_in, td, price, quote_usd, qd)
    if gross <= 0:
        raise PaperRejected("sell amount rounds to zero quote")
    fee = bps_of(gross, order.fee_bps)
    _check_bound(order, gross - fee, "quote")
    return Fill(
        order_id=order.id,
        amount_in=order.amount_in,
        amount_out=gross - fee,
        price_usd=price[0] / price[1],
        fee=fee,
        venue_ref=f"paper-{order.id}",
        ts=now,
    )


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
    ) -> None:
        self._price_of = price_of
        self._clock = clock
        self.fill_delay_ms = fill_delay_ms

    @property
    def in_process(self) -> bool:
        """True without a fill delay: the runtime settles with `execute_now`."""
        return self.fill_delay_ms == 0

    def execute_now(self, order: Order) -> Fill:
        """`paper_fill` at the book's current token and quote prices and the clock's time (ms).
        Raises PaperRejected (a VenueError, not transient)."""
        return paper_fill(
            order,
            self._price_of(order.token),
            self._price_of(quote_mint(order.quote)),
            self._clock(),
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
    rejections). Fails loudly if fills keep producing orders past `max_rounds`."""
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
                    order, engine.price_usd(order.token), engine.quote_usd(order.quote), now
                )
            except PaperRejected as exc:
                rejected += 1
                engine.on_order_failed(order.id, str(exc))
            else:
                fills += 1
                engine.on_fill(fill)
    raise InvariantViolation(f"orders still produced after {max_rounds} settle rounds")
