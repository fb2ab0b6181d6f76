"""The exchange accounts of a daemon (`[venues.ccxt.<account>]`): per CCXT exchange id, public
CCXT objects for its markets and tickers (REST `ccxt.async_support`, WebSocket `ccxt.pro`); per
account, a keyed CCXT object behind an ExchangeClient and a CcxtVenue registered as
`ccxt:<account>`; the journal that makes an order's request durable before it is sent; markets
into the registry and the engine's order-size rules (at start-up, then every
`markets_reload_s`); start-up resolution of recorded requests; the balance reconciliation
(exchange_books.py) on start-up and after the account's API comes back; and their health at
/health `components.venues.ccxt:<account>`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradingd.adapters.app.exchange_books import booked_amounts, compare_books
from tradingd.adapters.app.exchange_settings import SECRET_FIELDS, ExchangeAccountSettings
from tradingd.adapters.app.exchange_settings import exchange_accounts as by_exchange
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.ccxt.markets import instrument_id, market_rules, tradable_market
from tradingd.engine import events as ev
from tradingd.engine.errors import TradingdError, Unavailable, ValidationError, VenueError
from tradingd.engine.model import ExchangeSubmission, Fill, Order

if TYPE_CHECKING:  # CCXT takes ~1 s to import: only a daemon with accounts pays it
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.adapters.venues.ccxt.client import ExchangeClient
    from tradingd.adapters.venues.ccxt.venue import CcxtVenue

log = logging.getLogger("tradingd.exchanges")
JOURNAL_TIMEOUT_S = 5.0  # a request not durable within this is not sent
WATCH_INTERVAL_S = 1.0  # health refresh; breaker and feed reconnects checked this often


class ExchangeStartFailed(Unavailable):
    """An exchange's markets did not load at start-up: its instruments cannot be checked or
    sized, so the daemon does not start."""

    code = "exchange_markets_unavailable"


class GuardedVenue:
    """An account's CcxtVenue behind its safety switches (`trading`, `max_order_quote`): a new
    buy they forbid fails before anything is recorded or sent; sells and orders with a recorded
    request always go through (the request must be resolved)."""

    in_process = False

    def __init__(self, venue: CcxtVenue, settings: ExchangeAccountSettings) -> None:
        self.venue = venue
        self.name = venue.name
        self._settings = settings
        self._cap = settings.max_order_cost()

    async def execute(self, order: Order) -> Fill:
        from tradingd.adapters.venues.ccxt.errors import ExchangeFailure

        if order.side == "buy" and order.exchange is None:
            if not self._settings.trading:
                raise ExchangeFailure("trading_disabled", "trading_disabled", transient=False)
            spend = Decimal(order.amount_in).scaleb(-order.quote_decimals)
            if self._cap is not None and spend > self._cap:
                raise ExchangeFailure(
                    "above_max_order_quote", "above_max_order_quote", transient=False
                )
        return await self.venue.execute(order)

    def execute_now(self, order: Order) -> Fill:
        return self.venue.execute_now(order)

    async def reconcile(self) -> list[Fill]:
        return await self.venue.reconcile()


class _Exchange:
    """One CCXT exchange id: public objects for markets and tickers, and its markets' state."""

    def __init__(self, exchange_id: str, settings: ExchangeAccountSettings) -> None:
        import ccxt.async_support as ccxt_async
        import ccxt.pro as ccxt_pro

        self.id = exchange_id
        self.settings = settings  # the first account's: the feed's settings
        public = {k: v for k, v in settings.ccxt_config().items() if k in ("timeout", "options", "enableRateLimit")}  # fmt: skip
        self.rest: Any = getattr(ccxt_async, exchange_id)(public)
        settings.apply_urls(self.rest)
        pro = getattr(ccxt_pro, exchange_id, None)
        self.ws: Any = pro(public) if pro is not None else None
        if self.ws is not None:
            settings.apply_urls(self.ws)
        self.markets: Mapping[str, Any] = {}
        self.loaded_at: int | None = None
        self.tradable = 0
        self.last_error: str | None = None


