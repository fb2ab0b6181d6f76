"""The CCXT venue of one exchange account (`ccxt:<account>`): market orders under a client order
id recorded durably (ExchangeOrderSent) BEFORE the request is sent, so a retry or a restart never
places an order twice. A recorded request is resolved first, by looking its client order id up
(several times: exchanges are eventually consistent, and a real report had a stop order filled
while the bot got a 404 for it); only a request proven absent lets another be sent. A timeout or
a lost connection after the request left is resolved the same way, never by resending. The flow:
DESIGN.md "Execution"; the wire: CCXT through client.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Protocol

from msgspec import Struct
from tradingd.adapters.venues.ccxt.client import ExchangeClient
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure
from tradingd.adapters.venues.ccxt.fills import (
    ExchangeOrder,
    OrderRequest,
    order_fill,
    order_request,
    whole,
)
from tradingd.engine.assets import market_parts
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import ExchangeSubmission, Fill, Order

log = logging.getLogger("tradingd.venues.ccxt")
# How far before a request its symbol's order list is read for it (clock skew, queueing).
LIST_BACK_MS = 60_000
Alerter = Callable[[str, str, dict[str, object]], None]  # code, message, details


class ExchangeJournal(Protocol):
    """Where an order's request is recorded before it is sent (the daemon:
    Engine.on_exchange_order_sent, then the store's write-through)."""

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        """Return once `sent` is durable; raise (any Exception) when it cannot be made so."""
        ...


class CcxtVenueSettings(Protocol):
    """What the venue reads of its account's settings (times in ms)."""

    order_lookup_attempts: int  # "not found" answers before a request counts as not placed
    # ... and no sooner than this long after it was sent: an exchange shows an order late
    # (eventual consistency), but refuses a request it did not take within its receive window
    # (Binance's recvWindow; ccxt sends 10 s): after that a request not seen was not placed.
    order_not_placed_after_ms: int
    order_lookup_interval_ms: int  # between lookups, and between polls of an open order
    open_order_wait_ms: int  # an accepted order still open after this is cancelled
    max_buy_attempts: int  # requests that reached the exchange (maybe) for one buy
    max_sell_attempts: int  # ... for one sell
    max_transient_failures: int  # refused requests (rate limit, clock skew) per execute
    retry_backoff_ms: int  # the first wait after a failure; doubles per failure
    max_retry_wait_ms: int  # the longest wait, a Retry-After included
    trading: bool  # False: nothing is sent (buys fail, sells wait), lookups still run

    def max_order_cost(self) -> Decimal | None:
        """The most one buy may spend, quote currency (whole units); None: no cap."""
        ...


class _Memory(Struct):
    """This process's knowledge of an order's last request: `unplaced` True when it is known
    never to have reached the exchange (refused before processing)."""

    sent: ExchangeSubmission
    unplaced: bool = False


