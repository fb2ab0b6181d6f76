"""SolanaRpc against a tiny JSON-RPC server on 127.0.0.1 answering with the exact payloads and
errors of ../shared/contracts/solana-rpc.md."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from tradingd.adapters.solana.rpc import RpcFailure, SignatureStatus, SolanaRpc
from tradingd.adapters.solana.swap_amounts import swap_amounts
from tradingd.adapters.transient import is_transient
from tradingd.adapters.venues.breaker import CircuitBreaker

from tests.unit.test_swap_amounts import CONTRACT_GET_TRANSACTION

SIG = "2soASZVz6NaEUZtRyCbf3hAdpPAAiecRovUSi99FFw9GJGQTbdoPFaFctNx1Nzt2FzPMLj5JjBnkXJm6CGofULNX"
WALLET = "GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
SECRET = "SECRET"

BLOCKHASH = '{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":324307150},"value":{"blockhash":"4ruaGCyaofHWGxPFXFVjuEJCdfBGZ2wCtEx6LzdzVqtV","lastValidBlockHeight":302500150}}}'
SEND = '{"jsonrpc":"2.0","id":0,"result":"2soASZVz6NaEUZtRyCbf3hAdpPAAiecRovUSi99FFw9GJGQTbdoPFaFctNx1Nzt2FzPMLj5JjBnkXJm6CGofULNX"}'
STATUSES = '{"jsonrpc":"2.0","id":3,"result":{"context":{"slot":324307310},"value":[{"slot":324307300,"confirmations":10,"err":null,"status":{"Ok":null},"confirmationStatus":"confirmed"},null]}}'
BLOCK_HEIGHT = '{"jsonrpc":"2.0","id":4,"result":302500021}'
BALANCE = '{"jsonrpc":"2.0","id":5,"result":{"context":{"slot":324307310},"value":899980000}}'
PREFLIGHT_6001 = '{"jsonrpc":"2.0","id":2,"error":{"code":-32002,"message":"Transaction simulation failed: Error processing Instruction 2: custom program error: 0x1771","data":{"err":{"InstructionError":[2,{"Custom":6001}]},"logs":["Program JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4 failed: custom program error: 0x1771"],"accounts":null,"unitsConsumed":98000,"returnData":null,"innerInstructions":null,"replacementBlockhash":null}}}'
NODE_BEHIND = '{"jsonrpc":"2.0","id":2,"error":{"code":-32005,"message":"Node is behind by 42 slots","data":{"numSlotsBehind":42}}}'


def token_account(pubkey: str, mint: str, amount: str, program: str) -> dict[str, Any]:
    info = {
        "isNative": False,
        "mint": mint,
        "owner": WALLET,
        "state": "initialized",
        "tokenAmount": {"amount": amount, "decimals": 6, "uiAmount": 1.0, "uiAmountString": "1"},
    }
    return {
        "pubkey": pubkey,
        "account": {
            "lamports": 2039280,
            "owner": TOKEN if program == "spl-token" else TOKEN_2022,
            "executable": False,
            "rentEpoch": 18446744073709551615,
            "space": 165,
            "data": {"program": program, "space": 165, "parsed": {"type": "account", "info": info}},
        },
    }


class FakeRpc:
    """Answers each POST with `answer(request) -> web.Response` (default: the contract's reply
    for the method, the request's id echoed) and records every request body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[dict[str, Any]], Any] | None = None
        self.token_accounts: dict[str, list[dict[str, Any]]] = {TOKEN: [], TOKEN_2022: []}
        self.released = asyncio.Event()  # set at teardown: a handler told to hang returns

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read())
        self.requests.append(body)
        if self.answer is not None:
            return await self.answer(body)
        return web.Response(body=self.contract_reply(body), content_type="application/json")

    def contract_reply(self, body: dict[str, Any]) -> bytes:
        method = body["method"]
        if method == "getSignatureStatuses":
            value = [None] * len(body["params"][0])
            value[0] = msgspec.json.decode(STATUSES)["result"]["value"][0]
            result: Any = {"context": {"slot": 1}, "value": value}
        elif method == "getTokenAccountsByOwner":
            program = body["params"][1]["programId"]
            result = {"context": {"slot": 1}, "value": self.token_accounts[program]}
        elif method == "getRecentPrioritizationFees":
            result = [
                {"slot": 348125, "prioritizationFee": 1000},
                {"slot": 348124, "prioritizationFee": 0},
            ]
        else:
            canned = {
                "getLatestBlockhash": BLOCKHASH,
                "sendTransaction": SEND,
                "getBlockHeight": BLOCK_HEIGHT,
                "getBalance": BALANCE,
            }[method]
            result = msgspec.json.decode(canned)["result"]
        return msgspec.json.encode({"jsonrpc": "2.0", "id": body["id"], "result": result})


