"""Account breakers on the control port (docs/breakers.md): their rules, the numbers they watch
and their state (`GET /v1/breakers`), an admin's reset (`POST /v1/breakers/reset`), and the
`breakers` field of `/health`. The rules themselves are engine/account_breakers.py."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from msgspec import Struct
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine.account_breakers import BreakerRules, BreakerTrip

if TYPE_CHECKING:
    from tradingd.engine.core import Engine

log = logging.getLogger("tradingd.http")


class BreakerTripOut(Struct, kw_only=True):
    """The rule that tripped, when (ISO 8601 UTC), and the numbers that tripped it with its
    threshold."""

    rule: str
    at: str
    details: dict[str, Any]


class BreakerValuesOut(Struct, kw_only=True):
    """What each rule watches now. USD amounts are exact decimal text rounded down to 1e-6;
    percentages and ages are for display."""

    equity_usd: str | None  # None: the drawdown rule is off, or a price is missing
    peak_usd: str | None  # the UTC day's peak (since the last reset)
    drawdown_pct: float | None
    stop_out_streak: int
    orders_in_window: int
    failed_in_window: int
    failure_rate_pct: float | None
    oldest_feed: dict[str, Any] | None  # {"token", "age_s"}: the oldest of held tokens


class BreakersOut(Struct, kw_only=True):
    """The account breakers: `rules` as configured (a rule None is off), `tripped` the trip
    in force (None: none), `halted` whether buys are halted (by a breaker or the operator),
    `values` the numbers the rules watch now."""

    rules: BreakerRules
    tripped: BreakerTripOut | None
    halted: bool
    values: BreakerValuesOut


class BreakersResetOut(Struct, kw_only=True):
    """After a reset: `cleared` the rule whose trip was cleared (None: none had tripped; the
    rules start over all the same), and the breakers as they are now."""

    cleared: str | None
    breakers: BreakersOut


def trip_out(trip: BreakerTrip | None) -> BreakerTripOut | None:
    if trip is None:
        return None
    return BreakerTripOut(rule=trip.rule, at=iso_ms(trip.at), details=trip.details)


def breakers_out(engine: Engine) -> BreakersOut:
    values = engine.breaker_values()
    return BreakersOut(
        rules=engine.breakers.rules,
        tripped=trip_out(engine.breakers.tripped),
        halted=engine.halted_buys,
        values=BreakerValuesOut(**values),  # type: ignore[arg-type]
    )


def health_field(engine: Engine) -> dict[str, Any]:
    """`/health`'s `breakers`: the trip in force (or None) and the rules configured."""
    trip = trip_out(engine.breakers.tripped)
    rules = engine.breakers.rules
    return {
        "tripped": None
        if trip is None
        else {"rule": trip.rule, "at": trip.at, "details": trip.details},
        "rules": {f: getattr(rules, f) for f in rules.__struct_fields__},
    }


async def get_breakers(request: web.Request) -> web.Response:
    return json_response(breakers_out(daemon_of(request).engine))


async def post_reset(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    was = daemon.runtime.apply(daemon.engine.reset_breakers)
    log.warning(
        "account breakers reset",
        extra={"rule": was.rule if was else None, "key_id": request[API_KEY].id},
    )
    return json_response(
        BreakersResetOut(cleared=was.rule if was else None, breakers=breakers_out(daemon.engine))
    )


ROUTES = [
    Route(
        "GET",
        "/v1/breakers",
        get_breakers,
        "Account breakers: rules, the numbers they watch, the trip in force",
        "admin",
        "read",
        {200: BreakersOut},
    ),
    Route(
        "POST",
        "/v1/breakers/reset",
        post_reset,
        "Reset the account breakers: every rule starts over and a breaker's halt is lifted",
        "admin",
        "admin",
        {200: BreakersResetOut},
        cluster_wide=True,
        description="With agent shards, every shard's breakers are reset: 503 "
        "`shards_incomplete` names the shards that did not confirm it (sending it again is safe).",
    ),
]
