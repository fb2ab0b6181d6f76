"""The Jupiter venue end to end inside one process: a real Engine and Runtime, the venue, and
fake Jupiter + Solana RPC servers speaking the contracts' wire formats (tests/fakes). Amounts
are the chain's, checked to the atomic unit."""

from __future__ import annotations

import asyncio
from fractions import Fraction

from tradingd.engine.assets import SOL_MINT

from tests.integration.jupiter_rig import TOKEN, WALLET_LAMPORTS, jupiter_rig

RESERVE = 5_000 + 1_000_000 + 2_039_280  # base fee + max priority fee + token-account rent
BUY = 500_000_000  # the agent's fixed size, lamports
SWAP_IN = BUY - RESERVE  # 496_955_720 lamports go into the swap
TOKENS = SWAP_IN * 1500  # the fake's rate: 745_433_580_000 token atomic units


async def test_buy_fills_with_the_amounts_the_wallet_really_moved() -> None:
    async with jupiter_rig() as rig:
        wallet = str(rig.wallet.pubkey())
        rig.buy()
        await rig.settle()
        (fill,) = rig.fills()
        chain_spent = WALLET_LAMPORTS - rig.chain.balance(wallet)
        assert rig.chain.balance(wallet, TOKEN) == TOKENS == 745_433_580_000
        assert fill.trade.amount == TOKENS
        assert fill.trade.quote_amount == chain_spent  # swap input + network fee, to the lamport
        assert chain_spent - SWAP_IN == fill.trade.fee > 0
        assert rig.sol() == 2 * 10**9 - chain_spent
        (position,) = rig.engine.live_positions[rig.agent_id].values()
        assert position.amount == TOKENS and position.cost == chain_spent
        assert fill.trade.venue_ref == rig.stack.rpc.sends[0][0]


async def test_the_swap_is_recorded_before_the_rpc_sees_it() -> None:
    async with jupiter_rig() as rig:
        rig.buy()
        await rig.settle()
        assert rig.journal.rpc_sends_at_record == [0]
        (swap,) = rig.journal.swaps
        assert swap.signature == rig.stack.rpc.sends[0][0]
        assert swap.in_amount == SWAP_IN and swap.attempt == 1


async def test_a_swap_that_cannot_be_recorded_is_never_sent() -> None:
    async with jupiter_rig(max_transient_failures=2) as rig:
        rig.journal.fail = True
        rig.buy()
        await rig.settle()
        assert rig.stack.rpc.sends == []
        (failed,) = rig.failures()
        assert failed.reason == "not_durable"
        assert (
            rig.sol() == 2 * 10**9 and rig.engine.ledger.balance(rig.agent_id, "SOL").reserved == 0
        )


async def test_sell_proceeds_are_the_lamports_received_net_of_the_fee() -> None:
    async with jupiter_rig() as rig:
        wallet = str(rig.wallet.pubkey())
        rig.buy()
        await rig.settle()
        before_chain, before_book = rig.chain.balance(wallet), rig.sol()
        rig.sell()
        await rig.settle()
        sell = rig.fills()[-1].trade
        assert sell.side == "sell" and sell.amount == TOKENS
        received = rig.chain.balance(wallet) - before_chain
        assert sell.quote_amount == received == TOKENS // 1500 - sell.fee
        assert rig.sol() == before_book + received
        assert rig.chain.balance(wallet, TOKEN) == 0
        assert rig.engine.live_positions[rig.agent_id] == {}


async def test_exit_hit_by_slippage_retries_wider_and_books_the_lost_fee() -> None:
    async with jupiter_rig() as rig:
        wallet = str(rig.wallet.pubkey())
        rig.buy()
        await rig.settle()
        before_chain, before_book = rig.chain.balance(wallet), rig.sol()
        rig.stack.rpc.fates.append("slippage")  # the first sell lands with 6001
        rig.sell()
        await rig.settle()
        sell = rig.fills()[-1].trade
        slippages = [int(q["slippageBps"]) for q in rig.quotes()[1:]]
        assert slippages == [100, 200]  # the agent's 100 bps, then one 100 bps step wider
        received = rig.chain.balance(wallet) - before_chain  # both fees already taken
        assert rig.sol() == before_book + received
        assert sell.quote_amount == received
        assert sell.fee == before_book + TOKENS // 1500 - rig.sol()  # both attempts' fees


async def test_exit_slippage_is_capped_at_max_exit_slippage_bps() -> None:
    async with jupiter_rig(max_exit_slippage_bps=250, max_exit_attempts=4) as rig:
        rig.buy()
        await rig.settle()
        rig.stack.rpc.fates.extend(["slippage"] * 4)
        rig.sell()
        await rig.settle()
        assert [int(q["slippageBps"]) for q in rig.quotes()[1:]] == [100, 200, 250, 250]
        failed = rig.failures()[-1]
        assert failed.reason == "slippage_exceeded"
        assert failed.fee > 0  # four landed failures cost their fees, booked
        (position,) = rig.engine.live_positions[rig.agent_id].values()
        assert position.status == "open" and position.amount == TOKENS


