"""A fake Solana ledger (`FakeChain`) and JSON-RPC node (`FakeSolanaRpc`) on 127.0.0.1, speaking
../shared/contracts/solana-rpc.md: real solders transactions, verified signatures, swaps whose
fate each test decides. `python -m tests.fakes.solana_chain --port-file P` runs RPC + Jupiter."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import base58
from aiohttp import web
from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.associated import get_associated_token_address
from solders.transaction import VersionedTransaction

SOL_MINT = "So11111111111111111111111111111111111111112"
JUPITER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ROUTE_DISCRIMINATOR = bytes.fromhex("e517cb977ae3ad2a")  # Jupiter's `route` instruction tag
BASE_FEE_LAMPORTS = 5000  # per signature
ATA_RENT_LAMPORTS = 2039280
BLOCKHASH_LIFETIME = 150  # blocks a blockhash stays valid (MAX_PROCESSING_AGE)
# Jupiter program errors as they come back in meta.err (contract: 6001 slippage, 6024 funds)
SLIPPAGE_ERR = {"InstructionError": [2, {"Custom": 6001}]}
INSUFFICIENT_ERR = {"InstructionError": [2, {"Custom": 6024}]}

if TYPE_CHECKING:
    from tests.fakes.jupiter import FakeJupiter

# time.monotonic_ns() when the RPC's current HTTP request reached its handler (one per request
# task, so concurrent requests do not see each other's)
_REQUEST_NS: ContextVar[int] = ContextVar("fake_rpc_request_ns")

__all__ = [
    "BASE_FEE_LAMPORTS", "SOL_MINT", "FakeChain", "FakeSolanaRpc", "RpcError", "SolanaStack", "Swap",
    "serve", "solana_stack", "start_app",
]  # fmt: skip


@dataclass
class Swap:
    """What a swap transaction is meant to do, kept by swap id (carried in the route data)."""

    swap_id: int
    user: str
    input_mint: str
    output_mint: str
    in_amount: int  # atomic units of input_mint
    out_amount: int  # quoted, atomic units of output_mint
    min_out: int  # otherAmountThreshold
    last_valid_block_height: int
    priority_fee: int  # lamports, from the ComputeBudget pair


@dataclass
class FakeChain:
    """The ledger both fakes share: lamports per wallet, token balances per (owner, mint), block
    height/slot and a real blockhash that changes on every `advance`."""

    block_height: int = 302_500_000
    slot: int = 324_307_000
    lamports: dict[str, int] = field(default_factory=dict)
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    decimals: dict[str, int] = field(default_factory=lambda: {SOL_MINT: 9})
    swaps: dict[int, Swap] = field(default_factory=dict)
    out_shortfall_bps: int = 0  # actual out = quoted out less this; below min_out -> 6001
    ata_rent_lamports: int = 0  # set to ATA_RENT_LAMPORTS to charge rent for a new account
    blockhash: Hash = field(init=False)

    def __post_init__(self) -> None:
        self.blockhash = self.hash_at(self.block_height)

    def hash_at(self, height: int) -> Hash:
        """The blockhash of block `height` (deterministic, so a test can predict it)."""
        return Hash(hashlib.sha256(f"fake-chain:{height}".encode()).digest())

    def advance(self, n_blocks: int = 1) -> None:
        """Move the chain `n_blocks` blocks (and slots) on, with a new blockhash."""
        self.block_height += n_blocks
        self.slot += n_blocks
        self.blockhash = self.hash_at(self.block_height)

    def fund(self, owner: str, lamports: int = 0, tokens: dict[str, int] | None = None) -> None:
        """Set a wallet's lamports (when non-zero) and token balances (atomic units) per mint."""
        if lamports:
            self.lamports[owner] = lamports
        for mint, amount in (tokens or {}).items():
            self.tokens[(owner, mint)] = amount

    def balance(self, owner: str, mint: str = SOL_MINT) -> int:
        """The wallet's lamports for SOL (wrapAndUnwrapSol semantics), else its token amount."""
        if mint == SOL_MINT:
            return self.lamports.get(owner, 0)
        return self.tokens.get((owner, mint), 0)

    def token_account(self, owner: str, mint: str) -> str:
        return str(
            get_associated_token_address(Pubkey.from_string(owner), Pubkey.from_string(mint))
        )

    def ui_amount(self, mint: str, amount: int) -> dict[str, object]:
        dec = self.decimals.get(mint, 6)
        text = format(Decimal(amount).scaleb(-dec).normalize(), "f") if amount else "0"
        return {
            "uiAmount": amount / 10**dec,
            "decimals": dec,
            "amount": str(amount),
            "uiAmountString": text,
        }

    def build_swap_tx(
        self,
        user: str,
        input_mint: str,
        output_mint: str,
        in_amount: int,
        out_amount: int,
        min_out: int,
        last_valid_block_height: int,
        *,
        compute_unit_limit: int = 300_000,
        micro_lamports: int = 50_000,
        payer: str | None = None,
    ) -> str:
        """Base64 of an unsigned v0 VersionedTransaction (fee payer `payer or user`, current
        blockhash, one zeroed signature slot): a ComputeBudget pair, then a route instruction
        whose data carries the swap id. The intended swap is kept in `swaps`."""
        swap_id = len(self.swaps) + 1
        priority = math.ceil(compute_unit_limit * micro_lamports / 1_000_000)
        self.swaps[swap_id] = Swap(
            swap_id, user, input_mint, output_mint, in_amount, out_amount, min_out,
            last_valid_block_height, priority,
        )  # fmt: skip
        fee_payer = Pubkey.from_string(payer or user)
        metas = [AccountMeta(fee_payer, is_signer=True, is_writable=True)]
        for mint in (input_mint, output_mint):
            if mint != SOL_MINT:
                ata = Pubkey.from_string(self.token_account(payer or user, mint))
                metas.append(AccountMeta(ata, is_signer=False, is_writable=True))
        metas.append(AccountMeta(Pubkey.from_string(TOKEN_PROGRAM), False, False))
        data = ROUTE_DISCRIMINATOR + b"".join(
            v.to_bytes(8, "little") for v in (swap_id, in_amount, min_out)
        )
        ixs = [
            set_compute_unit_limit(compute_unit_limit),
            set_compute_unit_price(micro_lamports),
            Instruction(JUPITER_PROGRAM, data, metas),
        ]
        msg = MessageV0.try_compile(fee_payer, ixs, [], self.blockhash)
        tx = VersionedTransaction.populate(msg, [Signature.default()])
        return base64.b64encode(bytes(tx)).decode()

    def swap_of(self, tx: VersionedTransaction) -> Swap | None:
        """The intended swap a transaction carries, by the swap id in its route data."""
        keys = tx.message.account_keys
        for ix in tx.message.instructions:
            if keys[ix.program_id_index] == JUPITER_PROGRAM and ix.data[:8] == ROUTE_DISCRIMINATOR:
                return self.swaps.get(int.from_bytes(ix.data[8:16], "little"))
        return None

    def execute(self, tx: VersionedTransaction, fate: str) -> dict[str, object]:
        """Apply a received transaction (fate "land", "slippage" or "insufficient") and return
        its `getTransaction` result (json encoding); the fee is charged in every case."""
        swap = self.swap_of(tx)
        keys = [str(k) for k in tx.message.account_keys]
        wallet = keys[0]
        fee = BASE_FEE_LAMPORTS * len(tx.signatures) + (swap.priority_fee if swap else 0)
        mints = [m for m in (swap.input_mint, swap.output_mint) if m != SOL_MINT] if swap else []
        pre_lamports = self.balance(wallet)
        pre_tokens = {m: self.tokens.get((wallet, m)) for m in mints}
        err = self._swap_error(wallet, swap, fate)
        self.lamports[wallet] = pre_lamports - fee
        if swap is not None and err is None:
            actual = swap.out_amount * (10_000 - self.out_shortfall_bps) // 10_000
            self._move(wallet, swap.input_mint, -swap.in_amount)
            self._move(wallet, swap.output_mint, actual)
            for mint in mints:
                if pre_tokens[mint] is None:
                    self.lamports[wallet] -= self.ata_rent_lamports
        pre = [pre_lamports] + [self._static_lamports(k) for k in keys[1:]]
        post = [self.lamports[wallet]] + pre[1:]
        result = {
            "slot": self.slot,
            "blockTime": int(time.time()),
            "version": 0,
            "meta": {
                "err": err,
                "status": {"Ok": None} if err is None else {"Err": err},
                "fee": fee,
                "preBalances": pre,
                "postBalances": post,
                "innerInstructions": [],
                "logMessages": [],
                "preTokenBalances": self._token_entries(wallet, keys, pre_tokens),
                "postTokenBalances": self._token_entries(
                    wallet, keys, {m: self.tokens.get((wallet, m)) for m in mints}
                ),
                "rewards": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": 187_654,
            },
            "transaction": _tx_json(tx),
        }
        return result

    def _swap_error(self, wallet: str, swap: Swap | None, fate: str) -> dict[str, object] | None:
        if swap is None:
            return None
        if fate == "insufficient" or self.balance(wallet, swap.input_mint) < swap.in_amount:
            return INSUFFICIENT_ERR
        actual = swap.out_amount * (10_000 - self.out_shortfall_bps) // 10_000
        if fate == "slippage" or actual < swap.min_out:
            return SLIPPAGE_ERR
        return None

    def _move(self, wallet: str, mint: str, delta: int) -> None:
        if mint == SOL_MINT:
            self.lamports[wallet] = self.lamports.get(wallet, 0) + delta
        else:
            self.tokens[(wallet, mint)] = self.tokens.get((wallet, mint), 0) + delta

    def _static_lamports(self, key: str) -> int:
        programs = (str(COMPUTE_BUDGET_PROGRAM), str(JUPITER_PROGRAM), TOKEN_PROGRAM)
        return self.lamports.get(key, 1 if key in programs else ATA_RENT_LAMPORTS)

    def _token_entries(
        self, wallet: str, keys: list[str], amounts: dict[str, int | None]
    ) -> list[dict[str, object]]:
        # an account that did not exist is absent from the list (the contract counts it as 0)
        return [
            {
                "accountIndex": keys.index(self.token_account(wallet, mint)),
                "mint": mint,
                "uiTokenAmount": self.ui_amount(mint, amount),
                "owner": wallet,
                "programId": TOKEN_PROGRAM,
            }
            for mint, amount in amounts.items()
            if amount is not None and self.token_account(wallet, mint) in keys
        ]


