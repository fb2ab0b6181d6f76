"""Resting entries through the public Engine API: a limit or stop buy rests with its quote
reserved, executes when a tick meets its price (in price-time priority when one tick meets
several), expires, can be cancelled, and survives a restart. SOL is priced at 150 USD
throughout, so one SOL buys 150 USD of the token: 166.666666 tokens at 0.9."""

from __future__ import annotations

import msgspec
import pytest
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.errors import ValidationError
from tradingd.engine.model import EntryCondition, Signal
from tradingd.engine.snapshot import EngineSnapshot, capture, restore

from tests.unit.harness import TOKENS, Clock, Harness
from tests.unit.invariants import check_invariants

SOL = 10**9
T, U = TOKENS[0], TOKENS[1]
EXACT = {"slippage_bps": 0, "fee_bps": 0}
ONE_SOL = {"sizing": {"mode": "fixed", "amount": str(SOL)}, "execution": EXACT}


def setup(cfg: dict | None = None, deposit: int = 10 * SOL) -> tuple[Harness, str]:
    """One agent buying 1 SOL a signal, T priced at 1.0 USD (fresh), U not priced yet."""
    h = Harness(Clock())
    h.sol(150.0)
    aid = h.agent({**ONE_SOL, **(cfg or {})}, deposit)
    h.tick(T, 1.0)
    return h, aid


def later(h: Harness, ms: int = 1000) -> None:
    h.clock.now += ms


def reserved(h: Harness, aid: str) -> int:
    return h.engine.ledger.balance(aid, "SOL").reserved


def ended(h: Harness) -> list[ev.EntryEnded]:
    return [e for e in h.events() if isinstance(e, ev.EntryEnded)]


def execution(h: Harness, signal_id: str, aid: str) -> tuple[str, str]:
    e = h.engine.signals[signal_id].executions[aid]
    return e.status, e.reason


def bought(h: Harness) -> list[tuple[int, float]]:
    """(tokens, price_usd) of each buy filled, in order."""
    return [
        (e.trade.amount, e.trade.price_usd)
        for e in h.events()
        if isinstance(e, ev.OrderFilled) and e.trade.side == "buy"
    ]


# -- resting and reserving --------------------------------------------------------------------


def test_a_limit_buy_rests_with_its_quote_reserved_and_no_order():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    assert execution(h, record.signal.id, aid) == ("resting", "")
    assert reserved(h, aid) == SOL
    assert h.engine.ledger.balance(aid, "SOL").available == 9 * SOL
    assert not h.pending and not h.engine.orders
    [entry] = h.engine.entries.values()
    assert (entry.type, entry.price_usd, entry.amount, entry.expires_at) == (
        "limit",
        0.9,
        SOL,
        h.clock.now + 60_000,
    )
    assert h.engine.books[aid].entries == {entry.id: entry}
    assert list(h.engine.entries_by_signal[record.signal.id]) == [entry.id]
    check_invariants(h)


def test_quote_reserved_by_a_resting_buy_refuses_a_later_market_buy_insufficient_balance():
    h, aid = setup(deposit=SOL)
    h.rest(T, "limit", 0.9)
    h.tick(U, 2.0)
    record, _ = h.signal(U)
    assert record.executions[aid].status == "skipped"
    assert record.executions[aid].reason == "insufficient_balance"
    assert reserved(h, aid) == SOL and not h.pending
    check_invariants(h)


