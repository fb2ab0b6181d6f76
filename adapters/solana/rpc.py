"""tradingd's Solana JSON-RPC client: one POST per call over the caller's aiohttp session, replies
decoded straight into msgspec Structs (schemas.py), every failure mapped to one RpcFailure."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec
from tradingd.adapters.feeds.retry import retry_after_s
from tradingd.adapters.solana.schemas import (
    KeyedTokenAccount,
    LatestBlockhash,
    PrioritizationFee,
    Reply,
    SignatureStatus,
    TransactionResult,
    WithContext,
    atomic_amount,
)
from tradingd.engine.errors import VenueError
from yarl import URL

__all__ = ["RpcFailure", "SignatureStatus", "SolanaRpc", "TransactionResult"]

T = TypeVar("T")

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a getTransaction with long logs is well under this
MAX_SIGNATURES_PER_CALL = 256  # getSignatureStatuses refuses more
ERROR_TEXT_CHARS = 300  # a node's error message is one line; anything longer is cut
TOKEN_PROGRAMS = (
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
)
# -32005 node behind, -32004 block not available, -32016 min context slot not reached: another
# try (or another node) may answer. -32002 preflight failure, -32003 signature verification,
# -32015 unsupported version, -32602 invalid params: the same request fails the same way.
TRANSIENT_RPC_CODES = frozenset({-32005, -32004, -32016})


class Breaker(Protocol):
    """A circuit breaker for one host (adapters/venues/breaker.py): `check()` raises a
    VenueError (CircuitOpen) while open."""

    def check(self) -> None: ...
    def record_success(self) -> None: ...
    def record_failure(self) -> None: ...


class RpcFailure(VenueError):
    """An RPC call that did not return a usable result. `reason`: stable snake_case code
    (`rpc_timeout`, `rpc_unreachable`, `rpc_http_429`, `rpc_http_<status>`, `rpc_error_<code>`
    e.g. `rpc_error_-32002`, `rpc_malformed`, `rpc_too_large`, `rpc_circuit_open`); `rpc_code`: the JSON-RPC error code or
    None; `data`: its data (e.g. {"err": ...}) or None; `retry_after_s`: from Retry-After on 429,
    else None. transient: timeouts, connection errors, 429, 5xx, -32005, -32004, -32016, a
    malformed body (a proxy's page); not transient: other 4xx, -32003, -32602, -32015, -32002
    (preflight failure: the tx as signed will not succeed), a body past the size bound.
    The message names the host only, never the URL (it may carry an API key)."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        transient: bool,
        code: int | None = None,
        data: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, transient, {"reason": reason, "rpc_code": code})
        self.reason = reason
        self.rpc_code = code  # the JSON-RPC error code; `code` stays the control port's
        self.data = data
        self.retry_after_s = retry_after_s


def _printable(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text.strip())
    return text[:ERROR_TEXT_CHARS]


def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(Reply[kind])


_INT = _decoder(int)
_STR = _decoder(str)
_BLOCKHASH = _decoder(WithContext[LatestBlockhash])
_BALANCE = _decoder(WithContext[int])
_STATUSES = _decoder(WithContext[list[SignatureStatus | None]])
_TRANSACTION = _decoder(TransactionResult)
_TOKEN_ACCOUNTS = _decoder(WithContext[list[KeyedTokenAccount]])
_FEES = _decoder(list[PrioritizationFee])
_encode = msgspec.json.Encoder().encode


