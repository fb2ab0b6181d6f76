"""JupiterClient against a fake Jupiter on 127.0.0.1 answering the contract's own example payloads
and error bodies (/work/shared/contracts/jupiter.md): quotes parse exactly and go back to /swap
byte for byte, every error answer maps to its reason and transience, and the API key is sent
but never shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import msgspec
import pytest
from aiohttp import web
from tradingd.adapters.transient import is_transient
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.errors import (
    ERROR_BODY_BYTES,
    MIN_RATE_LIMIT_WAIT_S,
    SwapFailure,
)

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USER = "GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U"
API_KEY = "jup-test-key-7f3a9c"
NOW_S = 1_796_000_000.0  # the client's injected wall clock (Unix seconds)

# The contract's quote example, byte for byte (line breaks and all): /swap must get these bytes.
QUOTE_BODY = b"""{"inputMint":"So11111111111111111111111111111111111111112","inAmount":"100000000",
 "outputMint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","outAmount":"17057460",
 "otherAmountThreshold":"16972172","swapMode":"ExactIn","slippageBps":50,"platformFee":null,
 "priceImpactPct":"0.0001",
 "routePlan":[{"swapInfo":{"ammKey":"4LioTcTWqUxLwzuU2r5Y3HYbbjGe8Y37kKLccQRNrJSh","label":"Meteora DLMM",
   "inputMint":"So11111111111111111111111111111111111111112","outputMint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
   "inAmount":"100000000","outAmount":"17057460","feeAmount":"1285","feeMint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"},
   "percent":100,"bps":10000}],
 "contextSlot":324307186,"timeTaken":0.012}"""

# Fault 6: no platformFee, feeAmount, feeMint or bps; percent null.
QUOTE_SPARSE = (
    b'{"inputMint":"So11111111111111111111111111111111111111112","inAmount":"100000000",'
    b'"outputMint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","outAmount":"17057460",'
    b'"otherAmountThreshold":"16972172","swapMode":"ExactIn","slippageBps":50,'
    b'"priceImpactPct":"0.015","routePlan":[{"swapInfo":{'
    b'"ammKey":"4LioTcTWqUxLwzuU2r5Y3HYbbjGe8Y37kKLccQRNrJSh","label":"Meteora DLMM",'
    b'"inputMint":"So11111111111111111111111111111111111111112",'
    b'"outputMint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",'
    b'"inAmount":"100000000","outAmount":"17057460"},"percent":null}]}'
)

SWAP_TX = (
    "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAQAB"
    "AujUQFCHPbqGWqfBcKtMzmTZCDmjTc/Wz3HRTgIFRDsbAwZGb+UhFzL/7K26csOb57yM5bvF9xJrLEObOkAAAAA5W/cn+a"
    "rF6AkRWRBz/PnIJvQogEExygib66OGlCF0mgIBAAUC4JMEAAEACQNQwwAAAAAAAAA="
)
SWAP_ANSWER: dict[str, object] = {
    "swapTransaction": SWAP_TX,
    "lastValidBlockHeight": 302500150,
    "prioritizationFeeLamports": 15000,
    "computeUnitLimit": 300000,
    "prioritizationType": {
        "computeBudget": {"microLamports": 50000, "estimatedMicroLamports": 50000}
    },
    "dynamicSlippageReport": None,
    "simulationError": None,
}
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "normal"  # "slow": past the client's timeout; "drop": cut mid-body


class FakeJupiter:
    """`/swap/v1/quote` and `/swap/v1/swap` on 127.0.0.1. Answers queued with `next()` are
    served first; then the contract's examples."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.queued: dict[str, list[Answer]] = {"quote": [], "swap": []}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def next(self, step: str, answer: Answer) -> None:
        self.queued[step].append(answer)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/swap/v1/quote", self._quote)
        app.router.add_post("/swap/v1/swap", self._swap)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{port}/swap/v1"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _quote(self, request: web.Request) -> web.StreamResponse:
        seen = await self._seen(request)
        if seen.query.get("inputMint") == seen.query.get("outputMint"):
            return _error(400, "CIRCULAR_ARBITRAGE_IS_DISABLED", "Circular arbitrage is disabled")
        return await self._answer(request, "quote", Answer(body=QUOTE_BODY))

    async def _swap(self, request: web.Request) -> web.StreamResponse:
        await self._seen(request)
        return await self._answer(request, "swap", Answer(body=msgspec.json.encode(SWAP_ANSWER)))

    async def _seen(self, request: web.Request) -> Seen:
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
        )
        self.requests.append(seen)
        return seen

    async def _answer(self, request: web.Request, step: str, default: Answer) -> web.StreamResponse:
        answer = self.queued[step].pop(0) if self.queued[step] else default
        body = answer.body or default.body
        if answer.mode == "slow":
            await asyncio.sleep(30)
        if answer.mode == "drop":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
            return resp
        headers = {"Content-Type": "application/json", **answer.headers}
        return web.Response(status=answer.status, body=body, headers=headers)