def test_a_second_resting_buy_past_the_balance_is_skipped_insufficient_balance():
    h, aid = setup(deposit=SOL + SOL // 2)
    h.rest(T, "limit", 0.9)
    record, _ = h.rest(T, "limit", 0.8)
    assert record.executions[aid].reason == "insufficient_balance"
    assert len(h.engine.entries) == 1 and reserved(h, aid) == SOL


@pytest.mark.parametrize(
    ("side", "entry", "expires_in", "path"),
    [
        ("sell", EntryCondition(type="limit", price_usd=0.9), 60_000, "$.entry"),
        ("buy", EntryCondition(type="limit", price_usd=0.0), 60_000, "$.entry.price_usd"),
        ("buy", EntryCondition(type="stop", price_usd=float("inf")), 60_000, "$.entry.price_usd"),
        ("buy", EntryCondition(type="limit", price_usd=0.9), 0, "$.expires_at"),
        ("buy", EntryCondition(type="limit", price_usd=0.9), 24 * 3600_000 + 1, "$.expires_at"),
    ],
)
def test_a_resting_buy_outside_its_contract_is_refused_naming_the_field(
    side, entry, expires_in, path
):
    h, aid = setup()
    with pytest.raises(ValidationError) as info:
        h.signal(T, side=side, entry=entry, expires_at=h.clock.now + expires_in)
    assert info.value.path == path
    assert not h.engine.entries and reserved(h, aid) == 0


def test_a_resting_buy_may_expire_exactly_the_maximum_resting_time_after_it_arrives():
    h, aid = setup()
    h.rest(T, "limit", 0.9, expires_in_ms=24 * 3600_000)
    assert len(h.engine.entries) == 1


# -- triggering -------------------------------------------------------------------------------


def test_a_limit_stays_resting_on_a_tick_above_its_limit_and_fills_on_one_exactly_at_it():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    later(h)
    h.tick(T, 0.900001)
    assert len(h.engine.entries) == 1 and not h.pending
    later(h)
    h.tick(T, 0.9)
    assert not h.engine.entries
    [order] = h.pending
    assert (order.amount_in, order.limit_price_usd, order.decision_price_usd) == (SOL, 0.9, 0.9)
    assert execution(h, record.signal.id, aid) == ("pending", "")
    [end] = ended(h)
    assert (end.outcome, end.reason, end.order_id, end.price_usd) == (
        "triggered",
        "",
        order.id,
        0.9,
    )
    check_invariants(h)
    h.settle()
    assert bought(h) == [(166_666_666, 0.9)]  # 150 USD / 0.9
    assert execution(h, record.signal.id, aid) == ("filled", "")
    assert reserved(h, aid) == 0
    check_invariants(h)


def test_a_limit_crossed_by_a_gap_down_fills_at_the_tick_price_not_its_limit():
    h, aid = setup()
    h.rest(T, "limit", 0.9)
    later(h)
    h.tick(T, 0.8)
    h.settle()
    assert bought(h) == [(187_500_000, 0.8)]  # 150 USD / 0.8


def test_a_stop_stays_resting_below_its_trigger_and_fills_at_or_above_it():
    h, aid = setup()
    h.rest(T, "stop", 1.2)
    h.rest(T, "stop", 1.25)
    later(h)
    h.tick(T, 1.199999)
    assert len(h.engine.entries) == 2
    later(h)
    h.tick(T, 1.2)  # exactly at the first trigger, below the second
    assert [e.price_usd for e in h.engine.entries.values()] == [1.25]
    h.settle()
    later(h)
    h.tick(T, 1.3)  # above the second: a new position is refused (one per token)
    assert [(e.outcome, e.reason, e.price_usd) for e in ended(h)] == [
        ("triggered", "", 1.2),
        ("triggered", "max_positions_per_token", 1.3),
    ]
    assert bought(h) == [(125_000_000, 1.2)]
    assert reserved(h, aid) == 0
    check_invariants(h)


def test_a_stop_above_its_trigger_opens_at_the_tick_price():
    h, aid = setup()
    h.rest(T, "stop", 1.2)
    later(h)
    h.tick(T, 1.25)
    h.settle()
    assert bought(h) == [(120_000_000, 1.25)]


def test_a_marketable_limit_executes_at_once_at_the_last_price():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 1.05)
    assert not h.engine.entries and len(h.pending) == 1
    assert execution(h, record.signal.id, aid) == ("pending", "")
    kinds = [type(e).__name__ for e in h.events() if isinstance(e, ev.EntryRested | ev.EntryEnded)]
    assert kinds == ["EntryRested", "EntryEnded"]
    h.settle()
    assert bought(h) == [(150_000_000, 1.0)]
    check_invariants(h)


