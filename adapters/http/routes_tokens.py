"""`GET /v1/tokens/{token}`: what the daemon knows of a token — registry entry, the price from
each source with its age, which one prices the token, pool data, volatility, divergence and the
risk score with its factors (engine/token_risk.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from tradingd.adapters.http.codec import daemon_of, json_response
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.http.token_schemas import (
    DivergenceOut,
    RiskFactorOut,
    RiskOut,
    SourcePriceOut,
    TokenOut,
)
from tradingd.adapters.timestamps import iso_ms, iso_ms_or_none
from tradingd.engine.assets import require_mint
from tradingd.engine.errors import NotFound

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon


def token_out(daemon: Daemon, token: str) -> TokenOut:
    """The token's view now; raises NotFound when neither a feed nor the registry knows it."""
    engine = daemon.engine
    registry = daemon.settings.tokens.get(token)
    now = engine.clock()
    by_source = engine.sources.by_token.get(token, {})
    price = engine.prices.get(token)
    if registry is None and price is None and not by_source:
        raise NotFound(f"nothing known of token {token}", {"token": token})
    age_limit = engine.max_price_age_ms
    market_age = engine.price_policy.max_market_age_ms
    pool = engine.market.pool(token, now, market_age)
    vol = engine.market.volatility.get(token)
    conf = engine.market.conf_ratio(token, now, market_age)
    diverged = engine.sources.diverged.get(token)
    risk = engine.token_risk(token)
    return TokenOut(
        token=token,
        symbol=registry.symbol if registry is not None else None,
        decimals=engine.decimals.get(token),
        usd_pegged=token in engine.pegged_usd,
        price_usd=price.price_usd if price is not None else None,
        source=price.source if price is not None else None,
        ts=iso_ms(price.ts) if price is not None else None,
        age_ms=max(0, now - price.ts) if price is not None else None,
        sources=[
            SourcePriceOut(
                source=source,
                price_usd=tick.price_usd,
                ts=iso_ms(tick.ts),
                age_ms=max(0, now - tick.ts),
                fresh=now - tick.ts <= age_limit,
                selected=price is not None and price.source == source and price.ts == tick.ts,
                rank=engine.sources.rank(token, source),
            )
            for source, tick in sorted(
                by_source.items(), key=lambda kv: (engine.sources.rank(token, kv[0]), kv[0])
            )
        ],
        liquidity_usd=pool.liquidity_usd if pool is not None else None,
        market_cap_usd=pool.market_cap_usd if pool is not None else None,
        fdv_usd=pool.fdv_usd if pool is not None else None,
        volume_24h_usd=pool.volume_24h_usd if pool is not None else None,
        pair_created_at=iso_ms_or_none(pool.pair_created_at) if pool is not None else None,
        market_source=pool.source if pool is not None else None,
        market_age_ms=max(0, now - pool.ts) if pool is not None else None,
        volatility_pct_1m=vol.pct_per_minute() if vol is not None else None,
        confidence_pct=conf * 100 if conf is not None else None,
        divergence=(
            DivergenceOut(prices=diverged.prices, spread_pct=diverged.spread_pct)
            if diverged is not None
            else None
        ),
        buys_blocked=engine.price_policy.block_buys_on_divergence and engine.diverged_now(token),
        watched=token in engine.watched_tokens(),
        risk=RiskOut(
            score=risk.score,
            factors={
                name: RiskFactorOut(value=f.value, risk=f.risk, weight=f.weight, points=f.points)
                for name, f in risk.factors.items()
            },
            missing=risk.missing,
        ),
    )


async def get_token(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    token = require_mint(request.match_info["token"], "path.token")
    return json_response(token_out(daemon, token))


ROUTES = [
    Route(
        "GET",
        "/v1/tokens/{token}",
        get_token,
        "What the daemon knows of a token: prices by source, market data, risk score",
        "prices",
        "read",
        {200: TokenOut},
        description="The registry entry (`[tokens.<mint>]`), the token's price and the source "
        "it comes from, every source's last price with its age and priority rank (0 first), "
        "pool data (liquidity, market cap, FDV, 24 h volume, pair creation) when fresh, the "
        "volatility of a 1-minute return in percent, a divergence between live sources (buys "
        "blocked while it lasts), and the risk score 0-100 with each factor's value, risk "
        "0-1, weight and points; `missing` names the factors no fresh data gives (each counts "
        "as its whole weight). 404 when neither a feed nor the registry knows the token.",
    ),
]
