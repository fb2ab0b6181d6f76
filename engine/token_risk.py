"""A token's risk score, 0 (safest) to 100 (riskiest), from what the feeds give and our own ticks,
with each factor's share. Usable as a signal filter (`signals.max_risk_score`).

Each factor maps its value to a risk between 0 and 1, and the score is the weighted sum, rounded.
A factor whose value is unknown (no feed gives it, or it is older than `max_market_age_ms`)
counts as the highest risk and is listed in `missing`: an unknown token is never scored safe.

| factor      | value                                   | risk 0 at    | risk 1 at   | weight |
|-------------|-----------------------------------------|--------------|-------------|--------|
| liquidity   | pool liquidity, USD                     | ≥ 1,000,000  | ≤ 10,000    | 30     |
| pair_age    | hours since the pool was created        | ≥ 720 (30 d) | ≤ 1         | 20     |
| market_cap  | market cap (FDV when absent), USD       | ≥ 100 M      | ≤ 100,000   | 15     |
| volatility  | std. dev. of a 1-minute return, percent | ≤ 0.5        | ≥ 5         | 15     |
| volume_24h  | 24 h volume, USD                        | ≥ 1,000,000  | ≤ 10,000    | 10     |
| dilution    | FDV / market cap                        | ≤ 1          | ≥ 10        | 5      |
| confidence  | Pyth confidence / price, percent        | ≤ 0.1        | ≥ 2         | 5      |

Between the two ends a size (USD, hours, ratio) is interpolated on a log scale, a percentage
linearly. Weights sum to 100."""

from __future__ import annotations

import math

from msgspec import Struct

from .token_market import PoolData

WEIGHTS: dict[str, int] = {
    "liquidity": 30,
    "pair_age": 20,
    "market_cap": 15,
    "volatility": 15,
    "volume_24h": 10,
    "dilution": 5,
    "confidence": 5,
}
HOUR_MS = 3_600_000


class Factor(Struct, frozen=True):
    """One factor: its value (None when unknown), its risk 0..1 and its points (weight × risk)."""

    value: float | None
    risk: float
    weight: int
    points: float


class RiskScore(Struct, frozen=True):
    """The score 0..100 (int), every factor by name, and the names of the unknown ones."""

    score: int
    factors: dict[str, Factor]
    missing: list[str]


def _log_risk(value: float, safe: float, risky: float) -> float:
    """1 at or below `risky`, 0 at or above `safe` (safe > risky > 0), log-linear between."""
    if value <= risky:
        return 1.0
    if value >= safe:
        return 0.0
    return (math.log(safe) - math.log(value)) / (math.log(safe) - math.log(risky))


def _linear_risk(value: float, safe: float, risky: float) -> float:
    """0 at or below `safe`, 1 at or above `risky` (risky > safe), linear between."""
    return min(1.0, max(0.0, (value - safe) / (risky - safe)))


def _values(
    pool: PoolData | None, volatility_pct: float | None, conf_ratio: float | None, now: int
) -> dict[str, float | None]:
    liquidity = market_cap = fdv = volume = age_h = None
    if pool is not None:
        liquidity, fdv, volume = pool.liquidity_usd, pool.fdv_usd, pool.volume_24h_usd
        market_cap = pool.market_cap_usd if pool.market_cap_usd is not None else fdv
        if pool.pair_created_at is not None:
            age_h = max(0, now - pool.pair_created_at) / HOUR_MS
    dilution = None
    if fdv is not None and pool is not None and pool.market_cap_usd:
        dilution = fdv / pool.market_cap_usd
    return {
        "liquidity": liquidity,
        "pair_age": age_h,
        "market_cap": market_cap,
        "volatility": volatility_pct,
        "volume_24h": volume,
        "dilution": dilution,
        "confidence": conf_ratio * 100 if conf_ratio is not None else None,
    }


def _risk(name: str, value: float) -> float:
    if name in ("liquidity", "volume_24h"):
        return _log_risk(value, 1_000_000, 10_000)
    if name == "market_cap":
        return _log_risk(value, 100_000_000, 100_000)
    if name == "pair_age":
        return _log_risk(value, 720, 1)
    if name == "dilution":
        return 1.0 - _log_risk(value, 10, 1)
    if name == "volatility":
        return _linear_risk(value, 0.5, 5)
    return _linear_risk(value, 0.1, 2)  # confidence


def risk_score(
    pool: PoolData | None, volatility_pct: float | None, conf_ratio: float | None, now: int
) -> RiskScore:
    """The score of a token from its fresh pool data (None: unknown), the volatility of a
    1-minute return in percent, Pyth's confidence / price ratio, at `now` (epoch ms). A value
    that is not a finite non-negative number counts as unknown."""
    factors: dict[str, Factor] = {}
    missing: list[str] = []
    total = 0.0
    for name, value in _values(pool, volatility_pct, conf_ratio, now).items():
        weight = WEIGHTS[name]
        if value is None or not math.isfinite(value) or value < 0:
            missing.append(name)
            risk, value = 1.0, None
        else:
            risk = _risk(name, value)
        points = weight * risk
        total += points
        factors[name] = Factor(value, round(risk, 4), weight, round(points, 2))
    return RiskScore(round(total), factors, missing)