def test_a_stop_already_met_executes_at_once():
    h, aid = setup()
    h.rest(T, "stop", 0.95)
    assert not h.engine.entries and len(h.pending) == 1


def test_a_marketable_limit_rests_while_the_last_price_is_stale_and_fills_on_the_next_tick():
    h, aid = setup()
    later(h, 60_001)  # older than max_price_age_ms (60 s)
    h.rest(T, "limit", 1.05)
    assert len(h.engine.entries) == 1 and not h.pending
    h.tick(T, 1.01)
    h.settle()
    assert bought(h) == [(148_514_851, 1.01)]  # 150 / 1.01


def test_a_tick_of_another_token_triggers_nothing():
    h, aid = setup()
    h.rest(T, "limit", 0.9)
    later(h)
    h.tick(U, 0.5)
    assert len(h.engine.entries) == 1 and not h.pending


# -- expiry and cancel ------------------------------------------------------------------------


def test_a_resting_buy_still_executes_on_a_tick_exactly_at_its_expiry():
    h, aid = setup()
    h.rest(T, "limit", 0.9, expires_in_ms=60_000)
    later(h, 60_000)
    h.clock_step()
    assert len(h.engine.entries) == 1
    h.tick(T, 0.9)
    assert [(e.outcome, e.reason) for e in ended(h)] == [("triggered", "")]
    assert len(h.pending) == 1


def test_a_resting_buy_one_ms_past_its_expiry_expires_on_the_tick_and_releases_its_quote():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9, expires_in_ms=60_000)
    later(h, 60_001)
    h.tick(T, 0.9)
    assert [(e.outcome, e.reason, e.price_usd) for e in ended(h)] == [("expired", "expired", None)]
    assert not h.pending and not h.engine.entries and not h.engine.entries_by_signal
    assert reserved(h, aid) == 0
    assert execution(h, record.signal.id, aid) == ("skipped", "expired")
    check_invariants(h)


def test_the_clock_expires_a_resting_buy_without_a_tick():
    h, aid = setup()
    h.rest(T, "stop", 1.2, expires_in_ms=5_000)
    later(h, 5_001)
    h.clock_step()
    assert [e.outcome for e in ended(h)] == ["expired"]
    assert reserved(h, aid) == 0
    check_invariants(h)


def test_cancel_ends_what_rests_releases_the_quote_and_a_later_tick_opens_nothing():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    later(h)
    [entry] = h.cancel(record.signal.id)
    assert entry.signal_id == record.signal.id and entry.amount == SOL
    assert reserved(h, aid) == 0
    assert execution(h, record.signal.id, aid) == ("skipped", "cancelled")
    assert [(e.outcome, e.reason) for e in ended(h)] == [("cancelled", "cancelled")]
    later(h)
    h.tick(T, 0.5)
    assert not h.pending and len(ended(h)) == 1
    assert h.cancel(record.signal.id) == []
    check_invariants(h)


def test_cancel_after_the_entry_triggered_cancels_nothing():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    later(h)
    h.tick(T, 0.85)
    assert h.cancel(record.signal.id) == []
    assert len(h.pending) == 1


def test_cancel_ends_the_signals_entries_of_every_agent():
    h, a = setup()
    b = h.agent(ONE_SOL)
    record, _ = h.rest(T, "limit", 0.9)
    assert len(h.cancel(record.signal.id)) == 2
    assert reserved(h, a) == reserved(h, b) == 0
    check_invariants(h)


# -- price-time priority ----------------------------------------------------------------------


