"""The DexScreener request: `GET /tokens/v1/{chainId}/{comma-joined addresses}`, bounded in time
and in body size (../shared/contracts/dexscreener.md, "Endpoints" and "Behaviour and limits")."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

import aiohttp
from tradingd.adapters.feeds.errors import read_bounded, status_error
from yarl import URL

TOKENS_PATH = "tokens/v1"
MAX_ADDRESSES = 30  # the reference's "up to 30 addresses"; more is undocumented
# An error body is at most a short text or a proxy's HTML page: only its start is kept.
# A chain address: base58 (Solana mints, 32-44 characters) or 0x + 40 hex (EVM). Anything else
# (a CCXT instrument "binance:BTC/USDT") is not DexScreener's and never goes into a URL.
_ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}|0[xX][0-9a-fA-F]{40}")


def is_address(token: str) -> bool:
    """Whether `token` is a chain address DexScreener can be asked about."""
    return _ADDRESS.fullmatch(token) is not None


class DexScreenerClient:
    """Requests to one DexScreener base URL for one chain, over a caller-owned session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        chain: str,
        timeout_s: float,
        max_bytes: int,
        clock: Callable[[], int],
    ) -> None:
        self._session = session
        self._base = URL(base_url.rstrip("/"))
        self.chain = chain
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._clock = clock

    def url(self, addresses: Sequence[str]) -> URL:
        """The request URL; each address is one path-encoded piece of the comma-joined list."""
        joined = ",".join(addresses)
        return self._base / TOKENS_PATH / self.chain / joined

    async def tokens(self, addresses: Sequence[str]) -> bytes:
        """The body of `/tokens/v1/{chain}/{addresses}` (a JSON array of Pair), all within
        `timeout_s`. Raises ValueError for 0 or more than 30 addresses or one that is not
        `is_address` (never sent),
        FeedStatusError, ResponseTooLarge, TimeoutError, aiohttp.ClientError or OSError."""
        if not 0 < len(addresses) <= MAX_ADDRESSES:
            raise ValueError(f"{len(addresses)} addresses: 1 to {MAX_ADDRESSES} per request")
        if not all(map(is_address, addresses)):
            raise ValueError("not a chain address")
        async with asyncio.timeout(self.timeout_s):
            resp = await self._session.get(
                self.url(addresses), allow_redirects=False, headers={"Accept": "application/json"}
            )
            try:
                if resp.status != 200:
                    raise await status_error(resp, self._clock())
                return await read_bounded(resp, self.max_bytes)
            finally:
                # close, not release: a body left unread (too large, cut short, timed out)
                # must not go back to the pool with the connection
                resp.close()
