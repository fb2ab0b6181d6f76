"""The markets of each configured CCXT exchange: one public CCXT object per exchange id (no
keys) loads them (bounded by `markets_timeout_s`) and shares them with the accounts' and the
ticker stream's objects; the tradable ones go into the registry (daemon.markets) and their
order-size rules into the engine, at start-up and every `markets_reload_s`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from tradingd.adapters.app.exchange_settings import ExchangeAccountSettings
from tradingd.adapters.venues.ccxt.markets import instrument_id, market_rules, tradable_market
from tradingd.engine.assets import USD_MARKET_QUOTES
from tradingd.engine.errors import ValidationError, VenueError
from tradingd.engine.ports import LiveFeed

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.exchanges")
# Exchanges that take fees in their own currency when the account holds it (Binance: BNB).
FEE_CURRENCIES: Final = {"binance": "BNB", "binanceus": "BNB"}
# Markets' rules set per loop turn on a reload (~55 µs each, measured: 2,000 markets take
# ~110 ms), so a reload never holds the event loop for long.
RULES_PER_TURN: Final = 250


class PublicExchange:
    """One CCXT exchange id: its public REST object (markets, REST tickers) and ccxt.pro object
    (the ticker stream; None when CCXT has none), built from the first account's settings
    without keys, and its markets' state."""

    def __init__(self, exchange_id: str, settings: ExchangeAccountSettings) -> None:
        import ccxt.async_support as ccxt_async
        import ccxt.pro as ccxt_pro

        self.id = exchange_id
        self.settings = settings
        config = settings.ccxt_config()
        public = {k: config[k] for k in ("timeout", "options", "enableRateLimit")}
        self.rest: Any = getattr(ccxt_async, exchange_id)(public)
        settings.apply_urls(self.rest)
        pro = getattr(ccxt_pro, exchange_id, None)
        self.ws: Any = pro(public) if pro is not None else None
        if self.ws is not None:
            settings.apply_urls(self.ws)
        self.markets: Mapping[str, Any] = {}
        self.loaded_at: int | None = None  # epoch ms of the last load
        self.tradable = 0
        self.last_error: str | None = None  # the last load's failure, until one succeeds
        self.feed: LiveFeed | None = None  # its ticker feed, once started
        self.resumes_seen = 0  # the stream resumes (its feed's stream_resumes) already compared

    def watched(self, tokens: Callable[[], set[str]]) -> Callable[[], set[str]]:
        """What the exchange's ticker feed prices: `tokens()` (the engine's watched tokens), plus
        the markets of the exchange's fee currency in each USD quote it lists (Binance's BNB:
        a fee paid in BNB is valued at its price, 0 while unpriced)."""
        fee = FEE_CURRENCIES.get(self.id)
        if fee is None:
            return tokens

        def watched() -> set[str]:  # the markets may load late: read them at each call
            return tokens() | {
                instrument_id(self.id, f"{fee}/{quote}")
                for quote in USD_MARKET_QUOTES
                if f"{fee}/{quote}" in self.markets
            }

        return watched

    def health(self) -> dict[str, Any]:
        if self.last_error:
            status = "stale" if self.loaded_at else "down"
        else:
            status = "ok" if self.loaded_at else "unknown"
        return {
            "status": status,
            "tradable": self.tradable,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        for obj in (self.rest, self.ws):
            if obj is not None:
                await obj.close()


class ExchangeMarkets:
    """Loads and reloads the exchanges' markets; `share_with(exchange_id)` names the keyed CCXT
    objects of its accounts, which take the loaded markets instead of loading their own."""

    def __init__(
        self,
        daemon: Daemon,
        exchanges: Mapping[str, PublicExchange],
        share_with: Callable[[str], Iterable[Any]],
        secrets: tuple[str, ...],
    ) -> None:
        self.daemon = daemon
        self.exchanges = exchanges
        self._share_with = share_with
        self._secrets = secrets

    async def load(self, exchange: PublicExchange, reload: bool) -> None:
        """One load of `exchange`'s markets (CCXT `load_markets`), into the registry and every
        object of the exchange. Raises ExchangeFailure (a VenueError: CCXT's error mapped, or
        a timeout)."""
        from tradingd.adapters.venues.ccxt.errors import map_exceptions

        started = time.monotonic()
        try:
            with map_exceptions(exchange.id, self._secrets):
                async with asyncio.timeout(exchange.settings.markets_timeout_s):
                    markets = await exchange.rest.load_markets(reload)
        except VenueError as exc:
            exchange.last_error = exc.message
            raise
        for keyed in self._share_with(exchange.id):
            keyed.set_markets_from_exchange(exchange.rest)
        if exchange.ws is not None:
            exchange.ws.set_markets_from_exchange(exchange.rest)
        exchange.markets = markets
        exchange.loaded_at = self.daemon.engine.clock()
        exchange.last_error = None
        self.daemon.markets.load(exchange.id, markets)
        exchange.tradable = sum(1 for m in markets.values() if tradable_market(m))
        log.info(
            "exchange markets loaded",
            extra={"exchange": exchange.id, "markets": len(markets),
                   "tradable": exchange.tradable, "ms": round((time.monotonic() - started) * 1000)},
        )  # fmt: skip

    def _rules(self, only: str | None = None) -> list[tuple[str, Mapping[str, Any], int]]:
        return [
            (instrument_id(x.id, symbol), market, x.rest.precisionMode)
            for x in self.exchanges.values()
            if only is None or x.id == only
            for symbol, market in x.markets.items()
            if tradable_market(market)
        ]

    def _set(self, batch: list[tuple[str, Mapping[str, Any], int]]) -> int:
        """Set the rules of `batch` in one transition; returns how many changed. A market's
        rules keep the decimals its instrument already has (restored positions hold amounts at
        that scale)."""
        engine = self.daemon.engine

        def set_batch() -> int:
            changed = 0
            for token, market, mode in batch:
                new = market_rules(market, mode, decimals=engine.decimals.get(token))
                if engine.instruments.get(token) == new:
                    continue
                try:
                    engine.set_instrument_rules(token, new)
                except ValidationError as exc:
                    log.warning("market rules refused", extra={"token": token, "reason": exc.message})  # fmt: skip
                    continue
                changed += 1
            return changed

        return self.daemon.runtime.apply(set_batch) if batch else 0

    def apply_rules(self) -> int:
        """Every loaded tradable market's rules into the engine at once (start-up, between the
        restore and the resumed orders). Returns how many changed."""
        return self._set(self._rules())

    async def apply_rules_gradually(self, exchange_id: str) -> int:
        """As apply_rules for one exchange, RULES_PER_TURN markets per loop turn (reloads)."""
        rules, changed = self._rules(exchange_id), 0
        for start in range(0, len(rules), RULES_PER_TURN):
            changed += self._set(rules[start : start + RULES_PER_TURN])
            await asyncio.sleep(0)
        return changed

    async def reload_loop(self, exchange: PublicExchange) -> None:
        """Every `markets_reload_s`: reload, then changed rules into the engine (a precision
        change reaches order sizing). A failed reload keeps the last rules (health: stale).
        Markets never loaded are tried every `markets_retry_s` until they come."""
        while True:
            loaded = bool(exchange.markets)
            if loaded and exchange.settings.markets_reload_s == 0:
                return
            s = exchange.settings
            await asyncio.sleep(s.markets_reload_s if loaded else s.markets_retry_s)
            try:
                await self.load(exchange, reload=loaded)
            except VenueError as exc:
                log.warning(
                    "exchange markets reload failed: the last rules stay",
                    extra={"exchange": exchange.id, "reason": exc.message},
                )
                continue
            changed = await self.apply_rules_gradually(exchange.id)
            if changed:
                log.info("market rules changed", extra={"exchange": exchange.id, "markets": changed})  # fmt: skip