def test_one_tick_crossing_three_limits_executes_the_highest_and_skips_the_rest():
    h, aid = setup({"limits": {"max_positions_per_token": 1}})
    low, _ = h.rest(T, "limit", 0.9)
    high, _ = h.rest(T, "limit", 0.95)
    mid, _ = h.rest(T, "limit", 0.92)
    assert reserved(h, aid) == 3 * SOL
    later(h)
    h.tick(T, 0.85)
    assert [(e.signal_id, e.outcome, e.reason) for e in ended(h)] == [
        (high.signal.id, "triggered", ""),
        (mid.signal.id, "triggered", "max_positions_per_token"),
        (low.signal.id, "triggered", "max_positions_per_token"),
    ]
    assert execution(h, low.signal.id, aid) == ("skipped", "max_positions_per_token")
    assert reserved(h, aid) == SOL  # only the order's
    [order] = h.pending
    assert order.limit_price_usd == 0.95
    check_invariants(h)


def test_equal_limits_crossed_by_one_tick_execute_in_arrival_order():
    h, aid = setup({"limits": {"max_positions_per_token": 1}})
    first, _ = h.rest(T, "limit", 0.9)
    later(h)
    second, _ = h.rest(T, "limit", 0.9)
    third, _ = h.rest(T, "limit", 0.9)
    later(h)
    h.tick(T, 0.9)
    assert [(e.signal_id, e.reason) for e in ended(h)] == [
        (first.signal.id, ""),
        (second.signal.id, "max_positions_per_token"),
        (third.signal.id, "max_positions_per_token"),
    ]
    assert reserved(h, aid) == SOL
    check_invariants(h)


def test_two_positions_per_token_let_the_two_best_entries_through():
    h, aid = setup({"limits": {"max_positions_per_token": 2}})
    worst, _ = h.rest(T, "limit", 0.8)
    best, _ = h.rest(T, "limit", 0.9)
    second, _ = h.rest(T, "limit", 0.85)
    later(h)
    h.tick(T, 0.7)
    assert [(e.signal_id, e.reason) for e in ended(h)] == [
        (best.signal.id, ""),
        (second.signal.id, ""),
        (worst.signal.id, "max_positions_per_token"),
    ]
    assert [o.limit_price_usd for o in h.pending] == [0.9, 0.85]
    assert reserved(h, aid) == 2 * SOL


@pytest.mark.parametrize(
    ("limit", "stop", "first"),
    [(1.1, 0.95, "limit"), (1.02, 0.9, "stop")],
)
def test_a_limit_and_a_stop_crossed_by_one_tick_go_by_how_far_the_price_went_through(
    limit, stop, first
):
    # U has no price when they rest: neither is marketable, then one tick at 1.0 meets both.
    h, aid = setup({"limits": {"max_positions_per_token": 1}})
    h.rest(U, "limit", limit)
    h.rest(U, "stop", stop)
    assert len(h.engine.entries) == 2
    later(h)
    h.tick(U, 1.0)
    kinds = {e.entry.id: e.entry.type for e in h.events() if isinstance(e, ev.EntryRested)}
    assert [(kinds[e.entry_id], e.reason) for e in ended(h)] == [
        (first, ""),
        ({"limit": "stop", "stop": "limit"}[first], "max_positions_per_token"),
    ]
    assert reserved(h, aid) == SOL
    check_invariants(h)


def test_entries_of_several_agents_crossed_by_one_tick_go_best_price_first():
    h, a = setup()
    b = h.agent({**ONE_SOL, "signals": {"min_strength": 5}})
    h.rest(T, "limit", 0.9, strength=3)  # a only
    h.rest(T, "limit", 0.95, strength=5)  # both
    later(h)
    h.tick(T, 0.8)
    assert [(e.agent_id, e.reason) for e in ended(h)] == [
        (a, ""),
        (b, ""),
        (a, "max_positions_per_token"),
    ]


# -- checks at trigger time -------------------------------------------------------------------


def test_an_agent_paused_when_its_price_comes_is_skipped_agent_paused_and_its_quote_released():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    h.set_status(aid, "paused")
    assert len(h.engine.entries) == 1  # pausing does not end what rests
    later(h)
    h.tick(T, 0.9)
    assert [(e.outcome, e.reason) for e in ended(h)] == [("triggered", "agent_paused")]
    assert execution(h, record.signal.id, aid) == ("skipped", "agent_paused")
    assert not h.pending and reserved(h, aid) == 0
    check_invariants(h)


