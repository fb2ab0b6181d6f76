"""A fake DexScreener on 127.0.0.1: `/tokens/v1/{chainId}/{addresses}` (and the legacy
`/latest/dex/tokens/{addresses}`) in the wire format of ../shared/contracts/dexscreener.md, from
a table of pairs per token, with the contract's faults, recording every request so tests can
check batching, the request rate, Retry-After pauses and which tokens were asked for.
`BlackHole` (accepts TCP, never answers) is the one of tests/fakes/hermes.py."""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from tests.fakes.hermes import BlackHole

__all__ = [
    "BABY",
    "WSOL",
    "USDC",
    "BlackHole",
    "FakeDexScreener",
    "SeenRequest",
    "meteora_pair",
    "pumpfun_pair",
    "pumpswap_pair",
    "sol_usdc_pair",
]

MAX_ADDRESSES = 30
BABY = "5446sW7E8jCzLXnT9npZNfDwBnQugVc3XdfEbqPBpump"  # the contract's example token
WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

Pair = dict[str, Any]


def pumpswap_pair() -> Pair:
    """The contract's first example pair, verbatim (highest liquidity of the token's pools)."""
    return {
        "chainId": "solana",
        "dexId": "pumpswap",
        "url": "https://dexscreener.com/solana/8ittpmfhz8srxfy5u5xoasdevdbf3gs6xjxzwp8g1nft",
        "pairAddress": "8ittpMFhz8SrxFy5u5xoaSDeVdbF3gS6xjXZwP8G1nFt",
        "baseToken": {"address": BABY, "name": "The Baby Elephant", "symbol": "Solana"},
        "quoteToken": {"address": WSOL, "name": "Wrapped SOL", "symbol": "SOL"},
        "priceNative": "0.000002440",
        "priceUsd": "0.0002035",
        "txns": {
            "m5": {"buys": 529, "sells": 424},
            "h1": {"buys": 4523, "sells": 4357},
            "h6": {"buys": 9174, "sells": 9539},
            "h24": {"buys": 9174, "sells": 9539},
        },
        "volume": {"h24": 564990.98, "h6": 564990.98, "h1": 305644.82, "m5": 54232.17},
        "priceChange": {"m5": 3.5, "h1": 418, "h6": 488, "h24": 488},
        "liquidity": {"usd": 36295.05, "base": 89147018, "quote": 217.6554},
        "fdv": 203536,
        "marketCap": 203536,
        "pairCreatedAt": 1772427561000,
        "info": {
            "imageUrl": "https://cdn.dexscreener.com/cms/images/2zhihuds9VukXEC_?width=800&height=800&quality=90",
            "header": "https://cdn.dexscreener.com/cms/images/header?width=1500",
            "openGraph": "https://cdn.dexscreener.com/token-images/og/solana/5446sW7E8jCzLXnT9npZNfDwBnQugVc3XdfEbqPBpump",
            "websites": [
                {
                    "url": "https://lakelandcurrents.com/meet-solana-howletts-wild-animal-parks-new-baby-elephant/",
                    "label": "Website",
                }
            ],
            "socials": [
                {"url": "https://x.com/i/communities/2028325266930487624", "type": "twitter"}
            ],
        },
        "boosts": {"active": 10},
    }


def meteora_pair() -> Pair:
    """The contract's second example pair, verbatim (DLMM, less liquidity, no info/boosts)."""
    return {
        "chainId": "solana",
        "dexId": "meteora",
        "url": "https://dexscreener.com/solana/2wdryvcjctkohkykdq1dgj4av26a7s6xgtjavrfx8ya7",
        "pairAddress": "2WDRyVcjcTKoHKyKDQ1DGj4Av26A7s6xGtJavrFX8ya7",
        "labels": ["DLMM"],
        "baseToken": {"address": BABY, "name": "The Baby Elephant", "symbol": "Solana"},
        "quoteToken": {"address": WSOL, "name": "Wrapped SOL", "symbol": "SOL"},
        "priceNative": "0.000002537",
        "priceUsd": "0.0002117",
        "txns": {
            "m5": {"buys": 15, "sells": 9},
            "h1": {"buys": 15, "sells": 9},
            "h6": {"buys": 15, "sells": 9},
            "h24": {"buys": 15, "sells": 9},
        },
        "volume": {"h24": 1147.72, "h6": 1147.72, "h1": 1147.72, "m5": 1147.72},
        "priceChange": {"m5": 3.43, "h1": 3.43, "h6": 3.43, "h24": 3.43},
        "liquidity": {"usd": 3575.7, "base": 2583881, "quote": 36.2879},
        "fdv": 211741,
        "marketCap": 211741,
        "pairCreatedAt": 1772432830000,
    }


