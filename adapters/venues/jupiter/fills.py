"""A landed swap's fill, from what the wallet's balances really moved (getTransaction's deltas,
../shared/contracts/solana-rpc.md "Swap amounts"), for a SOL-quoted order. Pure."""

from __future__ import annotations

from decimal import Decimal

from tradingd.engine.model import Fill, Order, SwapSubmission


def fill_from_deltas(
    order: Order,
    swap: SwapSubmission,
    lamports_delta: int,
    fee: int,
    token_delta: int,
    lost_fees: int,
    sol_usd: float | None,
    now: int,
) -> tuple[Fill, int]:
    """(fill, lamports the fill cannot carry in its amounts — 0 normally — also in `fill.charge`).

    `lamports_delta`: post − pre lamports of the wallet (includes −`fee`, the network fee, and
    any new token account's rent); `token_delta`: the wallet's change of the order's token
    (atomic); `lost_fees`: lamports of this order's earlier attempts that landed with an error.
    Buy: `amount_in` = every lamport that left the wallet (swap, fees, rent) plus `lost_fees`,
    capped at the reservation (the rest is `charge`), `amount_out` = tokens received. Sell:
    `amount_in` = tokens that left, `amount_out` = lamports received net of all fees, or 0 with
    the fees above the proceeds as `charge` (dust sold at a loss). `fee` = network fees of every
    attempt. So the book moves by exactly what the wallet did.
    `price_usd`: the swap's own exact rate (its input and output) at `sol_usd`, else the order's
    decision price."""
    td, qd = order.token_decimals, order.quote_decimals
    if order.side == "buy":
        spent, got = lost_fees - lamports_delta, token_delta
        over = max(spent - order.amount_in, 0)
        spent -= over
        lamports, tokens = swap.in_amount, got
    else:
        net = lamports_delta - lost_fees
        got, over = max(net, 0), max(-net, 0)
        spent = min(-token_delta, order.amount_in)
        lamports, tokens = lamports_delta + fee, spent
    fill = Fill(
        order_id=order.id,
        amount_in=spent,
        amount_out=got,
        price_usd=usd_per_token(lamports, tokens, td, qd, sol_usd, order.decision_price_usd),
        fee=fee + lost_fees,
        venue_ref=swap.signature,
        ts=now,
        charge=over,
    )
    return fill, over


def usd_per_token(
    lamports: int, tokens: int, td: int, qd: int, sol_usd: float | None, fallback: float | None
) -> float:
    """USD per whole token of a swap of `lamports` (quote atomic, `qd` decimals) for `tokens`
    (atomic, `td` decimals), exact from the values as written, then the nearest float."""
    if tokens <= 0 or lamports <= 0 or not sol_usd:
        return fallback or 0.0
    quote_units = Decimal(lamports) / Decimal(10) ** qd
    token_units = Decimal(tokens) / Decimal(10) ** td
    return float(quote_units * Decimal(repr(sol_usd)) / token_units)
