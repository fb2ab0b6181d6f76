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
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradingd.adapters.app.exchange_books import booked_amounts, compare_books, whole_text
from tradingd.adapters.app.exchange_markets import ExchangeMarkets, PublicExchange
from tradingd.adapters.app.exchange_settings import SECRET_FIELDS, ExchangeAccountSettings
from tradingd.adapters.app.exchange_settings import exchange_accounts as by_exchange
from tradingd.adapters.app.resolutions import await_resolutions
from tradingd.adapters.timestamps import iso_ms
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.engine import events as ev
from tradingd.engine.errors import Conflict, TradingdError, Unavailable, ValidationError, VenueError
from tradingd.engine.model import Agent, ExchangeSubmission, Order

if TYPE_CHECKING:  # CCXT takes ~1 s to import: only a daemon with accounts pays it
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.adapters.venues.ccxt.client import ExchangeClient
    from tradingd.adapters.venues.ccxt.venue import CcxtVenue

log = logging.getLogger("tradingd.exchanges")
JOURNAL_TIMEOUT_S = 5.0  # a request not durable within this is not sent
WATCH_INTERVAL_S = 1.0  # health refresh; breaker and feed reconnects checked this often
RECONCILE_RETRY_S = 30.0  # a comparison the exchange did not answer is tried again after this


class _Account:
    def __init__(self, name: str, settings: ExchangeAccountSettings) -> None:
        self.name = name
        self.venue_name = f"ccxt:{name}"
        self.settings = settings
        self.client: ExchangeClient | None = None
        self.venue: CcxtVenue | None = None
        self.reconciliation: dict[str, Any] = {"status": "unknown", "reason": "not run yet"}
        self.breaker_state = "closed"
        self.reconcile_due = False  # a comparison waits for the account's orders to settle
        self.compared_at = 0.0  # monotonic s of the last attempt


