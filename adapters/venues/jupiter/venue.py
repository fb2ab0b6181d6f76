"""The Jupiter venue: an order becomes a Jupiter quote, a swap transaction built by Jupiter and
signed here with the agent's unlocked wallet, recorded durably (SwapSubmitted) BEFORE it is sent,
then sent and confirmed over Solana RPC; the fill is what the wallet's balances really moved
(getTransaction). Nothing is sent twice: a recorded swap is resolved (landed or proven expired)
before another is signed, across restarts too. Wire formats: ../shared/contracts/jupiter.md and
solana-rpc.md; the flow: DESIGN.md "Execution"."""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from solders.keypair import Keypair
from solders.transaction import VersionedTransaction
from tradingd.adapters.app.venue_settings import JupiterVenueSettings
from tradingd.adapters.solana.rpc import RpcFailure, SolanaRpc
from tradingd.adapters.solana.swap_amounts import swap_amounts
from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.errors import SwapFailure
from tradingd.adapters.venues.jupiter.fills import fill_from_deltas
from tradingd.adapters.venues.jupiter.guards import check_price_impact, tokens_at_limit
from tradingd.adapters.venues.jupiter.landing import Lander, Landing, Outcome, failure_reason
from tradingd.adapters.venues.jupiter.schemas import Quote
from tradingd.adapters.venues.wallet_gate import WalletGate
from tradingd.engine.assets import SOL_MINT, quote_mint
from tradingd.engine.model import Agent, Fill, Order, SwapSubmission

log = logging.getLogger("tradingd.venues.jupiter")
JUPITER = "jupiter"


class Auto(enum.Enum):
    """The priority fee is read from recent fees when the swap is built."""

    AUTO = "auto"


AUTO = Auto.AUTO


class SwapJournal(Protocol):
    """Where a signed swap is recorded before it is sent (the daemon: Engine.on_swap_submitted,
    then the store's write-through)."""

    async def swap_submitted(self, order_id: str, swap: SwapSubmission) -> None:
        """Return once `swap` is durable; raise (any Exception) when it cannot be made so."""
        ...


StepObserver = Callable[[str, float], None]  # step name, seconds
Alerter = Callable[[str, str, dict[str, object]], None]  # code, message, details


