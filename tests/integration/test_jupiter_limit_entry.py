"""A resting limit buy carried out on Jupiter never pays more than its limit: the swap's least
output (otherAmountThreshold) must buy at or below the limit, so the slippage is narrowed to
what the limit allows, and a quote above the limit sends nothing. Fake Jupiter + Solana RPC
(tests/fakes), rates: 1,500 token atomic units per lamport = 0.0001 USD a token at 150 USD/SOL."""

from __future__ import annotations

from tradingd.engine.model import EntryCondition, Signal, Tick

from tests.integration.jupiter_rig import TOKEN, Rig, jupiter_rig

BUY = 500_000_000
RESERVE = 5_000 + 1_000_000 + 2_039_280
SWAP_IN = BUY - RESERVE  # 496_955_720 lamports into the swap


def rest_limit(rig: Rig, price: float) -> None:
    now = rig.clock()
    rig.runtime.submit_signal(
        Signal(id="lim", token=TOKEN, side="buy", strength=5, received_at=now,
               expires_at=now + 60_000, decimals=6,
               entry=EntryCondition(type="limit", price_usd=price))
    )  # fmt: skip


async def test_limit_at_the_market_price_swaps_with_no_slippage_left() -> None:
    async with jupiter_rig() as rig:
        rest_limit(rig, 0.0001)  # marketable: the token is at 0.0001, the quote exactly there
        await rig.settle()
        (fill,) = rig.fills()
        assert fill.trade.amount == SWAP_IN * 1500 == 745_433_580_000
        first, second = rig.quotes()
        assert (first["slippageBps"], second["slippageBps"]) == ("100", "0")
        (swap,) = rig.journal.swaps
        assert swap.slippage_bps == 0 and swap.min_out == SWAP_IN * 1500


async def test_limit_above_the_market_keeps_only_the_slippage_the_limit_allows() -> None:
    async with jupiter_rig() as rig:
        rest_limit(rig, 0.000101)  # 1 % above: out × 100/101 is the least it may take
        await rig.settle()
        (swap,) = rig.journal.swaps
        assert swap.slippage_bps == 99  # floor((1 - 100/101) × 10_000)
        assert swap.min_out == SWAP_IN * 1500 * 9901 // 10_000
        assert swap.min_out * 101 >= SWAP_IN * 1500 * 100  # at or below the limit


async def test_limit_below_the_quote_fails_without_sending_and_releases_the_quote() -> None:
    async with jupiter_rig() as rig:
        rig.runtime.push_ticks([Tick(TOKEN, 0.0000995, rig.clock(), decimals=6)])
        rest_limit(rig, 0.0000995)  # the tick meets it, but Jupiter quotes 0.0001
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "limit_not_met"
        assert rig.stack.rpc.sends == [] and rig.journal.swaps == []
        assert rig.engine.ledger.balance(rig.agent_id, "SOL").reserved == 0
        assert rig.sol() == 2 * 10**9