def pumpfun_pair() -> Pair:
    """A pump.fun bonding-curve pool as the contract's recording has it: no `liquidity` key
    (nor labels, info, boosts); a different price, so a test sees whether it was chosen."""
    return {
        "chainId": "solana",
        "dexId": "pumpfun",
        "url": "https://dexscreener.com/solana/5446sw7e8jczlxnt9npzfndwbnqugvc3xdfebqpbpump",
        "pairAddress": "5446sW7E8jCzLXnT9npZNfDwBnQugVc3XdfEbqPBpump",
        "baseToken": {"address": BABY, "name": "The Baby Elephant", "symbol": "Solana"},
        "quoteToken": {"address": WSOL, "name": "Wrapped SOL", "symbol": "SOL"},
        "priceNative": "0.000002210",
        "priceUsd": "0.0001842",
        "txns": {"h24": {"buys": 2210, "sells": 1804}},
        "volume": {"h24": 88120.4},
        "priceChange": {"h6": -2.1, "h24": 40},
        "fdv": 184200,
        "marketCap": 184200,
        "pairCreatedAt": 1772420000000,
    }


def sol_usdc_pair() -> Pair:
    """A Raydium SOL/USDC pool like the verbatim wSOL response: no fdv, marketCap or labels."""
    return {
        "chainId": "solana",
        "dexId": "raydium",
        "url": "https://dexscreener.com/solana/3ucnhzaqpz2vzvhvgmpdvzhqbnkn1mxixqbsz2ojmhgy",
        "pairAddress": "3ucNhZAqPZ2VZvhVGMpDVZHqBnkN1mxiXqBsZ2ojMHGY",
        "baseToken": {"address": WSOL, "name": "Wrapped SOL", "symbol": "SOL"},
        "quoteToken": {"address": USDC, "name": "USD Coin", "symbol": "USDC"},
        "priceNative": "143.2104",
        "priceUsd": "143.21",
        "txns": {"h24": {"buys": 120455, "sells": 131022}},
        "volume": {"h24": 48211009.5, "h6": 9911020.1},
        "priceChange": {"h24": -1.2},
        "liquidity": {"usd": 11823044.7, "base": 41210.5, "quote": 5921377.2},
        "pairCreatedAt": 1697000000000,
    }


@dataclass
class SeenRequest:
    path: str
    chain: str
    addresses: list[str]
    at: float  # time.monotonic() when the request arrived
    status: int = 200


@dataclass
class _Failure:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    remaining: int


