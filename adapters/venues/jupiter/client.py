"""The Jupiter HTTP client: `GET <base>/quote` and `POST <base>/swap`
(/work/shared/contracts/jupiter.md), each bounded in time and body size, behind the host's
circuit breaker; every failure leaves as a SwapFailure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec
from tradingd.adapters.feeds.errors import ResponseTooLarge, read_bounded
from tradingd.adapters.venues.breaker import CircuitBreaker, CircuitOpen
from tradingd.adapters.venues.jupiter.errors import (
    ERROR_BODY_BYTES,
    SwapFailure,
    code_reason,
    jupiter_failure,
    malformed_failure,
    printable,
    timeout_failure,
    unreachable_failure,
)
from tradingd.adapters.venues.jupiter.schemas import (
    U64_MAX,
    Quote,
    SwapBuild,
    SwapRequest,
    WireError,
    parse_quote,
    parse_swap,
)
from yarl import URL

T = TypeVar("T")
_REDACTED = b"<api key>"
# Reasons that say the host itself is failing (the breaker counts them). A 429, a 401/403 or a
# 4xx with an error code is a working host answering, and does not count.
_HOST_FAILURES = frozenset({"jupiter_timeout", "jupiter_unreachable", "jupiter_malformed"})


class JupiterClient:
    """Requests to one Jupiter base URL (e.g. `https://api.jup.ag/swap/v1`) over a caller-owned
    session. The API key, when set, goes in the `x-api-key` header and nowhere else: not in a
    message, a repr or a redirect (redirects are not followed)."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        api_key: str | None,
        timeout_s: float,
        breaker: CircuitBreaker | None = None,
        max_body_bytes: int = 1 << 20,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = URL(base_url.rstrip("/"))
        self._session = session
        self._api_key = api_key or None
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.max_body_bytes = max_body_bytes
        self._wall_clock = wall_clock  # Unix seconds, for x-ratelimit-reset
        self._headers = {"Accept": "application/json"}
        if self._api_key:
            self._headers["x-api-key"] = self._api_key

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"JupiterClient({str(self._base)!r}, api_key={key})"

    def host(self) -> str:
        """The base URL's host (e.g. `api.jup.ag`), for health and metric labels."""
        return self._base.host or ""

    async def quote(
        self,
        *,
        input_mint: str,
        output_mint: str,
        amount: int,
        slippage_bps: int,
        restrict_intermediate_tokens: bool = True,
        only_direct_routes: bool = False,
        max_accounts: int | None = None,
    ) -> Quote:
        """An ExactIn quote for `amount` atomic units of `input_mint` into `output_mint`, with
        `slippage_bps` (0-10000) of slippage in its otherAmountThreshold. Raises ValueError for
        an amount outside 1..u64 or slippage outside 0..10000 (never sent); SwapFailure for
        every failure of Jupiter (see errors.py), including a quote for other mints or another
        amount than asked (jupiter_malformed), and `circuit_open` when the host's breaker is
        open (nothing sent)."""
        if not 0 < amount <= U64_MAX:
            raise ValueError(f"amount {amount} is outside 1..u64")
        if not 0 <= slippage_bps <= 10_000:
            raise ValueError(f"slippage_bps {slippage_bps} is outside 0..10000")
        params = {
            "inputMint": input_mint,
            "outputMint": output_mint,
            "amount": str(amount),
            "slippageBps": str(slippage_bps),
            "swapMode": "ExactIn",
            "restrictIntermediateTokens": _flag(restrict_intermediate_tokens),
            "onlyDirectRoutes": _flag(only_direct_routes),
        }
        if max_accounts is not None:
            params["maxAccounts"] = str(max_accounts)

        def parse(body: bytes) -> Quote:
            quote = parse_quote(body)
            asked = (input_mint, output_mint, amount)
            if (quote.input_mint, quote.output_mint, quote.in_amount) != asked:
                # a cache or proxy answering another request: never trade on it
                raise WireError("the quote is not for the mints and amount asked")
            return quote

        return await self._call("quote", "GET", parse, params=params)

    async def swap(
        self,
        quote: Quote,
        *,
        user_public_key: str,
        dynamic_compute_unit_limit: bool = True,
        prioritization_fee_lamports: int | dict[str, Any] | None = None,
        wrap_and_unwrap_sol: bool = True,
    ) -> SwapBuild:
        """The unsigned transaction for `quote` paid by `user_public_key` (base58). The quote
        goes back as received (`quote.raw`). `prioritization_fee_lamports`: fixed lamports or
        one of the contract's objects; None leaves Jupiter's default. Raises SwapFailure (a
        200 carrying a simulationError: `jupiter_simulation_<code>`, transient; `circuit_open`
        when the host's breaker is open)."""
        request = SwapRequest(
            user_public_key=user_public_key,
            quote_response=msgspec.Raw(quote.raw),
            dynamic_compute_unit_limit=dynamic_compute_unit_limit,
            wrap_and_unwrap_sol=wrap_and_unwrap_sol,
            prioritization_fee_lamports=msgspec.UNSET
            if prioritization_fee_lamports is None
            else prioritization_fee_lamports,
        )
        build = await self._call("swap", "POST", parse_swap, data=msgspec.json.encode(request))
        if build.simulation_error is not None:
            code = build.simulation_error.get("errorCode")
            text = printable(str(build.simulation_error.get("error") or ""))
            raise SwapFailure(
                code_reason("jupiter_simulation", code) or "jupiter_simulation_failed",
                f"Jupiter /swap: the transaction fails in simulation: {code}: {text}",
                transient=True,
                details={"error_code": code},
            )
        return build

    async def _call(
        self,
        step: str,
        method: str,
        parse: Callable[[bytes], T],
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> T:
        """One request, asked of the breaker first and reported to it after. The breaker's
        refusal leaves as SwapFailure("circuit_open") so callers catch one class."""
        if self.breaker is not None:
            try:
                self.breaker.check()
            except CircuitOpen as refused:
                raise SwapFailure(
                    refused.reason,
                    f"Jupiter /{step} not sent: {refused.message}",
                    transient=True,
                    retry_after_s=refused.retry_after_s,
                    details={"breaker": self.breaker.name},
                ) from None
        try:
            result = await self._exchange(step, method, parse, params, data)
        except SwapFailure as failure:
            if self.breaker is not None:
                if _host_failed(failure):
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()
            raise
        if self.breaker is not None:
            self.breaker.record_success()
        return result

    async def _exchange(
        self,
        step: str,
        method: str,
        parse: Callable[[bytes], T],
        params: Mapping[str, str] | None,
        data: bytes | None,
    ) -> T:
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await self._session.request(
                    method,
                    self._base / step,
                    params=params,
                    data=data,
                    headers=headers,
                    allow_redirects=False,  # a redirect would carry x-api-key elsewhere
                )
                try:
                    if resp.status != 200:
                        body = await _read_prefix(resp, ERROR_BODY_BYTES)
                        raise jupiter_failure(
                            resp.status, self._redact(body), resp.headers, self._wall_clock()
                        )
                    body = await read_bounded(resp, self.max_body_bytes)
                finally:
                    # close, not release: a body left unread must not go back to the pool
                    resp.close()
        except TimeoutError:
            raise timeout_failure(step, self.timeout_s) from None
        except ResponseTooLarge as exc:
            raise malformed_failure(step, str(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise unreachable_failure(step, exc) from None
        try:
            return parse(body)
        except WireError as exc:
            raise malformed_failure(step, self._redact(str(exc).encode()).decode()) from None

    def _redact(self, body: bytes) -> bytes:
        """`body` with the API key blanked, should a server ever echo it."""
        if self._api_key is None:
            return body
        return body.replace(self._api_key.encode(), _REDACTED)


def _host_failed(failure: SwapFailure) -> bool:
    status = failure.details.get("status")
    return failure.reason in _HOST_FAILURES or (isinstance(status, int) and status >= 500)


def _flag(value: bool) -> str:
    return "true" if value else "false"


async def _read_prefix(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body (an error answer is never read whole); what arrived
    before a dropped connection counts."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < limit and (chunk := await resp.content.read(limit - size)):
            parts.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, OSError):
        pass  # the status alone classifies the answer; the text is only for the message
    return b"".join(parts)
