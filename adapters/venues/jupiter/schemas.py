"""Jupiter Metis `swap/v1` wire shapes (msgspec Structs mirroring
/work/shared/contracts/jupiter.md exactly), the Quote and SwapBuild the client returns, and the
parsing from one to the other: the only place that knows both."""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

U64_MAX = (1 << 64) - 1
# Amounts are u64 integers written as decimal strings; int() alone would also take "+1", " 1"
# and "1_000".
_ATOMIC = re.compile(r"[0-9]{1,20}")
# priceImpactPct is a decimal string; Decimal() alone would also take "NaN", "Infinity" and
# exponents large enough to make later arithmetic slow.
_DECIMAL = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,3})?")

# msgspec bounds must fit an int64 and it decodes any integer: the u64 ceiling is checked in
# parse_swap.
Unsigned = Annotated[int, Meta(ge=0)]


# -- wire: GET /quote -------------------------------------------------------------------------


class SwapInfo(Struct, rename="camel", frozen=True):
    """One hop of a route. `feeAmount`/`feeMint` are deprecated/nullable in the newest spec and
    absent from the get-quote guide's example."""

    amm_key: str
    input_mint: str
    output_mint: str
    in_amount: str
    out_amount: str
    label: str | None = None
    fee_amount: str | None = None
    fee_mint: str | None = None


class RoutePlanStep(Struct, rename="camel", frozen=True):
    swap_info: SwapInfo
    percent: int | None = None  # nullable; newer answers carry `bps` too
    bps: int | None = None


class PlatformFee(Struct, rename="camel", frozen=True):
    amount: str
    fee_bps: int


class QuoteResponse(Struct, rename="camel", frozen=True):
    """The `/quote` 200 body. Required per the spec: inputMint, inAmount, outputMint,
    outAmount, otherAmountThreshold, swapMode, slippageBps, priceImpactPct, routePlan."""

    input_mint: str
    in_amount: str
    output_mint: str
    out_amount: str
    other_amount_threshold: str
    swap_mode: str
    slippage_bps: int
    price_impact_pct: str
    route_plan: list[RoutePlanStep]
    platform_fee: PlatformFee | None = None
    context_slot: int | None = None
    time_taken: float | None = None


# -- wire: POST /swap -------------------------------------------------------------------------


class SwapRequest(Struct, rename="camel", frozen=True):
    """The `/swap` body. `quote_response` is the `/quote` body spliced in byte for byte (the
    contract: "the quote object, unmodified"); an UNSET fee is left out (Jupiter's default)."""

    user_public_key: str
    quote_response: Raw
    dynamic_compute_unit_limit: bool
    wrap_and_unwrap_sol: bool
    prioritization_fee_lamports: int | str | dict[str, Any] | UnsetType = UNSET


class SimulationError(Struct, rename="camel", frozen=True):
    error_code: str | None = None
    error: str | None = None


class SwapResponse(Struct, rename="camel", frozen=True):
    """The `/swap` 200 body. The spec requires swapTransaction and lastValidBlockHeight; the
    official Rust and TS clients also require prioritizationFeeLamports and computeUnitLimit,
    so an answer without them is refused here as well."""

    swap_transaction: str
    last_valid_block_height: Unsigned
    prioritization_fee_lamports: Unsigned
    compute_unit_limit: Annotated[int, Meta(ge=0, le=(1 << 32) - 1)]
    simulation_error: SimulationError | None = None
    prioritization_type: dict[str, Any] | None = None
    dynamic_slippage_report: dict[str, Any] | None = None


# -- what the client returns ------------------------------------------------------------------


