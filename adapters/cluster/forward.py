"""Requests for another shard's agent, forwarded to the shard that owns it (docs/cluster.md
"Any agent on any shard").

A shard holds only its own agents. A request naming another shard's agent
(`/v1/agents/{agent_id}...`, reads and writes) is checked here as it would be for an own agent
(key, scope, query, standby), then sent to the owner's control URL (registered at start in
`{<ns>}:shards`) with the client's method, path, query, body and `Authorization`, and the owner's
answer (status, body, Content-Type, Retry-After) is relayed as it is: the owner validates,
decides, makes durable and answers, exactly as if the client had called it. So a read is the
owner's live state, a write is acknowledged once durable on the owner, and every error is the
owner's, in the one error shape.

The forwarded request carries `X-Tradingd-Forwarded-From: <shard>`; a shard never forwards such
a request again (it answers 421 `misdirected`), so a stale registry can not loop. The owner
unreachable, or not answering within `[cluster] forward_timeout_ms`, is a 503
`owner_unavailable` naming it: a write may or may not have been applied then (as for any
timed-out request; the client's `id`s make a retry safe where the API has them)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from tradingd.engine.errors import Unavailable
from yarl import URL

log = logging.getLogger("tradingd.cluster")

FORWARDED_FROM = "X-Tradingd-Forwarded-From"
# The cluster's secret (`{<ns>}:forward_token`, made by the first shard): a request counts as
# forwarded only with it, so a client's own FORWARDED_FROM header cannot make a cluster-wide
# operation (the halt) act on one shard (a tester's finding).
FORWARD_TOKEN = "X-Tradingd-Forward-Token"
OWNER_SHARD = "X-Tradingd-Owner-Shard"
# What a client's request carries that the owner needs; nothing else is passed on (hop-by-hop
# headers, Host, Content-Length and Content-Encoding are the connection's: the body is sent as
# the receiving shard decoded it).
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-Id")
RESPONSE_HEADERS = ("Content-Type", "Retry-After")
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # a page of 1,000 positions is ~1 MB
# Connections to all owners together, and to one owner: forwarded requests beyond them wait
# their turn; the per-owner bound keeps a hung owner from holding every connection (a tester
# saw a healthy owner's forward wait 2 s behind 100 to a paused one).
MAX_CONNECTIONS = 256
MAX_PER_OWNER = 64


class OwnerUnavailable(Unavailable):
    code = "owner_unavailable"
    status = 503


class ShardsIncomplete(Unavailable):
    """An operation on every shard (the halt, a breaker reset, a signal's cancel) that some
    shards did not confirm: applied on the others; the same request again is safe."""

    code = "shards_incomplete"
    status = 503


class Forwarder:
    """This shard's client for forwarding to the owners; `close()` at shutdown."""

    def __init__(self, shard: int, timeout_ms: int) -> None:
        self.shard = shard
        self.timeout_s = timeout_ms / 1000
        self.forwarded: dict[str, int] = {}  # outcome ("answered", "unavailable") -> count
        self._session: aiohttp.ClientSession | None = None
        self.token = ""  # the cluster's forward token, set once the intake has read it

    def marked(self, request: web.Request) -> bool:
        """Whether `request` was forwarded by a shard of this cluster (it carries the token);
        a client's own FORWARDED_FROM header without it is ignored."""
        sent = request.headers.get(FORWARD_TOKEN, "")
        return (
            FORWARDED_FROM in request.headers
            and bool(self.token)
            and hmac.compare_digest(sent.encode(), self.token.encode())
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=MAX_PER_OWNER),
            )
        return self._session

    async def forward(
        self, request: web.Request, body: bytes, named: str, owned: dict[str, Any]
    ) -> web.Response:
        """The owner's answer to `request` (whose body, already read and bounded, is `body`):
        `owned` names the owner (`owner_shard`, `owner_url`) and what it owns (`named`, e.g.
        "agent 'agt_1'"). Raises OwnerUnavailable when the owner cannot be reached or does not
        answer in time."""
        owner, url = owned["owner_shard"], owned["owner_url"]
        headers = self._headers(request)
        target = _target(url, request)
        try:
            async with self._client().request(
                request.method, target, data=body or None, headers=headers, allow_redirects=False
            ) as answer:
                if (answer.content_length or 0) > MAX_RESPONSE_BYTES:
                    raise aiohttp.ClientPayloadError("the owner's answer is over the bound")
                payload = await answer.content.read(MAX_RESPONSE_BYTES + 1)
                if len(payload) > MAX_RESPONSE_BYTES:
                    raise aiohttp.ClientPayloadError("the owner's answer is over the bound")
                relayed = {h: v for h in RESPONSE_HEADERS if (v := answer.headers.get(h))}
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._count("unavailable")
            reason = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
            log.warning(
                "cluster: forwarding to the owner shard failed",
                extra={"owner_shard": owner, "reason": reason},
            )
            why = (
                f"did not answer within {self.timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else f"could not be reached ({type(exc).__name__})"
            )
            raise OwnerUnavailable(
                f"{named} belongs to shard {owner}, which {why}: retry, or send this request there",
                owned,
            ) from None
        self._count("answered")
        relayed[OWNER_SHARD] = str(owner)
        return web.Response(status=answer.status, body=payload, headers=relayed)

    async def fan_out(
        self, request: web.Request, body: bytes, urls: dict[int, str]
    ) -> tuple[dict[int, Any], dict[int, str]]:
        """`request` sent to every shard of `urls` at once: (the decoded JSON answer of each
        shard that answered 2xx, the reason of each that did not: its status and error code,
        or why it could not be reached)."""
        headers = self._headers(request)

        async def one(url: str) -> tuple[int, bytes]:
            async with self._client().request(
                request.method,
                _target(url, request),
                data=body or None,
                headers=headers,
                allow_redirects=False,
            ) as answer:
                return answer.status, await answer.content.read(MAX_RESPONSE_BYTES)

        shards = sorted(urls)
        got = await asyncio.gather(*(one(urls[i]) for i in shards), return_exceptions=True)
        answers: dict[int, Any] = {}
        failures: dict[int, str] = {}
        for shard, result in zip(shards, got, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, (TimeoutError, aiohttp.ClientError, OSError)):
                    raise result
                failures[shard] = f"unreachable: {type(result).__name__}"
                continue
            status, payload = result
            try:
                decoded = msgspec.json.decode(payload) if payload else None
            except msgspec.DecodeError:
                decoded = None
            if 200 <= status < 300:
                answers[shard] = decoded
            else:
                code = decoded.get("error", {}).get("code") if isinstance(decoded, dict) else None
                failures[shard] = f"{status} {code or 'error'}"
        self._count("answered", len(answers))
        self._count("unavailable", len(failures))
        return answers, failures

    def _headers(self, request: web.Request) -> dict[str, str]:
        """The client's headers the owner needs, and this shard's mark (never forwarded again)."""
        headers = {h: v for h in REQUEST_HEADERS if (v := request.headers.get(h)) is not None}
        headers[FORWARDED_FROM] = str(self.shard)
        headers[FORWARD_TOKEN] = self.token
        return headers

    def _count(self, outcome: str, n: int = 1) -> None:
        self.forwarded[outcome] = self.forwarded.get(outcome, 0) + n

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _target(url: str, request: web.Request) -> URL:
    """The owner's URL for `request`: its path and query exactly as the client sent them
    (`encoded`: never decoded and normalized again, or `/v1/agents/%2E%2E/sources` would reach
    the owner as `/v1/sources`)."""
    return URL(url.rstrip("/") + request.raw_path, encoded=True)


class ForwardCollector:
    """tradingd_cluster_forwarded_total{outcome}: requests for another shard's agent sent to
    their owner, by outcome (answered: the owner's status relayed; unavailable: 503)."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        c = CounterMetricFamily(
            "tradingd_cluster_forwarded",
            "Requests for another shard's agent forwarded to their owner, by outcome",
            labels=["outcome"],
        )
        for outcome in ("answered", "unavailable"):
            c.add_metric([outcome], self.forwarder.forwarded.get(outcome, 0))
        yield c
