"""`GET /v1/tokens/{token}`: what the daemon knows of a token (adapters/http/token_view.py)."""

from __future__ import annotations

from aiohttp import web
from tradingd.adapters.http.codec import daemon_of, json_response
from tradingd.adapters.http.openapi import Route
from tradingd.adapters.http.token_schemas import TokenOut
from tradingd.adapters.http.token_view import token_out
from tradingd.engine.assets import require_instrument
from tradingd.engine.errors import NotFound


async def get_token(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    token = require_instrument(request.match_info["token"], "path.token")
    view = token_out(daemon.engine, daemon.settings.tokens, token)
    if view is None:
        raise NotFound(f"nothing known of token {token}", {"token": token})
    return json_response(view)


ROUTES = [
    Route(
        "GET",
        "/v1/tokens/{token:.+}",
        get_token,
        "What the daemon knows of a token: prices by source, market data, risk score",
        "prices",
        "read",
        {200: TokenOut},
        description="`token` is an instrument id: a mint, or an exchange market such as "
        "`binance:BTC/USDT`, percent-encoded (`binance%3ABTC%2FUSDT`) or as written. The "
        "registry entry (`[tokens.<mint>]`), the token's price and the source "
        "it comes from, every source's last price with its age and priority rank (0 first), "
        "pool data (liquidity, market cap, FDV, 24 h volume, pair creation) when fresh, the "
        "volatility of a 1-minute return in percent, a divergence between live sources (buys "
        "blocked while it lasts), and the risk score 0-100 with each factor's value, risk "
        "0-1, weight and points; `missing` names the factors no fresh data gives (each counts "
        "as its whole weight). 404 when neither a feed nor the registry knows the token.",
    ),
]
