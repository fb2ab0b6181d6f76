"""msgspec Structs mirroring the Solana JSON-RPC wire (../shared/contracts/solana-rpc.md) for the
results tradingd reads; fields we never read are left out (msgspec skips unknown keys)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from msgspec import Struct

T = TypeVar("T")


def atomic_amount(text: str) -> int:
    """A token amount string of the wire ("22055000") as int. Raises ValueError for anything but
    ASCII digits: int() alone would also take "5_000", " 5" and non-ASCII digits."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"token amount {text[:40]!r} is not a decimal integer")
    return int(text)


# --- the JSON-RPC envelope ------------------------------------------------------------------


class RpcErrorBody(Struct, frozen=True):
    """`error` of a reply: `code` (Agave custom_error.rs or JSON-RPC standard), `message`, and
    `data` when the node adds one (the simulate result of a -32002, numSlotsBehind of a -32005)."""

    code: int
    message: str = ""
    data: Any = None


class Reply(Struct, Generic[T], frozen=True):
    """One JSON-RPC reply: `result` (may legitimately be null) or `error`."""

    jsonrpc: str = "2.0"
    id: int | str | None = None
    result: T | None = None
    error: RpcErrorBody | None = None


class Context(Struct, frozen=True):
    slot: int


class WithContext(Struct, Generic[T], frozen=True):
    """The "ctx +" results: `{"context": {"slot": …}, "value": …}`."""

    context: Context
    value: T


# --- results --------------------------------------------------------------------------------


class LatestBlockhash(Struct, frozen=True, rename="camel"):
    blockhash: str
    last_valid_block_height: int


class SignatureStatus(Struct, frozen=True, rename="camel"):
    """One entry of getSignatureStatuses: `confirmations` is None once rooted; `err` None on
    success, else the TransactionError as JSON ({"InstructionError":[2,{"Custom":6001}]})."""

    slot: int
    confirmations: int | None = None
    err: Any = None
    confirmation_status: str | None = None


class UiTokenAmount(Struct, frozen=True, rename="camel"):
    """Only the exact fields: `amount` is the atomic amount as a decimal string; `uiAmount` (a
    float) is deliberately not read."""

    amount: str
    decimals: int


class TokenBalance(Struct, frozen=True, rename="camel"):
    """An entry of pre/postTokenBalances. `owner` and `program_id` are absent on old nodes."""

    account_index: int
    mint: str
    ui_token_amount: UiTokenAmount
    owner: str | None = None
    program_id: str | None = None


class LoadedAddresses(Struct, frozen=True):
    """Keys a v0 transaction loaded from lookup tables; indices continue after the static keys,
    writable first, then readonly."""

    writable: list[str] = []
    readonly: list[str] = []


class TransactionMeta(Struct, frozen=True, rename="camel"):
    """`fee` in lamports (base + priority); balances aligned with the full account-key list."""

    fee: int
    pre_balances: list[int]
    post_balances: list[int]
    err: Any = None
    pre_token_balances: list[TokenBalance] | None = None
    post_token_balances: list[TokenBalance] | None = None
    loaded_addresses: LoadedAddresses | None = None
    compute_units_consumed: int | None = None


class Message(Struct, frozen=True, rename="camel"):
    """`account_keys`: the static keys only (encoding "json")."""

    account_keys: list[str]
    recent_blockhash: str = ""


class Transaction(Struct, frozen=True):
    signatures: list[str]
    message: Message


class TransactionResult(Struct, frozen=True, rename="camel"):
    """getTransaction with encoding "json". `meta` is null when the node did not record it;
    `version` is 0 or "legacy" (absent on old nodes)."""

    slot: int
    transaction: Transaction
    meta: TransactionMeta | None = None
    block_time: int | None = None
    version: int | str | None = None

    @property
    def err(self) -> Any:
        """meta.err (None: success, or no meta)."""
        return self.meta.err if self.meta is not None else None

    def account_keys(self) -> list[str]:
        """Every account key in index order: static keys, then loaded writable, then readonly
        (the order preBalances/postBalances and accountIndex use)."""
        keys = list(self.transaction.message.account_keys)
        loaded = self.meta.loaded_addresses if self.meta is not None else None
        if loaded is not None:
            keys.extend(loaded.writable)
            keys.extend(loaded.readonly)
        return keys


class TokenAmountField(Struct, frozen=True):
    amount: str


class ParsedTokenInfo(Struct, frozen=True, rename="camel"):
    mint: str
    owner: str
    token_amount: TokenAmountField


class ParsedTokenData(Struct, frozen=True):
    info: ParsedTokenInfo


class TokenAccountData(Struct, frozen=True):
    """`data` of a jsonParsed token account: program "spl-token" or "spl-token-2022"."""

    parsed: ParsedTokenData
    program: str = ""


class TokenAccount(Struct, frozen=True):
    data: TokenAccountData


class KeyedTokenAccount(Struct, frozen=True):
    """One entry of getTokenAccountsByOwner (jsonParsed)."""

    pubkey: str
    account: TokenAccount


class PrioritizationFee(Struct, frozen=True, rename="camel"):
    """getRecentPrioritizationFees: micro-lamports per compute unit paid in `slot`."""

    slot: int
    prioritization_fee: int