def _tx_json(tx: VersionedTransaction) -> dict[str, object]:
    msg = tx.message
    header = msg.header
    return {
        "signatures": [str(s) for s in tx.signatures],
        "message": {
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "accountKeys": [str(k) for k in msg.account_keys],
            "recentBlockhash": str(msg.recent_blockhash),
            "instructions": [
                {
                    "programIdIndex": ix.program_id_index,
                    "accounts": list(ix.accounts),
                    "data": base58.b58encode(bytes(ix.data)).decode(),
                }
                for ix in msg.instructions
            ],
            "addressTableLookups": [],
        },
    }


class RpcError(Exception):
    """A JSON-RPC error answer: `code`, `message` and optional `data`."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass
class _Sent:
    signature: str
    tx: VersionedTransaction
    fate: str  # land | slippage | insufficient | never | timeout | late
    polls_to_land: int = 0  # "late": status polls that still answer null
    result: dict[str, object] | None = None  # getTransaction result once landed
    status_polls: int = 0
    null_polls_left: int = 0


@dataclass
class _HttpFault:
    method: str | None
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str


def _preflight(err: str) -> RpcError:
    if err.isdigit():
        code = int(err)
        detail: object = {"InstructionError": [2, {"Custom": code}]}
        text = f"Error processing Instruction 2: custom program error: {code:#x}"
    else:
        detail = err
        text = {"BlockhashNotFound": "Blockhash not found"}.get(err, err)
    data = {"err": detail, "logs": [], "accounts": None, "unitsConsumed": 0, "returnData": None,
            "innerInstructions": None, "replacementBlockhash": None}  # fmt: skip
    if err == "AlreadyProcessed":
        return RpcError(-32002, "This transaction has already been processed", data)
    return RpcError(-32002, f"Transaction simulation failed: {text}", data)


def _opt(params: list[object], i: int) -> dict[str, object]:
    value = params[i] if len(params) > i else None
    return value if isinstance(value, dict) else {}


class FakeSolanaRpc:
    """JSON-RPC 2.0 at POST `/` over `chain`. Start with `await rpc.start()` (returns the URL),
    stop with `await rpc.close()`. Tests steer it with `fates` (one per new transaction:
    "land", "slippage", "insufficient", "never", "timeout", "late[:K]", "send_error[:6001|
    BlockhashNotFound|AlreadyProcessed]"), `status_walk`, `transaction_null_polls`,
    `fail_next` (HTTP faults), `error_next` (JSON-RPC errors) and `delays` (seconds per method)."""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.fates: list[str] = []
        self.status_walk = ["processed", "confirmed", "finalized"]  # one step per status poll
        self.transaction_null_polls = 0  # getTransaction answers null this often after landing
        self.omit_token_owner = False  # old nodes: token balances without `owner`
        self.timeout_hold_s = 30.0  # how long a "timeout" send leaves its HTTP request open
        self.priority_fees = [0, 1000, 5000]  # getRecentPrioritizationFees, micro-lamports/CU
        self.delays: dict[str, float] = {}
        self.sends: list[tuple[str, bytes]] = []
        self.calls: Counter[str] = Counter()
        self.landed: dict[str, dict[str, object]] = {}
        self.executions = 0
        self.dropped: list[str] = []  # "drop" sends: held, then forgotten (never on chain)
        self.url = ""
        self._txs: dict[str, _Sent] = {}
        self._faults: list[_HttpFault] = []
        self._rpc_errors: list[tuple[str, RpcError]] = []
        self._closing = asyncio.Event()
        self._hold = False  # set by a "timeout" send: answer only after timeout_hold_s
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_post("/", self._handle)
        # benchmark stamps, time.monotonic_ns() (CLOCK_MONOTONIC is system-wide on Linux, so a
        # client in another process can compare them with its own): when each signature's
        # sendTransaction handler first ran, and when the HTTP request carrying it came in
        self.received_ns: dict[str, int] = {}
        self.send_request_ns: dict[str, int] = {}
        self.app.middlewares.append(self._stamp_request)

    # -- control ------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: str | bytes = b"",
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        n: int = 1,
    ) -> None:
        """The next `n` HTTP requests (carrying `method`, or any) answer `status` with `body`."""
        raw = body.encode() if isinstance(body, str) else body
        for _ in range(n):
            self._faults.append(_HttpFault(method, status, raw, headers or {}, content_type))

    def error_next(self, method: str, code: int, message: str, data: object = None) -> None:
        """The next call of `method` answers this JSON-RPC error (e.g. -32005 node behind)."""
        self._rpc_errors.append((method, RpcError(code, message, data)))

    def status_of(self, signature: str) -> str | None:
        """The fate a sent transaction got ("land", "never", ...), None if never accepted."""
        sent = self._txs.get(signature)
        return sent.fate if sent else None

    async def start(self, port: int = 0) -> str:
        self._runner, self.url = await start_app(self.app, port)
        return self.url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- server -------------------------------------------------------------------------------

    @web.middleware
    async def _stamp_request(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        _REQUEST_NS.set(time.monotonic_ns())
        return await handler(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return web.json_response(_error(None, RpcError(-32700, "Parse error")))
        batch = doc if isinstance(doc, list) else [doc]
        methods = [r.get("method") if isinstance(r, dict) else None for r in batch]
        for m in methods:
            self.calls[str(m)] += 1
        delay = max((self.delays.get(str(m), 0.0) for m in methods), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        for fault in self._faults:
            if fault.method is None or fault.method in methods:
                self._faults.remove(fault)
                return web.Response(
                    status=fault.status, body=fault.body, headers=fault.headers,
                    content_type=fault.content_type,
                )  # fmt: skip
        if not batch:
            return web.json_response(_error(None, RpcError(-32600, "Invalid request")))
        replies, hold = [], False
        for req in batch:
            reply, held = self._one(req)
            replies.append(reply)
            hold = hold or held
        if hold:  # the tx is in; the client only never hears so (until its own timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.timeout_hold_s)
        return web.json_response(replies if isinstance(doc, list) else replies[0])

    def _one(self, req: object) -> tuple[dict[str, object], bool]:
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return _error(None, RpcError(-32600, "Invalid request")), False
        rid, method = req.get("id"), req["method"]
        params = req.get("params") or []
        handler = getattr(self, "_m_" + method, None)
        try:
            for i, (name, err) in enumerate(self._rpc_errors):
                if name == method:
                    del self._rpc_errors[i]
                    raise err
            if handler is None:
                raise RpcError(-32601, "Method not found")
            if not isinstance(params, list):
                raise RpcError(-32602, "Invalid params: expected an array")
            self._hold = False
            result = handler(params)
        except RpcError as exc:
            return _error(rid, exc), False
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            return _error(rid, RpcError(-32602, f"Invalid params: {exc}")), False
        return {"jsonrpc": "2.0", "id": rid, "result": result}, self._hold

    def _ctx(self, value: object) -> dict[str, object]:
        return {"context": {"slot": self.chain.slot, "apiVersion": "2.2.0"}, "value": value}

    # -- methods ------------------------------------------------------------------------------

    def _m_getLatestBlockhash(self, params: list[object]) -> object:
        value = {
            "blockhash": str(self.chain.blockhash),
            "lastValidBlockHeight": self.chain.block_height + BLOCKHASH_LIFETIME,
        }
        return self._ctx(value)

    def _m_getBlockHeight(self, params: list[object]) -> object:
        return self.chain.block_height

    def _m_getSlot(self, params: list[object]) -> object:
        return self.chain.slot

    def _m_getBalance(self, params: list[object]) -> object:
        return self._ctx(self.chain.balance(str(Pubkey.from_string(str(params[0])))))

    def _m_getRecentPrioritizationFees(self, params: list[object]) -> object:
        first = self.chain.slot - len(self.priority_fees) + 1
        return [
            {"slot": first + i, "prioritizationFee": f} for i, f in enumerate(self.priority_fees)
        ]

    def _m_getTokenAccountsByOwner(self, params: list[object]) -> object:
        owner, flt = str(params[0]), _opt(params, 1)
        if "mint" not in flt and "programId" not in flt:
            raise RpcError(-32602, "Invalid params: expected {mint} or {programId}")
        found = []
        for (o, mint), amount in sorted(self.chain.tokens.items()):
            if o != owner or flt.get("mint", mint) != mint:
                continue
            if flt.get("programId", TOKEN_PROGRAM) != TOKEN_PROGRAM:
                continue
            info = {"isNative": False, "mint": mint, "owner": owner, "state": "initialized",
                    "tokenAmount": self.chain.ui_amount(mint, amount)}  # fmt: skip
            data = {
                "program": "spl-token",
                "space": 165,
                "parsed": {"type": "account", "info": info},
            }
            account = {"lamports": ATA_RENT_LAMPORTS, "owner": TOKEN_PROGRAM, "executable": False,
                       "rentEpoch": 2**64 - 1, "space": 165, "data": data}  # fmt: skip
            found.append({"pubkey": self.chain.token_account(owner, mint), "account": account})
        return self._ctx(found)

    def _decode(self, params: list[object]) -> tuple[VersionedTransaction, bytes]:
        text, encoding = str(params[0]), _opt(params, 1).get("encoding") or "base58"
        try:
            raw = (
                base64.b64decode(text, validate=True)
                if encoding == "base64"
                else base58.b58decode(text)
            )
            return VersionedTransaction.from_bytes(raw), raw
        except ValueError as exc:
            raise RpcError(-32602, f"invalid transaction: {exc}") from None

    def _m_simulateTransaction(self, params: list[object]) -> object:
        self._decode(params)
        value = {"err": None, "logs": [], "accounts": None, "unitsConsumed": 150_000,
                 "returnData": None}  # fmt: skip
        return self._ctx(value)

    def _m_sendTransaction(self, params: list[object]) -> object:
        received = time.monotonic_ns()
        tx, raw = self._decode(params)
        if not all(tx.verify_with_results()):
            raise RpcError(-32003, "Transaction signature verification failure")
        sig = str(tx.signatures[0])
        self.received_ns.setdefault(sig, received)
        self.send_request_ns.setdefault(sig, _REQUEST_NS.get(received))
        self.sends.append((sig, raw))
        expired = self._expired(tx)
        known = self._txs.get(sig)
        if known is not None:  # same bytes again: one signature, one transaction
            if known.result is None and expired:
                raise _preflight("BlockhashNotFound")
            return sig
        if expired:
            raise _preflight("BlockhashNotFound")
        kind, _, arg = (self.fates.pop(0) if self.fates else "land").partition(":")
        if kind == "send_error":
            raise _preflight(arg or "6001")
        if kind == "drop":  # lost on the way: the request is held, the chain never sees it
            self.dropped.append(sig)
            self._hold = True
            return sig
        sent = _Sent(sig, tx, kind, polls_to_land=int(arg or 3) if kind == "late" else 0)
        self._txs[sig] = sent
        if kind in ("land", "slippage", "insufficient", "timeout"):
            self._land(sent)
        self._hold = kind == "timeout"
        return sig

    def _expired(self, tx: VersionedTransaction) -> bool:
        swap = self.chain.swap_of(tx)
        if swap is not None:
            return self.chain.block_height > swap.last_valid_block_height
        for back in range(BLOCKHASH_LIFETIME + 1):
            if self.chain.hash_at(self.chain.block_height - back) == tx.message.recent_blockhash:
                return False
        return True

    def _land(self, sent: _Sent) -> None:
        fate = sent.fate if sent.fate in ("slippage", "insufficient") else "land"
        result = self.chain.execute(sent.tx, fate)
        sent.result, sent.null_polls_left = result, self.transaction_null_polls
        self.landed[sent.signature] = result
        meta = result["meta"]
        if self.chain.swap_of(sent.tx) is not None and meta["err"] is None:  # type: ignore[index]
            self.executions += 1

    def _m_getSignatureStatuses(self, params: list[object]) -> object:
        sigs = params[0]
        if not isinstance(sigs, list) or len(sigs) > 256:
            raise RpcError(-32602, "Invalid params: expected at most 256 signatures")
        return self._ctx([self._status(str(s)) for s in sigs])

    def _status(self, sig: str) -> dict[str, object] | None:
        sent = self._txs.get(sig)
        if sent is None:
            return None
        if sent.result is None:
            if sent.fate != "late":
                return None
            if sent.polls_to_land > 0:
                sent.polls_to_land -= 1
                return None
            self._land(sent)
        assert sent.result is not None
        step = self.status_walk[min(sent.status_polls, len(self.status_walk) - 1)]
        sent.status_polls += 1
        err = sent.result["meta"]["err"]  # type: ignore[index]
        return {
            "slot": sent.result["slot"],
            "confirmations": None if step == "finalized" else (0 if step == "processed" else 10),
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "confirmationStatus": step,
        }

    def _m_getTransaction(self, params: list[object]) -> object:
        opts = _opt(params, 1)
        if opts.get("commitment") == "processed":
            raise RpcError(-32602, "Method does not support commitment below `confirmed`")
        sent = self._txs.get(str(params[0]))
        if sent is None or sent.result is None:
            return None
        last = self.status_walk[min(max(sent.status_polls - 1, 0), len(self.status_walk) - 1)]
        if sent.status_polls and last == "processed":
            return None  # getTransaction sees confirmed transactions only
        if opts.get("maxSupportedTransactionVersion") is None:
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        if sent.null_polls_left > 0:
            sent.null_polls_left -= 1
            return None
        result = json.loads(json.dumps(sent.result))
        encoding = opts.get("encoding") or "json"
        if encoding == "base64":
            result["transaction"] = [base64.b64encode(bytes(sent.tx)).decode(), "base64"]
        elif encoding != "json":
            raise RpcError(
                -32602, f"Invalid params: the fake serves json and base64, not {encoding}"
            )
        if self.omit_token_owner:
            for key in ("preTokenBalances", "postTokenBalances"):
                for entry in result["meta"][key]:
                    entry.pop("owner", None)
        return result


def _error(rid: object, exc: RpcError) -> dict[str, object]:
    err: dict[str, object] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        err["data"] = exc.data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


async def start_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Run `app` on 127.0.0.1 (`port` 0 = any free one); returns the runner and its base URL."""
    # handler_cancellation: a client that hangs up ends its handler (a held send, a delay)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]  # noqa: SLF001


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Serve any aiohttp `app` on 127.0.0.1 for the block; yields `http://127.0.0.1:<port>`."""
    runner, url = await start_app(app, port)
    try:
        yield url
    finally:
        await runner.cleanup()


@dataclass
class SolanaStack:
    chain: FakeChain
    rpc: FakeSolanaRpc
    jupiter: FakeJupiter
    rpc_url: str
    jupiter_url: str  # base; the API paths are under /swap/v1
    # (path, start, end) of each Jupiter handler run, time.monotonic_ns(): the fake's own time
    jupiter_spans: list[tuple[str, int, int]] = field(default_factory=list)


def _time_jupiter(jupiter: FakeJupiter, spans: list[tuple[str, int, int]]) -> None:
    """Wrap the fake Jupiter's quote and swap handlers (before it starts) so that each run
    appends (path, start ns, end ns) to `spans`; answers are unchanged."""
    for name in ("_quote", "_swap"):
        handler = getattr(jupiter, name)

        async def timed(request: web.Request, handler: Any = handler) -> web.StreamResponse:
            started = time.monotonic_ns()
            try:
                return await handler(request)
            finally:
                spans.append((request.path, started, time.monotonic_ns()))

        setattr(jupiter, name, timed)


@contextlib.asynccontextmanager
async def solana_stack(
    chain: FakeChain | None = None,
    *,
    control: bool = False,
    rpc_port: int = 0,
    jupiter_port: int = 0,
) -> AsyncIterator[SolanaStack]:
    """Chain + RPC + Jupiter fakes, started together. With `control`, the RPC server also
    answers `POST /control` and `GET /control/state` (for a test in another process)."""
    from tests.fakes.jupiter import FakeJupiter  # jupiter.py imports this module

    chain = chain or FakeChain()
    rpc, jupiter = FakeSolanaRpc(chain), FakeJupiter(chain)
    spans: list[tuple[str, int, int]] = []
    _time_jupiter(jupiter, spans)
    if control:
        steer = _Control(chain, rpc, jupiter, spans)
        rpc.app.router.add_post("/control", steer.post)
        rpc.app.router.add_get("/control/state", steer.state)
    rpc_url = await rpc.start(rpc_port)
    try:
        jupiter_url = await jupiter.start(jupiter_port)
        try:
            yield SolanaStack(chain, rpc, jupiter, rpc_url, jupiter_url, spans)
        finally:
            await jupiter.close()
    finally:
        await rpc.close()


@dataclass
class _Control:
    """`POST /control` keys: fates (list), advance (blocks), fund ({owner, lamports, tokens}),
    rates ([[in, out, "num/den"]]), out_shortfall_bps, status_walk, transaction_null_polls,
    quote_errors, swap_faults, rate_limit (n). Each answers the state."""

    chain: FakeChain
    rpc: FakeSolanaRpc
    jupiter: FakeJupiter
    jupiter_spans: list[tuple[str, int, int]] = field(default_factory=list)

    async def post(self, request: web.Request) -> web.Response:
        doc = await request.json()
        self.rpc.fates.extend(doc.get("fates", []))
        self.chain.advance(int(doc.get("advance", 0)))
        if "fund" in doc:
            f = doc["fund"]
            tokens = {m: int(a) for m, a in f.get("tokens", {}).items()}
            self.chain.fund(f["owner"], int(f.get("lamports", 0)), tokens)
        for in_mint, out_mint, rate in doc.get("rates", []):
            self.jupiter.rates[(in_mint, out_mint)] = Fraction(rate)
        for name in ("out_shortfall_bps",):
            if name in doc:
                setattr(self.chain, name, int(doc[name]))
        for name in ("status_walk", "transaction_null_polls"):
            if name in doc:
                setattr(self.rpc, name, doc[name])
        self.jupiter.quote_errors.extend(doc.get("quote_errors", []))
        self.jupiter.swap_faults.extend(doc.get("swap_faults", []))
        if doc.get("rate_limit"):
            self.jupiter.rate_limit(int(doc["rate_limit"]))
        return await self.state(request)

    async def state(self, request: web.Request) -> web.Response:
        c, r = self.chain, self.rpc
        return web.json_response({
            "block_height": c.block_height, "slot": c.slot, "blockhash": str(c.blockhash),
            "lamports": c.lamports,
            "tokens": [[o, m, a] for (o, m), a in sorted(c.tokens.items())],
            "sends": [s for s, _ in r.sends], "calls": r.calls, "executions": r.executions,
            "landed": {s: res["meta"]["err"] for s, res in r.landed.items()},  # type: ignore[index]
            "jupiter_requests": [q.path for q in self.jupiter.requests],
            "dropped": r.dropped,
            "received_ns": r.received_ns, "send_request_ns": r.send_request_ns,
            "jupiter_spans": self.jupiter_spans,
        })  # fmt: skip


async def _run(port_file: Path, rpc_port: int, jupiter_port: int) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with solana_stack(control=True, rpc_port=rpc_port, jupiter_port=jupiter_port) as st:
        urls = {"rpc_url": st.rpc_url, "jupiter_url": st.jupiter_url,
                "control_url": st.rpc_url + "/control"}  # fmt: skip
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(urls))
        tmp.replace(port_file)  # readers never see half a file
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", type=Path, required=True, help="JSON with the three URLs")
    parser.add_argument("--rpc-port", type=int, default=0)
    parser.add_argument("--jupiter-port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_run(args.port_file, args.rpc_port, args.jupiter_port))
