"""`/v1/prices`: the push feed (ticks POSTed by external feeders and tests) and the last known
price of a token."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web
from msgspec import structs
from tradingd.adapters.feeds import DAEMON_SOURCES
from tradingd.adapters.http.codec import daemon_of, json_response, read_body
from tradingd.adapters.http.errors import TooManyTicks
from tradingd.adapters.http.instruments import check_instrument
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.http.schemas import PriceOut, TicksAccepted, TicksIn
from tradingd.adapters.http.shapes import tick_out
from tradingd.adapters.venues.ccxt.markets import MarketRegistry
from tradingd.engine.assets import CCXT_VENUE_PREFIX, is_market, require_instrument
from tradingd.engine.errors import NotFound, ValidationError
from tradingd.engine.model import Tick

_ticks_in = msgspec.json.Decoder(TicksIn)


def to_ticks(
    body: TicksIn,
    now_ms: int,
    known_decimals: Mapping[str, int],
    markets: MarketRegistry | None = None,
) -> list[Tick]:
    """Validate every tick before any is applied: a bad batch changes nothing. A token is an
    instrument id, carried unchanged; an exchange market must be one `markets` lists (the
    daemon's registry; None: not checked). A tick whose `decimals` contradict the token's known
    decimals (or an earlier tick's in the batch) is
    invalid: amounts held were counted in the known ones; a market's tick names none (its scale
    comes from the exchange's market). Raises ValidationError naming the tick's field."""
    ticks: list[Tick] = []
    declared: dict[str, int] = {}
    for i, t in enumerate(body.ticks):
        token = check_instrument(t.token, f"$.ticks[{i}].token", markets)
        source = t.source.strip().casefold()  # "Pyth", " pyth" look the same
        if (
            source in DAEMON_SOURCES
            or source.startswith(CCXT_VENUE_PREFIX)  # an exchange account's venue name
            or (markets is not None and source in markets.configured)
        ):
            raise ValidationError(
                f"source {t.source!r} is one of the daemon's own feeds; name the pushing feed",
                f"$.ticks[{i}].source",
            )
        if t.decimals is not None and is_market(token):
            raise ValidationError(
                "decimals of an exchange market come from the exchange: leave them out",
                f"$.ticks[{i}].decimals",
            )
        if t.decimals is not None:
            known = known_decimals.get(token, declared.get(token))
            if known is not None and known != t.decimals:
                raise ValidationError(
                    f"decimals {t.decimals} conflict with the token's known decimals {known}",
                    f"$.ticks[{i}].decimals",
                )
            declared[token] = t.decimals
        ticks.append(
            Tick(
                token=token,
                price_usd=t.price_usd,
                ts=now_ms if t.ts is None else t.ts,
                source=t.source,
                decimals=t.decimals,
                liquidity_usd=t.liquidity_usd,
                confidence=t.confidence,
                conf_usd=t.conf_usd,
                market_cap_usd=t.market_cap_usd,
                fdv_usd=t.fdv_usd,
                volume_24h_usd=t.volume_24h_usd,
                pair_created_at=t.pair_created_at,
            )
        )
    return ticks


async def post_prices(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    body = await read_body(request, _ticks_in)
    limit = daemon.settings.http.max_ticks_per_push
    if len(body.ticks) > limit:
        raise TooManyTicks(
            f"{len(body.ticks)} ticks in one push, at most {limit}",
            {"limit": limit, "path": "$.ticks"},
        )
    ticks = to_ticks(body, daemon.runtime.clock(), daemon.engine.decimals, daemon.markets)
    if daemon.shard_intake is not None:  # agent shards: every shard applies them, in order
        await daemon.shard_intake.publish_ticks(ticks)
        return json_response(TicksAccepted(accepted=len(ticks)), 202)
    outcome = daemon.runtime.push_ticks(ticks)
    # A tick that fell through many stops has its exits decided in slices after this returns:
    # the 202 (after the store's flush, in the guard) covers them all, as before slicing.
    await daemon.runtime.cascade_settled()
    return json_response(
        TicksAccepted(
            accepted=outcome.accepted,
            rejected=sum(outcome.rejected.values()),
            reasons=outcome.rejected,
        ),
        202,
    )


async def get_price(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    token = require_instrument(request.match_info["token"], "path.token")
    tick = daemon.engine.prices.get(token)
    if tick is None:
        raise NotFound(f"no price known for {token}", {"token": token})
    age = max(0, daemon.runtime.clock() - tick.ts)
    return json_response(
        PriceOut(
            **structs.asdict(tick_out(tick)),
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
        description="A tick's `token` is an instrument id: a mint, or an exchange market "
        "(`binance:BTC/USDT`) its configured exchange lists, priced in the market's quote "
        "(USDT and USDC count as 1 USD) and naming no `decimals`. "
        "Ticks apply one at a time, in order, exactly as if pushed one by one: an "
        "exit decided on a tick fills at that tick's price. More than `[http] "
        "max_ticks_per_push` ticks is 413 `too_many_ticks`; a batch with any invalid tick "
        "(including `decimals` that contradict the token's known decimals, or a `source` that "
        "names one of the daemon's own feeds: pyth, dexscreener, synthetic, replay) is rejected "
        "whole "
        "(422) and applies nothing. Valid ticks the engine does not apply are counted in "
        "`rejected` with their `reasons`: `future` (ts more than `[prices] max_future_skew_ms` "
        "ahead of the daemon's clock), `stale` (older than `max_price_age_ms`: never applied, so "
        "no exit acts on it), `out_of_order` (older than the same source's last tick for the "
        "token, or than the token's price from a source of the same priority) and `secondary` "
        "(kept for failover and the cross-check, not applied: a source of higher priority in "
        "`[prices] sources` has a fresh price). Market fields (`liquidity_usd`, `market_cap_usd`, "
        "`fdv_usd`, `volume_24h_usd`, `pair_created_at`, `conf_usd`) feed the signal filters "
        "and the token's risk score.",
    ),
    Route(
        "GET",
        "/v1/prices/{token:.+}",
        get_price,
        "Last known price of a token",
        "prices",
        "read",
        {200: PriceOut},
        description="`token` is an instrument id: a mint, or an exchange market such as "
        "`binance:BTC/USDT`, percent-encoded (`binance%3ABTC%2FUSDT`) or as written. A "
        "market's `price_usd` is the exchange's last price in the market's quote (USDT and "
        "USDC count as 1 USD). 404 when no price is known.",
    ),
]
