"""The fake Solana RPC and Jupiter servers, driven the way the live venue will drive them: quote,
swap transaction, sign with solders, send, poll statuses, read the receipt's balance deltas."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from tests.fakes.jupiter import QUOTE_PATH, SWAP_PATH
from tests.fakes.solana_chain import BASE_FEE_LAMPORTS, SOL_MINT, SolanaStack, solana_stack

USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TIMEOUT = aiohttp.ClientTimeout(total=5)


@pytest.fixture
async def stack() -> AsyncIterator[SolanaStack]:
    async with solana_stack() as st:
        st.jupiter.rates[(SOL_MINT, USDC)] = Fraction(17057460, 100_000_000)
        st.jupiter.rates[(USDC, SOL_MINT)] = Fraction(100_000_000, 17_000_000)
        yield st


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
def wallet(stack: SolanaStack) -> Keypair:
    kp = Keypair()
    stack.chain.fund(str(kp.pubkey()), lamports=1_000_000_000, tokens={USDC: 5_000_000})
    return kp


async def rpc(http: aiohttp.ClientSession, st: SolanaStack, method: str, *params: object) -> dict:
    body: dict[str, object] = {"jsonrpc": "2.0", "id": 0, "method": method}
    if params:
        body["params"] = list(params)
    async with http.post(st.rpc_url, json=body) as resp:
        return await resp.json()


async def signed_swap(
    http: aiohttp.ClientSession,
    st: SolanaStack,
    kp: Keypair,
    in_mint: str,
    out_mint: str,
    amount: int,
) -> tuple[dict, dict, bytes]:
    """Quote, /swap and sign: (quote, swap answer, signed wire bytes)."""
    query = {
        "inputMint": in_mint,
        "outputMint": out_mint,
        "amount": str(amount),
        "slippageBps": "50",
    }
    async with http.get(st.jupiter_url + QUOTE_PATH, params=query) as resp:
        quote = await resp.json()
    body = {
        "userPublicKey": str(kp.pubkey()),
        "quoteResponse": quote,
        "dynamicComputeUnitLimit": True,
    }
    async with http.post(st.jupiter_url + SWAP_PATH, json=body) as resp:
        swap = await resp.json()
    unsigned = VersionedTransaction.from_bytes(base64.b64decode(swap["swapTransaction"]))
    return quote, swap, bytes(VersionedTransaction(unsigned.message, [kp]))


async def send(http: aiohttp.ClientSession, st: SolanaStack, raw: bytes) -> dict:
    opts = {"encoding": "base64", "skipPreflight": True, "maxRetries": 0, "minContextSlot": None}
    return await rpc(http, st, "sendTransaction", base64.b64encode(raw).decode(), opts)


async def receipt(http: aiohttp.ClientSession, st: SolanaStack, sig: str) -> dict:
    """Poll statuses until confirmed (bounded), then getTransaction."""
    for _ in range(10):
        status = (await rpc(http, st, "getSignatureStatuses", [sig]))["result"]["value"][0]
        if status and status["confirmationStatus"] in ("confirmed", "finalized"):
            break
    opts = {"encoding": "json", "maxSupportedTransactionVersion": 0}
    return (await rpc(http, st, "getTransaction", sig, opts))["result"]


def swap_amounts(tx: dict, wallet: str) -> dict[str, int]:
    """The contract's "Swap amounts" rule: token deltas by owner, SOL = d + fee at index 0."""
    meta = tx["meta"]
    deltas = {SOL_MINT: meta["postBalances"][0] - meta["preBalances"][0] + meta["fee"]}
    for sign, key in ((-1, "preTokenBalances"), (1, "postTokenBalances")):
        for entry in meta[key]:
            if entry["owner"] == wallet:
                amount = sign * int(entry["uiTokenAmount"]["amount"])
                deltas[entry["mint"]] = deltas.get(entry["mint"], 0) + amount
    return deltas


async def test_buy_lands_with_deltas_equal_to_the_quote(stack, http, wallet) -> None:
    quote, swap, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 100_000_000)
    sig = (await send(http, stack, raw))["result"]
    tx = await receipt(http, stack, sig)
    assert tx["meta"]["err"] is None
    assert swap_amounts(tx, str(wallet.pubkey())) == {SOL_MINT: -100_000_000, USDC: 17_057_460}
    assert tx["meta"]["fee"] == BASE_FEE_LAMPORTS + swap["prioritizationFeeLamports"]
    assert quote["outAmount"] == "17057460" and quote["otherAmountThreshold"] == "16972172"