def test_an_agent_resumed_before_its_price_comes_executes():
    h, aid = setup()
    h.rest(T, "limit", 0.9)
    h.set_status(aid, "paused")
    h.set_status(aid, "active")
    later(h)
    h.tick(T, 0.9)
    assert len(h.pending) == 1


def test_buys_halted_when_the_price_comes_skip_the_entry_halted():
    h, aid = setup()
    record, _ = h.rest(T, "limit", 0.9)
    h.engine.set_halt(True)
    later(h)
    h.tick(T, 0.9)
    assert execution(h, record.signal.id, aid) == ("skipped", "halted")
    assert not h.pending and reserved(h, aid) == 0
    check_invariants(h)


def test_a_paused_agent_gets_no_resting_buy():
    h, aid = setup()
    h.set_status(aid, "paused")
    record, _ = h.rest(T, "limit", 0.9)
    assert execution(h, record.signal.id, aid) == ("skipped", "agent_paused")
    assert not h.engine.entries and reserved(h, aid) == 0


def test_a_halt_refuses_a_new_resting_buy():
    h, aid = setup()
    h.engine.set_halt(True)
    record, _ = h.rest(T, "limit", 0.9)
    assert execution(h, record.signal.id, aid) == ("skipped", "halted")
    assert not h.engine.entries


def test_resting_capacity_skips_a_buy_past_the_maximum():
    h = Harness(Clock())
    h.engine.max_resting_entries = 2
    h.sol(150.0)
    aid = h.agent(ONE_SOL)
    h.tick(T, 1.0)
    h.rest(T, "limit", 0.9)
    h.rest(T, "limit", 0.8)
    record, _ = h.rest(T, "limit", 0.7)
    assert execution(h, record.signal.id, aid) == ("skipped", "resting_capacity")
    assert reserved(h, aid) == 2 * SOL


def test_deleting_an_agent_cancels_its_resting_buys_reason_agent_deleted():
    h, aid = setup()
    other = h.agent(ONE_SOL)
    record, _ = h.rest(T, "limit", 0.9)
    h.delete(aid)
    assert [(e.agent_id, e.outcome, e.reason) for e in ended(h)] == [
        (aid, "cancelled", "agent_deleted")
    ]
    assert [e.agent_id for e in h.engine.entries.values()] == [other]
    assert list(h.engine.entries_by_signal) == [record.signal.id]
    check_invariants(h)
    later(h)
    h.tick(T, 0.9)
    assert [o.agent_id for o in h.pending] == [other]


# -- paper fills ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tick", "tokens", "price"),  # the trade's price is the one paid: slipped, or the limit
    [
        (0.9, 166_666_666, 0.9),  # 0.9 x 1.03 = 0.927 slipped: capped at the limit
        (0.88, 166_666_666, 0.9),  # 0.9064 slipped: capped at the limit
        (0.85, 171_330_668, 0.8755),  # slipped, under the limit: 150 / 0.8755
    ],
)
def test_a_triggered_limit_buy_never_fills_above_its_limit_even_with_slippage(tick, tokens, price):
    h, aid = setup({"execution": {"slippage_bps": 300, "fee_bps": 0}})
    h.rest(T, "limit", 0.9)
    later(h)
    h.tick(T, tick)
    h.settle()
    assert bought(h) == [(tokens, price)]


def test_a_market_buy_with_the_same_slippage_pays_the_slipped_price():
    h, aid = setup({"execution": {"slippage_bps": 300, "fee_bps": 0}})
    h.tick(T, 0.9)
    h.signal(T)
    h.settle()
    assert [amount for amount, _ in bought(h)] == [161_812_297]  # 150 / 0.927


def test_a_triggered_stop_buy_pays_the_slipped_price():
    h, aid = setup({"execution": {"slippage_bps": 300, "fee_bps": 0}})
    h.rest(T, "stop", 1.2)
    later(h)
    h.tick(T, 1.25)
    h.settle()
    assert [amount for amount, _ in bought(h)] == [116_504_854]  # 150 / (1.25 x 1.03)