class _Account:
    def __init__(self, name: str, settings: ExchangeAccountSettings) -> None:
        self.name = name
        self.venue_name = f"ccxt:{name}"
        self.settings = settings
        self.client: ExchangeClient | None = None
        self.venue: CcxtVenue | None = None
        self.reconciliation: dict[str, Any] = {"status": "unknown", "reason": "not run yet"}
        self.breaker_state = "closed"


class ExchangeAccounts:
    """Owned by the Daemon: `start()` builds and registers the venues (in the event loop,
    before recovery: restored orders resume on them), `load_markets()` before the store opens,
    `apply_rules()` between the restore and the resumed orders, `start_feeds()`,
    `resolve_recovered()` and `reconcile()` before the control port opens, `start_tasks()`
    (markets reload, reconnect watch), `close()` at shutdown."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings.venues.ccxt
        self.exchanges: dict[str, _Exchange] = {}
        self.accounts: dict[str, _Account] = {
            name: _Account(name, s) for name, s in sorted(self.settings.items())
        }

    @property
    def enabled(self) -> bool:
        return bool(self.accounts)

    def start(self) -> None:
        """Build each exchange's public objects and each account's client and venue; register
        the venues as "ccxt:<account>" in the runtime. No I/O."""
        if not self.accounts or self.exchanges:
            return
        import ccxt.async_support as ccxt_async
        from tradingd.adapters.venues.ccxt.client import ExchangeClient
        from tradingd.adapters.venues.ccxt.venue import CcxtVenue

        d = self.daemon
        for exchange_id, names in by_exchange(self.settings).items():
            self.exchanges[exchange_id] = _Exchange(exchange_id, self.settings[names[0]])
        for account in self.accounts.values():
            s = account.settings
            keyed = getattr(ccxt_async, s.exchange)(s.ccxt_config())
            s.apply_urls(keyed)
            breaker = CircuitBreaker(
                account.venue_name, failure_threshold=s.breaker_failures,
                reset_after_s=s.breaker_reset_s,
            )  # fmt: skip
            secrets = tuple(v for f in SECRET_FIELDS if (v := getattr(s, f)))
            client = ExchangeClient(
                account.name, keyed, breaker, s.timeout_ms / 1000, secrets=secrets
            )
            account.client = client
            account.venue = CcxtVenue(
                account.name, client, journal=self, rules_of=d.engine.instruments.get,
                price_of=d.engine.price_usd, clock=d.engine.clock, settings=s, alert=self.alert,
            )  # fmt: skip
            d.runtime.venues[account.venue_name] = GuardedVenue(account.venue, s)
            log.info(
                "exchange account ready",
                extra={"venue": account.venue_name, "exchange": s.exchange, "sandbox": s.sandbox,
                       "trading": s.trading},
            )  # fmt: skip
        self._refresh_health()

    # -- markets ---------------------------------------------------------------------------

    async def load_markets(self) -> None:
        """Load every exchange's markets (bounded by `markets_timeout_s`) into the registry.
        Raises ExchangeStartFailed naming the exchange when one does not load."""
        for exchange in self.exchanges.values():
            try:
                await self._load(exchange, reload=False)
            except VenueError as exc:
                raise ExchangeStartFailed(
                    f"exchange {exchange.id}: markets did not load ({exc.message}); "
                    "check [venues.ccxt.<account>] urls/sandbox and the network",
                    {"exchange": exchange.id},
                ) from None

    async def _load(self, exchange: _Exchange, reload: bool) -> None:
        """One load of `exchange`'s markets, shared with its accounts' and stream's objects.
        Raises ExchangeFailure (the mapped CCXT error or a timeout)."""
        from tradingd.adapters.venues.ccxt.errors import map_exceptions

        started = time.monotonic()
        try:
            with map_exceptions(exchange.id, self._secrets()):
                async with asyncio.timeout(exchange.settings.markets_timeout_s):
                    markets = await exchange.rest.load_markets(reload)
        except VenueError as exc:
            exchange.last_error = exc.message
            raise
        for account in self.accounts.values():
            if account.client is not None and account.settings.exchange == exchange.id:
                account.client.exchange.set_markets_from_exchange(exchange.rest)
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

    def apply_rules(self) -> int:
        """The loaded markets' order-size rules into the engine (one transition), each at the
        decimals its instrument already has (restored positions hold amounts at that scale).
        Returns how many markets' rules changed."""
        engine = self.daemon.engine
        rules = [
            (instrument_id(x.id, symbol), market, x.rest.precisionMode)
            for x in self.exchanges.values()
            for symbol, market in x.markets.items()
            if tradable_market(market)
        ]

        def set_all() -> int:
            changed = 0
            for token, market, mode in rules:
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

        return self.daemon.runtime.apply(set_all) if rules else 0

    async def _reload_loop(self, exchange: _Exchange) -> None:
        period = exchange.settings.markets_reload_s
        while True:
            await asyncio.sleep(period)
            try:
                await self._load(exchange, reload=True)
            except VenueError as exc:
                log.warning(
                    "exchange markets reload failed: the last rules stay",
                    extra={"exchange": exchange.id, "reason": exc.message},
                )
                continue
            changed = self.apply_rules()
            if changed:
                log.info("market rules changed", extra={"exchange": exchange.id, "markets": changed})  # fmt: skip

    # -- feeds and tasks -------------------------------------------------------------------

    def start_feeds(self) -> None:
        """One ticker feed per exchange (source: its id), pricing the engine's watched tokens."""
        from tradingd.adapters.feeds.ccxt_ticker import CcxtTickerFeed

        d = self.daemon
        for exchange in self.exchanges.values():
            s = exchange.settings
            feed = CcxtTickerFeed(
                exchange.id, exchange.ws, exchange.rest, d.engine.watched_tokens,
                poll_interval_ms=s.ticker_poll_ms, stale_after_ms=s.ticker_stale_ms,
                timeout_s=s.timeout_ms / 1000, max_symbols=s.ticker_max_symbols,
                use_websocket=s.ticker_websocket,
            )  # fmt: skip
            d.start_feed(feed)

    def start_tasks(self) -> None:
        d = self.daemon
        for exchange in self.exchanges.values():
            if exchange.settings.markets_reload_s > 0:
                d.spawn(self._reload_loop(exchange), f"exchange-markets-{exchange.id}")
        if self.accounts:
            d.spawn(self._watch(), "exchange-watch")

    async def _watch(self) -> None:
        """Refresh /health; an account whose API came back (its breaker closed again)
        is reconciled again."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for account in self.accounts.values():
                if account.client is None:
                    continue
                state = account.client.breaker.state
                came_back = account.breaker_state != "closed" and state == "closed"
                account.breaker_state = state
                if came_back:
                    log.info("exchange account reachable again", extra={"venue": account.venue_name})  # fmt: skip
                    await self.reconcile(account.name)
            self._refresh_health()

    async def close(self) -> None:
        objects = [a.client.exchange for a in self.accounts.values() if a.client is not None]
        for exchange in self.exchanges.values():
            objects += [exchange.rest] + ([exchange.ws] if exchange.ws is not None else [])
        for obj in objects:
            try:
                await obj.close()
            except Exception:
                log.exception("closing an exchange object failed")

    # -- the journal (CcxtVenue's ExchangeJournal) -----------------------------------------

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        """Record the request on its order (a transition: the store hears it first) and return
        once the store holds it. Raises when it does not in time."""
        d = self.daemon
        d.runtime.apply(d.engine.on_exchange_order_sent, order_id, sent)
        if d.store is not None:
            await d.store.flushed(JOURNAL_TIMEOUT_S)

    # -- start-up --------------------------------------------------------------------------

    async def resolve_recovered(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) until every restored order with a recorded request has it
        resolved (found and settled, or proven not placed), before the control port opens."""
        d = self.daemon
        waits = []
        for oid, task in d.runtime.in_flight.items():
            order = d.engine.orders.get(oid)
            account = self._account_of(order)
            if order is None or order.exchange is None or account is None or account.venue is None:
                continue
            waits.append(asyncio.ensure_future(_first_of(account.venue.resolution(oid), task)))
        if not waits:
            return
        log.info("resolving recorded exchange orders", extra={"orders": len(waits)})
        _done, pending = await asyncio.wait(waits, timeout=timeout_s)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning(
                "recorded exchange orders still unresolved when the port opens",
                extra={"orders": len(pending), "timeout_s": timeout_s},
            )

    def _account_of(self, order: Order | None) -> _Account | None:
        if order is None or not order.venue.startswith("ccxt:"):
            return None
        return self.accounts.get(order.venue.removeprefix("ccxt:"))

    async def reconcile(self, only: str | None = None) -> None:
        """Compare each account's balances on the exchange with its agents' books (quote
        totals, open positions' base amounts; a shortfall beyond one amount step per position
        is a mismatch): reported in /health and as an alert `exchange_book_mismatch`, never
        "fixed"."""
        for account in self.accounts.values():
            if account.venue is None or (only is not None and account.name != only):
                continue
            started = time.monotonic()
            try:
                totals = await account.venue.balances()
            except TradingdError as exc:
                account.reconciliation = {"status": "unknown", "reason": exc.message[:200]}
                log.warning("exchange reconciliation failed", extra={"venue": account.venue_name, "reason": exc.message[:200]})  # fmt: skip
                continue
            books = booked_amounts(self.daemon.engine, account.venue_name)
            report = compare_books(totals, books)
            short = sorted(code for code, entry in report.items() if entry["short"])
            if short:
                self.alert(
                    "exchange_book_mismatch",
                    f"exchange account {account.name} holds less than its agents' book",
                    {"venue": account.venue_name, "currencies_short": short,
                     "balances": {c: report[c] for c in short}},
                )  # fmt: skip
            account.reconciliation = {
                "status": "mismatch" if short else "ok",
                "balances": report,
                "checked_in_ms": round((time.monotonic() - started) * 1000),
            }
        self._refresh_health()

    # -- alerts and health -----------------------------------------------------------------

    def alert(self, code: str, message: str, details: dict[str, object]) -> None:
        log.warning(message, extra={"alert": code, **{k: str(v) for k, v in details.items()}})
        self.daemon.publish(
            [ev.Alert(ts=self.daemon.engine.clock(), code=code, message=message, details=details)]
        )

    def _secrets(self) -> tuple[str, ...]:
        return tuple(
            v
            for a in self.accounts.values()
            for f in SECRET_FIELDS
            if (v := getattr(a.settings, f))
        )

    def health(self, account: _Account) -> dict[str, Any]:
        """components.venues."ccxt:<account>" of /health."""
        exchange = self.exchanges.get(account.settings.exchange)
        breaker = account.client.breaker.health() if account.client is not None else {}
        in_flight = sum(
            1 for o in self.daemon.engine.orders.values() if o.venue == account.venue_name
        )
        status = "ok"
        if breaker.get("state", "closed") != "closed" or account.reconciliation.get("status") == "mismatch":  # fmt: skip
            status = "degraded"
        markets: dict[str, Any] = {"status": "unknown"}
        if exchange is not None:
            markets = {
                "status": "stale" if exchange.last_error else ("ok" if exchange.loaded_at else "unknown"),
                "tradable": exchange.tradable, "loaded_at": exchange.loaded_at,
                "last_error": exchange.last_error,
            }  # fmt: skip
        return {
            "status": status,
            "exchange": account.settings.exchange,
            "sandbox": account.settings.sandbox,
            "trading": account.settings.trading,
            "breaker": breaker,
            "orders_in_flight": in_flight,
            "markets": markets,
            "reconciliation": account.reconciliation,
        }

    def _refresh_health(self) -> None:
        venues = self.daemon.components.setdefault("venues", {})
        for account in self.accounts.values():
            venues[account.venue_name] = self.health(account)


async def _first_of(resolved: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Return when the recorded request is resolved or the order's task ended (first)."""
    wait = asyncio.ensure_future(resolved.wait())
    try:
        await asyncio.wait([wait, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        wait.cancel()
