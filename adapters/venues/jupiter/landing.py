"""Landing a signed swap on Solana: send it, rebroadcast the same bytes until it is confirmed or
its blockhash expires, and read its receipt. Only confirmation counts: a signature returned by
`sendTransaction` proves nothing (../shared/contracts/solana-rpc.md, "Blockhash" and
solana.com/docs/advanced/retry). Nothing here decides what a failure means for an order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tradingd.adapters.solana.rpc import RpcFailure, SolanaRpc
from tradingd.adapters.solana.schemas import SignatureStatus, TransactionResult
from tradingd.adapters.solana.swap_amounts import program_error

log = logging.getLogger("tradingd.venues.jupiter")

# Custom program errors of Jupiter's aggregator program (../shared/contracts/jupiter.md).
SLIPPAGE_EXCEEDED = 6001
INSUFFICIENT_FUNDS = 6024
CONFIRMED = {"confirmed": ("confirmed", "finalized"), "finalized": ("finalized",)}


class Outcome(StrEnum):
    """How a sent swap ended: `landed` (confirmed; `receipt` says whether it succeeded) or
    `expired` (not seen while its blockhash was valid: it never will be)."""

    LANDED = "landed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Landing:
    outcome: Outcome
    receipt: TransactionResult | None = None
    err: object = None  # the status's err when it landed with one


@dataclass(frozen=True)
class LandingTimings:
    """Poll and resend cadence, ms: statuses every `poll_ms`, the same bytes again every
    `rebroadcast_ms`, the block height every `height_every` polls; `receipt_polls` tries of
    getTransaction before backing off."""

    poll_ms: int
    rebroadcast_ms: int
    receipt_polls: int
    height_every: int = 5


def failure_reason(err: object) -> str:
    """The stable reason of a landed (or simulated) failure: `slippage_exceeded` (6001),
    `insufficient_funds` (6024), `blockhash_not_found`, else `transaction_failed`."""
    code = program_error(err)
    if code == SLIPPAGE_EXCEEDED:
        return "slippage_exceeded"
    if code == INSUFFICIENT_FUNDS:
        return "insufficient_funds"
    if err == "BlockhashNotFound":
        return "blockhash_not_found"
    return "transaction_failed"


class Lander:
    """Sends and confirms signed transactions through one RPC endpoint at `commitment`."""

    def __init__(
        self,
        rpc: SolanaRpc,
        timings: LandingTimings,
        *,
        commitment: str,
        skip_preflight: bool,
        sleep: Callable[[float], object] = asyncio.sleep,
        on_receipt_missing: Callable[[str], None] | None = None,
    ) -> None:
        self.rpc = rpc
        # Told once per signature when a confirmed swap's receipt stays missing past
        # `receipt_polls` tries (the order stays in flight: its amounts are unknown).
        self._on_receipt_missing = on_receipt_missing
        self.timings = timings
        self.accepted = CONFIRMED[commitment]
        self.skip_preflight = skip_preflight
        self._sleep = sleep

    async def send(self, raw: bytes) -> None:
        """Send the signed bytes once. Raises RpcFailure only when the node refused them as
        signed (preflight -32002, signature -32003, ...): they will never land. A transient
        failure (timeout, 429, 5xx) is swallowed: the bytes may have reached the node, so the
        caller confirms (and rebroadcasts) instead of signing anew."""
        try:
            await self.rpc.send_transaction(raw, skip_preflight=self.skip_preflight)
        except RpcFailure as exc:
            if not exc.transient:
                raise
            log.warning("sendTransaction failed, confirming anyway", extra={"reason": exc.reason})

    async def confirm(
        self, signature: str, last_valid_block_height: int, raw: bytes | None
    ) -> Landing:
        """Poll the signature until it is confirmed or the block height passes
        `last_valid_block_height` with the signature unseen; resend `raw` (if given) every
        `rebroadcast_ms` meanwhile. RPC failures while polling are waited out: without an answer
        nothing is proven, so the order stays in flight (shutdown cancels; restart resumes)."""
        t = self.timings
        polls = 0
        since_resend = 0
        while True:
            known, status = await self._status(signature)
            # Landed (with or without an error) only at the configured commitment: a processed
            # status can still be dropped with its fork.
            if status is not None and status.confirmation_status in self.accepted:
                return Landing(Outcome.LANDED, await self.receipt(signature), status.err)
            polls += 1
            if known and status is None and polls % t.height_every == 0:
                height = await self._height()
                if height is not None and height > last_valid_block_height:
                    # One last look: it may have landed between the two reads. Only an answer
                    # of "not seen" proves it dead; a failed read proves nothing.
                    known, status = await self._status(signature)
                    if known and status is None:
                        # The status cache holds recent slots only: a swap that landed long
                        # ago (a restart after downtime) is found in the ledger's history.
                        known, tx = await self._history(signature)
                        if known and tx is None:
                            return Landing(Outcome.EXPIRED)
                        if tx is not None:
                            return Landing(Outcome.LANDED, tx, tx.err)
            since_resend += t.poll_ms
            if raw is not None and status is None and since_resend >= t.rebroadcast_ms:
                since_resend = 0
                try:
                    await self.send(raw)
                except RpcFailure as exc:  # refused now (e.g. expired): the height check decides
                    log.info("rebroadcast refused", extra={"reason": exc.reason})
            await self._sleep(t.poll_ms / 1000)

    async def receipt(self, signature: str) -> TransactionResult:
        """getTransaction of a confirmed signature; nodes may answer null for a while after
        confirmation, so it is polled (every poll_ms, then backing off to 5 s) until it comes."""
        wait_ms = self.timings.poll_ms
        tries = 0
        while True:
            try:
                tx = await self.rpc.get_transaction(signature)
            except RpcFailure as exc:
                log.warning("getTransaction failed", extra={"reason": exc.reason})
                tx = None
            if tx is not None:
                return tx
            tries += 1
            if tries >= self.timings.receipt_polls:
                if tries == self.timings.receipt_polls and self._on_receipt_missing is not None:
                    self._on_receipt_missing(signature)
                wait_ms = min(5_000, wait_ms * 2)
            await self._sleep(wait_ms / 1000)

    async def _status(self, signature: str) -> tuple[bool, SignatureStatus | None]:
        """(answered, status): status None with answered True means "not seen"."""
        try:
            return True, (await self.rpc.get_signature_statuses([signature]))[0]
        except RpcFailure as exc:
            log.warning("getSignatureStatuses failed", extra={"reason": exc.reason})
            return False, None

    async def _history(self, signature: str) -> tuple[bool, TransactionResult | None]:
        """(answered, transaction): getTransaction reads the ledger, not the status cache."""
        try:
            return True, await self.rpc.get_transaction(signature)
        except RpcFailure as exc:
            log.warning("getTransaction failed", extra={"reason": exc.reason})
            return False, None

    async def _height(self) -> int | None:
        try:
            return await self.rpc.get_block_height()
        except RpcFailure as exc:
            log.warning("getBlockHeight failed", extra={"reason": exc.reason})
            return None
