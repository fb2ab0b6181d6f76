"""What a landed swap actually moved for our wallet, read from getTransaction's balances by the
contract's "Swap amounts" rule (../shared/contracts/solana-rpc.md), and a failed program's code."""

from __future__ import annotations

from typing import Any

from msgspec import Struct
from tradingd.adapters.solana.schemas import TokenBalance, TransactionResult, atomic_amount


class SwapAmounts(Struct, frozen=True):
    """`err`: meta.err (None = success; else the swap was rolled back, the fee still charged);
    `fee`: meta.fee, lamports; `lamports_delta`: post − pre lamports of the wallet's account
    (includes −fee and any rent paid for a new token account); `token_deltas`: mint → Σpost − Σpre
    of the atomic amounts over token accounts owned by the wallet (zero deltas kept)."""

    err: Any
    fee: int
    lamports_delta: int
    token_deltas: dict[str, int]


class OwnerUnknown(ValueError):
    """A token balance has no `owner` (old nodes): whose account it is cannot be told."""


def swap_amounts(tx: TransactionResult, wallet: str) -> SwapAmounts:
    """The wallet's lamport and per-mint token deltas in `tx` (atomic units, from
    `uiTokenAmount.amount`, never `uiAmount`; an account absent from one list counts 0).
    Raises ValueError when the wallet is not among the transaction's account keys or the
    transaction has no meta, OwnerUnknown (a ValueError) when a token balance lacks `owner`,
    ValueError for an amount that is not a decimal integer string."""
    meta = tx.meta
    if meta is None:
        raise ValueError("transaction has no meta: amounts unknown")
    keys = tx.account_keys()
    try:
        index = keys.index(wallet)
    except ValueError:
        raise ValueError("wallet is not an account of the transaction") from None
    if index >= len(meta.pre_balances) or index >= len(meta.post_balances):
        raise ValueError("balances do not cover the wallet's account index")
    deltas: dict[str, int] = {}
    _add(deltas, meta.post_token_balances or [], wallet, 1)
    _add(deltas, meta.pre_token_balances or [], wallet, -1)
    return SwapAmounts(
        err=meta.err,
        fee=meta.fee,
        lamports_delta=meta.post_balances[index] - meta.pre_balances[index],
        token_deltas=deltas,
    )


def _add(deltas: dict[str, int], balances: list[TokenBalance], wallet: str, sign: int) -> None:
    for balance in balances:
        # Without `owner` a vault and our ATA look alike (both may be static keys when the route
        # uses no lookup table): guessing could book a pool's millions as ours, so refuse.
        if balance.owner is None:
            raise OwnerUnknown(f"token balance of account {balance.account_index} has no owner")
        if balance.owner != wallet:
            continue
        amount = atomic_amount(balance.ui_token_amount.amount)
        deltas[balance.mint] = deltas.get(balance.mint, 0) + sign * amount


def program_error(err: Any) -> int | None:
    """The custom program error code of a failed transaction's `err`
    ({"InstructionError": [2, {"Custom": 6001}]} -> 6001); None for any other shape (success,
    "BlockhashNotFound", a builtin instruction error such as "InvalidAccountData")."""
    if not isinstance(err, dict):
        return None
    instruction_error = err.get("InstructionError")
    if not isinstance(instruction_error, list) or len(instruction_error) != 2:
        return None
    detail = instruction_error[1]
    if not isinstance(detail, dict):
        return None
    custom = detail.get("Custom")
    # bool is an int to Python; a JSON true is no program code
    if isinstance(custom, int) and not isinstance(custom, bool):
        return custom
    return None