async def test_landed_insufficient_funds_fails_once_with_its_fee_and_an_alert() -> None:
    async with jupiter_rig() as rig:
        rig.stack.rpc.fates.append("insufficient")
        rig.buy()
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "insufficient_funds"
        assert len(rig.stack.rpc.sends) == 1
        assert failed.fee > 0 and rig.sol() == 2 * 10**9 - failed.fee
        assert [a[0] for a in rig.alerts] == ["insufficient_funds"]


async def test_permanent_jupiter_errors_are_not_retried() -> None:
    for code in ("TOKEN_NOT_TRADABLE", "NO_ROUTES_FOUND", "MARKET_NOT_FOUND"):
        async with jupiter_rig() as rig:
            rig.stack.jupiter.quote_errors.append(code)
            rig.buy()
            await rig.settle()
            (failed,) = rig.failures()
            assert failed.reason == f"jupiter_{code.lower()}"
            assert len(rig.quotes()) == 1 and rig.stack.rpc.sends == []
            assert rig.engine.ledger.balance(rig.agent_id, "SOL").reserved == 0


async def test_retryable_jupiter_errors_are_retried_with_a_fresh_quote() -> None:
    for code in ("COULD_NOT_FIND_ANY_ROUTE", "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT"):
        async with jupiter_rig() as rig:
            rig.stack.jupiter.quote_errors.append(code)
            rig.buy()
            await rig.settle()
            assert len(rig.quotes()) == 2
            assert len(rig.fills()) == 1 and rig.failures() == []


async def test_rate_limited_quote_waits_and_retries() -> None:
    async with jupiter_rig() as rig:
        rig.stack.jupiter.rate_limit(n=1, reset_in_s=0)
        rig.buy()
        await rig.settle()
        assert len(rig.fills()) == 1


async def test_a_swap_for_another_wallet_is_refused_unsigned() -> None:
    async with jupiter_rig() as rig:
        rig.stack.jupiter.swap_faults.append("wrong_payer")
        rig.buy()
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "wrong_wallet"
        assert rig.stack.rpc.sends == [] and rig.journal.swaps == []
        assert [a[0] for a in rig.alerts] == ["swap_for_wrong_wallet"]


async def test_price_impact_over_the_agents_limit_refuses_the_buy() -> None:
    config = {"sizing": {"mode": "fixed", "amount": "500000000"},
              "signals": {"max_price_impact_pct": 0.5}}  # fmt: skip
    async with jupiter_rig(config=config) as rig:
        rig.stack.jupiter.price_impact_pct = "0.01"  # a fraction: 1 %
        rig.buy()
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "price_impact_too_high" and rig.stack.rpc.sends == []


async def test_never_landing_swap_is_dead_once_its_blockhash_expires() -> None:
    async with jupiter_rig(max_buy_attempts=1) as rig:
        rig.stack.rpc.fates.append("never")
        rig.buy()
        await _until(lambda: rig.stack.rpc.sends)
        await asyncio.sleep(0.1)
        assert rig.failures() == []  # a returned signature proves nothing: still waiting
        rig.chain.advance(200)
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "blockhash_expired" and failed.fee == 0
        assert rig.sol() == 2 * 10**9
        assert len({sig for sig, _ in rig.stack.rpc.sends}) == 1  # rebroadcast, never re-signed


async def test_a_buy_is_not_retried_past_its_signal_expiry() -> None:
    async with jupiter_rig(max_buy_attempts=5) as rig:
        rig.stack.rpc.fates.append("never")
        rig.buy(expires_in_ms=30_000)
        await _until(lambda: rig.stack.rpc.sends)
        rig.clock.now += 60_000
        rig.chain.advance(200)
        await rig.settle()
        (failed,) = rig.failures()
        assert failed.reason == "blockhash_expired"
        assert len({sig for sig, _ in rig.stack.rpc.sends}) == 1


async def test_send_timeout_still_confirms_the_swap_that_landed() -> None:
    async with jupiter_rig() as rig:
        rig.stack.rpc.timeout_hold_s = 5.0
        rig.stack.rpc.fates.append("timeout")  # lands, but the send's answer never comes
        rig.buy()
        await rig.settle(timeout_s=20.0)
        assert len(rig.fills()) == 1
        assert rig.stack.rpc.executions == 1