# -- restart ----------------------------------------------------------------------------------


def rest_then_trigger(restart: bool) -> Harness:
    h, aid = setup({"limits": {"max_positions_per_token": 1}})
    h.agent(ONE_SOL)
    h.rest(T, "limit", 0.9)
    later(h)
    h.rest(T, "limit", 0.95)
    h.rest(T, "stop", 1.1, expires_in_ms=2_000)
    later(h)
    if restart:
        h.restart()
        check_invariants(h)
    later(h, 5_000)
    h.tick(T, 0.85)
    h.settle()
    check_invariants(h)
    return h


def test_a_restart_keeps_buys_resting_and_they_later_execute_identically():
    plain, restarted = rest_then_trigger(False), rest_then_trigger(True)
    assert restarted.log == plain.log
    outcomes = [(e.outcome, e.reason) for e in ended(restarted)]
    assert outcomes.count(("expired", "expired")) == 2
    assert outcomes.count(("triggered", "")) == 2
    assert outcomes.count(("triggered", "max_positions_per_token")) == 2
    assert len(bought(restarted)) == 2


def test_a_restored_engine_holds_the_same_resting_buys_and_reservations():
    h, aid = setup()
    h.rest(T, "limit", 0.9)
    h.rest(T, "stop", 1.2)
    before = {e.id: e for e in h.engine.entries.values()}
    h.restart()
    assert h.engine.entries == before
    assert reserved(h, aid) == 2 * SOL
    assert len(h.engine.entry_index) == 2
    check_invariants(h)


def test_quote_resting_in_a_token_counts_toward_its_max_per_token():
    h, aid = setup({"sizing": {"mode": "fixed", "amount": str(SOL), "max_per_token": "1500000000"}})
    h.rest(T, "limit", 0.9)
    record, _ = h.rest(T, "limit", 0.8)
    assert [e.amount for e in h.engine.entries.values()] == [SOL, SOL // 2]
    third, _ = h.rest(T, "limit", 0.7)
    assert execution(h, third.signal.id, aid) == ("skipped", "max_per_token")
    check_invariants(h)


def test_resting_buys_survive_the_snapshot_json_form_and_execute_the_same():
    plain = rest_then_trigger(False)
    h, aid = setup({"limits": {"max_positions_per_token": 1}})
    h.agent(ONE_SOL)
    h.rest(T, "limit", 0.9)
    later(h)
    h.rest(T, "limit", 0.95)
    h.rest(T, "stop", 1.1, expires_in_ms=2_000)
    later(h)
    wire = msgspec.json.encode(capture(h.engine))
    h.engine = Engine(h.clock)
    restore(h.engine, msgspec.json.decode(wire, type=EngineSnapshot))
    assert len(h.engine.entries) == 6 and reserved(h, aid) == 3 * SOL
    check_invariants(h)
    later(h, 5_000)
    h.tick(T, 0.85)
    h.settle()
    check_invariants(h)
    # Equal events, not equal bytes: a config default written as an int (Sizing.balance_pct =
    # 10) comes back from JSON as the float its field declares (10.0).
    assert h.events() == plain.events()


@pytest.mark.parametrize("limit", [1.05, 0.5])  # marketable at the last price, and not
def test_a_resting_signal_taken_after_its_expiry_is_skipped_expired_like_a_market_buy(limit):
    # received 40 s ago, expired 10 s ago (it waited in a queue): a market buy of it is skipped
    # `expired`; its resting buy neither executes at once nor rests holding the quote.
    h, aid = setup()
    now = h.clock.now
    h.engine.on_signal(
        Signal(
            id="late",
            token=T,
            received_at=now - 40_000,
            expires_at=now - 10_000,
            entry=EntryCondition(type="limit", price_usd=limit),
        )
    )
    h.collect()
    assert execution(h, "late", aid) == ("skipped", "expired")
    assert not h.pending and not h.engine.entries and reserved(h, aid) == 0
    check_invariants(h)