class ExchangeAccounts:
    """Owned by the Daemon: `start()` builds and registers the venues (in the event loop,
    before recovery: restored orders resume on them), `load_markets()` before the store opens,
    `apply_rules()` between the restore and the resumed orders, `start_feeds()`,
    `resolve_recovered()` and `reconcile()` before the control port opens, `start_tasks()`
    (markets reload, reconnect watch), `close()` at shutdown."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings.venues.ccxt
        self.exchanges: dict[str, PublicExchange] = {}
        self.accounts: dict[str, _Account] = {
            name: _Account(name, s) for name, s in sorted(self.settings.items())
        }
        self.markets = ExchangeMarkets(daemon, self.exchanges, self._keyed_objects, self._secrets())

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
            self.exchanges[exchange_id] = PublicExchange(exchange_id, self.settings[names[0]])
            d.markets.configure(exchange_id)
        for account in self.accounts.values():
            s = account.settings
            if not (s.api_key and s.secret):
                # Market data only: its markets and tickers serve paper agents and the checks
                # of its instrument ids; nothing can be sent or compared without keys.
                log.warning(
                    "exchange account without API keys: market data only, no orders",
                    extra={"venue": account.venue_name, "exchange": s.exchange},
                )
                continue
            keyed = getattr(ccxt_async, s.exchange)(s.ccxt_config())
            s.apply_urls(keyed)
            breaker = CircuitBreaker(
                account.venue_name, failure_threshold=s.breaker_failures,
                reset_after_s=s.breaker_reset_s,
            )  # fmt: skip
            secrets = tuple(v for f in SECRET_FIELDS if (v := getattr(s, f)))
            # Our bound covers CCXT's rate-limiter queue too: a second beyond CCXT's own timeout.
            client = ExchangeClient(
                account.name, keyed, breaker, s.timeout_ms / 1000 + 1, secrets=secrets
            )
            account.client = client
            account.venue = CcxtVenue(
                account.name, client, journal=self, rules_of=d.engine.instruments.get,
                price_of=d.engine.price_usd, clock=d.engine.clock, settings=s, alert=self.alert,
            )  # fmt: skip
            d.runtime.venues[account.venue_name] = account.venue
            log.info(
                "exchange account ready",
                extra={"venue": account.venue_name, "exchange": s.exchange, "sandbox": s.sandbox,
                       "trading": s.trading},
            )  # fmt: skip
        self._refresh_health()

    # -- markets ---------------------------------------------------------------------------

    async def load_markets(self) -> None:
        """Load every exchange's markets (bounded by `markets_timeout_s`) into the registry. An
        exchange whose markets do not load does not stop the daemon (the other venues' exits
        must keep running): it is alerted (`exchange_markets_unavailable`), shown in /health,
        its instruments are refused with a 503 and its orders wait, and its markets are loaded
        again every `markets_retry_s` until they come (start_tasks)."""
        for exchange in self.exchanges.values():
            try:
                await self.markets.load(exchange, reload=False)
            except VenueError as exc:
                self.alert(
                    "exchange_markets_unavailable",
                    f"exchange {exchange.id}: markets did not load ({exc.message}); its "
                    "instruments wait until they do. Check [venues.ccxt.<account>] urls/sandbox "
                    "and the network",
                    {"exchange": exchange.id},
                )

    def apply_rules(self) -> int:
        """The loaded markets' order-size rules into the engine (ExchangeMarkets.apply_rules)."""
        return self.markets.apply_rules()

    def _keyed_objects(self, exchange_id: str) -> list[Any]:
        return [
            a.client.exchange
            for a in self.accounts.values()
            if a.client is not None and a.settings.exchange == exchange_id
        ]

    # -- feeds and tasks -------------------------------------------------------------------

    def start_feeds(self) -> None:
        """One ticker feed per exchange (source: its id), pricing the engine's watched tokens."""
        if not self.exchanges:
            return  # importing ccxt costs seconds of start-up: only when an exchange is set
        from tradingd.adapters.feeds.ccxt_ticker import CcxtTickerFeed

        d = self.daemon
        for exchange in self.exchanges.values():
            s = exchange.settings
            feed = CcxtTickerFeed(
                exchange.id, exchange.ws, exchange.rest, exchange.watched(d.watched_tokens),
                poll_interval_ms=s.ticker_poll_ms, stale_after_ms=s.ticker_stale_ms,
                timeout_s=s.timeout_ms / 1000, max_symbols=s.ticker_max_symbols,
                use_websocket=s.ticker_websocket,
            )  # fmt: skip
            exchange.feed = feed
            d.start_feed(feed)

    def start_tasks(self) -> None:
        d = self.daemon
        for exchange in self.exchanges.values():
            if exchange.settings.markets_reload_s > 0 or not exchange.markets:
                d.spawn(self.markets.reload_loop(exchange), f"exchange-markets-{exchange.id}")
        if self.accounts:
            d.spawn(self._watch(), "exchange-watch")

    async def _watch(self) -> None:
        """Refresh /health, and compare an account's balances again when it reconnects: its
        API's breaker left "open" (the comparison is the half-open trial), its exchange's
        ticker stream reconnected, a comparison waited for orders to settle, or the last one
        got no answer (retried every RECONCILE_RETRY_S)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            for exchange in self.exchanges.values():
                if exchange.feed is not None:
                    resumes = exchange.feed.counters().get("stream_resumes", 0)
                    if resumes > exchange.resumes_seen:
                        exchange.resumes_seen = resumes
                        self._due(exchange.id)
            now = time.monotonic()
            for account in self.accounts.values():
                if account.client is None:
                    continue
                state = account.client.breaker.state
                if state == "half_open" or (account.breaker_state == "open" and state == "closed"):
                    account.reconcile_due = True
                account.breaker_state = state
                unanswered = account.reconciliation.get("status") == "unknown"
                if unanswered and now - account.compared_at >= RECONCILE_RETRY_S:
                    account.reconcile_due = True
                if account.reconcile_due and not self._orders_in_flight(account):
                    await self.reconcile(account.name)
            self._refresh_health()

    def _due(self, exchange_id: str) -> None:
        for account in self.accounts.values():
            if account.settings.exchange == exchange_id:
                account.reconcile_due = True

    def _orders_in_flight(self, account: _Account) -> bool:
        return any(o.venue == account.venue_name for o in self.daemon.engine.orders.values())

    async def close(self) -> None:
        """Release every CCXT object's sessions (the accounts', then the exchanges')."""
        closers = [a.client.close for a in self.accounts.values() if a.client is not None]
        closers += [x.close for x in self.exchanges.values()]
        for close in closers:
            try:
                await close()
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
            waits.append((account.venue.resolution(oid), task))
        await await_resolutions(waits, timeout_s, "exchange orders")

    def _account_of(self, order: Order | None) -> _Account | None:
        return self._account_of_venue(order.venue) if order is not None else None

    async def reconcile(self, only: str | None = None) -> None:
        """Compare each account's balances on the exchange with its agents' books (quote
        totals, open positions' base amounts; a shortfall beyond one amount step per position
        is a mismatch): reported in /health and as an alert `exchange_book_mismatch`, never
        "fixed". An account with orders in flight (before or after the balance read) is
        compared once they settle (the watch task): money in motion is on neither side yet."""
        for account in self.accounts.values():
            if account.venue is None or (only is not None and account.name != only):
                continue
            account.reconcile_due = True
            if self._orders_in_flight(account):
                if account.reconciliation.get("status") == "unknown":
                    account.reconciliation = {"status": "unknown", "reason": "orders in flight: compared once they settle"}  # fmt: skip
                continue
            started = account.compared_at = time.monotonic()
            try:
                totals = await account.venue.balances()
            except TradingdError as exc:
                account.reconciliation = {"status": "unknown", "reason": exc.message[:200]}
                log.warning("exchange reconciliation failed", extra={"venue": account.venue_name, "reason": exc.message[:200]})  # fmt: skip
                continue
            if self._orders_in_flight(account):
                continue
            account.reconcile_due = False
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

    async def check_allocation(self, agent: Agent, asset: str, amount: int) -> None:
        """An exchange agent's deposit allocates quote its account already holds: the
        account's total of that currency must cover what the book allocates to its agents
        (balances and open positions) plus `amount` (atomic, at the agent's quote decimals).
        Raises ValidationError `$.asset` (not the agent's quote), Conflict (the account does not
        hold it), Unavailable (the exchange did not answer)."""
        account = self._account_of_venue(agent.venue)
        if account is None or account.venue is None:
            raise ValidationError(f"no exchange account {agent.venue!r}", "$.venue")
        code = agent.quote.upper()
        if asset.upper() != code:
            raise ValidationError(f"an exchange agent is allocated its quote ({code}) only", "$.asset")  # fmt: skip
        try:
            totals = await account.venue.balances()
        except VenueError as exc:
            raise Unavailable(
                f"{account.venue_name} did not answer: its balance is unknown"
            ) from exc
        held = totals.get(code, Decimal(0))
        booked = booked_amounts(self.daemon.engine, account.venue_name).get(code)
        free = held - (booked.amount if booked is not None else 0)
        if Decimal(amount).scaleb(-agent.quote_decimals) > free:
            raise Conflict(
                f"the exchange account does not hold that much {code} beyond what its agents "
                "are allocated",
                {"venue": account.venue_name, "unallocated": whole_text(max(free, Decimal(0))), "exchange": whole_text(held)},
            )  # fmt: skip

    def _account_of_venue(self, venue: str) -> _Account | None:
        return self.accounts.get(venue.removeprefix("ccxt:")) if venue.startswith("ccxt:") else None

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
        banned_until = account.venue.banned_until if account.venue is not None else 0
        if banned_until > self.daemon.engine.clock():
            status = "degraded"  # the exchange banned the IP: nothing goes until then
        if exchange is not None and not exchange.markets:
            status = "down"  # no markets: nothing of the exchange can be checked or sized
        markets = exchange.health() if exchange is not None else {"status": "unknown"}
        if account.venue is None:  # no keys: market data only
            return {
                "status": "down" if exchange is not None and not exchange.markets else "ok",
                "exchange": account.settings.exchange,
                "mode": "market_data",
                "markets": exchange.health() if exchange is not None else {"status": "unknown"},
            }
        return {
            "status": status,
            "exchange": account.settings.exchange,
            "mode": "trading" if account.settings.trading else "disabled",
            "sandbox": account.settings.sandbox,
            "trading": account.settings.trading,
            "breaker": breaker,
            "orders_in_flight": in_flight,
            "banned_until": iso_ms(banned_until) if banned_until else None,
            "markets": markets,
            "reconciliation": account.reconciliation,
        }

    def health_by_venue(self) -> dict[str, dict[str, Any]]:
        """ "ccxt:<account>" -> its health now (for /health to read live)."""
        return {a.venue_name: self.health(a) for a in self.accounts.values()}

    def _refresh_health(self) -> None:
        """Into `components.venues` (read by /health): at most WATCH_INTERVAL_S old."""
        self.daemon.components.setdefault("venues", {}).update(self.health_by_venue())
