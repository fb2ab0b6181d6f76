"""Wire types of `GET /v1/tokens/{token}` (routes_tokens.py): a token's prices by source, market
data and risk score. Same conventions as schemas.py: times ISO-8601 UTC ms, prices USD."""

from __future__ import annotations

from msgspec import Struct
from tradingd.adapters.http.schemas import InstrumentId, Timestamp


class SourcePriceOut(Struct, kw_only=True):
    """One source's last price of the token: `fresh` when at most max_price_age_ms old,
    `selected` when it is the token's price, `rank` its priority (0 first)."""

    source: str
    price_usd: float
    ts: Timestamp
    age_ms: int
    fresh: bool
    selected: bool
    rank: int


class DivergenceOut(Struct, kw_only=True):
    """Live sources disagreeing: each one's price (USD) and the spread, percent of the lower."""

    prices: dict[str, float]
    spread_pct: float


class RiskFactorOut(Struct, kw_only=True):
    """A risk factor: its value (None when unknown), its risk 0-1, weight and points."""

    value: float | None
    risk: float
    weight: int
    points: float


class RiskOut(Struct, kw_only=True):
    """The risk score 0 (safest) - 100, by factor, and the factors no fresh data gives."""

    score: int
    factors: dict[str, RiskFactorOut]
    missing: list[str]


class TokenOut(Struct, kw_only=True):
    """What the daemon knows of a token (GET /v1/tokens/{token}); `token` is an instrument id
    (a mint or an exchange market such as binance:BTC/USDT)."""

    token: InstrumentId
    symbol: str | None
    decimals: int | None
    usd_pegged: bool
    price_usd: float | None
    source: str | None
    ts: Timestamp | None
    age_ms: int | None
    sources: list[SourcePriceOut]
    liquidity_usd: float | None
    market_cap_usd: float | None
    fdv_usd: float | None
    volume_24h_usd: float | None
    pair_created_at: Timestamp | None
    market_source: str | None
    market_age_ms: int | None
    volatility_pct_1m: float | None
    confidence_pct: float | None
    divergence: DivergenceOut | None
    buys_blocked: bool
    watched: bool
    risk: RiskOut