class JupiterVenue:
    """A `Venue` (engine/ports.py) for agents with `venue = "jupiter"`: SOL-quoted swaps through
    Jupiter, signed with the agent's wallet. `execute` retries inside: buys within the signal's
    expiry (at most `max_buy_attempts` signed swaps), exits with fresh quotes and the slippage
    widened per attempt up to `max_exit_slippage_bps`; it raises SwapFailure (never transient)
    with the stable reason of the last failure and the fees the failed landings cost."""

    name = JUPITER
    in_process = False

    def __init__(
        self,
        *,
        jupiter: JupiterClient,
        rpc: SolanaRpc,
        lander: Lander,
        settings: JupiterVenueSettings,
        wallets: WalletGate,
        journal: SwapJournal,
        agent_of: Callable[[str], Agent | None],
        price_of: Callable[[str], float | None],
        clock: Callable[[], int],
        alert: Alerter,
        observe_step: StepObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.jupiter = jupiter
        self.rpc = rpc
        self.lander = lander
        self.settings = settings
        self.wallets = wallets
        self.journal = journal
        self._agent_of = agent_of
        self._price_of = price_of
        self._clock = clock
        self._alert = alert
        self._observe = observe_step or (lambda _step, _s: None)
        self._sleep = sleep
        self._resolutions: dict[str, asyncio.Event] = {}  # order id -> recorded swap resolved

    def resolution(self, order_id: str) -> asyncio.Event:
        """Set once the swap an order had recorded (before a restart) is resolved: landed or
        proven expired. The order may go on with new attempts after that."""
        return self._resolutions.setdefault(order_id, asyncio.Event())

    def execute_now(self, order: Order) -> Fill:
        raise SwapFailure(
            "not_in_process", "the Jupiter venue settles asynchronously", transient=False
        )

    async def reconcile(self) -> list[Fill]:
        """Recorded swaps are resolved by `execute` on the restored orders (Runtime.resume_orders):
        nothing is settled outside an order."""
        return []

    # -- one order ---------------------------------------------------------------------------

    async def execute(self, order: Order) -> Fill:
        """Carry `order` to a fill (see the class). Raises SwapFailure."""
        agent = self._agent_of(order.agent_id)
        if agent is None or agent.wallet_id is None:
            raise self._give_up(order, "no_wallet", 0)
        wallet_id = agent.wallet_id
        # Lamports of this order's attempts that landed with an error: recorded with each new
        # swap (SwapSubmission.prior_fees), so a restart books them too.
        lost_fees = 0
        signed = 0  # swaps signed and recorded for this order: what max_*_attempts count
        last = "no_attempt"
        if order.swap is not None:  # recorded before a restart (or a runtime retry): resolve it
            lost_fees, signed = order.swap.prior_fees, order.swap.attempt
            landing = await self.lander.confirm(
                order.swap.signature, order.swap.last_valid_block_height, None
            )
            wallet = self.wallets.public_key(wallet_id)
            fill, reason, fee = self._settle(order, order.swap, landing, wallet, lost_fees)
            self.resolution(order.id).set()  # what start-up waits for, not the whole order
            if fill is not None:
                return fill
            lost_fees += fee
            last = reason
            if self._final(order, reason, signed):
                raise self._give_up(order, reason, lost_fees)
        transient_failures = 0
        while True:
            # A swap recorded but not made durable in time is still on the order: never reuse
            # its attempt number (the engine refuses one not newer than the recorded one).
            attempt = max(signed, order.swap.attempt if order.swap is not None else 0) + 1
            if (
                order.side == "buy"
                and order.expires_at is not None
                and self._clock() > order.expires_at
            ):
                raise self._give_up(order, "expired" if last == "no_attempt" else last, lost_fees)
            try:
                keypair = await self._signer(order, wallet_id)
            except SwapFailure as exc:  # a locked wallet: the fees already lost stay booked
                raise self._give_up(order, exc.reason, lost_fees) from None
            try:
                fill, reason, fee = await self._attempt(order, keypair, attempt, lost_fees)
            except SwapFailure as exc:  # nothing was signed: only a count of failures grows
                log.warning(
                    "swap attempt failed",
                    extra={"order_id": order.id, "agent_id": order.agent_id, "attempt": attempt,
                           "reason": exc.reason, "detail": str(exc)},
                )  # fmt: skip
                transient_failures += 1
                if not exc.transient or transient_failures >= self.settings.max_transient_failures:
                    reason = exc.reason
                    if reason == "amount_below_fee_reserve" and lost_fees:
                        reason = last  # the fees of failed swaps ate the reserve: say why
                    raise self._give_up(order, reason, lost_fees) from None
                await self._sleep(
                    exc.retry_after_s or min(0.2 * 2 ** (transient_failures - 1), 5.0)
                )
                last = exc.reason
                continue
            signed = attempt
            if fill is not None:
                return fill
            lost_fees += fee
            last = reason
            log.warning(
                "swap did not fill",
                extra={"order_id": order.id, "agent_id": order.agent_id, "attempt": attempt,
                       "reason": reason, "fee": fee},
            )  # fmt: skip
            if self._final(order, reason, signed):
                raise self._give_up(order, reason, lost_fees)

    def _final(self, order: Order, reason: str, signed: int) -> bool:
        if reason == "insufficient_funds":  # the book and the wallet differ: reconcile, not retry
            self._alert(
                "insufficient_funds",
                f"order {order.id}: the wallet holds less than the book says",
                {"order_id": order.id, "agent_id": order.agent_id, "token": order.token},
            )
            return True
        return self._out_of_attempts(order, signed)

    def _out_of_attempts(self, order: Order, signed: int) -> bool:
        s = self.settings
        return signed >= (s.max_exit_attempts if order.side == "sell" else s.max_buy_attempts)

    @staticmethod
    def _give_up(order: Order, reason: str, lost_fees: int) -> SwapFailure:
        return SwapFailure(
            reason, reason, transient=False, details={"order_id": order.id}, fee=lost_fees
        )

    async def _signer(self, order: Order, wallet_id: str) -> Keypair:
        keypair = self.wallets.keypair(wallet_id)
        if keypair is not None:
            return keypair
        if order.side == "buy":
            raise SwapFailure("wallet_locked", f"wallet {wallet_id} is locked", transient=False)
        # An exit waits for the unlock (queued), and the operator is told once.
        self._alert(
            "exit_waiting_for_wallet",
            f"exit order {order.id} waits until wallet {wallet_id} is unlocked",
            {"order_id": order.id, "agent_id": order.agent_id, "wallet_id": wallet_id},
        )
        return await self.wallets.wait_unlocked(wallet_id)

    # -- one attempt -------------------------------------------------------------------------

    def _slippage_bps(self, order: Order, attempt: int) -> int:
        if order.side == "buy":
            return order.slippage_bps
        s = self.settings
        widened = order.slippage_bps + (attempt - 1) * s.exit_slippage_step_bps
        return max(order.slippage_bps, min(widened, s.max_exit_slippage_bps))

    def _swap_input(self, order: Order, lost_fees: int) -> tuple[str, str, int]:
        """(input mint, output mint, atomic input amount) of the swap."""
        qmint = quote_mint(order.quote)
        if order.side == "sell":
            return order.token, qmint, order.amount_in
        # The network fee, priority fee and a new token account's rent come out of the same SOL:
        # keep them out of the swap so what leaves the wallet stays within the reservation.
        amount = order.amount_in - self.settings.reserve_lamports() - lost_fees
        if amount <= 0:
            raise SwapFailure(
                "amount_below_fee_reserve",
                f"buy of {order.amount_in} lamports does not cover the fee reserve "
                f"of {self.settings.reserve_lamports()}",
                transient=False,
            )
        return qmint, order.token, amount

    async def _attempt(
        self, order: Order, keypair: Keypair, attempt: int, lost_fees: int
    ) -> tuple[Fill | None, str, int]:
        """Quote, build, sign, record, send and confirm one swap. Returns (fill, "", 0) when it
        landed, or (None, reason, fee lamports) when it landed with an error or expired. Raises
        SwapFailure for a failure before anything could land."""
        input_mint, output_mint, amount = self._swap_input(order, lost_fees)
        slippage = self._slippage_bps(order, attempt)
        started = time.perf_counter()
        quote_call = self.jupiter.quote(
            input_mint=input_mint,
            output_mint=output_mint,
            amount=amount,
            slippage_bps=slippage,
            restrict_intermediate_tokens=self.settings.restrict_intermediate_tokens,
        )
        priority_fee = self._fixed_priority_fee(order)
        if priority_fee is AUTO:  # one more request, in parallel with the quote
            quote, priority_fee = await asyncio.gather(quote_call, self._auto_priority_fee(order))
        else:
            quote = await quote_call
        now = time.perf_counter()
        self._observe("quote", now - started)
        check_price_impact(order, quote)
        if order.limit_price_usd is not None:
            quote = await self._within_limit(order, quote)
            slippage = quote.slippage_bps
        wallet = str(keypair.pubkey())
        build = await self.jupiter.swap(
            quote,
            user_public_key=wallet,
            dynamic_compute_unit_limit=self.settings.dynamic_compute_unit_limit,
            prioritization_fee_lamports=priority_fee,
        )
        started, now = now, time.perf_counter()
        self._observe("swap", now - started)
        raw, signature = self._sign(build.swap_transaction, keypair, order)
        swap = SwapSubmission(
            signature=signature,
            last_valid_block_height=build.last_valid_block_height,
            transaction=base64.b64encode(raw).decode(),
            slippage_bps=slippage,
            in_amount=quote.in_amount,
            quoted_out=quote.out_amount,
            min_out=quote.other_amount_threshold,
            attempt=attempt,
            signed_at=self._clock(),
            prior_fees=lost_fees,
        )
        started, now = now, time.perf_counter()
        self._observe("sign", now - started)
        try:
            await self.journal.swap_submitted(order.id, swap)
        except Exception as exc:  # not durable: never send what a restart could not resolve
            raise SwapFailure(
                "not_durable", f"the swap could not be recorded: {exc}", transient=True
            ) from None
        started, now = now, time.perf_counter()
        self._observe("persist", now - started)
        try:
            await self.lander.send(raw)
        except RpcFailure as exc:  # refused as signed: it cannot land; try afresh
            reason = failure_reason(
                (exc.data or {}).get("err") if isinstance(exc.data, dict) else None
            )
            if reason == "transaction_failed":
                reason = exc.reason
            return None, reason, 0
        started, now = now, time.perf_counter()
        self._observe("send", now - started)
        landing = await self.lander.confirm(swap.signature, swap.last_valid_block_height, raw)
        self._observe("confirm", time.perf_counter() - now)
        return self._settle(order, swap, landing, wallet, lost_fees)

    async def _within_limit(self, order: Order, quote: Quote) -> Quote:
        """A limit buy's swap may not pay more than the limit: its least output
        (`otherAmountThreshold`) must buy at or below `limit_price_usd`. When the quoted output
        meets the limit but the agent's slippage would let it fall below, the swap is quoted
        again with the slippage narrowed to what the limit allows. Raises SwapFailure
        `limit_not_met` (permanent) when the quote itself is above the limit, or no quote
        price is known to value the input."""
        assert order.limit_price_usd is not None
        least = tokens_at_limit(quote.in_amount, order, self._price_of(quote_mint(order.quote)))
        if least is None or quote.out_amount < least:
            raise SwapFailure(
                "limit_not_met",
                f"quoted {quote.out_amount} token units for {quote.in_amount}: "
                f"above the limit {order.limit_price_usd} USD (needs {least})",
                transient=False,
            )
        if quote.other_amount_threshold >= least:
            return quote
        narrowed = (quote.out_amount - least) * 10_000 // quote.out_amount
        quote = await self.jupiter.quote(
            input_mint=quote.input_mint,
            output_mint=quote.output_mint,
            amount=quote.in_amount,
            slippage_bps=narrowed,
            restrict_intermediate_tokens=self.settings.restrict_intermediate_tokens,
        )
        if quote.out_amount < least or quote.other_amount_threshold < least:
            raise SwapFailure(
                "limit_not_met",
                f"the quote moved above the limit {order.limit_price_usd} USD",
                transient=False,
            )
        return quote

    def _sign(self, swap_transaction: str, keypair: Keypair, order: Order) -> tuple[bytes, str]:
        """Sign Jupiter's transaction after checking it is ours to sign: our wallet pays and is
        its only signer. Returns (wire bytes, signature base58). Raises SwapFailure."""
        try:
            tx = VersionedTransaction.from_bytes(base64.b64decode(swap_transaction, validate=True))
        except ValueError:
            raise SwapFailure(
                "jupiter_bad_transaction", "swapTransaction is not a transaction", transient=True
            ) from None
        message = tx.message
        payer = message.account_keys[0] if message.account_keys else None
        if payer != keypair.pubkey() or message.header.num_required_signatures != 1:
            self._alert(
                "swap_for_wrong_wallet",
                f"Jupiter built order {order.id}'s swap for another wallet: not signed",
                {"order_id": order.id, "payer": str(payer), "wallet": str(keypair.pubkey())},
            )
            raise SwapFailure(
                "wrong_wallet", "the swap transaction is not for this wallet", transient=False
            )
        signed = VersionedTransaction(message, [keypair])
        return bytes(signed), str(signed.signatures[0])

    def _fixed_priority_fee(self, order: Order) -> int | Auto:
        """Lamports: the agent's fixed `priority_fee_lamports`, else the venue's fixed fee, both
        capped; AUTO when the venue's `priority_fee` is "auto"."""
        agent = self._agent_of(order.agent_id)
        fixed = agent.config.execution.priority_fee_lamports if agent is not None else None
        s = self.settings
        if fixed is not None:
            return min(fixed, s.max_priority_fee_lamports)
        if s.priority_fee != "auto":
            return min(int(s.priority_fee), s.max_priority_fee_lamports)
        return AUTO

    async def _auto_priority_fee(self, order: Order) -> int | None:
        """The configured percentile of recent prioritization fees (µlamports/CU) for the
        token, priced for `priority_fee_compute_units` and capped, in lamports. None (left to
        Jupiter) when the RPC does not answer."""
        s = self.settings
        try:
            fees = await self.rpc.get_recent_prioritization_fees([order.token])
        except RpcFailure as exc:
            log.info("priority fee unknown, left to Jupiter", extra={"reason": exc.reason})
            return None
        return auto_priority_fee(
            fees, s.priority_fee_percentile, s.priority_fee_compute_units,
            s.max_priority_fee_lamports,
        )  # fmt: skip

    # -- results -----------------------------------------------------------------------------

    def _settle(
        self, order: Order, swap: SwapSubmission, landing: Landing, wallet: str, lost_fees: int
    ) -> tuple[Fill | None, str, int]:
        if landing.outcome is Outcome.EXPIRED:
            return None, "blockhash_expired", 0
        receipt = landing.receipt
        assert receipt is not None
        try:
            amounts = swap_amounts(receipt, wallet)
        except ValueError as exc:  # e.g. token balances without `owner` (old nodes)
            if landing.err is not None:
                return None, failure_reason(landing.err), receipt.meta.fee if receipt.meta else 0
            return self._fill_at_minimum(order, swap, receipt.meta.fee if receipt.meta else 0,
                                         lost_fees, str(exc)), "", 0  # fmt: skip
        if landing.err is not None or amounts.err is not None:
            return None, failure_reason(landing.err or amounts.err), amounts.fee
        token_delta = amounts.token_deltas.get(order.token, 0)
        if (token_delta <= 0) if order.side == "buy" else (token_delta >= 0):
            return self._fill_at_minimum(order, swap, amounts.fee, lost_fees,
                                         "the receipt shows no token movement for the wallet")  # fmt: skip
        return self._fill(order, swap, amounts.lamports_delta, amounts.fee, token_delta,
                          lost_fees), "", 0  # fmt: skip

    def _fill_at_minimum(
        self, order: Order, swap: SwapSubmission, fee: int, lost_fees: int, why: str
    ) -> Fill:
        """A swap that landed without error but whose receipt cannot be read for the wallet:
        book the least it can have done (its input and its minimum output, the slippage bound
        the program enforced) and alert, so the reconciliation shows the rest."""
        self._alert(
            "swap_receipt_unreadable",
            f"order {order.id}: swap {swap.signature} landed but its amounts are unreadable "
            f"({why}); booked at its guaranteed minimum",
            {"order_id": order.id, "signature": swap.signature},
        )
        if order.side == "buy":
            delta = -(swap.in_amount + fee)
            return self._fill(order, swap, delta, fee, swap.min_out, lost_fees)
        return self._fill(order, swap, swap.min_out - fee, fee, -swap.in_amount, lost_fees)

    def _fill(
        self, order: Order, swap: SwapSubmission, lamports_delta: int, fee: int, token_delta: int,
        lost_fees: int,
    ) -> Fill:  # fmt: skip
        fill, over = fill_from_deltas(
            order, swap, lamports_delta, fee, token_delta, lost_fees,
            self._price_of(SOL_MINT), self._clock(),
        )  # fmt: skip
        if over and order.side == "buy":  # booked (Fill.charge), but a sign the reserve is short
            self._alert(
                "fill_above_reservation",
                f"order {order.id} spent {over} lamports more than its reservation",
                {"order_id": order.id, "over": over, "reserved": order.amount_in},
            )
        return fill


def auto_priority_fee(fees: list[int], percentile: int, compute_units: int, cap: int) -> int:
    """Lamports for a transaction of `compute_units` at the `percentile` (1-100, nearest rank)
    of recent prioritization fees in µlamports per CU, capped at `cap`; 0 without samples."""
    if not fees:
        return 0
    ranked = sorted(fees)
    rank = max(1, -(-percentile * len(ranked) // 100))  # ceil: the nearest-rank method
    micro_lamports = ranked[rank - 1]
    return min(cap, micro_lamports * compute_units // 1_000_000)