def fixed(text: str | bytes, status: int = 200, headers: dict[str, str] | None = None, **kw):
    async def answer(body: dict[str, Any]) -> web.Response:
        raw = text.encode() if isinstance(text, str) else text
        return web.Response(body=raw, status=status, headers=headers, **kw)

    return answer


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRpc, str]]:
    server = FakeRpc()
    app = web.Application()
    app.router.add_post("/", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}/?api-key={SECRET}"
    server.released.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def rpc(fake, session) -> SolanaRpc:
    return SolanaRpc(fake[1], session, timeout_s=2.0)


async def failure(call) -> RpcFailure:
    with pytest.raises(RpcFailure) as info:
        await call
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    return info.value


# --- results ---------------------------------------------------------------------------------


async def test_latest_blockhash_reads_hash_and_last_valid_height(rpc):
    assert await rpc.get_latest_blockhash() == (
        "4ruaGCyaofHWGxPFXFVjuEJCdfBGZ2wCtEx6LzdzVqtV",
        302500150,
    )


async def test_block_height_is_the_result(rpc):
    assert await rpc.get_block_height() == 302500021


async def test_balance_is_lamports(rpc):
    assert await rpc.get_balance(WALLET) == 899980000


async def test_send_transaction_returns_signature(rpc):
    assert await rpc.send_transaction(b"\x01signed", skip_preflight=True) == SIG


async def test_send_transaction_sends_base64_without_node_retries(fake, rpc):
    await rpc.send_transaction(b"\x01signed", skip_preflight=False)
    params = fake[0].requests[-1]["params"]
    assert params == [
        base64.b64encode(b"\x01signed").decode(),
        {
            "encoding": "base64",
            "skipPreflight": False,
            "preflightCommitment": "confirmed",
            "maxRetries": 0,
        },
    ]


async def test_signature_statuses_align_with_input_and_keep_null(rpc):
    statuses = await rpc.get_signature_statuses([SIG, "unseen"])
    assert statuses == [SignatureStatus(324307300, 10, None, "confirmed"), None]


async def test_signature_statuses_do_not_search_history(fake, rpc):
    await rpc.get_signature_statuses([SIG])
    assert fake[0].requests[-1]["params"][1] == {"searchTransactionHistory": False}


async def test_more_than_256_signatures_are_split_into_calls_of_256(fake, rpc):
    statuses = await rpc.get_signature_statuses([f"s{i}" for i in range(600)])
    sizes = [len(r["params"][0]) for r in fake[0].requests]
    assert (sizes, len(statuses)) == ([256, 256, 88], 600)


async def test_contract_transaction_reads_into_swap_amounts(fake, rpc):
    fake[0].answer = fixed(CONTRACT_GET_TRANSACTION)
    tx = await rpc.get_transaction(SIG)
    assert swap_amounts(tx, WALLET).token_deltas == {USDC: 17_055_000}


async def test_unknown_transaction_is_none(fake, rpc):
    fake[0].answer = fixed('{"jsonrpc":"2.0","id":1,"result":null}')
    assert await rpc.get_transaction(SIG) is None


async def test_get_transaction_asks_json_v0_at_confirmed_even_when_processed(fake, session):
    fake[0].answer = fixed('{"jsonrpc":"2.0","id":1,"result":null}')
    rpc = SolanaRpc(fake[1], session, timeout_s=2.0, commitment="processed")
    await rpc.get_transaction(SIG)
    assert fake[0].requests[-1]["params"] == [
        SIG,
        {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0},
    ]


async def test_token_balances_sum_both_token_programs_per_mint(fake, rpc):
    fake[0].token_accounts[TOKEN] = [
        token_account("A1", USDC, "5000000", "spl-token"),
        token_account("A2", USDC, "7", "spl-token"),
    ]
    fake[0].token_accounts[TOKEN_2022] = [token_account("B1", "M22", "42", "spl-token-2022")]
    assert await rpc.get_token_balances(WALLET) == {USDC: 5000007, "M22": 42}


async def test_prioritization_fees_in_slot_order(rpc):
    assert await rpc.get_recent_prioritization_fees([WALLET]) == [0, 1000]


async def test_null_result_where_a_value_is_required_is_malformed(fake, rpc):
    fake[0].answer = fixed('{"jsonrpc":"2.0","id":1,"result":null}')
    assert (await failure(rpc.get_block_height())).reason == "rpc_malformed"


# --- errors ----------------------------------------------------------------------------------