async def test_sell_moves_tokens_out_and_lamports_in(stack, http, wallet) -> None:
    _, _, raw = await signed_swap(http, stack, wallet, USDC, SOL_MINT, 1_700_000)
    tx = await receipt(http, stack, (await send(http, stack, raw))["result"])
    assert swap_amounts(tx, str(wallet.pubkey())) == {SOL_MINT: 10_000_000, USDC: -1_700_000}


async def test_status_walks_processed_confirmed_finalized(stack, http, wallet) -> None:
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    sig = (await send(http, stack, raw))["result"]
    seen = [
        (await rpc(http, stack, "getSignatureStatuses", [sig, "1" * 64]))["result"]["value"]
        for _ in range(4)
    ]
    assert [v[0]["confirmationStatus"] for v in seen] == [
        "processed",
        "confirmed",
        "finalized",
        "finalized",
    ]
    assert all(v[1] is None for v in seen)


async def test_unsigned_transaction_is_refused_with_32003(stack, http, wallet) -> None:
    _, swap, _ = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    answer = await send(http, stack, base64.b64decode(swap["swapTransaction"]))
    assert answer["error"]["code"] == -32003
    assert stack.rpc.executions == 0


async def test_resending_the_same_bytes_executes_once(stack, http, wallet) -> None:
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 100_000_000)
    first, second = await send(http, stack, raw), await send(http, stack, raw)
    assert first["result"] == second["result"]
    assert stack.rpc.executions == 1 and len(stack.rpc.sends) == 2
    assert stack.chain.balance(str(wallet.pubkey()), USDC) == 5_000_000 + 17_057_460


async def test_send_after_last_valid_block_height_is_blockhash_not_found(
    stack, http, wallet
) -> None:
    _, swap, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    stack.chain.advance(swap["lastValidBlockHeight"] - stack.chain.block_height + 1)
    answer = await send(http, stack, raw)
    assert answer["error"]["code"] == -32002
    assert answer["error"]["data"]["err"] == "BlockhashNotFound"


async def test_slippage_fate_lands_with_6001_and_charges_only_the_fee(stack, http, wallet) -> None:
    stack.rpc.fates.append("slippage")
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 100_000_000)
    tx = await receipt(http, stack, (await send(http, stack, raw))["result"])
    assert tx["meta"]["err"] == {"InstructionError": [2, {"Custom": 6001}]}
    assert swap_amounts(tx, str(wallet.pubkey())) == {SOL_MINT: 0, USDC: 0}
    assert stack.rpc.executions == 0


async def test_out_shortfall_below_threshold_fails_with_6001(stack, http, wallet) -> None:
    stack.chain.out_shortfall_bps = 100  # 1% short, slippage allows 0.5%
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 100_000_000)
    tx = await receipt(http, stack, (await send(http, stack, raw))["result"])
    assert tx["meta"]["err"] == {"InstructionError": [2, {"Custom": 6001}]}


async def test_never_fate_keeps_status_null_after_expiry(stack, http, wallet) -> None:
    stack.rpc.fates.append("never")
    _, swap, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    sig = (await send(http, stack, raw))["result"]
    stack.chain.advance(200)
    height = (await rpc(http, stack, "getBlockHeight"))["result"]
    assert height > swap["lastValidBlockHeight"]
    assert (await rpc(http, stack, "getSignatureStatuses", [sig]))["result"]["value"] == [None]
    assert (await send(http, stack, raw))["error"]["data"]["err"] == "BlockhashNotFound"


async def test_late_fate_answers_null_for_k_polls_then_lands(stack, http, wallet) -> None:
    stack.rpc.fates.append("late:2")
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    sig = (await send(http, stack, raw))["result"]
    values = [
        (await rpc(http, stack, "getSignatureStatuses", [sig]))["result"]["value"][0]
        for _ in range(3)
    ]
    assert values[:2] == [None, None] and values[2]["err"] is None


async def test_send_error_fate_is_a_preflight_failure(stack, http, wallet) -> None:
    stack.rpc.fates.append("send_error:6001")
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    err = (await send(http, stack, raw))["error"]
    assert err["code"] == -32002 and err["data"]["err"] == {
        "InstructionError": [2, {"Custom": 6001}]
    }