async def test_rpc_429_and_503_on_send_are_waited_out_without_a_second_swap() -> None:
    async with jupiter_rig() as rig:
        rig.stack.rpc.fail_next(429, "Too many requests", method="sendTransaction",
                                headers={"Retry-After": "0"})  # fmt: skip
        rig.stack.rpc.fail_next(503, "<html>busy</html>", method="getSignatureStatuses",
                                content_type="text/html")  # fmt: skip
        rig.buy()
        await rig.settle()
        assert len(rig.fills()) == 1 and rig.stack.rpc.executions == 1
        assert len(rig.journal.swaps) == 1


async def test_buy_of_a_locked_wallet_is_skipped_with_the_reason() -> None:
    async with jupiter_rig() as rig:
        rig.runtime.apply(rig.engine.set_wallet_unlocked, "w1", False)
        rig.buy()
        await rig.settle()
        record = rig.engine.signals["s1"]
        assert [(x.status, x.reason) for x in record.executions.values()] == [
            ("skipped", "wallet_locked")
        ]
        assert rig.stack.jupiter.requests == []


async def test_exit_of_a_locked_wallet_waits_for_the_unlock_with_an_alert() -> None:
    async with jupiter_rig() as rig:
        rig.buy()
        await rig.settle()
        key = rig.unlocked.pop("w1")
        rig.sell()
        await _until(lambda: rig.alerts)
        assert [a[0] for a in rig.alerts] == ["exit_waiting_for_wallet"]
        assert len(rig.stack.rpc.sends) == 1  # only the buy
        rig.unlocked["w1"] = key
        rig.gate.changed("w1")
        await rig.settle()
        assert rig.fills()[-1].trade.side == "sell"


async def test_a_recorded_swap_is_resolved_not_sent_again() -> None:
    """What a restart does: the order comes back with its recorded swap; the venue resolves
    that signature (it landed) and fills from its receipt without signing anything new."""
    async with jupiter_rig() as rig:
        rig.stack.rpc.timeout_hold_s = 5.0
        rig.stack.rpc.fates.append("timeout")
        rig.buy()
        await _until(lambda: rig.journal.swaps and rig.stack.rpc.executions)
        for task in list(rig.runtime.in_flight.values()):  # the process dies here
            task.cancel()
        await _until(lambda: not rig.runtime.in_flight)
        (order,) = rig.engine.orders.values()
        assert order.swap is not None
        rig.runtime.resume_orders([order])
        await rig.settle(timeout_s=20.0)
        (fill,) = rig.fills()
        assert fill.trade.venue_ref == order.swap.signature
        assert len(rig.journal.swaps) == 1 and rig.stack.rpc.executions == 1


