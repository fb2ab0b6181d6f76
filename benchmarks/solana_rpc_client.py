"""Solana RPC client choice (issue 11 item 7): round-trip time of getSignatureStatuses,
sendTransaction and getTransaction against a zero-latency JSON-RPC server on 127.0.0.1, for
three clients in one run:

- `ours`: adapters/solana/rpc.py SolanaRpc (msgspec Structs, our aiohttp session);
- `solders`: solders' typed requests (`GetSignatureStatuses(...).to_json()`) and responses
  (`GetSignatureStatusesResp.from_json`) over the same aiohttp session;
- `solana_py`: solana-py's AsyncClient (httpx), skipped with a message when not installed.

The server (aiohttp, same process and loop) reads the request, echoes its id and answers the
contract's payloads (../shared/contracts/solana-rpc.md): 4 statuses (2 known, 2 null), a
signature, the v0 swap's getTransaction. Time is client + server + loop; the server's share is
the same for every arm, so the differences are the clients'. Then, without the network, the mean
time to decode each reply alone: our msgspec decoders vs solders' `from_json` (solana-py's too).

    .venv/bin/python benchmarks/solana_rpc_client.py [--json PATH] [--count N] [--budget-s S]

Bounded: each (arm, method) does 200 warm-up calls, then stops at --count calls or --budget-s
seconds (default 5,000 / 3 s): the whole run takes < 40 s."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402
from _stats import add_json_arg, percentiles, run_loop, write_json  # noqa: E402
from aiohttp import web  # noqa: E402
from solders.rpc.config import (  # noqa: E402
    RpcSendTransactionConfig,
    RpcSignatureStatusConfig,
    RpcTransactionConfig,
)
from solders.rpc.requests import (  # noqa: E402
    GetSignatureStatuses,
    GetTransaction,
    SendRawTransaction,
)
from solders.rpc.responses import (  # noqa: E402
    GetSignatureStatusesResp,
    GetTransactionResp,
    SendTransactionResp,
)
from solders.signature import Signature  # noqa: E402
from solders.transaction_status import UiTransactionEncoding  # noqa: E402
from tradingd.adapters.solana.rpc import SolanaRpc  # noqa: E402

from tests.unit.test_swap_amounts import CONTRACT_GET_TRANSACTION  # noqa: E402

SIG = "2soASZVz6NaEUZtRyCbf3hAdpPAAiecRovUSi99FFw9GJGQTbdoPFaFctNx1Nzt2FzPMLj5JjBnkXJm6CGofULNX"
SIGS = [SIG, "4" * 88, "5" * 88, "3" * 88]
STATUS = {
    "slot": 324307300,
    "confirmations": 10,
    "err": None,
    "status": {"Ok": None},
    "confirmationStatus": "confirmed",
}
RAW_TX = bytes(range(256)) * 4  # ~1 kB, about a Jupiter route's signed transaction
METHODS = ("getSignatureStatuses", "sendTransaction", "getTransaction")
WARMUP = 200


def _result_bytes() -> dict[str, bytes]:
    tx = msgspec.json.decode(CONTRACT_GET_TRANSACTION)["result"]
    statuses = {"context": {"slot": 324307310}, "value": [STATUS, None, STATUS, None]}
    return {
        "getSignatureStatuses": msgspec.json.encode(statuses),
        "sendTransaction": msgspec.json.encode(SIG),
        "getTransaction": msgspec.json.encode(tx),
    }


class Request(msgspec.Struct):
    method: str
    id: int | str | None = None


async def start_server() -> tuple[web.AppRunner, str]:
    results = _result_bytes()
    decode = msgspec.json.Decoder(Request).decode

    async def handle(request: web.Request) -> web.Response:
        req = decode(await request.read())
        head = b'{"jsonrpc":"2.0","id":' + msgspec.json.encode(req.id) + b',"result":'
        return web.Response(body=head + results[req.method] + b"}", content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/"


Call = Callable[[], Awaitable[Any]]


def ours(url: str, session: aiohttp.ClientSession) -> dict[str, Call]:
    rpc = SolanaRpc(url, session, timeout_s=5.0)
    return {
        "getSignatureStatuses": lambda: rpc.get_signature_statuses(SIGS),
        "sendTransaction": lambda: rpc.send_transaction(RAW_TX, skip_preflight=True),
        "getTransaction": lambda: rpc.get_transaction(SIG),
    }


def solders_typed(url: str, session: aiohttp.ClientSession) -> dict[str, Call]:
    """solders builds and parses; we only carry the bytes (the same session and timeout)."""
    timeout = aiohttp.ClientTimeout(total=5.0)
    headers = {"Content-Type": "application/json"}
    send_config = RpcSendTransactionConfig(skip_preflight=True, max_retries=0)
    tx_config = RpcTransactionConfig(
        encoding=UiTransactionEncoding.Json, max_supported_transaction_version=0
    )

    async def post(body: str) -> str:
        async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
            return await resp.text()

    async def statuses() -> Any:
        sigs = [Signature.from_string(s) for s in SIGS]
        req = GetSignatureStatuses(sigs, RpcSignatureStatusConfig(False))
        return GetSignatureStatusesResp.from_json(await post(req.to_json())).value

    async def send() -> Any:
        req = SendRawTransaction(RAW_TX, send_config)
        return SendTransactionResp.from_json(await post(req.to_json())).value

    async def transaction() -> Any:
        req = GetTransaction(Signature.from_string(SIG), tx_config)
        return GetTransactionResp.from_json(await post(req.to_json())).value

    return {
        "getSignatureStatuses": statuses,
        "sendTransaction": send,
        "getTransaction": transaction,
    }


def solana_py(url: str) -> tuple[dict[str, Call], Any] | None:
    try:
        from solana.rpc.async_api import AsyncClient
        from solana.rpc.models import TxOpts
    except ImportError:
        return None
    client = AsyncClient(url, timeout=5.0)
    opts = TxOpts(skip_preflight=True, max_retries=0)
    sigs = [Signature.from_string(s) for s in SIGS]
    sig = Signature.from_string(SIG)
    calls: dict[str, Call] = {
        "getSignatureStatuses": lambda: client.get_signature_statuses(sigs),
        "sendTransaction": lambda: client.send_raw_transaction(RAW_TX, opts),
        "getTransaction": lambda: client.get_transaction(sig, max_supported_transaction_version=0),
    }
    return calls, client


async def measure(call: Call, count: int, budget_s: float) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    clock = time.perf_counter_ns
    while len(samples) < count and time.perf_counter() < deadline:
        start = clock()
        await call()
        samples.append((clock() - start) / 1000)
    return samples


def parse_only(rounds: int = 2000) -> dict[str, dict[str, float]]:
    """Mean µs to decode each reply alone: our msgspec decoders vs solders' from_json (which
    solana-py uses too), on the same bytes: the clients' own share of a round trip."""
    from tradingd.adapters.solana import rpc

    results = _result_bytes()
    replies = {m: b'{"jsonrpc":"2.0","id":1,"result":' + results[m] + b"}" for m in METHODS}
    texts = {m: r.decode() for m, r in replies.items()}
    parsers: dict[str, dict[str, Callable[[], Any]]] = {
        "ours": {
            "getSignatureStatuses": lambda: rpc._STATUSES.decode(replies["getSignatureStatuses"]),
            "sendTransaction": lambda: rpc._STR.decode(replies["sendTransaction"]),
            "getTransaction": lambda: rpc._TRANSACTION.decode(replies["getTransaction"]),
        },
        "solders": {
            "getSignatureStatuses": lambda: GetSignatureStatusesResp.from_json(
                texts["getSignatureStatuses"]
            ),
            "sendTransaction": lambda: SendTransactionResp.from_json(texts["sendTransaction"]),
            "getTransaction": lambda: GetTransactionResp.from_json(texts["getTransaction"]),
        },
    }
    out: dict[str, dict[str, float]] = {}
    for arm, by_method in parsers.items():
        out[arm] = {}
        for method, parse in by_method.items():
            for _ in range(WARMUP):
                parse()
            start = time.perf_counter_ns()
            for _ in range(rounds):
                parse()
            out[arm][method] = (time.perf_counter_ns() - start) / rounds / 1000
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    runner, url = await start_server()
    result: dict[str, Any] = {"arms": {}, "ratios_p50_vs_ours": {}, "parse_only_mean_us": {}}
    try:
        async with aiohttp.ClientSession() as session:
            arms: dict[str, dict[str, Call]] = {
                "ours": ours(url, session),
                "solders": solders_typed(url, session),
            }
            py = solana_py(url)
            if py is None:
                print("solana_py: skipped (pip install solana to measure solana-py AsyncClient)")
                result["solana_py_skipped"] = True
            else:
                arms["solana_py"] = py[0]
            for arm, calls in arms.items():
                result["arms"][arm] = {}
                for method in METHODS:
                    samples = await measure(calls[method], args.count, args.budget_s)
                    result["arms"][arm][method] = percentiles(samples)
            if py is not None:
                await py[1].close()
    finally:
        await runner.cleanup()
    print(f"{'arm':<10} {'method':<22} {'n':>6} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9}")
    for arm, by_method in result["arms"].items():
        for method, p in by_method.items():
            print(
                f"{arm:<10} {method:<22} {p['count']:>6} {p['p50']:>9.1f} {p['p99']:>9.1f}"
                f" {p['p999']:>9.1f}"
            )
    base = result["arms"]["ours"]
    for arm, by_method in result["arms"].items():
        if arm == "ours":
            continue
        ratios = {m: by_method[m]["p50"] / base[m]["p50"] for m in METHODS}
        result["ratios_p50_vs_ours"][arm] = ratios
        print(f"p50 {arm}/ours: " + ", ".join(f"{m} {r:.2f}x" for m, r in ratios.items()))
    result["parse_only_mean_us"] = parse_only()
    for arm, by_method in result["parse_only_mean_us"].items():
        print(
            f"parse only, mean µs, {arm}: "
            + ", ".join(f"{m} {v:.2f}" for m, v in by_method.items())
        )
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    parser.add_argument("--count", type=int, default=5000, help="calls per arm and method")
    parser.add_argument("--budget-s", type=float, default=3.0, help="time bound of each measure")
    args = parser.parse_args()
    result = run_loop(main(args))
    write_json(args.json, result)


if __name__ == "__main__":
    cli()
