"""The Hermes HTTP requests: the SSE stream and the latest-price snapshot, with repeated `ids[]`,
`parsed=true`, `ignore_invalid_price_ids=true`, the Bearer key and time bounds
(../shared/contracts/pyth-hermes.md, "Endpoints" and "Behaviour and limits")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
from tradingd.adapters.feeds.errors import read_bounded, status_error
from yarl import URL

STREAM_PATH = "/v2/updates/price/stream"
LATEST_PATH = "/v2/updates/price/latest"


class HermesClient:
    """Requests to one Hermes base URL over a caller-owned aiohttp session. The API key goes
    only into the Authorization header: never into a URL, an exception or this repr."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        connect_timeout_s: float,
        clock: Callable[[], int],
    ) -> None:
        self._session = session
        self._base = URL(base_url.rstrip("/"))
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"HermesClient({str(self._base)!r}, api_key={'set' if self._headers else None})"

    def url(self, path: str, ids: Iterable[str]) -> URL:
        """`path` with one `ids[]` per feed id (sorted: the same set gives the same URL)."""
        query = [("ids[]", i) for i in sorted(ids)]
        query += [("parsed", "true"), ("ignore_invalid_price_ids", "true")]
        return (self._base / path.lstrip("/")).with_query(query)

    async def open_stream(self, ids: Iterable[str]) -> aiohttp.ClientResponse:
        """The stream's response once its headers say 200 (the caller reads and releases it).
        Raises FeedStatusError, TimeoutError (no answer within connect_timeout_s),
        aiohttp.ClientError or OSError."""
        return await self._get(self.url(STREAM_PATH, ids), self._connect_timeout_s)

    async def latest(self, ids: Iterable[str], timeout_s: float, max_bytes: int) -> bytes:
        """The body of /v2/updates/price/latest (a `PriceUpdate`), within `timeout_s` in all.
        Raises FeedStatusError, ResponseTooLarge, TimeoutError, aiohttp.ClientError, OSError."""
        async with asyncio.timeout(timeout_s):
            resp = await self._get(self.url(LATEST_PATH, ids), timeout_s)
            try:
                return await read_bounded(resp, max_bytes)
            finally:
                resp.release()

    async def _get(self, url: URL, timeout_s: float) -> aiohttp.ClientResponse:
        async with asyncio.timeout(timeout_s):
            resp = await self._session.get(url, headers=self._headers, allow_redirects=False)
            if resp.status == 200:
                return resp
            try:
                error = await status_error(resp, self._clock())
            finally:
                resp.release()
        raise error
