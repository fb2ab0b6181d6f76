"""`/v1/prices`: the push feed (ticks POSTed by external feeders and tests) and the last known
price of a token."""

from __future__ import annotations

import msgspec
from aiohttp import web

from adapters.http.codec import daemon_of, json_response, read_body
from adapters.http.errors import TooManyTicks
from adapters.http.openapi import Route
from adapters.http.schemas import PriceOut, TicksAccepted, TicksIn, iso_ms
from engine.assets import require_mint
from engine.errors import NotFound
from engine.model import Tick

_ticks_in = msgspec.json.Decoder(TicksIn)


def to_ticks(body: TicksIn, now_ms: int) -> list[Tick]:
    """Validate every tick before any is applied: a bad batch changes nothing."""
    return [
        Tick(
            token=require_mint(t.token, f"$.ticks[{i}].token"),
            price_usd=t.price_usd,
            ts=now_ms if t.ts is None else t.ts,
            source=t.source,
            decimals=t.decimals,
            liquidity_usd=t.liquidity_usd,
            confidence=t.confidence,
        )
        for i, t in enumerate(body.ticks)
    ]


async def post_prices(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    body = await read_body(request, _ticks_in)
    limit = daemon.settings.http.max_ticks_per_push
    if len(body.ticks) > limit:
        raise TooManyTicks(
            f"{len(body.ticks)} ticks in one push, at most {limit}",
            {"limit": limit, "path": "$.ticks"},
        )
    ticks = to_ticks(body, daemon.runtime.clock())
    accepted = daemon.runtime.push_ticks(ticks)
    return json_response(TicksAccepted(accepted=accepted), 202)


async def get_price(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    token = require_mint(request.match_info["token"], "path.token")
    tick = daemon.engine.prices.get(token)
    if tick is None:
        raise NotFound(f"no price known for {token}", {"token": token})
    age = max(0, daemon.runtime.clock() - tick.ts)
    return json_response(
        PriceOut(
            token=token,
            price_usd=tick.price_usd,
            source=tick.source,
            ts=iso_ms(tick.ts),
            age_ms=age,
            decimals=daemon.engine.decimals.get(token),
            liquidity_usd=tick.liquidity_usd,
        )
    )


ROUTES = [
    Route(
        "POST",
        "/v1/prices",
        post_prices,
        "Push price ticks (processed in order)",
        "prices",
        "feed",
        {202: TicksAccepted},
        body=TicksIn,
        intake=True,
        description="More than `[http] max_ticks_per_push` ticks is 413 `too_many_ticks`; a "
        "batch with any invalid tick is rejected whole (422) and applies nothing.",
    ),
    Route(
        "GET",
        "/v1/prices/{token}",
        get_price,
        "Last known price of a token",
        "prices",
        "read",
        {200: PriceOut},
    ),
]
