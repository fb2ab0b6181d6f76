"""swap_amounts / program_error against the contract's getTransaction example and a naive oracle
(../shared/contracts/solana-rpc.md, "Swap amounts")."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tradingd.adapters.solana.schemas import Reply, TransactionResult
from tradingd.adapters.solana.swap_amounts import OwnerUnknown, program_error, swap_amounts

WALLET = "GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
WSOL = "So11111111111111111111111111111111111111112"
VAULT_OWNER = "3gLESRnfLgzAqu6PwGhBwsiBsnQ7BAtyWHhZ5zNcDPMF"

# The contract's example, byte for byte.
CONTRACT_GET_TRANSACTION = b"""{"jsonrpc":"2.0","id":1,"result":{"slot":324307300,"blockTime":1767225600,"version":0,
"meta":{"err":null,"status":{"Ok":null},"fee":20000,
 "preBalances":[1000000000,2039280,0,1,1141440,934087680,500000000000,2039280],
 "postBalances":[899980000,2039280,0,1,1141440,934087680,500100000000,2039280],
 "innerInstructions":[],"logMessages":[],
 "preTokenBalances":[
  {"accountIndex":1,"mint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","uiTokenAmount":{"uiAmount":5.0,"decimals":6,"amount":"5000000","uiAmountString":"5"},"owner":"GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U","programId":"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"}],
 "postTokenBalances":[
  {"accountIndex":1,"mint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","uiTokenAmount":{"uiAmount":22.055,"decimals":6,"amount":"22055000","uiAmountString":"22.055"},"owner":"GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U","programId":"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"}],
 "rewards":[],"loadedAddresses":{"writable":["9wCJx71yoG7ro5xoFwDNBbaYSkPJhVHMGvSSowM7hkLq","CicsxPmNLizLYvgD1HVn4GRkup3bt43xsVk7E4BeJLVx"],"readonly":[]},"computeUnitsConsumed":187654},
"transaction":{"signatures":["2soASZVz6NaEUZtRyCbf3hAdpPAAiecRovUSi99FFw9GJGQTbdoPFaFctNx1Nzt2FzPMLj5JjBnkXJm6CGofULNX"],
 "message":{"header":{"numRequiredSignatures":1,"numReadonlySignedAccounts":0,"numReadonlyUnsignedAccounts":3},
  "accountKeys":["GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U","EpVTaMyUkynvs9FZq8t3dzeazUfmzE73fFrQCC5KfKEz","pCY2P8v1h2ZhFemzsbc4EN4mABr1WwzT4C2rgW12rJJ","ComputeBudget111111111111111111111111111111","JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4","TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
  "recentBlockhash":"4ruaGCyaofHWGxPFXFVjuEJCdfBGZ2wCtEx6LzdzVqtV",
  "instructions":[{"programIdIndex":3,"accounts":[],"data":"Kq1GWK"},{"programIdIndex":3,"accounts":[],"data":"3Sy41WEwNLnT"},{"programIdIndex":4,"accounts":[0,2,1,6,7,5],"data":"2Wc9oEZzvY1c4k"}],
  "addressTableLookups":[{"accountKey":"3gLESRnfLgzAqu6PwGhBwsiBsnQ7BAtyWHhZ5zNcDPMF","writableIndexes":[0,1],"readonlyIndexes":[]}]}}}}"""


def contract_tx() -> TransactionResult:
    reply = msgspec.json.decode(CONTRACT_GET_TRANSACTION, type=Reply[TransactionResult])
    assert reply.result is not None
    return reply.result


def balance(index: int, mint: str, amount: int, owner: str | None) -> dict:
    entry = {
        "accountIndex": index,
        "mint": mint,
        "uiTokenAmount": {"uiAmount": 1.5, "decimals": 6, "amount": str(amount)},
    }
    if owner is not None:
        entry["owner"] = owner
    return entry


def with_token_balances(pre: list[dict], post: list[dict], err=None) -> TransactionResult:
    raw = msgspec.json.decode(CONTRACT_GET_TRANSACTION)["result"]
    raw["meta"]["preTokenBalances"] = pre
    raw["meta"]["postTokenBalances"] = post
    raw["meta"]["err"] = err
    return msgspec.convert(raw, TransactionResult)


def test_contract_example_gives_usdc_plus_17055000():
    assert swap_amounts(contract_tx(), WALLET).token_deltas == {USDC: 17_055_000}


def test_contract_example_lamports_delta_includes_the_fee():
    amounts = swap_amounts(contract_tx(), WALLET)
    assert (amounts.lamports_delta, amounts.fee) == (-100_020_000, 20_000)
    assert amounts.lamports_delta + amounts.fee == -100_000_000  # the quote's inAmount


def test_contract_example_is_a_success():
    assert swap_amounts(contract_tx(), WALLET).err is None


def test_ui_amount_is_never_read():
    # uiAmount says 1.5 in every entry; only the amount strings count
    tx = with_token_balances([], [balance(1, USDC, 7, WALLET)])
    assert swap_amounts(tx, WALLET).token_deltas == {USDC: 7}


def test_account_absent_from_pre_counts_zero():
    tx = with_token_balances(
        [balance(1, USDC, 5_000_000, WALLET)],
        [balance(1, USDC, 5_000_000, WALLET), balance(2, WSOL, 40, WALLET)],
    )
    assert swap_amounts(tx, WALLET).token_deltas == {USDC: 0, WSOL: 40}


def test_account_absent_from_post_counts_zero():
    tx = with_token_balances([balance(2, WSOL, 40, WALLET)], [])
    assert swap_amounts(tx, WALLET).token_deltas == {WSOL: -40}


def test_other_owners_vaults_are_filtered_out():
    tx = with_token_balances(
        [balance(1, USDC, 5_000_000, WALLET), balance(7, USDC, 900_000_000_000, VAULT_OWNER)],
        [balance(1, USDC, 22_055_000, WALLET), balance(7, USDC, 899_982_945_000, VAULT_OWNER)],
    )
    assert swap_amounts(tx, WALLET).token_deltas == {USDC: 17_055_000}


def test_token_balance_without_owner_is_refused():
    tx = with_token_balances([balance(1, USDC, 5, None)], [balance(1, USDC, 9, None)])
    with pytest.raises(OwnerUnknown):
        swap_amounts(tx, WALLET)


def test_amount_that_is_not_plain_digits_is_refused():
    entry = balance(1, USDC, 0, WALLET)
    entry["uiTokenAmount"]["amount"] = "5_000"
    with pytest.raises(ValueError):
        swap_amounts(with_token_balances([], [entry]), WALLET)


def test_wallet_not_in_transaction_raises_value_error():
    with pytest.raises(ValueError):
        swap_amounts(contract_tx(), "11111111111111111111111111111111")


def test_wallet_found_among_loaded_addresses():
    tx = contract_tx()
    # index 6 is the first lookup-table key: 500000000000 -> 500100000000
    loaded = "9wCJx71yoG7ro5xoFwDNBbaYSkPJhVHMGvSSowM7hkLq"
    assert swap_amounts(tx, loaded).lamports_delta == 100_000_000


def test_failed_swap_keeps_err_and_fee():
    err = {"InstructionError": [2, {"Custom": 6001}]}
    amounts = swap_amounts(with_token_balances([], [], err=err), WALLET)
    assert (amounts.err, amounts.fee) == (err, 20_000)


def test_program_error_reads_custom_code():
    assert program_error({"InstructionError": [2, {"Custom": 6001}]}) == 6001


@pytest.mark.parametrize(
    "err",
    [
        None,
        "BlockhashNotFound",
        {"InstructionError": [2, "InvalidAccountData"]},
        {"InstructionError": [2, {"Custom": "6001"}]},
        {"InstructionError": [2, {"Custom": True}]},
        {"InstructionError": [2]},
        {"InsufficientFundsForRent": {"account_index": 2}},
    ],
)
def test_program_error_is_none_for_other_shapes(err):
    assert program_error(err) is None


# --- property: swap_amounts vs a naive oracle ------------------------------------------------

OWNERS = [WALLET, VAULT_OWNER, "4xDsmeTWPNjgSVSS1VTfzFq3iHZhp77ffPkAmkZkdu71"]
MINTS = [USDC, WSOL, "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"]
entries = st.lists(
    st.tuples(
        st.integers(0, 7),
        st.sampled_from(MINTS),
        st.integers(0, 2**64 - 1),
        st.sampled_from(OWNERS),
    ),
    max_size=8,
)


def oracle(pre: list[tuple], post: list[tuple]) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for sign, rows in ((1, post), (-1, pre)):
        for _index, mint, amount, owner in rows:
            if owner == WALLET:
                deltas[mint] = deltas.get(mint, 0) + sign * amount
    return deltas


@given(entries, entries)
def test_token_deltas_match_naive_oracle(pre, post):
    tx = with_token_balances(
        [balance(i, m, a, o) for i, m, a, o in pre], [balance(i, m, a, o) for i, m, a, o in post]
    )
    assert swap_amounts(tx, WALLET).token_deltas == oracle(pre, post)