class Quote(Struct, frozen=True):
    """A Jupiter quote (ExactIn), amounts in atomic units of their mints.

    `price_impact_pct` is the wire's `priceImpactPct` exactly as written, and despite its name
    it is a FRACTION (0.015 = 1.5 %): Jupiter's own UI multiplies it by 100 before printing a
    percent (jup-ag/terminal `src/components/SuggestionTags/hooks/usePriceImpact.tsx`,
    `new Decimal(route.priceImpactPct).mul(100)`, and `.../Tags/PriceImpactWarningSuggestion.tsx`,
    `${new Decimal(priceImpactPct).mul(100)...}% Price Impact`), and the contract's SOL->USDC
    example of 1 SOL quotes "0.0001" (0.01 %). Compare limits with `price_impact_percent`.

    `raw` is the response body exactly as received: /swap gets it back unmodified."""

    input_mint: str
    output_mint: str
    in_amount: int
    out_amount: int  # after AMM and platform fees, before slippage
    other_amount_threshold: int  # the least out_amount the swap accepts (ExactIn)
    slippage_bps: int
    price_impact_pct: Decimal
    context_slot: int | None
    raw: bytes

    @property
    def price_impact_percent(self) -> Decimal:
        """The price impact in percent (1.5 = 1.5 %), for an agent's `max_price_impact_pct`."""
        return self.price_impact_pct * 100


class SwapBuild(Struct, frozen=True):
    """What `/swap` built: the transaction to sign and its expiry."""

    swap_transaction: str  # base64 of the unsigned VersionedTransaction
    last_valid_block_height: int  # compare with RPC getBlockHeight
    prioritization_fee_lamports: int
    compute_unit_limit: int
    simulation_error: dict[str, Any] | None  # {"errorCode","error"} or None


class WireError(ValueError):
    """A 200 body that is not the contract's shape; the message says which field and why."""


def parse_quote(body: bytes) -> Quote:
    """The Quote in a `/quote` 200 body. Raises WireError: not JSON, a missing or mistyped
    field, an amount that is not a u64 decimal string, a price impact that is not a decimal."""
    try:
        wire = msgspec.json.decode(body, type=QuoteResponse)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise WireError(str(exc)) from None
    return Quote(
        input_mint=wire.input_mint,
        output_mint=wire.output_mint,
        in_amount=_atomic(wire.in_amount, "inAmount"),
        out_amount=_atomic(wire.out_amount, "outAmount"),
        other_amount_threshold=_atomic(wire.other_amount_threshold, "otherAmountThreshold"),
        slippage_bps=wire.slippage_bps,
        price_impact_pct=_decimal(wire.price_impact_pct, "priceImpactPct"),
        context_slot=wire.context_slot,
        raw=body,
    )


def parse_swap(body: bytes) -> SwapBuild:
    """The SwapBuild in a `/swap` 200 body. Raises WireError: not JSON, a missing or mistyped
    field, a swapTransaction that is not base64."""
    try:
        wire = msgspec.json.decode(body, type=SwapResponse)
    except msgspec.DecodeError as exc:
        raise WireError(str(exc)) from None
    try:
        base64.b64decode(wire.swap_transaction, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("`$.swapTransaction` is not base64") from None
    if max(wire.last_valid_block_height, wire.prioritization_fee_lamports) > U64_MAX:
        raise WireError("an integer of the /swap answer is past u64")
    sim = wire.simulation_error
    return SwapBuild(
        swap_transaction=wire.swap_transaction,
        last_valid_block_height=wire.last_valid_block_height,
        prioritization_fee_lamports=wire.prioritization_fee_lamports,
        compute_unit_limit=wire.compute_unit_limit,
        simulation_error=None if sim is None else {"errorCode": sim.error_code, "error": sim.error},
    )


def _atomic(text: str, field: str) -> int:
    if _ATOMIC.fullmatch(text) is None or int(text) > U64_MAX:
        raise WireError(f"`$.{field}` is not a u64 decimal string")
    return int(text)


def _decimal(text: str, field: str) -> Decimal:
    if _DECIMAL.fullmatch(text) is None:
        raise WireError(f"`$.{field}` is not a decimal string")
    return Decimal(text)
