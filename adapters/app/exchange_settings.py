"""`[venues.ccxt.<account>]` of the config file: one exchange account traded through CCXT
(`ccxt.async_support`, tickers through `ccxt.pro`). Agents trade it as venue `ccxt:<account>`.
Units: ms, s, the market quote currency (decimal strings). The API key, secret and password come
from the environment (`TRADINGD_CCXT_<ACCOUNT>_API_KEY`, `_SECRET`, `_PASSWORD`, the account name
upper-cased) or, less safely, from the file; they never reach a repr, a log line or /health."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct
from tradingd.adapters.venues.ccxt.urls import hide_userinfo

# An account name: the venue suffix of `ccxt:<account>` and part of its environment variables.
ACCOUNT_NAME: Final = r"^[a-z][a-z0-9_]{0,31}$"
# A CCXT exchange id as `ccxt.exchanges` lists it (the instrument ids' prefix).
EXCHANGE_ID: Final = r"^[a-z][a-z0-9_]{0,31}$"
SECRET_FIELDS: Final = ("api_key", "secret", "password")
ENV_PREFIX: Final = "TRADINGD_CCXT_"
_URL = Annotated[str, Meta(pattern=r"^(https?|wss?)://", max_length=512)]
# ccxt `urls['api']` entries: a URL, or (ccxt.pro's `ws`) a table of URLs, one level deeper.
UrlEntry = _URL | dict[str, _URL | dict[str, _URL]]
AccountName = Annotated[str, Meta(pattern=ACCOUNT_NAME)]


class ExchangeAccountSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    """One exchange account. Accounts on the same `exchange` share its markets, prices and
    ticker feed (the first account by name sets its ticker_* settings), so they must agree on
    `sandbox` and `urls`."""

    # The CCXT exchange id ("binance", "kraken", ...): instrument ids are `<exchange>:BASE/QUOTE`.
    exchange: Annotated[str, Meta(pattern=EXCHANGE_ID)]
    # Less safe than the environment (TRADINGD_CCXT_<ACCOUNT>_API_KEY/_SECRET/_PASSWORD win).
    api_key: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    secret: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    password: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    # The exchange's testnet (CCXT `set_sandbox_mode`, its `urls['test']`): no real money.
    sandbox: bool = False
    # Overrides of CCXT `urls['api']` entries by name, applied after `sandbox` (testnets CCXT
    # does not know, proxies, a local fake): e.g. Binance `public`/`private` (REST base URLs)
    # and `ws = { spot = "wss://..." }` (ccxt.pro). Entries not named keep CCXT's URL.
    urls: dict[str, UrlEntry] = msgspec.field(default_factory=dict)
    # CCXT `options` merged over the exchange's own (e.g. Binance
    # `{ fetchMarkets = { types = ["spot"] } }`).
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    # CCXT's per-request timeout.
    timeout_ms: Annotated[int, Meta(ge=100, le=120_000)] = 10_000
    # One load of the markets (CCXT `load_markets`) must finish within this; they are reloaded
    # every `markets_reload_s` (0: never) so a precision change reaches the order sizing.
    markets_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 30.0
    markets_reload_s: Annotated[int, Meta(ge=0, le=7 * 86_400)] = 3_600
    # Markets that did not load (at start-up the daemon starts without them: the exchange's
    # instruments answer 503 and its orders wait) are tried again this often.
    markets_retry_s: Annotated[float, Meta(gt=0, le=3_600)] = 10.0
    # Safety switches. `trading = false`: nothing is sent (a buy fails `trading_disabled`, a
    # sell waits and retries) while lookups of recorded requests, prices, balances and the
    # reconciliation still run.
    trading: bool = True
    # The most one buy may spend, in the agent's quote currency (e.g. "100" USDT); a larger
    # buy fails `above_max_order_quote` before anything is sent. None: no cap.
    max_order_quote: Annotated[str, Meta(pattern=r"^[0-9]{1,12}(\.[0-9]{1,8})?$")] | None = None
    # Circuit breaker of the account's API: consecutive failures before it opens; seconds open.
    breaker_failures: Annotated[int, Meta(ge=1, le=1_000)] = 5
    breaker_reset_s: Annotated[float, Meta(gt=0, le=3_600)] = 30.0
    # Orders (adapters/venues/ccxt/venue.py). A request that may have reached the exchange is
    # looked up by its client order id, `order_lookup_interval_ms` apart, until
    # `order_lookup_attempts` answers said "does not exist" AND `order_not_placed_after_ms`
    # passed since it was sent; only then does it count as not placed and may another request
    # go. Exchanges show an order late (eventually consistent) but refuse a request they did
    # not take within its receive window (Binance's recvWindow: ccxt sends 10 s), so after
    # 15 s a request not seen was not placed. A market order still open after
    # `open_order_wait_ms` is cancelled. Requests that may have reached
    # the exchange per order: `max_buy_attempts` (never past the signal's expiry),
    # `max_sell_attempts`; refusals (rate limit, clock skew) per try: `max_transient_failures`,
    # waiting `retry_backoff_ms` doubling up to `max_retry_wait_ms` (a Retry-After included).
    order_lookup_attempts: Annotated[int, Meta(ge=1, le=100)] = 5
    order_lookup_interval_ms: Annotated[int, Meta(ge=10, le=60_000)] = 1_000
    order_not_placed_after_ms: Annotated[int, Meta(ge=0, le=600_000)] = 15_000
    open_order_wait_ms: Annotated[int, Meta(ge=0, le=600_000)] = 10_000
    max_buy_attempts: Annotated[int, Meta(ge=1, le=20)] = 2
    max_sell_attempts: Annotated[int, Meta(ge=1, le=50)] = 5
    max_transient_failures: Annotated[int, Meta(ge=1, le=1_000)] = 5
    retry_backoff_ms: Annotated[int, Meta(ge=10, le=60_000)] = 200
    max_retry_wait_ms: Annotated[int, Meta(ge=10, le=600_000)] = 30_000
    # The ticker feed (source: the exchange id): `watch_tickers` over WebSocket, REST
    # `fetch_tickers` every `ticker_poll_ms` while the socket is down (or always when
    # `ticker_websocket = false`); a symbol without a ticker for `ticker_stale_ms` is stale.
    ticker_websocket: bool = True
    ticker_poll_ms: Annotated[int, Meta(ge=100, le=600_000)] = 2_000
    ticker_stale_ms: Annotated[int, Meta(ge=1_000, le=3_600_000)] = 30_000
    ticker_max_symbols: Annotated[int, Meta(ge=1, le=10_000)] = 200

    def __post_init__(self) -> None:
        secret_like = sorted(k for k in self.options if k.casefold() in _SECRET_OPTIONS)
        if secret_like:
            raise ValueError(
                f"options.{secret_like[0]}: keys go in api_key/secret/password or the "
                "environment (TRADINGD_CCXT_<ACCOUNT>_API_KEY, ...), never in options"
            )
        # A request is taken by the exchange up to its receive window after it was signed: only
        # past that may a request no lookup found count as not placed (venue.py).
        recv = self.options.get("recvWindow")
        if isinstance(recv, int) and self.order_not_placed_after_ms <= recv:
            raise ValueError(
                f"order_not_placed_after_ms ({self.order_not_placed_after_ms}) must exceed "
                f"options.recvWindow ({recv} ms): a request the exchange may still take "
                "would count as not placed, and a retry could place a second order"
            )

    def max_order_cost(self) -> Decimal | None:
        """`max_order_quote` as a Decimal (quote currency), None when not set."""
        if self.max_order_quote is None:
            return None
        try:
            return Decimal(self.max_order_quote)
        except InvalidOperation:  # the pattern admits only decimals: never here
            return None

    def ccxt_config(self) -> dict[str, Any]:
        """The CCXT constructor config: keys (when set), timeout, rate limiter on, options. The
        URLs and sandbox mode are set on the object after construction (`apply_urls`)."""
        config: dict[str, Any] = {
            "timeout": self.timeout_ms,
            "enableRateLimit": True,  # CCXT's own limiter, per exchange object
            "options": {**SPOT_ONLY_OPTIONS.get(self.exchange, {}), **self.options},
        }
        for field, ccxt_name in (("api_key", "apiKey"), ("secret", "secret"), ("password", "password")):  # fmt: skip
            value = getattr(self, field)
            if value:
                config[ccxt_name] = value
        return config

    def apply_urls(self, exchange: Any) -> None:
        """Sandbox mode, then the `urls` overrides, on a CCXT exchange object. Raises CCXT's
        NotSupported when the exchange has no sandbox."""
        if self.sandbox:
            exchange.set_sandbox_mode(True)
        api = exchange.urls.get("api")
        if not self.urls:
            return
        if not isinstance(api, dict):
            api = exchange.urls["api"] = {}
        for name, value in self.urls.items():
            if isinstance(value, dict) and isinstance(api.get(name), dict):
                api[name] = _merged(api[name], value)
            else:
                api[name] = value

    def __repr__(self) -> str:
        shown = (
            f"{f}={'[redacted]' if f in SECRET_FIELDS and getattr(self, f) else repr(getattr(self, f))}"  # noqa: E501
            for f in self.__struct_fields__
        )
        # a proxy's user:password in `urls` is a secret too
        return hide_userinfo(f"ExchangeAccountSettings({', '.join(shown)})")


# Options an exchange needs so that loading its markets asks for spot markets only (the only ones
# tradable here) and nothing private: without them, CCXT's Binance also loads futures markets
# from fapi/dapi hosts that an account's `urls` (a testnet, a proxy) does not override.
SPOT_ONLY_OPTIONS: dict[str, dict[str, Any]] = {
    exchange: {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}
    for exchange in ("binance", "binanceus")
}
_SECRET_OPTIONS = frozenset({"apikey", "secret", "password", "uid", "privatekey", "token"})


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def env_name(account: str, field: str) -> str:
    """The environment variable of an account's secret: ("binance", "api_key") ->
    TRADINGD_CCXT_BINANCE_API_KEY."""
    return f"{ENV_PREFIX}{account.upper()}_{field.upper()}"


def apply_secret_env(
    accounts: Mapping[str, ExchangeAccountSettings], env: Mapping[str, str]
) -> None:
    """Take each account's api_key, secret and password from the environment where set (the
    environment wins over the file)."""
    for name, account in accounts.items():
        for field in SECRET_FIELDS:
            value = env.get(env_name(name, field))
            if value:
                setattr(account, field, value)


def exchange_accounts(
    accounts: Mapping[str, ExchangeAccountSettings],
) -> dict[str, list[str]]:
    """CCXT exchange id -> its account names, sorted (the first sets the shared feed)."""
    out: dict[str, list[str]] = {}
    for name in sorted(accounts):
        out.setdefault(accounts[name].exchange, []).append(name)
    return out


def venue_exchanges(accounts: Mapping[str, ExchangeAccountSettings]) -> dict[str, str]:
    """The engine's `venue_exchanges`: "ccxt:<account>" -> its CCXT exchange id."""
    return {f"ccxt:{name}": a.exchange for name, a in accounts.items()}