async def test_preflight_failure_is_permanent_with_its_err(fake, rpc):
    fake[0].answer = fixed(PREFLIGHT_6001)
    exc = await failure(rpc.send_transaction(b"tx", skip_preflight=False))
    assert (exc.reason, exc.rpc_code, exc.transient) == ("rpc_error_-32002", -32002, False)
    assert exc.data["err"] == {"InstructionError": [2, {"Custom": 6001}]}


async def test_node_behind_is_transient(fake, rpc):
    fake[0].answer = fixed(NODE_BEHIND)
    exc = await failure(rpc.get_latest_blockhash())
    assert (exc.reason, exc.rpc_code, is_transient(exc)) == ("rpc_error_-32005", -32005, True)


@pytest.mark.parametrize("code", [-32003, -32602, -32015])
async def test_request_errors_are_permanent(fake, rpc, code):
    fake[0].answer = fixed(f'{{"jsonrpc":"2.0","id":1,"error":{{"code":{code},"message":"x"}}}}')
    assert (await failure(rpc.get_block_height())).transient is False


async def test_429_is_transient_with_retry_after(fake, rpc):
    fake[0].answer = fixed("Too many requests", status=429, headers={"Retry-After": "7"})
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient, exc.retry_after_s) == ("rpc_http_429", True, 7.0)


async def test_503_is_transient(fake, rpc):
    fake[0].answer = fixed("<html>busy</html>", status=503)
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient) == ("rpc_http_503", True)


async def test_403_is_permanent(fake, rpc):
    fake[0].answer = fixed("forbidden", status=403)
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient) == ("rpc_http_403", False)


async def test_html_body_with_200_is_malformed(fake, rpc):
    fake[0].answer = fixed("<html><body>Bad gateway</body></html>", content_type="text/html")
    assert (await failure(rpc.get_block_height())).reason == "rpc_malformed"


async def test_reply_past_size_bound_is_refused(fake, rpc):
    padding = "x" * (5 * 1024 * 1024)
    fake[0].answer = fixed(f'{{"jsonrpc":"2.0","id":1,"result":1,"pad":"{padding}"}}')
    assert (await failure(rpc.get_block_height())).reason == "rpc_too_large"


async def test_slow_node_times_out(fake, session):
    async def never(body):
        await fake[0].released.wait()
        return web.Response(body=BLOCK_HEIGHT)

    fake[0].answer = never
    rpc = SolanaRpc(fake[1], session, timeout_s=0.2)
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient) == ("rpc_timeout", True)


async def test_refused_connection_is_unreachable(session):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens
    rpc = SolanaRpc(f"http://127.0.0.1:{port}/?api-key={SECRET}", session, timeout_s=2.0)
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient) == ("rpc_unreachable", True)


async def test_failure_chain_does_not_carry_the_url(session):
    rpc = SolanaRpc(f"http://127.0.0.1:1/?api-key={SECRET}", session, timeout_s=2.0)
    exc = await failure(rpc.get_block_height())
    assert exc.__cause__ is None and exc.__suppress_context__


def test_host_hides_path_and_query(session):
    rpc = SolanaRpc(
        f"https://user:pw@rpc.example.com/v1/{SECRET}?api-key={SECRET}", session, timeout_s=1
    )
    assert rpc.host() == "rpc.example.com"


# --- breaker ---------------------------------------------------------------------------------


class CountingBreaker:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def check(self) -> None:
        self.calls.append("check")

    def record_success(self) -> None:
        self.calls.append("success")

    def record_failure(self) -> None:
        self.calls.append("failure")


async def test_breaker_counts_a_transient_failure(fake, session):
    breaker = CountingBreaker()
    fake[0].answer = fixed("busy", status=503)
    rpc = SolanaRpc(fake[1], session, timeout_s=2.0, breaker=breaker)
    await failure(rpc.get_block_height())
    assert breaker.calls == ["check", "failure"]


async def test_breaker_counts_a_refusal_as_the_host_answering(fake, session):
    breaker = CountingBreaker()
    fake[0].answer = fixed(PREFLIGHT_6001)
    rpc = SolanaRpc(fake[1], session, timeout_s=2.0, breaker=breaker)
    await failure(rpc.send_transaction(b"tx", skip_preflight=False))
    assert breaker.calls == ["check", "success"]


async def test_open_breaker_refuses_without_sending(fake, session):
    breaker = CircuitBreaker("rpc", failure_threshold=1, reset_after_s=30.0)
    fake[0].answer = fixed("busy", status=503)
    rpc = SolanaRpc(fake[1], session, timeout_s=2.0, breaker=breaker)
    await failure(rpc.get_block_height())
    exc = await failure(rpc.get_block_height())
    assert (exc.reason, exc.transient, len(fake[0].requests)) == ("rpc_circuit_open", True, 1)
