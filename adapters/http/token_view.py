"""A token's view as every client sees it — `GET /v1/tokens/{token}` and the WebSocket `token`
messages: registry entry, the price from each source with its age, which one prices the token,
pool data, volatility, divergence and the risk score with its factors (engine/token_risk.py)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from tradingd.adapters.http.token_schemas import (
    DivergenceOut,
    RiskFactorOut,
    RiskOut,
    SourcePriceOut,
    TokenOut,
)
from tradingd.adapters.timestamps import iso_ms, iso_ms_or_none

if TYPE_CHECKING:
    from tradingd.adapters.app.settings import TokenSettings
    from tradingd.engine.core import Engine


def token_out(
    engine: Engine,
    registry: Mapping[str, TokenSettings],
    token: str,
    watched: Collection[str] | None = None,
) -> TokenOut | None:
    """The token's view now (`registry`: the config's [tokens]; `watched`: the engine's
    watched tokens when the caller has them, for many views at once); None when neither a feed
    nor the registry knows it."""
    known = registry.get(token)
    now = engine.clock()
    price = engine.prices.get(token)
    by_source = engine.sources.ticks(token, price)
    if known is None and price is None and not by_source:
        return None
    age_limit = engine.max_price_age_ms
    market_age = engine.price_policy.max_market_age_ms
    pool = engine.market.pool(token, now, market_age)
    vol = engine.market.volatility.get(token)
    conf = engine.market.conf_ratio(token, now, market_age)
    diverged = engine.sources.diverged.get(token)
    risk = engine.token_risk(token)
    return TokenOut(
        token=token,
        symbol=known.symbol if known is not None else None,
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
        watched=token in (engine.watched_tokens() if watched is None else watched),
        risk=RiskOut(
            score=risk.score,
            factors={
                name: RiskFactorOut(value=f.value, risk=f.risk, weight=f.weight, points=f.points)
                for name, f in risk.factors.items()
            },
            missing=risk.missing,
        ),
    )