async def _until(predicate: object, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_sol_is_the_only_quote_a_jupiter_agent_takes() -> None:
    import pytest
    from tradingd.adapters.venues import check_agent_venue
    from tradingd.engine.errors import ValidationError

    check_agent_venue("jupiter", "w1", {"paper", "jupiter"}, quote="SOL")
    check_agent_venue("jupiter", "w1", {"paper", "jupiter"}, quote=SOL_MINT)
    with pytest.raises(ValidationError) as exc:
        check_agent_venue("jupiter", "w1", {"paper", "jupiter"}, quote="USDC")
    assert exc.value.path == "$.quote"


async def test_a_receipt_without_owners_is_booked_at_the_swaps_guaranteed_minimum() -> None:
    async with jupiter_rig() as rig:
        rig.stack.rpc.omit_token_owner = True  # an old node: whose token account is unknown
        rig.buy()
        await rig.settle()
        (fill,) = rig.fills()
        (swap,) = rig.journal.swaps
        assert fill.trade.amount == swap.min_out < TOKENS  # never more than the program enforced
        assert fill.trade.quote_amount == SWAP_IN + fill.trade.fee
        assert [a[0] for a in rig.alerts] == ["swap_receipt_unreadable"]


async def test_auto_priority_fee_takes_the_percentile_of_recent_fees_capped() -> None:
    async with jupiter_rig(priority_fee="auto", priority_fee_percentile=75,
                           max_priority_fee_lamports=50_000) as rig:  # fmt: skip
        rig.stack.rpc.priority_fees = [100, 200, 300, 400]  # µlamports per CU
        rig.buy()
        await rig.settle()
        body = rig.stack.jupiter.swap_bodies[0]
        assert body["prioritizationFeeLamports"] == 300 * 300_000 // 1_000_000  # 90 lamports
        assert rig.stack.rpc.calls["getRecentPrioritizationFees"] == 1


async def test_an_agents_fixed_priority_fee_wins_and_is_capped() -> None:
    config = {"sizing": {"mode": "fixed", "amount": "500000000"},
              "execution": {"priority_fee_lamports": 5_000_000}}  # fmt: skip
    async with jupiter_rig(config=config, max_priority_fee_lamports=70_000,
                           fee_reserve_lamports=200_000) as rig:  # fmt: skip
        rig.buy()
        await rig.settle()
        assert rig.stack.jupiter.swap_bodies[0]["prioritizationFeeLamports"] == 70_000
        assert rig.stack.rpc.calls["getRecentPrioritizationFees"] == 0


def test_auto_priority_fee_is_the_nearest_rank_percentile() -> None:
    from tradingd.adapters.venues.jupiter.venue import auto_priority_fee

    assert auto_priority_fee([], 75, 300_000, 10**9) == 0
    assert auto_priority_fee([5], 1, 1_000_000, 10**9) == 5
    assert auto_priority_fee([10, 40, 20, 30], 50, 1_000_000, 10**9) == 20
    assert auto_priority_fee([10, 40, 20, 30], 100, 1_000_000, 25) == 25


async def test_a_swap_gone_from_the_status_cache_is_found_in_the_ledger_not_declared_dead() -> None:
    """After long downtime the node's recent status cache no longer knows a swap that landed;
    only getTransaction (the ledger) does. It must be filled, not taken for expired."""
    async with jupiter_rig(max_buy_attempts=1) as rig:
        rig.stack.rpc._status = lambda _sig: None  # the fake node's status cache forgot it
        rig.buy()
        await _until(lambda: rig.stack.rpc.executions)
        rig.chain.advance(200)
        await rig.settle()
        assert rig.failures() == []
        (fill,) = rig.fills()
        assert fill.trade.amount == TOKENS


async def test_a_dust_sell_that_costs_more_than_it_brings_books_the_net_loss() -> None:
    """Attack case H1: proceeds of 1 lamport for a 5,000-lamport fee: the wallet lost 4,999
    lamports net and the book must say so (not proceeds 0 and the fee forgotten)."""
    async with jupiter_rig() as rig:
        wallet = str(rig.wallet.pubkey())
        rig.buy()
        await rig.settle()
        rig.stack.jupiter.rates[(TOKEN, SOL_MINT)] = Fraction(1, TOKENS)  # the lot is worth 1
        before_chain, before_book = rig.chain.balance(wallet), rig.sol()
        rig.sell()
        await rig.settle()
        sell = rig.fills()[-1].trade
        assert rig.chain.balance(wallet) - before_chain == 1 - 5_000 == -4_999
        assert sell.quote_amount == 0 and sell.fee == 5_000
        assert rig.sol() == before_book - 4_999


async def test_fees_of_failed_attempts_before_a_crash_are_booked_after_the_restart() -> None:
    """Attack case H2: an exit's first swap lands with 6001 (fee charged), the second lands while
    the process dies; after the restart the fill carries both fees: book == wallet."""
    async with jupiter_rig() as rig:
        wallet = str(rig.wallet.pubkey())
        rig.buy()
        await rig.settle()
        before_chain, before_book = rig.chain.balance(wallet), rig.sol()
        rig.stack.rpc.timeout_hold_s = 5.0
        rig.stack.rpc.fates.extend(["slippage", "timeout"])
        rig.sell()
        await _until(lambda: len(rig.journal.swaps) == 3 and rig.stack.rpc.executions == 2)
        for task in list(rig.runtime.in_flight.values()):  # the process dies here
            task.cancel()
        await _until(lambda: not rig.runtime.in_flight)
        (order,) = rig.engine.orders.values()
        assert order.swap is not None and order.swap.prior_fees == 5_000
        rig.runtime.resume_orders([order])
        await rig.settle(timeout_s=20.0)
        sell = rig.fills()[-1].trade
        assert sell.fee == 10_000
        assert rig.sol() - before_book == rig.chain.balance(wallet) - before_chain


async def test_rate_limits_before_signing_do_not_use_up_the_buys_attempts() -> None:
    """Attack case M2: three 429s in a row, max_buy_attempts = 1: the buy still fills."""
    async with jupiter_rig(max_buy_attempts=1) as rig:
        rig.stack.jupiter.rate_limit(n=3, reset_in_s=0)
        rig.buy()
        await rig.settle()
        assert len(rig.fills()) == 1 and len(rig.journal.swaps) == 1


async def test_a_receipt_that_never_comes_keeps_the_order_in_flight_with_an_alert() -> None:
    """Attack case M1: a confirmed swap whose getTransaction stays null: amounts unknown, so the
    order is not settled either way, and the operator is told."""
    missing: list[str] = []
    async with jupiter_rig(receipt_polls=3) as rig:
        rig.venue.lander._on_receipt_missing = missing.append
        rig.stack.rpc.transaction_null_polls = 10**6
        rig.buy()
        await _until(lambda: missing)
        assert missing == [rig.journal.swaps[0].signature]
        assert rig.fills() == [] and rig.failures() == []
        assert rig.engine.ledger.balance(rig.agent_id, "SOL").reserved == BUY
