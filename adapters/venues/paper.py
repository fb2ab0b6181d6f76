"""Paper venue: fills at the latest price with the order's slippage and fee, deterministically.

Prices are USD per whole token; quote amounts convert through the quote asset's USD price.
`paper_fill` is pure (replay and tests call it directly); `PaperVenue` is the async Venue the
runtime uses, reading prices from the engine's price book."""

from __future__ import annotations

from collections.abc import Callable

from adapters.venues.errors import VenueError
from engine import events as ev
from engine.assets import quote_mint
from engine.core import Engine
from engine.errors import InvariantViolation
from engine.model import Fill, Order


class PaperRejected(VenueError):
    """The paper venue cannot fill: no price, or the amount rounds to nothing."""


def paper_fill(order: Order, token_usd: float | None, quote_usd: float | None, now: int) -> Fill:
    if not token_usd or token_usd <= 0 or not quote_usd or quote_usd <= 0:
        raise PaperRejected("no price for token or quote")
    slip = order.slippage_bps / 10_000
    tscale, qscale = 10**order.token_decimals, 10**order.quote_decimals
    if order.side == "buy":
        fee = order.amount_in * order.fee_bps // 10_000
        price = token_usd * (1 + slip)
        usd = (order.amount_in - fee) / qscale * quote_usd
        tokens = int(usd / price * tscale)
        if tokens <= 0:
            raise PaperRejected("buy amount rounds to zero tokens")
        return Fill(
            order_id=order.id,
            amount_in=order.amount_in,
            amount_out=tokens,
            price_usd=price,
            fee=fee,
            venue_ref=f"paper-{order.id}",
            ts=now,
        )
    price = token_usd * (1 - slip)
    gross = int(order.amount_in / tscale * price / quote_usd * qscale)
    fee = gross * order.fee_bps // 10_000
    return Fill(
        order_id=order.id,
        amount_in=order.amount_in,
        amount_out=gross - fee,
        price_usd=price,
        fee=fee,
        venue_ref=f"paper-{order.id}",
        ts=now,
    )


class PaperVenue:
    name = "paper"
    in_process = True  # no I/O: the runtime settles its orders with execute_now() in the same loop turn

    def __init__(self, price_of: Callable[[str], float | None], clock: Callable[[], int]) -> None:
        self._price_of = price_of
        self._clock = clock

    def execute_now(self, order: Order) -> Fill:
        return paper_fill(
            order,
            self._price_of(order.token),
            self._price_of(quote_mint(order.quote)),
            self._clock(),
        )

    async def execute(self, order: Order) -> Fill:
        return self.execute_now(order)

    async def reconcile(self) -> list[Fill]:
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
