"""`[venues.*]` and `[solana]` of the config file: the paper venue, the Jupiter venue and the
Solana RPC it sends through. Units: lamports, bps, ms. Secrets (the Jupiter API key, an RPC URL
carrying a key) never reach a repr or a log."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct
from tradingd.adapters.app.exchange_settings import AccountName, ExchangeAccountSettings

ATA_RENT_LAMPORTS = 2_039_280  # rent-exempt minimum of an SPL token account (165 bytes)
BASE_FEE_LAMPORTS = 5_000  # per signature (solana.com/docs/core/fees)


class _S(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _redacted_repr(obj: Struct, secret_fields: tuple[str, ...]) -> str:
    shown = (
        f"{f}={'[redacted]' if f in secret_fields and getattr(obj, f) else repr(getattr(obj, f))}"
        for f in obj.__struct_fields__
    )
    return f"{type(obj).__name__}({', '.join(shown)})"


class PaperVenueSettings(_S):
    # 0: orders fill in the loop turn that placed them; > 0: after this delay, at the price of
    # that moment, as a live venue would (tests the in-flight paths).
    fill_delay_ms: Annotated[int, Meta(ge=0, le=600_000)] = 0
    # "jupiter": fills at real Jupiter quotes ([venues.jupiter] url), nothing is sent (the
    # reference engine's simulation mode); "price": at the book's price with slippage and fee.
    quotes: Literal["price", "jupiter"] = "price"


class JupiterVenueSettings(_S):
    """`[venues.jupiter]`: swaps through the Jupiter Swap API (../shared/contracts/jupiter.md),
    signed with the agent's unlocked wallet and sent through `[solana] rpc_url`."""

    enabled: bool = False
    url: Annotated[str, Meta(pattern=r"^https?://")] = "https://api.jup.ag/swap/v1"
    # Sent as `x-api-key`; the environment's JUPITER_API_KEY wins. Never logged.
    api_key: str | None = None
    timeout_ms: Annotated[int, Meta(ge=100, le=60_000)] = 5_000
    restrict_intermediate_tokens: bool = True
    dynamic_compute_unit_limit: bool = True
    # Priority fee when the agent sets no `execution.priority_fee_lamports`: "auto" reads
    # getRecentPrioritizationFees for the token and takes `priority_fee_percentile`, capped at
    # `max_priority_fee_lamports`; an integer is a fixed fee in lamports.
    priority_fee: Literal["auto"] | Annotated[int, Meta(ge=0, le=100_000_000)] = "auto"
    priority_fee_percentile: Annotated[int, Meta(ge=1, le=100)] = 75
    max_priority_fee_lamports: Annotated[int, Meta(ge=0, le=100_000_000)] = 1_000_000
    # Compute units the auto fee is priced for (Jupiter swaps use ~100k-400k).
    priority_fee_compute_units: Annotated[int, Meta(ge=1, le=1_400_000)] = 300_000
    # Exits retry with fresh quotes, the slippage widened by `exit_slippage_step_bps` per
    # attempt up to `max_exit_slippage_bps`; at most `max_exit_attempts` swaps are signed.
    max_exit_slippage_bps: Annotated[int, Meta(ge=0, le=10_000)] = 1_000
    exit_slippage_step_bps: Annotated[int, Meta(ge=0, le=10_000)] = 100
    max_exit_attempts: Annotated[int, Meta(ge=1, le=50)] = 8
    # Buys are retried only within the signal's expiry, and sign at most this many swaps.
    max_buy_attempts: Annotated[int, Meta(ge=1, le=20)] = 3
    # Failures before anything is signed (Jupiter 429/5xx, timeouts, an open breaker) an order
    # takes before it fails; they do not count as attempts. Waits back off to 5 s.
    max_transient_failures: Annotated[int, Meta(ge=1, le=1_000)] = 30
    # Lamports of a SOL-quoted buy kept out of the swap for the network fee, the priority fee and
    # a new token account's rent, so what leaves the wallet never exceeds the reservation. None:
    # base fee + max priority fee + token-account rent.
    fee_reserve_lamports: Annotated[int, Meta(ge=0, le=1_000_000_000)] | None = None
    # Build transactions that the RPC node sends without simulating first (Jupiter's example);
    # a failure then shows as a landed error, with its fee.
    skip_preflight: bool = True
    confirm_poll_ms: Annotated[int, Meta(ge=10, le=10_000)] = 400
    rebroadcast_ms: Annotated[int, Meta(ge=50, le=60_000)] = 2_000
    # getTransaction may answer null for a while after confirmation: polls before giving up.
    receipt_polls: Annotated[int, Meta(ge=1, le=1_000)] = 50
    breaker_failures: Annotated[int, Meta(ge=1, le=1_000)] = 5
    breaker_reset_s: Annotated[float, Meta(gt=0, le=3_600)] = 30.0

    def reserve_lamports(self) -> int:
        """The fee reserve of a SOL-quoted buy, lamports."""
        if self.fee_reserve_lamports is not None:
            return self.fee_reserve_lamports
        return BASE_FEE_LAMPORTS + self.max_priority_fee_lamports + ATA_RENT_LAMPORTS

    def __repr__(self) -> str:
        return _redacted_repr(self, ("api_key",))


class SolanaSettings(_S):
    """`[solana]`: the JSON-RPC endpoint swaps are sent and confirmed through
    (../shared/contracts/solana-rpc.md). Providers often put a key in the URL: it is never
    logged (only its host is). SOLANA_RPC_URL in the environment wins."""

    rpc_url: Annotated[str, Meta(pattern=r"^https?://")] = "https://api.mainnet-beta.solana.com"
    # Accepted for configs written for signatureSubscribe; confirmation polls
    # getSignatureStatuses over rpc_url (one request per poll, every confirm_poll_ms).
    ws_url: Annotated[str, Meta(pattern=r"^wss?://")] | None = None
    commitment: Literal["confirmed", "finalized"] = "confirmed"
    timeout_ms: Annotated[int, Meta(ge=100, le=60_000)] = 5_000

    def __repr__(self) -> str:
        return _redacted_repr(self, ("rpc_url", "ws_url"))


class VenueSettings(_S):
    paper: PaperVenueSettings = msgspec.field(default_factory=PaperVenueSettings)
    jupiter: JupiterVenueSettings = msgspec.field(default_factory=JupiterVenueSettings)
    # `[venues.ccxt.<account>]`: exchange accounts (adapters/app/exchange_settings.py)
    ccxt: dict[AccountName, ExchangeAccountSettings] = msgspec.field(default_factory=dict)
