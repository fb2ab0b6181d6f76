"""No intent is ever placed twice on the exchange (hypothesis): one buy or sell carried through the
CCXT venue against the fake Binance while answers time out after acceptance, connections drop,
gateways answer 5xx before or after executing, rate limits, bans and duplicate answers come,
orders fill in part (the rest expiring or left open, then cancelled), lookups
say "Order does not exist." for an order that exists (fewer times than the venue asks), and the
daemon crashes between recording and sending or while the answer is in flight and restarts with
a new venue object given the order's recorded request. The fill, when there is one, is the
fake's order to the atomic unit."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure
from tradingd.engine.model import ExchangeSubmission, Fill

from tests.integration.test_ccxt_venue import TD, Journal, Rig, ccxt_rig, order

LOOKUPS = 4  # the venue's order_lookup_attempts: the exchange shows an order within these
ROUNDS = 6  # executions of one order (the runtime's retries and restarts), at most


class Crash(BaseException):
    """The process dies here (kill -9): nothing after it runs."""


class CrashingJournal(Journal):
    """Records the request durably, then the process dies before it is sent (once)."""

    crash_next: bool = False

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        await super().exchange_order_sent(order_id, sent)
        if self.crash_next:
            self.crash_next = False
            raise Crash


FAULTS = st.sampled_from(
    ["none", "hang", "drop", "fail_after", "fail_before", "rate_limit", "ban", "duplicate",
     "partial", "left_open", "crash_sent", "crash_in_flight"]
)  # fmt: skip


def _inject(rig: Rig, journal: CrashingJournal, fault: str) -> None:
    fake = rig.fake
    if fault == "hang" or fault == "crash_in_flight":
        fake.accept_then_hang(delay_s=1.5)
    elif fault == "drop":
        fake.accept_then_drop()
    elif fault == "fail_after":
        fake.accept_then_fail(503)
    elif fault == "fail_before":
        fake.server_error(503, path="/api/v3/order")
    elif fault == "rate_limit":
        fake.rate_limit(retry_after_s=0, path="/api/v3/order")
    elif fault == "ban":
        fake.ban(retry_after_s=0, path="/api/v3/order")
    elif fault == "duplicate":
        fake.duplicate_next()
    elif fault == "partial":
        fake.fill_next("0.5")  # the rest expires
    elif fault == "left_open":
        fake.fill_next("0.5", status="PARTIALLY_FILLED")  # the rest stays open: cancelled
    elif fault == "crash_sent":
        journal.crash_next = True


async def _until_accepted(rig: Rig, oid: str, before: int) -> None:
    for _ in range(200):  # bounded: 2 s
        if len(rig.orders(oid)) > before:
            return
        await asyncio.sleep(0.01)


async def _scenario(side: str, faults: list[str], hidden: int, restarts: list[bool]) -> None:
    async with ccxt_rig(timeout_s=0.3, order_lookup_attempts=LOOKUPS) as rig:
        journal = CrashingJournal(rig.fake)
        rig.journal = journal
        oid = "ord_p"
        amount = 650_000_000 if side == "buy" else 1_000_123
        venue = rig.venue()
        fill: Fill | None = None
        failed: ExchangeFailure | None = None
        rig.fake.hide_orders(hidden)
        for round_ in range(ROUNDS):
            fault = faults[round_] if round_ < len(faults) else "none"
            _inject(rig, journal, fault)
            restart = fault.startswith("crash") or (round_ < len(restarts) and restarts[round_])
            if restart:
                venue = rig.venue()
            the_order = order(side, amount, oid=oid, exchange=journal.last(oid))
            task = asyncio.ensure_future(venue.execute(the_order))
            if fault == "crash_in_flight":
                await _until_accepted(rig, oid, len(rig.orders(oid)))
                task.cancel()
            try:
                fill = await task
                break
            except (Crash, asyncio.CancelledError):
                venue = rig.venue()  # the process died: a new one starts from the journal
                continue
            except ExchangeFailure as exc:
                failed = exc
                if not exc.transient:
                    break
        placed = rig.orders(oid)
        assert len(placed) <= 1, [o.client_order_id for o in placed]
        if fill is None:
            # a failed order leaves nothing filled behind on the exchange
            assert all(o.executed_qty == 0 for o in placed), (failed, placed)
            return
        (exchange_order,) = placed
        assert fill.venue_ref == str(exchange_order.order_id)
        base = exchange_order.executed_qty
        cost = exchange_order.cumm_quote
        fee = sum((t.commission for t in exchange_order.trades), Decimal(0))
        if side == "buy":
            assert fill.amount_out == int((base - fee).scaleb(TD))
            assert fill.amount_in == int(cost.scaleb(6))
        else:
            in_full = int(base.scaleb(TD)) >= amount - amount % 1_000  # the step's floor was sent
            assert fill.amount_in == (amount if in_full else int(base.scaleb(TD)))
            assert fill.amount_out == int((cost - fee).scaleb(6))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    side=st.sampled_from(["buy", "sell"]),
    faults=st.lists(FAULTS, min_size=1, max_size=4),
    hidden=st.integers(0, LOOKUPS - 1),
    restarts=st.lists(st.booleans(), max_size=4),
)
def test_no_intent_is_ever_placed_twice(
    side: str, faults: list[str], hidden: int, restarts: list[bool]
) -> None:
    asyncio.run(_scenario(side, faults, hidden, restarts))