class CcxtVenue:
    """A `Venue` (engine/ports.py) for the agents of one exchange account: `name` is
    "ccxt:<account>", the agents' `venue`. `execute` retries inside (buys within their expiry,
    at most `max_buy_attempts` requests; sells at most `max_sell_attempts`) and raises
    ExchangeFailure whose message is its reason: transient (the runtime may try the order
    again; its recorded request is resolved first) or final."""

    in_process = False

    def __init__(
        self,
        account: str,
        client: ExchangeClient,
        *,
        journal: ExchangeJournal,
        rules_of: Callable[[str], InstrumentRules | None],
        price_of: Callable[[str], float | None],
        clock: Callable[[], int],
        settings: CcxtVenueSettings,
        alert: Alerter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.account = account
        self.name = f"ccxt:{account}"
        self.client = client
        self.journal = journal
        self.settings = settings
        self._rules_of = rules_of
        self._price_of = price_of
        self._clock = clock
        self._alert = alert
        self._sleep = sleep
        self._memory: dict[str, _Memory] = {}  # order id -> its last request, while in flight
        self._resolutions: dict[str, asyncio.Event] = {}
        # Epoch ms until which the exchange banned this account's IP (a 418 and its
        # Retry-After): /health shows the venue degraded until then.
        self.banned_until = 0

    def resolution(self, order_id: str) -> asyncio.Event:
        """Set once the request an order had recorded (before a restart) is resolved: filled,
        or proven not placed. The order may go on with new attempts after that."""
        return self._resolutions.setdefault(order_id, asyncio.Event())

    def execute_now(self, order: Order) -> Fill:
        raise ExchangeFailure("not_in_process", "not_in_process", transient=False)

    async def reconcile(self) -> list[Fill]:
        """Recorded requests are resolved by `execute` on the restored orders
        (Runtime.resume_orders): nothing is settled outside an order."""
        return []

    async def balances(self) -> dict[str, Decimal]:
        """The account's total balance per currency (whole units), for the daemon's comparison
        with the agents' books. Raises ExchangeFailure."""
        return await self.client.balances()

    # -- one order ---------------------------------------------------------------------------

    async def execute(self, order: Order) -> Fill:
        """Carry `order` to a fill (see the class). Raises ExchangeFailure."""
        try:
            fill = await self._execute(order)
        except ExchangeFailure as exc:
            if not exc.transient:
                self._memory.pop(order.id, None)
            raise self._out(order, exc) from None
        self._memory.pop(order.id, None)
        return fill

    async def _execute(self, order: Order) -> Fill:
        recorded, unplaced = self._recorded(order)
        attempt = 0
        earlier: tuple[str, ...] = ()
        if recorded is not None:
            attempt = recorded.attempt
            earlier = recorded.earlier
            if not unplaced:
                fill = await self._resolve_recorded(order, recorded)
                self.resolution(order.id).set()
                if fill is not None:
                    return fill
                earlier = (*earlier, recorded.client_order_id)
        self.resolution(order.id).set()
        reached = len(earlier)  # requests that may have reached the exchange, all proven void
        refused = 0
        last = "no_attempt"
        while True:
            self._check_expiry(order, last)
            if reached >= self._max_attempts(order):
                raise ExchangeFailure(last, last, transient=False)
            if self.client.breaker.state == "open":
                raise ExchangeFailure("circuit_open", "circuit_open", transient=True)
            request = await self._request(order)
            attempt += 1
            sent = ExchangeSubmission(
                client_order_id=self.client.client_ids.client_order_id(order.id, attempt),
                attempt=attempt, account=self.account, symbol=request.symbol,
                sent_at=self._clock(), amount=request.amount, cost=request.cost, earlier=earlier,
            )  # fmt: skip
            await self._record(order, sent)
            try:
                placed = await self._send(order, request, sent.client_order_id)
            except ExchangeFailure as exc:
                last = exc.reason
                self._log_failure(order, sent, exc)
                if exc.maybe_placed:
                    fill = await self._look_up(order, sent)
                    if fill is not None:
                        return fill
                    reached, earlier = reached + 1, (*earlier, sent.client_order_id)
                    await self._sleep(self._backoff_s(reached))
                    continue
                self._memory[order.id].unplaced = True
                if exc.alert:
                    self._alert_failure(order, exc)
                if not exc.transient:
                    raise
                refused += 1
                if exc.reason in ("ip_banned", "circuit_open") or (
                    refused >= self.settings.max_transient_failures
                ):
                    raise
                await self._wait(order, max(self._backoff_s(refused), exc.retry_after_s or 0))
                continue
            fill = await self._settle(order, sent, placed)
            if fill is not None:
                if earlier:
                    await self._check_late(order, sent, earlier)
                return fill
            last = "not_filled"
            reached, earlier = reached + 1, (*earlier, sent.client_order_id)
            await self._sleep(self._backoff_s(reached))

    async def _check_late(
        self, order: Order, sent: ExchangeSubmission, earlier: tuple[str, ...]
    ) -> None:
        """After a new request filled: did one of the order's earlier requests, counted as not
        placed, show up after all? Then the intent was executed twice: alerted (the first is
        booked; the account and the book differ by the other), never hidden."""
        try:
            recent = await self.client.recent_orders(sent.symbol, sent.sent_at - LIST_BACK_MS)
        except ExchangeFailure as exc:
            self._log_failure(order, sent, exc)
            return
        late = [o for o in recent if o.client_order_id in earlier and o.filled > 0]
        if late:
            self._alert(
                "duplicate_exchange_orders",
                f"order {order.id}: an earlier request counted as not placed filled after all; "
                "the account holds what the book does not",
                {"order_id": order.id, "agent_id": order.agent_id,
                 "venue_refs": [o.id for o in late],
                 "client_order_ids": [o.client_order_id for o in late]},
            )  # fmt: skip

    def _recorded(self, order: Order) -> tuple[ExchangeSubmission | None, bool]:
        """The order's last request (the newer of what the order carries and what this
        process sent) and whether it is known never to have been placed."""
        mine = self._memory.get(order.id)
        theirs = order.exchange
        if mine is not None and (theirs is None or mine.sent.attempt >= theirs.attempt):
            return mine.sent, mine.unplaced
        return theirs, False

    def _max_attempts(self, order: Order) -> int:
        s = self.settings
        return s.max_sell_attempts if order.side == "sell" else s.max_buy_attempts

    def _check_expiry(self, order: Order, last: str) -> None:
        if order.side == "buy" and order.expires_at is not None:
            if self._clock() > order.expires_at:
                reason = "expired" if last == "no_attempt" else last
                raise ExchangeFailure(reason, reason, transient=False)

    async def _wait(self, order: Order, seconds: float) -> None:
        """Sleep before another request; a buy whose expiry comes first gives up now."""
        seconds = min(seconds, self.settings.max_retry_wait_ms / 1000)
        if order.side == "buy" and order.expires_at is not None:
            if self._clock() + seconds * 1000 > order.expires_at:
                raise ExchangeFailure("expired", "expired", transient=False)
        await self._sleep(seconds)

    def _backoff_s(self, failures: int) -> float:
        s = self.settings
        wait_ms = s.retry_backoff_ms * 2 ** min(max(failures - 1, 0), 20)
        return min(wait_ms, s.max_retry_wait_ms) / 1000

    # -- one request -------------------------------------------------------------------------

    async def _request(self, order: Order) -> OrderRequest:
        """What the next attempt sends (fills.order_request), with the account's switches: no
        trading (a buy fails, a sell waits: transient), a buy above `max_order_cost()`.
        Raises ExchangeFailure."""
        s = self.settings
        if not s.trading:
            reason = "trading_disabled"
            raise ExchangeFailure(reason, reason, transient=order.side == "sell")
        cap = s.max_order_cost()
        if cap is not None and order.side == "buy":
            if whole(order.amount_in, order.quote_decimals) > cap:
                reason = "above_max_order_quote"
                raise ExchangeFailure(reason, reason, transient=False)
        price = self._price_of(order.token)
        last = Decimal(repr(price)) if price is not None and price > 0 else None
        by_cost = self.client.buys_by_cost
        if order.side == "buy" and not by_cost and last is None:
            parts = market_parts(order.token)
            if parts is not None:
                last = await self.client.last_price(f"{parts[1]}/{parts[2]}")
        return order_request(
            order, self._rules_of(order.token), exchange=self.client.exchange_id,
            buys_by_cost=by_cost, last_price=last,
        )  # fmt: skip

    async def _record(self, order: Order, sent: ExchangeSubmission) -> None:
        try:
            await self.journal.exchange_order_sent(order.id, sent)
        except Exception as exc:  # not durable: never send what a restart could not resolve
            # The order may carry it anyway (recorded, not flushed in time): its attempt number
            # is spent, and it is known not to have been sent.
            self._memory[order.id] = _Memory(sent, unplaced=True)
            log.warning(
                "exchange order not recorded: not sent",
                extra={"order_id": order.id, "agent_id": order.agent_id, "error": repr(exc)},
            )
            raise ExchangeFailure("not_durable", "not_durable", transient=True) from None
        self._memory[order.id] = _Memory(sent)

    async def _send(self, order: Order, request: OrderRequest, cid: str) -> ExchangeOrder:
        if request.cost:
            cost = whole(request.cost, order.quote_decimals)
            return await self.client.buy_by_cost(request.symbol, cost, cid)
        amount = whole(request.amount, order.token_decimals)
        return await self.client.market_order(request.symbol, request.side, amount, cid)

    # -- resolution --------------------------------------------------------------------------

    async def _resolve_recorded(self, order: Order, sent: ExchangeSubmission) -> Fill | None:
        """A request recorded before this call (a restart, a runtime retry): its client id is
        looked up, then once each of the earlier ones it names (each was proven absent, but an
        exchange may show an order late). Two found filled: alert, book the first."""
        fills: list[Fill] = []
        fill = await self._look_up(order, sent)
        if fill is not None:
            fills.append(fill)
        for cid in sent.earlier:
            try:
                found = await self.client.order_by_client_id(sent.symbol, cid)
            except ExchangeFailure as exc:
                self._log_failure(order, sent, exc)
                continue
            if found is not None:
                earlier = ExchangeSubmission(
                    client_order_id=cid, attempt=0, account=sent.account, symbol=sent.symbol,
                    sent_at=sent.sent_at, amount=sent.amount, cost=sent.cost,
                )  # fmt: skip
                late = await self._settle(order, earlier, found)
                if late is not None:
                    fills.append(late)
        if len(fills) > 1:
            self._alert(
                "duplicate_exchange_orders",
                f"order {order.id}: {len(fills)} exchange orders filled for one intent; the "
                "first is booked, the book and the account differ by the others",
                {"order_id": order.id, "agent_id": order.agent_id,
                 "venue_refs": [f.venue_ref for f in fills]},
            )  # fmt: skip
        return fills[0] if fills else None

    async def _look_up(self, order: Order, sent: ExchangeSubmission) -> Fill | None:
        """Settle `sent` from what a lookup by its client id finds; None once
        `order_lookup_attempts` answers said it does not exist AND `order_not_placed_after_ms`
        passed since it was sent (before that, "does not exist" may only mean "not shown yet").
        Raises ExchangeFailure `order_unresolved` (transient, alerted) when the exchange would
        not answer."""
        s = self.settings
        absent = errors = 0
        not_before = sent.sent_at + s.order_not_placed_after_ms
        while absent < s.order_lookup_attempts or self._clock() < not_before:
            try:
                found = await self.client.order_by_client_id(sent.symbol, sent.client_order_id)
            except ExchangeFailure as exc:
                self._log_failure(order, sent, exc)
                errors += 1
                if not exc.transient or errors >= s.order_lookup_attempts:
                    raise self._unresolved(order, sent, exc) from None
                wait_s = max(s.order_lookup_interval_ms, (exc.retry_after_s or 0) * 1000)
                await self._sleep(min(wait_s, s.max_retry_wait_ms) / 1000)
                continue
            if found is not None:
                return await self._settle(order, sent, found)
            absent += 1
            if absent < s.order_lookup_attempts or self._clock() < not_before:
                await self._sleep(s.order_lookup_interval_ms / 1000)
        # A last look in the symbol's order list, a second view of the exchange that may show
        # what the single-order lookup does not yet.
        try:
            recent = await self.client.recent_orders(sent.symbol, sent.sent_at - LIST_BACK_MS)
        except ExchangeFailure as exc:
            self._log_failure(order, sent, exc)
            raise self._unresolved(order, sent, exc) from None
        found = next((o for o in recent if o.client_order_id == sent.client_order_id), None)
        if found is not None:
            return await self._settle(order, sent, found)
        log.info(
            "exchange order not placed",
            extra={"order_id": order.id, "client_order_id": sent.client_order_id},
        )
        return None

    async def _settle(
        self, order: Order, sent: ExchangeSubmission, placed: ExchangeOrder
    ) -> Fill | None:
        """The fill of an order the exchange accepted, once it is final (an order still open
        after `open_order_wait_ms` is cancelled); None when it filled nothing. Raises
        ExchangeFailure `order_open` or `order_unresolved` (transient, alerted): it exists, so
        the order stays in flight until the exchange says what it did."""
        try:
            placed = await self._final(order, sent, placed)
        except ExchangeFailure as exc:
            if exc.reason == "order_open":
                raise
            raise self._unresolved(order, sent, exc) from None
        try:
            placed = await self.client.with_fees(sent.symbol, placed)
        except ExchangeFailure as exc:  # book the amounts; the fee stays unknown (alerted)
            self._alert(
                "fee_unknown",
                f"order {order.id}: the trades of {placed.id} could not be read ({exc.reason}); "
                "booked without their fee",
                {"order_id": order.id, "venue_ref": placed.id},
            )
        sent_amount = sent.amount if order.side == "sell" else None
        out = order_fill(
            order, placed, sent_amount=sent_amount, price_of=self._price_of, now=self._clock()
        )
        if out is None:
            return None
        if out.cut:
            self._alert(
                "fill_above_bound",
                f"order {order.id}: {out.cut} atomic units above max_amount_out not booked",
                {"order_id": order.id, "venue_ref": placed.id, "cut": out.cut},
            )
        if out.fill.charge and order.side == "buy":
            self._alert(
                "fill_above_reservation",
                f"order {order.id} spent {out.fill.charge} quote units more than its reservation",
                {"order_id": order.id, "over": out.fill.charge, "reserved": order.amount_in},
            )
        return out.fill

    async def _final(
        self, order: Order, sent: ExchangeSubmission, placed: ExchangeOrder
    ) -> ExchangeOrder:
        s = self.settings
        polls = max(1, s.open_order_wait_ms // max(s.order_lookup_interval_ms, 1))
        for _ in range(polls):
            if placed.final:
                return placed
            await self._sleep(s.order_lookup_interval_ms / 1000)
            placed = await self._refresh(sent, placed)
        if placed.final:
            return placed
        # A market order still open: cancel what is left, then book what filled (a cancel may
        # race a fill: the order read after the cancel says which won).
        try:
            await self.client.cancel(sent.symbol, placed.id)
        except ExchangeFailure as exc:  # refused (it may have just filled): the re-read says
            self._log_failure(order, sent, exc)
        placed = await self._refresh(sent, placed)
        if not placed.final:
            self._alert(
                "order_open",
                f"order {order.id}: exchange order {placed.id} stays open after a cancel",
                {"order_id": order.id, "venue_ref": placed.id},
            )
            raise ExchangeFailure("order_open", "order_open", transient=True)
        return placed

    async def _refresh(self, sent: ExchangeSubmission, placed: ExchangeOrder) -> ExchangeOrder:
        found = await self.client.order_by_client_id(sent.symbol, sent.client_order_id)
        return found if found is not None else placed

    # -- reporting ---------------------------------------------------------------------------

    def _unresolved(
        self, order: Order, sent: ExchangeSubmission, exc: ExchangeFailure
    ) -> ExchangeFailure:
        """The request may exist and the exchange will not say: alert, and fail transient so
        the order stays in flight and its next execution looks it up again."""
        self._alert(
            "order_unresolved",
            f"order {order.id}: request {sent.client_order_id} may exist on {self.name}; it "
            f"could not be looked up ({exc.reason})",
            {"order_id": order.id, "agent_id": order.agent_id,
             "client_order_id": sent.client_order_id, "reason": exc.reason},
        )  # fmt: skip
        return ExchangeFailure(
            "order_unresolved", str(exc), transient=True, retry_after_s=exc.retry_after_s
        )

    def _out(self, order: Order, exc: ExchangeFailure) -> ExchangeFailure:
        """The failure as the runtime reads it: the message is the stable reason."""
        if str(exc) == exc.reason:
            return exc
        return ExchangeFailure(
            exc.reason, exc.reason, transient=exc.transient, retry_after_s=exc.retry_after_s,
            details={"order_id": order.id, "detail": str(exc)},
        )  # fmt: skip

    def _log_failure(self, order: Order, sent: ExchangeSubmission, exc: ExchangeFailure) -> None:
        if exc.reason == "ip_banned":
            ban_ms = int((exc.retry_after_s or 60.0) * 1000)
            self.banned_until = max(self.banned_until, self._clock() + ban_ms)
        log.warning(
            "exchange call failed",
            extra={"order_id": order.id, "agent_id": order.agent_id, "venue": self.name,
                   "client_order_id": sent.client_order_id, "attempt": sent.attempt,
                   "reason": exc.reason, "detail": str(exc)},
        )  # fmt: skip

    def _alert_failure(self, order: Order, exc: ExchangeFailure) -> None:
        self._alert(
            exc.reason,
            f"order {order.id} on {self.name}: {exc}",
            {"order_id": order.id, "agent_id": order.agent_id, "venue": self.name,
             "retry_after_s": exc.retry_after_s},
        )  # fmt: skip