async def test_timeout_fate_lands_but_the_send_never_answers(stack, http, wallet) -> None:
    stack.rpc.fates.append("timeout")
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await send(http, stack, raw)
    assert stack.rpc.executions == 1


async def test_get_transaction_without_max_version_is_32015(stack, http, wallet) -> None:
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    sig = (await send(http, stack, raw))["result"]
    answer = await rpc(http, stack, "getTransaction", sig, {"encoding": "json"})
    assert answer["error"]["code"] == -32015


async def test_get_transaction_is_null_for_the_asked_polls(stack, http, wallet) -> None:
    stack.rpc.transaction_null_polls = 1
    stack.rpc.status_walk = ["confirmed"]
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    sig = (await send(http, stack, raw))["result"]
    opts = {"encoding": "json", "maxSupportedTransactionVersion": 0}
    first = (await rpc(http, stack, "getTransaction", sig, opts))["result"]
    second = (await rpc(http, stack, "getTransaction", sig, opts))["result"]
    assert first is None and second["meta"]["err"] is None


async def test_batch_answers_each_request_by_id(stack, http) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 0, "method": "getBlockHeight"},
        {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": [None]},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
    ]
    async with http.post(stack.rpc_url, json=batch) as resp:
        answers = await resp.json()
    assert answers[0] == {"jsonrpc": "2.0", "id": 0, "result": stack.chain.block_height}
    value = answers[1]["result"]["value"]
    assert value["lastValidBlockHeight"] == stack.chain.block_height + 150
    assert answers[2]["error"]["code"] == -32601


async def test_token_accounts_by_owner_lists_the_wallet_balance(stack, http, wallet) -> None:
    opts = {"encoding": "jsonParsed"}
    answer = await rpc(
        http, stack, "getTokenAccountsByOwner", str(wallet.pubkey()), {"mint": USDC}, opts
    )
    info = answer["result"]["value"][0]["account"]["data"]["parsed"]["info"]
    assert info["tokenAmount"]["amount"] == "5000000" and info["mint"] == USDC


async def test_http_fault_answers_429_with_retry_after(stack, http) -> None:
    stack.rpc.fail_next(
        429, "Too many requests", method="getBlockHeight", headers={"Retry-After": "2"}
    )
    body = {"jsonrpc": "2.0", "id": 0, "method": "getBlockHeight"}
    async with http.post(stack.rpc_url, json=body) as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (429, "2")


async def test_quote_of_same_mint_is_circular_arbitrage(stack, http) -> None:
    query = {"inputMint": USDC, "outputMint": USDC, "amount": "10"}
    async with http.get(stack.jupiter_url + QUOTE_PATH, params=query) as resp:
        assert resp.status == 400
        assert (await resp.json())["errorCode"] == "CIRCULAR_ARBITRAGE_IS_DISABLED"


async def test_swap_refuses_a_modified_quote(stack, http, wallet) -> None:
    query = {"inputMint": SOL_MINT, "outputMint": USDC, "amount": "1000"}
    async with http.get(stack.jupiter_url + QUOTE_PATH, params=query) as resp:
        quote = await resp.json()
    quote["outAmount"] = str(int(quote["outAmount"]) + 1)
    body = {"userPublicKey": str(wallet.pubkey()), "quoteResponse": quote}
    async with http.post(stack.jupiter_url + SWAP_PATH, json=body) as resp:
        assert resp.status == 400


async def test_jupiter_rate_limit_carries_the_reset_headers(stack, http) -> None:
    stack.jupiter.rate_limit(1, reset_in_s=30)
    query = {"inputMint": SOL_MINT, "outputMint": USDC, "amount": "1000"}
    async with http.get(stack.jupiter_url + QUOTE_PATH, params=query) as resp:
        assert resp.status == 429 and resp.headers["x-ratelimit-remaining"] == "0"
        assert (await resp.json())["message"] == "[API Gateway] Too many requests"
    async with http.get(stack.jupiter_url + QUOTE_PATH, params=query) as resp:
        assert resp.status == 200


async def test_wrong_payer_swap_cannot_be_signed_by_the_wallet(stack, http, wallet) -> None:
    stack.jupiter.swap_faults.append("wrong_payer")
    with pytest.raises(Exception, match="not enough signers|keypair-pubkey mismatch|Signer"):
        await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)