class SolanaRpc:
    """A client of one RPC endpoint. `timeout_s` bounds every call (connect, send, the whole
    body); `commitment` is used for reads and as preflightCommitment; `breaker` (optional) is
    checked before each call (open: RpcFailure `rpc_circuit_open`, nothing sent) and told
    whether the host answered: a failure for transient RpcFailures, a success otherwise (a
    refusal such as -32002 means the host is up)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float,
        commitment: str = "confirmed",
        breaker: Breaker | None = None,
    ) -> None:
        self._url = URL(url)
        self._session = session
        self._timeout_s = timeout_s
        self._commitment = commitment
        self._breaker = breaker
        self._ids = itertools.count(1)
        port = self._url.explicit_port
        self._host = f"{self._url.host}:{port}" if port else str(self._url.host)

    def host(self) -> str:
        """The endpoint's host (and explicit port): the only part of the URL safe to show."""
        return self._host

    # --- methods --------------------------------------------------------------------------

    async def get_block_height(self) -> int:
        """The current block height at the client's commitment. Raises RpcFailure."""
        height: int = await self._result("getBlockHeight", [{"commitment": self._commitment}], _INT)
        return height

    async def get_latest_blockhash(self) -> tuple[str, int]:
        """(blockhash base58, lastValidBlockHeight). Raises RpcFailure."""
        reply = await self._result(
            "getLatestBlockhash", [{"commitment": self._commitment}], _BLOCKHASH
        )
        return reply.value.blockhash, reply.value.last_valid_block_height

    async def send_transaction(self, raw_tx: bytes, *, skip_preflight: bool) -> str:
        """Sends signed wire bytes (base64, maxRetries 0: we resend ourselves until the
        blockhash expires); returns the signature (base58) the node reports. Raises RpcFailure;
        a transient one (timeout) does not mean the tx was not accepted."""
        config = {
            "encoding": "base64",
            "skipPreflight": skip_preflight,
            "preflightCommitment": self._commitment,
            "maxRetries": 0,
        }
        params = [base64.b64encode(raw_tx).decode("ascii"), config]
        signature: str = await self._result("sendTransaction", params, _STR)
        return signature

    async def get_signature_statuses(self, signatures: list[str]) -> list[SignatureStatus | None]:
        """Statuses aligned with `signatures` (None: not in the node's recent status cache).
        Lists over 256 are split into several calls. Raises RpcFailure."""
        statuses: list[SignatureStatus | None] = []
        for start in range(0, len(signatures), MAX_SIGNATURES_PER_CALL):
            chunk = signatures[start : start + MAX_SIGNATURES_PER_CALL]
            params = [chunk, {"searchTransactionHistory": False}]
            reply = await self._result("getSignatureStatuses", params, _STATUSES)
            if len(reply.value) != len(chunk):
                raise self._malformed("getSignatureStatuses", "statuses not aligned with input")
            statuses.extend(reply.value)
        return statuses

    async def get_transaction(self, signature: str) -> TransactionResult | None:
        """The landed transaction (encoding json, v0 supported), or None while the node does not
        know it (unknown, or not yet at the commitment). Raises RpcFailure."""
        # getTransaction refuses "processed"
        commitment = "confirmed" if self._commitment == "processed" else self._commitment
        config = {
            "encoding": "json",
            "commitment": commitment,
            "maxSupportedTransactionVersion": 0,
        }
        return await self._result("getTransaction", [signature, config], _TRANSACTION, True)

    async def get_balance(self, pubkey: str) -> int:
        """The account's balance in lamports. Raises RpcFailure."""
        reply = await self._result(
            "getBalance", [pubkey, {"commitment": self._commitment}], _BALANCE
        )
        lamports: int = reply.value
        return lamports

    async def get_token_balances(self, owner: str) -> dict[str, int]:
        """mint -> atomic amount summed over all of `owner`'s token accounts of both token
        programs (zero balances included). Raises RpcFailure."""
        totals: dict[str, int] = {}
        for program in TOKEN_PROGRAMS:
            params = [
                owner,
                {"programId": program},
                {"encoding": "jsonParsed", "commitment": self._commitment},
            ]
            reply = await self._result("getTokenAccountsByOwner", params, _TOKEN_ACCOUNTS)
            for keyed in reply.value:
                info = keyed.account.data.parsed.info
                try:
                    amount = atomic_amount(info.token_amount.amount)
                except ValueError:
                    raise self._malformed(
                        "getTokenAccountsByOwner", "amount not an integer"
                    ) from None
                totals[info.mint] = totals.get(info.mint, 0) + amount
        return totals

    async def get_recent_prioritization_fees(self, accounts: list[str]) -> list[int]:
        """Micro-lamports per compute unit paid in recent slots (oldest slot first), for
        transactions locking `accounts` (all when empty). Raises RpcFailure."""
        params: list[Any] = [accounts] if accounts else []
        fees = await self._result("getRecentPrioritizationFees", params, _FEES)
        return [fee.prioritization_fee for fee in sorted(fees, key=lambda f: f.slot)]

    # --- the one request path ------------------------------------------------------------

    async def _result(
        self,
        method: str,
        params: list[Any],
        decoder: msgspec.json.Decoder[Any],
        nullable: bool = False,
    ) -> Any:
        if self._breaker is not None:
            try:
                self._breaker.check()
            except VenueError as refused:  # CircuitOpen: not sent; one exception type for callers
                raise RpcFailure(
                    "rpc_circuit_open",
                    f"{self._host}: {method}: not sent: {refused.message}",
                    transient=True,
                    retry_after_s=getattr(refused, "retry_after_s", None),
                ) from None
        try:
            result = await self._call(method, params, decoder, nullable)
        except RpcFailure as exc:
            if self._breaker is not None:
                # the host answered a request it refused: it is up
                (self._breaker.record_failure if exc.transient else self._breaker.record_success)()
            raise
        if self._breaker is not None:
            self._breaker.record_success()
        return result

    async def _call(
        self, method: str, params: list[Any], decoder: msgspec.json.Decoder[Any], nullable: bool
    ) -> Any:
        request_id = next(self._ids)
        body = _encode({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._post(method, body)
        except TimeoutError:
            raise RpcFailure(
                "rpc_timeout",
                f"{self._host}: {method}: no answer within {self._timeout_s:g} s",
                transient=True,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            # `from None`: aiohttp's own messages may print the full URL (and its API key)
            raise RpcFailure(
                "rpc_unreachable",
                f"{self._host}: {method}: {type(exc).__name__}",
                transient=True,
            ) from None
        try:
            reply = decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self._malformed(method, _printable(str(exc))) from None
        if reply.error is not None:
            raise self._rpc_error(method, reply.error)
        if reply.id is not None and reply.id != request_id:
            raise self._malformed(method, f"reply id {reply.id!r} is not {request_id}")
        if reply.result is None and not nullable:
            raise self._malformed(method, "null result")
        return reply.result

    async def _post(self, method: str, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        async with self._session.post(self._url, data=body, headers=headers) as resp:
            if resp.status != 200:
                raise await self._status_failure(method, resp)
            if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
                raise self._too_large(method)
            parts: list[bytes] = []
            size = 0
            while chunk := await resp.content.readany():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise self._too_large(method)
                parts.append(chunk)
            return b"".join(parts)

    async def _status_failure(self, method: str, resp: aiohttp.ClientResponse) -> RpcFailure:
        status = resp.status
        try:
            text = _printable((await resp.content.read(512)).decode("utf-8", "replace"))
        except (aiohttp.ClientError, OSError):
            text = ""
        wait = None
        if status == 429:
            wait = retry_after_s(resp.headers.get("Retry-After"), time.time_ns() // 1_000_000)
        message = f"{self._host}: {method}: HTTP {status}" + (f": {text}" if text else "")
        return RpcFailure(
            f"rpc_http_{status}",
            message,
            transient=status == 429 or status >= 500,
            retry_after_s=wait,
        )

    def _rpc_error(self, method: str, error: Any) -> RpcFailure:
        return RpcFailure(
            f"rpc_error_{error.code}",
            f"{self._host}: {method}: {error.code} {_printable(error.message)}",
            transient=error.code in TRANSIENT_RPC_CODES,
            code=error.code,
            data=error.data,
        )

    def _malformed(self, method: str, why: str) -> RpcFailure:
        # a proxy's error page or a truncated body: another try may get the node itself
        return RpcFailure("rpc_malformed", f"{self._host}: {method}: {why}", transient=True)

    def _too_large(self, method: str) -> RpcFailure:
        return RpcFailure(
            "rpc_too_large",
            f"{self._host}: {method}: reply passed {MAX_RESPONSE_BYTES} bytes",
            transient=False,
        )