class FakeDexScreener:
    """Start with `await fake.start()` (returns the base URL), stop with `await fake.close()`.

    `pairs[token]`: the raw pairs (JSON-ready dicts, so any fault can be written) sent for a
    token; unknown tokens add nothing (`[]` for a request of only those). `fail_next` answers
    the next requests with an error; `mode_next` plays one fault per next 200 response:
    "trickle" (`[` then a space every 20 ms, forever), "huge" (`huge_bytes` of pairs, chunked),
    "huge_declared" (the same with a Content-Length), "reset" (half the body of a declared
    length, then a TCP reset), "truncated" (a complete response holding half the JSON), "html"
    (a 200 HTML page), "slow" (the real answer after `slow_s`)."""

    def __init__(self) -> None:
        self.pairs: dict[str, list[Pair]] = {}
        self.requests: list[SeenRequest] = []
        self.modes: list[str] = []
        self.huge_bytes = 10 * 1024 * 1024
        self.slow_s = 5.0
        self.huge_written = 0  # bytes of the last huge body handed to the socket
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self.url = ""

    # -- control ------------------------------------------------------------------------------

    def set_pairs(self, token: str, *pairs: Pair) -> None:
        self.pairs[token] = [copy.deepcopy(p) for p in pairs]

    def fail_next(
        self,
        n: int,
        status: int,
        body: str | bytes = b"",
        *,
        content_type: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `n` requests answer `status` with `body` (a burst when n > 1)."""
        raw = body.encode() if isinstance(body, str) else body
        self._failures.append(_Failure(status, raw, content_type, headers or {}, n))

    def mode_next(self, *modes: str) -> None:
        self.modes.extend(modes)

    def token_requests(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == "tokens"]

    def asked(self) -> set[str]:
        """Every address any request asked for."""
        return {a for r in self.requests for a in r.addresses}

    def body_for(self, addresses: list[str]) -> bytes:
        out: list[Pair] = []
        for address in addresses:
            out.extend(self.pairs.get(address, ()))
        return msgspec.json.encode(out)

    # -- server -------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/tokens/v1/{chain}/{addresses}", self._tokens)
        app.router.add_get("/latest/dex/tokens/{addresses}", self._legacy)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _seen(self, request: web.Request, path: str) -> tuple[SeenRequest, web.Response | None]:
        addresses = request.match_info["addresses"].split(",")
        chain = request.match_info.get("chain", "")
        seen = SeenRequest(path, chain, addresses, time.monotonic())
        self.requests.append(seen)
        refusal: web.Response | None = None
        for failure in self._failures:
            if failure.remaining > 0:
                failure.remaining -= 1
                refusal = web.Response(
                    status=failure.status,
                    body=failure.body,
                    content_type=failure.content_type,
                    headers=failure.headers,
                )
                break
        if refusal is None and len(addresses) > MAX_ADDRESSES:
            # undocumented upstream; our client must never send this
            refusal = web.json_response(
                {"error": f"too many addresses: {len(addresses)} > {MAX_ADDRESSES}"}, status=400
            )
        if refusal is not None:
            seen.status = refusal.status
        return seen, refusal

    async def _legacy(self, request: web.Request) -> web.Response:
        seen, refusal = self._seen(request, "legacy")
        if refusal is not None:
            return refusal
        pairs = msgspec.json.decode(self.body_for(seen.addresses))
        return web.json_response({"schemaVersion": "1.0.0", "pairs": pairs or None})

    async def _tokens(self, request: web.Request) -> web.StreamResponse:
        seen, refusal = self._seen(request, "tokens")
        if refusal is not None:
            return refusal
        body = self.body_for(seen.addresses)
        mode = self.modes.pop(0) if self.modes else "normal"
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        elif mode == "html":
            return web.Response(body=HTML_ERROR, content_type="text/html")
        elif mode == "truncated":
            return web.Response(body=body[: len(body) // 2], content_type="application/json")
        elif mode in ("trickle", "huge", "huge_declared", "reset"):
            return await self._stream(request, mode, body)
        return web.Response(body=body, content_type="application/json")

    async def _stream(self, request: web.Request, mode: str, body: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "reset":
            resp.content_length = len(body)
        chunk = b""
        if mode.startswith("huge"):
            item = msgspec.json.encode(pumpswap_pair()) + b","
            chunk = item * max(1, 65536 // len(item))
            count = self.huge_bytes // len(chunk)
            if mode == "huge_declared":
                resp.content_length = 1 + count * len(chunk) + 1
        await resp.prepare(request)
        try:
            if mode == "trickle":
                await resp.write(b"[")
                while not self._stop.is_set():
                    await asyncio.sleep(0.02)
                    await resp.write(b" ")
            elif mode == "reset":
                await resp.write(body[: max(1, len(body) // 2)])
                await asyncio.sleep(0.05)
                if request.transport is not None:
                    request.transport.abort()
            else:
                self.huge_written = 1
                await resp.write(b"[")
                for _ in range(count):
                    await resp.write(chunk)
                    self.huge_written += len(chunk)
                await resp.write(b"]")
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp
