"""JupiterQuotedPaper against the fake Jupiter: paper orders fill at the exact quote (fee applied
exactly, rounded down), Jupiter's failures keep their transience, a buy's price impact and the
order's max_amount_out are enforced, nothing but /quote is asked, and a paper agent's buy
signal run through the real Engine and Runtime fills at the quote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiohttp
import pytest
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.errors import SwapFailure
from tradingd.adapters.venues.paper import PaperRejected
from tradingd.adapters.venues.paper_quotes import JupiterQuotedPaper
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Order, Signal, Tick

from tests.fakes.jupiter import QUOTE_PATH
from tests.fakes.solana_chain import SolanaStack, solana_stack

TOKEN = demo_mint("PAPERQUOTES")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SOL_USD = 150.0
# Exact atomic rates the fake quotes at: tokens (6 decimals) per lamport and lamports per token.
BUY_RATE = Fraction(7_499, 100_000)
SELL_RATE = Fraction(13_333, 1_000)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Rig:
    stack: SolanaStack
    venue: JupiterQuotedPaper
    prices: dict[str, float]

    def quote_queries(self) -> list[dict[str, str]]:
        return [r.query for r in self.stack.jupiter.requests if r.path == QUOTE_PATH]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with solana_stack() as stack, aiohttp.ClientSession() as session:
        stack.jupiter.rates[(SOL_MINT, TOKEN)] = BUY_RATE
        stack.jupiter.rates[(TOKEN, SOL_MINT)] = SELL_RATE
        client = JupiterClient(stack.jupiter_url + "/swap/v1", session, api_key=None, timeout_s=5.0)
        prices = {SOL_MINT: SOL_USD}
        yield Rig(stack, JupiterQuotedPaper(client, prices.get, Clock(T0)), prices)


def order(side: str = "buy", amount_in: int = 1_000_000_007, **fields: Any) -> Order:
    return Order(
        id="ord_1",
        agent_id="agt_1",
        position_id="pos_1",
        side=side,  # type: ignore[arg-type]
        purpose="entry" if side == "buy" else "exit",  # type: ignore[arg-type]
        token=TOKEN,
        amount_in=amount_in,
        reason="test",
        created_at=T0,
        venue="paper",
        quote="SOL",
        quote_decimals=9,
        token_decimals=6,
        slippage_bps=fields.pop("slippage_bps", 100),
        fee_bps=fields.pop("fee_bps", 30),
        **fields,
    )


async def test_buy_fills_at_the_quote_of_the_amount_less_the_fee(rig: Rig) -> None:
    # fee = floor(1_000_000_007 × 30 / 10_000) = floor(3_000_000.0021) = 3_000_000 lamports;
    # quoted 997_000_007 lamports × 7_499 / 100_000 = 7_476_503_052_493 / 100_000
    # -> 74_765_030 tokens (rounded down by the quote)
    fill = await rig.venue.execute(order("buy", fee_bps=30))
    assert (fill.amount_in, fill.amount_out, fill.fee) == (1_000_000_007, 74_765_030, 3_000_000)
    assert (fill.venue_ref, fill.ts, fill.order_id) == ("paper-jupiter-ord_1", T0, "ord_1")


async def test_buy_asks_jupiter_for_the_amount_less_the_fee_with_the_orders_slippage(
    rig: Rig,
) -> None:
    await rig.venue.execute(order("buy", fee_bps=30, slippage_bps=250))
    [query] = rig.quote_queries()
    assert (query["inputMint"], query["outputMint"]) == (SOL_MINT, TOKEN)
    assert (query["amount"], query["slippageBps"], query["swapMode"]) == (
        "997000007",
        "250",
        "ExactIn",
    )
    assert query["restrictIntermediateTokens"] == "true"


async def test_buy_price_is_the_swaps_own_price_at_the_quote_assets_usd_price(rig: Rig) -> None:
    # 0.997000007 SOL × 150 USD for 74.765030 tokens = 149.55000105 / 74.76503 USD per token
    fill = await rig.venue.execute(order("buy", fee_bps=30))
    assert fill.price_usd == pytest.approx(149.55000105 / 74.76503, rel=1e-15)


async def test_sell_fills_at_the_quote_less_the_fee_on_the_proceeds(rig: Rig) -> None:
    # gross = floor(12_345_678 × 13_333 / 1_000) = floor(164_604_924.774) = 164_604_924 lamports;
    # fee = floor(164_604_924 × 25 / 10_000) = floor(411_512.31) = 411_512; out = 164_193_412
    fill = await rig.venue.execute(order("sell", 12_345_678, fee_bps=25))
    assert (fill.amount_in, fill.amount_out, fill.fee) == (12_345_678, 164_193_412, 411_512)
    [query] = rig.quote_queries()
    assert (query["inputMint"], query["outputMint"], query["amount"]) == (
        TOKEN,
        SOL_MINT,
        "12345678",
    )


async def test_sell_price_excludes_the_fee(rig: Rig) -> None:
    # 0.164604924 SOL × 150 USD for 12.345678 tokens
    fill = await rig.venue.execute(order("sell", 12_345_678, fee_bps=25))
    assert fill.price_usd == pytest.approx(24.6907386 / 12.345678, rel=1e-15)


async def test_price_falls_back_to_the_decision_price_without_a_quote_price(rig: Rig) -> None:
    del rig.prices[SOL_MINT]
    fill = await rig.venue.execute(order("buy", decision_price_usd=2.5))
    assert fill.price_usd == 2.5


async def test_nothing_but_a_quote_is_asked_of_jupiter(rig: Rig) -> None:
    await rig.venue.execute(order("buy"))
    await rig.venue.execute(order("sell", 1_000_000))
    assert [r.path for r in rig.stack.jupiter.requests] == [QUOTE_PATH, QUOTE_PATH]
    assert rig.stack.rpc.sends == []


async def test_no_route_is_a_failure_that_is_not_retried(rig: Rig) -> None:
    rig.stack.jupiter.quote_errors.append("NO_ROUTES_FOUND")
    with pytest.raises(SwapFailure) as caught:
        await rig.venue.execute(order("buy"))
    assert (caught.value.reason, caught.value.transient) == ("jupiter_no_routes_found", False)


async def test_rate_limit_is_a_transient_failure(rig: Rig) -> None:
    rig.stack.jupiter.rate_limit()
    with pytest.raises(SwapFailure) as caught:
        await rig.venue.execute(order("buy"))
    assert (caught.value.reason, caught.value.transient) == ("jupiter_rate_limited", True)


async def test_buy_above_the_price_impact_limit_is_refused(rig: Rig) -> None:
    rig.stack.jupiter.price_impact_pct = "0.025"  # a fraction: 2.5 %
    with pytest.raises(SwapFailure) as caught:
        await rig.venue.execute(order("buy", max_price_impact_pct=2.0))
    assert (caught.value.reason, caught.value.transient) == ("price_impact_too_high", False)


async def test_buy_at_the_price_impact_limit_fills(rig: Rig) -> None:
    rig.stack.jupiter.price_impact_pct = "0.02"  # exactly 2 %
    fill = await rig.venue.execute(order("buy", fee_bps=30, max_price_impact_pct=2.0))
    assert fill.amount_out == 74_765_030


async def test_sell_is_never_held_back_by_price_impact(rig: Rig) -> None:
    rig.stack.jupiter.price_impact_pct = "0.5"
    fill = await rig.venue.execute(order("sell", 12_345_678, fee_bps=25, max_price_impact_pct=1.0))
    assert fill.amount_out == 164_193_412


async def test_fill_above_max_amount_out_is_refused(rig: Rig) -> None:
    with pytest.raises(PaperRejected) as caught:
        await rig.venue.execute(order("buy", fee_bps=30, max_amount_out=74_765_029))
    assert caught.value.transient is False


async def test_fill_at_max_amount_out_is_accepted(rig: Rig) -> None:
    fill = await rig.venue.execute(order("buy", fee_bps=30, max_amount_out=74_765_030))
    assert fill.amount_out == 74_765_030


async def test_buy_whose_fee_takes_everything_is_refused_without_a_quote(rig: Rig) -> None:
    # 1 lamport less floor(1 × 10_000 / 10_000) = 0: nothing to swap
    with pytest.raises(PaperRejected):
        await rig.venue.execute(order("buy", 1, fee_bps=10_000))
    assert rig.quote_queries() == []


async def test_execute_now_refuses_because_a_quote_needs_io(rig: Rig) -> None:
    assert rig.venue.in_process is False
    with pytest.raises(SwapFailure) as caught:
        rig.venue.execute_now(order("buy"))
    assert caught.value.reason == "not_in_process"


async def test_reconcile_has_nothing(rig: Rig) -> None:
    assert await rig.venue.reconcile() == []


async def test_paper_agent_buy_signal_fills_at_the_jupiter_quote_through_the_runtime(
    rig: Rig,
) -> None:
    clock = Clock(T0)
    engine = Engine(clock)
    rig.venue = JupiterQuotedPaper(rig.venue.jupiter, engine.price_usd, clock)
    runtime = Runtime(engine, {"paper": rig.venue}, clock)
    filled: list[ev.OrderFilled] = []
    runtime.event_subscribers.append(
        lambda events: filled.extend(e for e in events if isinstance(e, ev.OrderFilled))
    )
    config = config_from_builtins(
        {"sizing": {"amount": "100000000"}, "execution": {"fee_bps": 50, "slippage_bps": 100}}
    )
    runtime.apply(engine.create_agent, "a", "paper", config, "SOL", None, "a")
    runtime.apply(engine.deposit, "a", "SOL", 10**9)
    runtime.push_ticks([Tick(SOL_MINT, SOL_USD, T0, decimals=9), Tick(TOKEN, 2.0, T0, decimals=6)])
    runtime.submit_signal(
        Signal(id="sig-1", token=TOKEN, strength=3, received_at=T0, expires_at=T0 + 30_000)
    )
    assert await runtime.wait_orders(5.0)

    # 0.1 SOL reserved; fee floor(100_000_000 × 50 / 10_000) = 500_000 lamports; quoted
    # 99_500_000 × 7_499 / 100_000 = 7_461_505 (floor of 7_461_505.0) tokens
    [event] = filled
    trade = event.trade
    assert (trade.side, trade.amount, trade.quote_amount, trade.fee) == (
        "buy",
        7_461_505,
        100_000_000,
        500_000,
    )
    assert trade.venue_ref.startswith("paper-jupiter-")
    [query] = rig.quote_queries()
    assert query["amount"] == "99500000"
    [position] = [p for p in engine.positions.values() if p.agent_id == "a"]
    assert position.amount == 7_461_505


async def test_limit_buy_quoted_above_its_limit_is_refused_not_filled(rig: Rig) -> None:
    # 997_000_007 lamports (150 USD/SOL) buy 74_765_030 token units: 2.000266… USD a token
    with pytest.raises(SwapFailure) as failure:
        await rig.venue.execute(order("buy", fee_bps=30, limit_price_usd=2.0))
    assert failure.value.reason == "limit_not_met" and not failure.value.transient


async def test_limit_buy_quoted_at_or_below_its_limit_fills_at_the_quote(rig: Rig) -> None:
    fill = await rig.venue.execute(order("buy", fee_bps=30, limit_price_usd=2.0003))
    assert fill.amount_out == 74_765_030 and fill.price_usd <= 2.0003
