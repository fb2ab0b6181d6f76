"""Unmodified ccxt `binance` objects (ccxt.async_support and ccxt.pro) pointed at a running fake
Binance (tests/fakes/binance.py): every REST base URL of the exchange (public, private, v1,
sapi*, fapi*, dapi*, eapi*, papi*) and every WebSocket URL is rewritten to the fake's host with
its real path, so no request can reach the internet, and the options that would call sapi on
load (`fetchCurrencies`, `fetchMargins`) are off; `load_markets` then reads only
`GET /api/v3/exchangeInfo`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from tests.fakes.binance import FakeBinance

FAKE_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,  # sapi capital/config/getall: not served
    "fetchMargins": False,  # sapi margin/allPairs: not served
    "adjustForTimeDifference": False,
    "defaultType": "spot",
}


def fake_urls(template: dict[str, Any], rest_url: str, ws_url: str) -> dict[str, Any]:
    """`template` (an exchange's `urls['api']`) with each URL's scheme and host replaced by the
    fake's (`http://127.0.0.1:<port>` / `ws://127.0.0.1:<port>`), the path kept."""
    out: dict[str, Any] = {}
    for name, value in template.items():
        if isinstance(value, dict):
            out[name] = fake_urls(value, rest_url, ws_url)
        elif isinstance(value, str):
            parts = urlsplit(value)
            base = ws_url if parts.scheme in ("ws", "wss") else rest_url
            out[name] = base + parts.path
    return out


def ccxt_config(
    fake: FakeBinance, *, timeout_ms: int = 3000, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ccxt constructor config for `fake` (keys, timeout, options; URLs are set by
    `point_at`, since they depend on the class: pro adds `ws`)."""
    return {
        "apiKey": fake.api_key,
        "secret": fake.secret,
        "timeout": timeout_ms,
        "enableRateLimit": True,
        "options": {**FAKE_OPTIONS, **(options or {})},
    }


def point_at(exchange: Any, rest_url: str, ws_url: str) -> None:
    """Rewrite `exchange.urls` (api, and test/demo so sandbox mode stays local) to the fake."""
    for key in ("api", "test", "demo"):
        if isinstance(exchange.urls.get(key), dict):
            exchange.urls[key] = fake_urls(exchange.urls[key], rest_url, ws_url)


def binance_urls(rest_url: str, ws_url: str) -> dict[str, Any]:
    """The `urls` entries (api, test, demo) of a ccxt.pro binance rewritten to a fake at
    `rest_url` / `ws_url`: pass `{"urls": binance_urls(...), "options": FAKE_OPTIONS}` in a
    ccxt constructor config (e.g. a daemon's venue options) to reach the fake without code."""
    template = ccxt_pro.binance().urls
    return {k: fake_urls(template[k], rest_url, ws_url) for k in ("api", "test", "demo")}


def async_binance(fake: FakeBinance, **kw: Any) -> ccxt_async.binance:
    """A `ccxt.async_support.binance` on the fake (call `await exchange.close()` after)."""
    exchange = ccxt_async.binance(ccxt_config(fake, **kw))
    point_at(exchange, fake.url, fake.ws_url)
    return exchange


def pro_binance(fake: FakeBinance, **kw: Any) -> ccxt_pro.binance:
    """A `ccxt.pro.binance` on the fake: REST as above, `watch_*` on `fake.ws_url + "/ws"`."""
    exchange = ccxt_pro.binance(ccxt_config(fake, **kw))
    point_at(exchange, fake.url, fake.ws_url)
    return exchange