def _error(status: int, code: str, text: str) -> web.Response:
    return web.json_response({"error": text, "errorCode": code}, status=status)


def error_answer(status: int, code: str, text: str, **headers: str) -> Answer:
    body = msgspec.json.encode({"error": text, "errorCode": code})
    return Answer(status, body, headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeJupiter]:
    f = FakeJupiter()
    await f.start()
    yield f
    await f.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    url: str,
    session: aiohttp.ClientSession,
    *,
    api_key: str | None = API_KEY,
    timeout_s: float = 2.0,
    breaker: CircuitBreaker | None = None,
) -> JupiterClient:
    return JupiterClient(
        url,
        session,
        api_key=api_key,
        timeout_s=timeout_s,
        breaker=breaker,
        wall_clock=lambda: NOW_S,
    )


async def sol_to_usdc(c: JupiterClient) -> object:
    return await c.quote(input_mint=SOL, output_mint=USDC, amount=100_000_000, slippage_bps=50)


async def failure_of_quote(c: JupiterClient) -> SwapFailure:
    with pytest.raises(SwapFailure) as failed:
        await sol_to_usdc(c)
    return failed.value


# -- quote -------------------------------------------------------------------------------------


async def test_a_quote_carries_the_exact_atomic_amounts(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    q = await client(fake.url, session).quote(
        input_mint=SOL, output_mint=USDC, amount=100_000_000, slippage_bps=50
    )
    assert (q.in_amount, q.out_amount, q.other_amount_threshold) == (
        100_000_000,
        17_057_460,
        16_972_172,
    )
    assert (q.input_mint, q.output_mint, q.slippage_bps, q.context_slot) == (
        SOL,
        USDC,
        50,
        324307186,
    )


async def test_price_impact_is_kept_as_written_and_read_as_a_fraction(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    q = await sol_to_usdc(client(fake.url, session))
    assert q.price_impact_pct == Decimal("0.0001")  # type: ignore[attr-defined]
    assert q.price_impact_percent == Decimal("0.01")  # type: ignore[attr-defined]


async def test_a_quote_keeps_the_body_byte_for_byte(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    q = await sol_to_usdc(client(fake.url, session))
    assert q.raw == QUOTE_BODY  # type: ignore[attr-defined]


async def test_the_quote_request_names_the_contract_parameters(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    await client(fake.url, session).quote(
        input_mint=SOL, output_mint=USDC, amount=100_000_000, slippage_bps=50, max_accounts=40
    )
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("GET", "/swap/v1/quote")
    assert seen.query == {
        "inputMint": SOL,
        "outputMint": USDC,
        "amount": "100000000",
        "slippageBps": "50",
        "swapMode": "ExactIn",
        "restrictIntermediateTokens": "true",
        "onlyDirectRoutes": "false",
        "maxAccounts": "40",
    }


async def test_a_quote_without_the_optional_fields_parses(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(body=QUOTE_SPARSE))
    q = await sol_to_usdc(client(fake.url, session))
    assert q.context_slot is None  # type: ignore[attr-defined]
    assert q.price_impact_percent == Decimal("1.5")  # type: ignore[attr-defined]


async def test_a_quote_for_another_amount_is_malformed(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    with pytest.raises(SwapFailure) as failed:
        await c.quote(input_mint=SOL, output_mint=USDC, amount=5, slippage_bps=50)
    assert failed.value.reason == "jupiter_malformed"


async def test_an_amount_that_is_not_a_u64_string_is_malformed(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(body=QUOTE_BODY.replace(b'"17057460"', b'"1.7e7"', 1)))
    failure = await failure_of_quote(client(fake.url, session))
    assert failure.reason == "jupiter_malformed" and failure.transient


async def test_a_zero_amount_is_refused_before_sending(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        await client(fake.url, session).quote(
            input_mint=SOL, output_mint=USDC, amount=0, slippage_bps=50
        )
    assert fake.requests == []


# -- quote errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("COULD_NOT_FIND_ANY_ROUTE", True),
        ("ROUTE_PLAN_DOES_NOT_CONSUME_ALL_THE_AMOUNT", True),
        ("CANNOT_COMPUTE_OTHER_AMOUNT_THRESHOLD", True),
        ("NO_ROUTES_FOUND", False),
        ("TOKEN_NOT_TRADABLE", False),
        ("MARKET_NOT_FOUND", False),
        ("NOT_SUPPORTED", False),
    ],
)
async def test_each_quote_error_code_maps_to_its_reason_and_transience(  # type: ignore[no-untyped-def]
    fake: FakeJupiter, session, code: str, transient: bool
) -> None:
    fake.next("quote", error_answer(400, code, "the router's words"))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == (f"jupiter_{code.lower()}", transient)


async def test_the_same_mint_in_and_out_is_a_permanent_circular_arbitrage(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SwapFailure) as failed:
        await client(fake.url, session).quote(
            input_mint=SOL, output_mint=SOL, amount=1_000, slippage_bps=50
        )
    assert failed.value.reason == "jupiter_circular_arbitrage_is_disabled"
    assert not is_transient(failed.value)


async def test_a_4xx_without_an_error_code_is_permanent_by_status(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(400, b'{"error":"Invalid amount"}'))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_http_400", False)
    assert "Invalid amount" in failure.message


async def test_an_unknown_error_code_on_a_4xx_is_permanent_under_its_own_name(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", error_answer(400, "SOMETHING_NEW", "a code Jupiter added later"))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_something_new", False)


async def test_an_error_code_that_is_not_a_code_is_not_made_a_reason(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", error_answer(400, "no routes; drop table", "odd"))
    failure = await failure_of_quote(client(fake.url, session))
    assert failure.reason == "jupiter_http_400"


async def test_a_429_waits_until_x_ratelimit_reset(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    body = b'{"code":429,"message":"[API Gateway] Too many requests"}'
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW_S) + 7)}
    fake.next("quote", Answer(429, body, headers))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_rate_limited", True)
    assert failure.retry_after_s == 7.0


async def test_a_429_whose_reset_has_passed_still_waits_a_little(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    headers = {"x-ratelimit-reset": str(int(NOW_S) - 3)}
    fake.next("quote", Answer(429, b'{"code":429,"message":"Too many requests"}', headers))
    failure = await failure_of_quote(client(fake.url, session))
    assert failure.retry_after_s == MIN_RATE_LIMIT_WAIT_S


async def test_a_429_with_only_retry_after_waits_that_long(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(429, b"Too many requests", {"Retry-After": "12"}))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.retry_after_s) == ("jupiter_rate_limited", 12.0)


async def test_a_401_is_a_permanent_unauthorized(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(401, b'{"code":401,"message":"Unauthorized"}'))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_unauthorized", False)


async def test_a_403_gateway_refusal_is_unauthorized_with_its_message(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    body = b'{"code":403,"message":"API key does not have access to this endpoint"}'
    fake.next("quote", Answer(403, body))
    failure = await failure_of_quote(client(fake.url, session))
    assert failure.reason == "jupiter_unauthorized"
    assert "does not have access" in failure.message


async def test_a_503_is_transient_by_status(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(503, b'{"error":"Service Unavailable"}'))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_http_503", True)


async def test_an_html_200_is_a_transient_malformed_answer(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(200, HTML, {"Content-Type": "text/html"}))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_malformed", True)


async def test_a_large_html_error_page_is_cut_in_the_message(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    page = b"<html>" + b"x" * (ERROR_BODY_BYTES * 4) + b"</html>"
    fake.next("quote", Answer(502, page, {"Content-Type": "text/html"}))
    failure = await failure_of_quote(client(fake.url, session))
    assert failure.reason == "jupiter_http_502"
    assert len(failure.message) < 300 and "</html>" not in failure.message


async def test_no_answer_within_the_timeout_is_jupiter_timeout(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(mode="slow"))
    failure = await failure_of_quote(client(fake.url, session, timeout_s=0.2))
    assert (failure.reason, failure.transient) == ("jupiter_timeout", True)


async def test_a_refused_connection_is_jupiter_unreachable(session) -> None:  # type: ignore[no-untyped-def]
    gone = FakeJupiter()
    url = await gone.start()
    await gone.close()  # nobody listens there now
    failure = await failure_of_quote(client(url, session))
    assert (failure.reason, failure.transient) == ("jupiter_unreachable", True)


async def test_a_connection_dropped_mid_body_is_jupiter_unreachable(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    fake.next("quote", Answer(mode="drop"))
    failure = await failure_of_quote(client(fake.url, session))
    assert (failure.reason, failure.transient) == ("jupiter_unreachable", True)


# -- swap --------------------------------------------------------------------------------------


async def test_swap_sends_the_quote_back_byte_for_byte(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/swap/v1/swap")
    assert b'"quoteResponse":' + QUOTE_BODY in seen.body


async def test_swap_sends_the_contract_fields(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    fee = {"priorityLevelWithMaxLamports": {"priorityLevel": "veryHigh", "maxLamports": 1000000}}
    await c.swap(q, user_public_key=USER, prioritization_fee_lamports=fee)  # type: ignore[arg-type]
    sent = msgspec.json.decode(fake.requests[-1].body)
    assert sent["userPublicKey"] == USER
    assert sent["dynamicComputeUnitLimit"] is True and sent["wrapAndUnwrapSol"] is True
    assert sent["prioritizationFeeLamports"] == fee
    assert sent["quoteResponse"] == msgspec.json.decode(QUOTE_BODY)


async def test_swap_leaves_out_an_unset_priority_fee(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    assert "prioritizationFeeLamports" not in msgspec.json.decode(fake.requests[-1].body)


async def test_swap_returns_the_built_transaction(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    build = await c.swap(await sol_to_usdc(c), user_public_key=USER)  # type: ignore[arg-type]
    assert build.swap_transaction == SWAP_TX
    assert (build.last_valid_block_height, build.prioritization_fee_lamports) == (302500150, 15000)
    assert (build.compute_unit_limit, build.simulation_error) == (300000, None)


async def test_a_simulation_error_is_a_transient_simulation_failure(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    answer = SWAP_ANSWER | {
        "simulationError": {"errorCode": "TRANSACTION_ERROR", "error": "custom program error"}
    }
    fake.next("swap", Answer(body=msgspec.json.encode(answer)))
    with pytest.raises(SwapFailure) as failed:
        await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    assert (failed.value.reason, failed.value.transient) == (
        "jupiter_simulation_transaction_error",
        True,
    )


async def test_a_swap_answer_without_compute_unit_limit_is_malformed(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    answer = {k: v for k, v in SWAP_ANSWER.items() if k != "computeUnitLimit"}
    fake.next("swap", Answer(body=msgspec.json.encode(answer)))
    with pytest.raises(SwapFailure) as failed:
        await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    assert failed.value.reason == "jupiter_malformed"


async def test_a_swap_transaction_that_is_not_base64_is_malformed(
    fake: FakeJupiter, session
) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    fake.next("swap", Answer(body=msgspec.json.encode(SWAP_ANSWER | {"swapTransaction": "%%%"})))
    with pytest.raises(SwapFailure) as failed:
        await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    assert failed.value.reason == "jupiter_malformed"


async def test_a_swap_config_error_is_permanent(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    c = client(fake.url, session)
    q = await sol_to_usdc(c)
    fake.next("swap", error_answer(400, "MAX_ACCOUNT_GREATER_THAN_MAX", "too many accounts"))
    with pytest.raises(SwapFailure) as failed:
        await c.swap(q, user_public_key=USER)  # type: ignore[arg-type]
    assert (failed.value.reason, failed.value.transient) == (
        "jupiter_max_account_greater_than_max",
        False,
    )


# -- the API key -------------------------------------------------------------------------------


async def test_the_api_key_is_sent_in_x_api_key(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    await sol_to_usdc(client(fake.url, session))
    assert fake.requests[-1].headers["x-api-key"] == API_KEY


async def test_no_api_key_sends_no_header(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    await sol_to_usdc(client(fake.url, session, api_key=None))
    assert "x-api-key" not in fake.requests[-1].headers


async def test_an_echoed_api_key_never_reaches_the_failure(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    body = msgspec.json.encode({"code": 401, "message": f"Invalid API key {API_KEY}"})
    fake.next("quote", Answer(401, body))
    failure = await failure_of_quote(client(fake.url, session))
    shown = f"{failure} {failure!r} {failure.message} {failure.details}"
    assert API_KEY not in shown


async def test_the_client_repr_does_not_show_the_api_key(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    assert API_KEY not in repr(client(fake.url, session))


# -- the breaker -------------------------------------------------------------------------------


async def test_repeated_5xx_open_the_breaker_and_stop_requests(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    breaker = CircuitBreaker("jupiter", failure_threshold=2, reset_after_s=60)
    c = client(fake.url, session, breaker=breaker)
    for _ in range(2):
        fake.next("quote", Answer(503, b"{}"))
        await failure_of_quote(c)
    refused = await failure_of_quote(c)
    assert (refused.reason, refused.transient) == ("circuit_open", True)
    assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 60
    assert len(fake.requests) == 2


async def test_coded_4xx_answers_do_not_open_the_breaker(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    breaker = CircuitBreaker("jupiter", failure_threshold=2, reset_after_s=60)
    c = client(fake.url, session, breaker=breaker)
    for _ in range(3):
        fake.next("quote", error_answer(400, "NO_ROUTES_FOUND", "No routes found"))
        await failure_of_quote(c)
    assert breaker.state == "closed"


async def test_timeouts_count_against_the_breaker(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    breaker = CircuitBreaker("jupiter", failure_threshold=1, reset_after_s=60)
    fake.next("quote", Answer(mode="slow"))
    await failure_of_quote(client(fake.url, session, timeout_s=0.2, breaker=breaker))
    assert breaker.state == "open"


async def test_host_is_the_base_urls_host(fake: FakeJupiter, session) -> None:  # type: ignore[no-untyped-def]
    assert client("https://api.jup.ag/swap/v1", session).host() == "api.jup.ag"
