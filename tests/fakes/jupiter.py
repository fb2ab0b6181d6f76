"""A fake Jupiter Metis API (`GET /swap/v1/quote`, `POST /swap/v1/swap`) on 127.0.0.1 in the exact
format of ../shared/contracts/jupiter.md: quotes from per-pair rates, real unsigned swap
transactions built on a `FakeChain`, every request recorded, the contract's faults on demand."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction

from aiohttp import web
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.fakes.solana_chain import FakeChain, start_app

QUOTE_PATH = "/swap/v1/quote"
SWAP_PATH = "/swap/v1/swap"
DEX_LABEL = "Meteora DLMM"  # the one DEX every fake route goes through
AMM_KEY = "4LioTcTWqUxLwzuU2r5Y3HYbbjGe8Y37kKLccQRNrJSh"
# the 400 bodies clients have captured (contract "Errors"); {mint} is the quoted input mint
QUOTE_ERRORS = {
    "COULD_NOT_FIND_ANY_ROUTE": "Could not find any route",
    "NO_ROUTES_FOUND": "No routes found",
    "TOKEN_NOT_TRADABLE": "The token {mint} is not tradable",
    "MARKET_NOT_FOUND": "Market not found",
    "ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT": "Route plan does not consume all the amount",
    "CIRCULAR_ARBITRAGE_IS_DISABLED": "Circular arbitrage is disabled",
    "NOT_SUPPORTED": "Not supported",
}
GATEWAY_BODIES = {
    401: {"code": 401, "message": "Unauthorized"},
    403: {"code": 403, "message": "API key does not have access to this endpoint"},
    429: {"code": 429, "message": "[API Gateway] Too many requests"},
}
LEVEL_MULTIPLIER = {"medium": 1, "high": 2, "veryHigh": 3}
SWAP_FAULTS = frozenset({"simulation_error", "wrong_payer", "bad_base64", "expired"})


@dataclass
class SeenJupiterRequest:
    path: str
    query: dict[str, str]
    body: dict[str, object] | None
    api_key: str | None
    at: float  # time.monotonic()
    status: int = 200


@dataclass
class _Fault:
    path: str | None
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str


@dataclass
class FakeJupiter:
    """Start with `await jup.start()` (returns the base URL, paths under `/swap/v1`), stop with
    `await jup.close()`. Rates are exact out-atomic per in-atomic fractions per (in, out) pair."""

    chain: FakeChain
    api_key: str | None = None  # when set, `x-api-key` must match (401 otherwise)
    rates: dict[tuple[str, str], Fraction] = field(default_factory=dict)
    price_impact_pct: str = "0.001"
    lvbh_offset: int = 150  # lastValidBlockHeight = chain height + this
    compute_unit_limit: int = 300_000
    priority_fee_estimate: int = 15_000  # lamports for "auto" and per priority-level step
    omit_optional: bool = False  # drop platformFee/feeAmount/feeMint/bps, percent null
    quote_errors: list[str] = field(default_factory=list)  # codes for the next quotes (400)
    swap_faults: list[str] = field(default_factory=list)  # one of SWAP_FAULTS per next swap
    delays: dict[str, float] = field(default_factory=dict)  # seconds per path
    requests: list[SeenJupiterRequest] = field(default_factory=list)
    quotes: list[dict[str, object]] = field(default_factory=list)  # every quote issued
    swap_bodies: list[dict[str, object]] = field(default_factory=list)
    url: str = ""
    _faults: list[_Fault] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    # -- control ------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: str | bytes | dict[str, object] = b"",
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        n: int = 1,
    ) -> None:
        """The next `n` requests (to `path`, or any) answer `status` with `body` (a dict is
        sent as JSON; pass HTML text with content_type="text/html")."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        raw = raw.encode() if isinstance(raw, str) else raw
        for _ in range(n):
            self._faults.append(_Fault(path, status, raw, headers or {}, content_type))

    def rate_limit(self, n: int = 1, reset_in_s: int = 10, *, path: str | None = None) -> None:
        """The next `n` requests get the gateway's 429 with `x-ratelimit-*` headers."""
        headers = {
            "x-ratelimit-remaining": "0",
            "x-ratelimit-current": "61",
            "x-ratelimit-reset": str(int(time.time()) + reset_in_s),
        }
        self.fail_next(429, GATEWAY_BODIES[429], path=path, headers=headers, n=n)

    def gateway_error(self, status: int, n: int = 1, *, path: str | None = None) -> None:
        """The next `n` requests get the gateway's 401/403/429 JSON body."""
        self.fail_next(status, GATEWAY_BODIES[status], path=path, n=n)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get(QUOTE_PATH, self._quote)
        app.router.add_post(SWAP_PATH, self._swap)
        self._runner, self.url = await start_app(app, port)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- server -------------------------------------------------------------------------------

    async def _gate(
        self, request: web.Request, body: dict[str, object] | None
    ) -> web.Response | None:
        seen = SeenJupiterRequest(
            request.path, dict(request.query), body, request.headers.get("x-api-key"),
            time.monotonic(),
        )  # fmt: skip
        self.requests.append(seen)
        delay = self.delays.get(request.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        refusal = None
        for fault in self._faults:
            if fault.path in (None, request.path):
                self._faults.remove(fault)
                refusal = web.Response(
                    status=fault.status, body=fault.body, content_type=fault.content_type,
                    headers={**fault.headers, **_gateway_headers()},
                )  # fmt: skip
                break
        if refusal is None and self.api_key is not None and seen.api_key != self.api_key:
            refusal = _json(401, GATEWAY_BODIES[401])
        if refusal is not None:
            seen.status = refusal.status
        return refusal

    async def _quote(self, request: web.Request) -> web.Response:
        refusal = await self._gate(request, None)
        if refusal is not None:
            return refusal
        q = request.query
        for name in ("inputMint", "outputMint", "amount"):
            if name not in q:
                return self._bad(f"Query parameter {name} is required")
        for name in ("inputMint", "outputMint"):
            try:
                Pubkey.from_string(q[name])
            except ValueError:
                return self._bad(f"Query parameter {name} cannot be parsed: Invalid")
        if not q["amount"].isdigit() or not q.get("slippageBps", "50").isdigit():
            return self._bad(
                "Query parameter amount cannot be parsed: invalid digit found in string"
            )
        in_mint, out_mint, amount = q["inputMint"], q["outputMint"], int(q["amount"])
        slippage = int(q.get("slippageBps", "50"))
        code = self.quote_errors.pop(0) if self.quote_errors else None
        if code is None and in_mint == out_mint:
            code = "CIRCULAR_ARBITRAGE_IS_DISABLED"
        if code is None and q.get("swapMode", "ExactIn") != "ExactIn":
            code = "NOT_SUPPORTED"
        # the Rust client spells the exclusion list `excludedDexes`, the spec `excludeDexes`
        excluded = (q.get("excludeDexes") or q.get("excludedDexes") or "").split(",")
        only = q.get("dexes")
        if code is None and (DEX_LABEL in excluded or (only and DEX_LABEL not in only.split(","))):
            code = "COULD_NOT_FIND_ANY_ROUTE"
        if code is None and (in_mint, out_mint) not in self.rates:
            code = "COULD_NOT_FIND_ANY_ROUTE"
        if code is not None:
            text = QUOTE_ERRORS.get(code, code).format(mint=in_mint)
            return self._bad(text, code)
        out = (
            amount
            * self.rates[(in_mint, out_mint)].numerator
            // self.rates[(in_mint, out_mint)].denominator
        )
        quote = self._quote_body(in_mint, out_mint, amount, out, slippage)
        self.quotes.append(quote)
        return _json(200, quote, _ratelimit_ok())

    def _quote_body(
        self, in_mint: str, out_mint: str, amount: int, out: int, slippage: int
    ) -> dict[str, object]:
        info: dict[str, object] = {
            "ammKey": AMM_KEY, "label": DEX_LABEL, "inputMint": in_mint,
            "outputMint": out_mint, "inAmount": str(amount), "outAmount": str(out),
            "feeAmount": "0", "feeMint": out_mint,
        }  # fmt: skip
        hop: dict[str, object] = {"swapInfo": info, "percent": 100, "bps": 10_000}
        quote: dict[str, object] = {
            "inputMint": in_mint, "inAmount": str(amount), "outputMint": out_mint,
            "outAmount": str(out),
            "otherAmountThreshold": str(out * (10_000 - slippage) // 10_000),
            "swapMode": "ExactIn", "slippageBps": slippage, "platformFee": None,
            "priceImpactPct": self.price_impact_pct, "routePlan": [hop],
            "contextSlot": self.chain.slot, "timeTaken": 0.012,
        }  # fmt: skip
        if self.omit_optional:
            del quote["platformFee"], info["feeAmount"], info["feeMint"], hop["bps"]
            hop["percent"] = None
        return quote

    async def _swap(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        refusal = await self._gate(request, body if isinstance(body, dict) else None)
        if refusal is not None:
            return refusal
        if not isinstance(body, dict):
            return self._bad("Failed to deserialize the JSON body")
        self.swap_bodies.append(body)
        user = body.get("userPublicKey")
        try:
            Pubkey.from_string(str(user))
        except ValueError:
            return self._bad("userPublicKey is required and must be a base58 public key")
        quote = body.get("quoteResponse")
        if not isinstance(quote, dict) or quote not in self.quotes:
            return self._bad("quoteResponse is required and must be a quote this API returned")
        if (
            body.get("prioritizationFeeLamports") is not None
            and body.get("computeUnitPriceMicroLamports") is not None
        ):
            return self._bad(
                "prioritizationFeeLamports and computeUnitPriceMicroLamports are exclusive",
                "INVALID_COMPUTE_UNIT_PRICE_AND_PRIORITIZATION_FEE",
            )
        return _json(200, self._swap_answer(str(user), quote, body))

    def _swap_answer(
        self, user: str, quote: dict[str, object], body: dict[str, object]
    ) -> dict[str, object]:
        fault = self.swap_faults.pop(0) if self.swap_faults else None
        if fault is not None and fault not in SWAP_FAULTS:
            raise ValueError(f"unknown swap fault {fault!r}")
        micro, ptype = self._priority(body)
        lvbh = self.chain.block_height + (-1 if fault == "expired" else self.lvbh_offset)
        tx = self.chain.build_swap_tx(
            user, str(quote["inputMint"]), str(quote["outputMint"]), int(str(quote["inAmount"])),
            int(str(quote["outAmount"])), int(str(quote["otherAmountThreshold"])), lvbh,
            compute_unit_limit=self.compute_unit_limit, micro_lamports=micro,
            payer=str(Keypair().pubkey()) if fault == "wrong_payer" else None,
        )  # fmt: skip
        swap = self.chain.swaps[len(self.chain.swaps)]
        simulation = None
        if fault == "simulation_error":
            simulation = {"errorCode": "TRANSACTION_SIMULATION_FAILED",
                          "error": "Error processing Instruction 2: custom program error: 0x1771"}  # fmt: skip
        return {
            "swapTransaction": "not*base64*at*all!" if fault == "bad_base64" else tx,
            "lastValidBlockHeight": lvbh,
            "prioritizationFeeLamports": ptype.get("jito", {}).get("lamports", swap.priority_fee),
            "computeUnitLimit": self.compute_unit_limit,
            "prioritizationType": ptype,
            "dynamicSlippageReport": None,
            "simulationError": simulation,
        }

    def _priority(self, body: dict[str, object]) -> tuple[int, dict[str, dict[str, int | None]]]:
        """The CU price (micro-lamports) for the request's fee form, and `prioritizationType`."""
        price = body.get("computeUnitPriceMicroLamports")
        if isinstance(price, int):
            return price, {
                "computeBudget": {"microLamports": price, "estimatedMicroLamports": None}
            }
        form = body.get("prioritizationFeeLamports", "auto")
        estimate = self.priority_fee_estimate
        lamports = estimate
        if isinstance(form, int):
            lamports = form
        elif form == "disabled":
            lamports = 0
        elif isinstance(form, dict) and "priorityLevelWithMaxLamports" in form:
            level = form["priorityLevelWithMaxLamports"]
            lamports = min(
                estimate * LEVEL_MULTIPLIER.get(level["priorityLevel"], 1), level["maxLamports"]
            )
        elif isinstance(form, dict) and "autoMultiplier" in form:
            lamports = estimate * int(form["autoMultiplier"])
        elif isinstance(form, dict) and (
            "jitoTipLamports" in form or "jitoTipLamportsWithPayer" in form
        ):
            tip = form.get("jitoTipLamports") or form["jitoTipLamportsWithPayer"]["lamports"]
            return 0, {"jito": {"lamports": int(tip)}}
        micro = lamports * 1_000_000 // self.compute_unit_limit
        est = estimate * 1_000_000 // self.compute_unit_limit
        return micro, {"computeBudget": {"microLamports": micro, "estimatedMicroLamports": est}}

    @staticmethod
    def _bad(text: str, code: str | None = None) -> web.Response:
        body: dict[str, object] = {"error": text}
        if code is not None:
            body["errorCode"] = code
        return _json(400, body)


def _gateway_headers() -> dict[str, str]:
    return {"x-api-gateway-request-id": uuid.uuid4().hex}


def _ratelimit_ok() -> dict[str, str]:
    return {"x-ratelimit-remaining": "59", "x-ratelimit-current": "1",
            "x-ratelimit-reset": str(int(time.time()) + 60)}  # fmt: skip


def _json(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers={**(headers or {}), **_gateway_headers()})