async def test_standalone_process_is_steered_by_control(tmp_path: Path, http) -> None:
    port_file = tmp_path / "ports.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.solana_chain", "--port-file", str(port_file)]
    )
    try:
        async with asyncio.timeout(10):
            while not port_file.exists():
                await asyncio.sleep(0.05)
        urls = json.loads(port_file.read_text())
        async with http.post(
            urls["control_url"], json={"advance": 200, "fates": ["never"]}
        ) as resp:
            state = await resp.json()
        assert state["block_height"] == 302_500_200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def quote_status(
    http: aiohttp.ClientSession, st: SolanaStack, **extra: str
) -> tuple[int, dict]:
    query = {"inputMint": SOL_MINT, "outputMint": USDC, "amount": "1000", **extra}
    async with http.get(st.jupiter_url + QUOTE_PATH, params=query) as resp:
        return resp.status, await resp.json(content_type=None)


def is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


async def test_jupiter_with_api_key_refuses_a_request_without_it(stack, http) -> None:
    stack.jupiter.api_key = "k-test"
    status, body = await quote_status(http, stack)
    assert (status, body["code"]) == (401, 401)


async def test_excluding_the_only_dex_finds_no_route_in_either_spelling(stack, http) -> None:
    for name in ("excludeDexes", "excludedDexes"):
        status, body = await quote_status(http, stack, **{name: "Raydium,Meteora DLMM"})
        assert (status, body["errorCode"]) == (400, "COULD_NOT_FIND_ANY_ROUTE")


async def test_queued_quote_error_answers_once(stack, http) -> None:
    stack.jupiter.quote_errors.append("TOKEN_NOT_TRADABLE")
    first, second = await quote_status(http, stack), await quote_status(http, stack)
    assert first == (
        400,
        {"error": f"The token {SOL_MINT} is not tradable", "errorCode": "TOKEN_NOT_TRADABLE"},
    )
    assert second[0] == 200


async def test_html_fault_body_is_served_as_is(stack, http) -> None:
    stack.jupiter.fail_next(502, "<html>Bad gateway</html>", content_type="text/html")
    query = {"inputMint": SOL_MINT, "outputMint": USDC, "amount": "1000"}
    async with http.get(stack.jupiter_url + QUOTE_PATH, params=query) as resp:
        assert (resp.status, await resp.text()) == (502, "<html>Bad gateway</html>")


async def test_optional_quote_fields_can_be_left_out(stack, http) -> None:
    stack.jupiter.omit_optional = True
    _, quote = await quote_status(http, stack)
    hop = quote["routePlan"][0]
    assert "platformFee" not in quote and "bps" not in hop and hop["percent"] is None
    assert "feeAmount" not in hop["swapInfo"]


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("expired", lambda swap, height: swap["lastValidBlockHeight"] < height),
        (
            "simulation_error",
            lambda swap, height: swap["simulationError"]["error"].endswith("0x1771"),
        ),
        ("bad_base64", lambda swap, height: not is_base64(swap["swapTransaction"])),
    ],
)
async def test_swap_faults_show_in_the_answer(stack, http, wallet, fault, check) -> None:
    stack.jupiter.swap_faults.append(fault)
    _, quote = await quote_status(http, stack)
    body = {"userPublicKey": str(wallet.pubkey()), "quoteResponse": quote}
    async with http.post(stack.jupiter_url + SWAP_PATH, json=body) as resp:
        swap = await resp.json()
    assert check(swap, stack.chain.block_height)


async def test_expired_swap_from_jupiter_is_refused_by_the_rpc(stack, http, wallet) -> None:
    stack.jupiter.swap_faults.append("expired")
    _, _, raw = await signed_swap(http, stack, wallet, SOL_MINT, USDC, 1000)
    assert (await send(http, stack, raw))["error"]["data"]["err"] == "BlockhashNotFound"


async def test_queued_rpc_error_answers_once(stack, http) -> None:
    stack.rpc.error_next(
        "getBlockHeight", -32005, "Node is behind by 42 slots", {"numSlotsBehind": 42}
    )
    first, second = (
        await rpc(http, stack, "getBlockHeight"),
        await rpc(http, stack, "getBlockHeight"),
    )
    assert first["error"]["data"] == {"numSlotsBehind": 42}
    assert second["result"] == stack.chain.block_height
    assert stack.rpc.calls["getBlockHeight"] == 2
