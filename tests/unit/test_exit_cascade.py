"""An exit cascade decided and settled in slices (engine/cascade.py, Runtime.cascade_slice) gives
exactly what one transition gives: the same events in the same order, while transitions that
cannot touch the cascade run between its slices and those that could wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.errors import Conflict
from tradingd.engine.model import Signal, Tick

from tests.unit.cascade_rig import CascadeRig
from tests.unit.harness import TOKENS

CRASH, OTHER, THIRD = TOKENS
_enc = msgspec.json.Encoder()
MAX_TURNS = 100_000  # loop turns a cascade may take in a test before it counts as stuck


class Rig(CascadeRig):
    """The shared rig, plus waiting for a cascade's end and the events encoded."""

    async def until_settled(self, between: Callable[[], None] | None = None) -> int:
        """Yield to the loop until the cascade is done; `between` runs once after the first
        slice. Returns the loop turns taken."""
        for turn in range(MAX_TURNS):
            if not self.cascading:
                return turn
            await asyncio.sleep(0)
            if between is not None and turn == 0:
                between()
        raise AssertionError("the cascade never finished")

    def encoded(self, keep: Callable[[ev.Event], bool] = lambda e: True) -> list[bytes]:
        return [_enc.encode(e) for e in self.events if keep(e)]


def build(
    slice_: int | None,
    stops: list[float],
    positions_each: int,
    dca: bool = False,
    bystander: bool = False,
) -> Rig:
    """Agents a0.. with default stops `stops` (percent), each holding `positions_each`
    positions on CRASH bought at 1.0; with `bystander`, agent b trades only OTHER."""
    rig = Rig(slice_)
    rig.tick(SOL_MINT, 150.0)
    rig.tick(CRASH, 1.0)
    rig.tick(OTHER, 2.0)
    for i, stop in enumerate(stops):
        config: dict[str, Any] = {
            "limits": {"max_open_positions": 50, "max_positions_per_token": positions_each},
            "sizing": {"amount": str(10**7 * (1 + i % 3))},
            "signals": {"token_filter": "allow", "tokens": [CRASH]},
            "stop_loss": {"default_pct": stop},
        }
        if dca:
            config["dca"] = {"enabled": True, "levels": [{"drop_pct": -5, "buy_pct": 50}]}
        rig.agent(f"a{i}", config)
    if bystander:
        rig.agent("b", {"signals": {"token_filter": "allow", "tokens": [OTHER]}})
    for n in range(positions_each):
        rig.signal(f"s{n}", CRASH)
    opened = sum(isinstance(e, ev.PositionOpened) for e in rig.events)
    assert opened == len(stops) * positions_each, "the scenario did not open its positions"
    return rig


def decisions(rig: Rig) -> tuple[Any, ...]:
    """What the cascade decided, without the ids and times minted after it began: each exit
    (position, reason, price, amount, stop) in order, each close with its PnL, each fill's
    amounts and price, the agents' balances; the bystander agent "b" left out."""
    exits = [
        (e.position_id, e.reason, e.price_usd, e.sell_amount, e.stop_price_usd)
        for e in rig.events
        if isinstance(e, ev.ExitTriggered)
    ]
    closes = [
        (e.position.id, e.position.exit_reason, e.position.realized_pnl)
        for e in rig.events
        if isinstance(e, ev.PositionClosed)
    ]
    fills = [
        (e.trade.position_id, e.trade.side, e.trade.amount, e.trade.quote_amount, e.trade.price_usd)
        for e in rig.events
        if isinstance(e, ev.OrderFilled) and e.trade.agent_id != "b"
    ]
    balances = {
        a: (rig.engine.ledger.balance(a, "SOL").total, rig.engine.ledger.balance(a, "SOL").reserved)
        for a in rig.engine.agents
        if a != "b"
    }
    return exits, closes, fills, balances


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def crash(rig: Rig, price: float) -> int:
    rig.tick(CRASH, price)
    return await rig.until_settled()


@settings(max_examples=40, deadline=None)
@given(
    stops=st.lists(st.sampled_from([-1, -2, -3.5, -5, -8, -13, -21]), min_size=1, max_size=6),
    positions_each=st.integers(1, 5),
    price=st.sampled_from([0.99, 0.97, 0.95, 0.9, 0.6]),
    slice_=st.integers(1, 7),
    dca=st.booleans(),
)
def test_sliced_cascade_emits_exactly_the_events_of_one_transition(
    stops: list[float], positions_each: int, price: float, slice_: int, dca: bool
) -> None:
    whole = build(None, stops, positions_each, dca)
    sliced = build(slice_, stops, positions_each, dca)
    run(crash(whole, price))
    run(crash(sliced, price))
    assert sliced.encoded() == whole.encoded()


def test_a_large_cascade_takes_many_loop_turns_and_closes_every_position() -> None:
    rig = build(4, [-5, -10, -20], positions_each=5)
    turns = run(crash(rig, 0.5))
    closed = [e for e in rig.events if isinstance(e, ev.PositionClosed)]
    assert len(closed) == 15
    assert turns >= 15 // 4 + 15 // 4  # decided in slices, then settled in slices


def test_a_signal_for_another_token_trades_between_slices_and_changes_nothing_of_the_cascade() -> (
    None
):
    whole = build(None, [-5, -10, -20], 5, bystander=True)
    sliced = build(3, [-5, -10, -20], 5, bystander=True)
    run(crash(whole, 0.5))
    whole.signal("other", OTHER, advance=0)

    async def go() -> None:
        sliced.tick(CRASH, 0.5)
        assert sliced.cascading
        await sliced.until_settled(between=lambda: sliced.signal("other", OTHER, advance=0))

    run(go())
    fills = [e for e in sliced.events if isinstance(e, ev.OrderFilled)]
    bystander_fill = next(i for i, e in enumerate(fills) if e.trade.agent_id == "b")
    assert bystander_fill < len(fills) - 1, "the bystander's buy waited for the cascade"

    # The bystander's order took ids in between, so ids differ: compare what was decided.
    assert decisions(sliced) == decisions(whole)


def test_a_signal_reaching_a_cascade_agent_waits_for_the_whole_cascade() -> None:
    rig = build(2, [-5, -10], 4)

    async def go() -> None:
        rig.tick(CRASH, 0.5)
        assert rig.engine.exits_pending
        rig.signal("again", CRASH, advance=0)  # the cascade's own token and agents
        assert not rig.cascading  # completed before the signal was applied

    run(go())
    received = next(
        i
        for i, e in enumerate(rig.events)
        if isinstance(e, ev.SignalReceived) and e.signal_id == "again"
    )
    last_close = max(i for i, e in enumerate(rig.events) if isinstance(e, ev.PositionClosed))
    assert last_close < received


def engine_mid_cascade(signals: dict[str, Any]) -> Rig:
    """Agent a0 (signal filters `signals`) holds 4 positions on CRASH, bought by signals of
    type "t1"; a crash tick has been applied to the Engine alone, one exit decided, three still
    to decide."""
    rig = Rig(None)
    for token, price in ((SOL_MINT, 150.0), (CRASH, 1.0), (OTHER, 2.0)):
        rig.tick(token, price)
    limits = {"max_open_positions": 10, "max_positions_per_token": 4}
    rig.agent("a0", {"limits": limits, "signals": signals, "stop_loss": {"default_pct": -5}})
    for n in range(4):
        rig.signal(f"s{n}", CRASH, type="t1")
    rig.engine.exit_slice = 1
    rig.clock.now += 1000
    rig.engine.on_tick(Tick(CRASH, 0.5, rig.clock.now, decimals=6))
    assert rig.engine.exits_pending
    return rig


def other_token_signal(rig: Rig, token: str = OTHER, type_: str = "t1") -> Signal:
    now = rig.clock.now
    return Signal(id="other", token=token, type=type_, received_at=now, expires_at=now + 30_000)


def test_a_signal_found_apart_from_the_cascade_agents_is_applied_between_slices() -> None:
    rig = engine_mid_cascade({"token_filter": "allow", "tokens": [CRASH]})
    signal = other_token_signal(rig)
    assert not rig.engine.signal_may_reach(signal, CRASH, rig.engine.exits_pending_agents())
    rig.engine.on_signal(signal)
    assert rig.engine.exits_pending  # the answer, taken once, let the cascade go on


def test_a_no_reach_answer_about_fewer_agents_does_not_spare_on_signal_its_own_check() -> None:
    rig = engine_mid_cascade({"token_filter": "allow", "tokens": [CRASH, OTHER]})
    signal = other_token_signal(rig)
    assert not rig.engine.signal_may_reach(signal, CRASH, frozenset())  # asked about no agent
    rig.engine.on_signal(signal)
    assert not rig.engine.exits_pending  # a0's exits were decided before its signal


def test_a_no_reach_answer_about_another_token_does_not_spare_on_signal_its_own_check() -> None:
    rig = engine_mid_cascade({"types": ["t1"]})
    signal = other_token_signal(rig, CRASH, "t2")  # a0 filters it out, but it is the crash token
    assert not rig.engine.signal_may_reach(signal, OTHER, rig.engine.exits_pending_agents())
    rig.engine.on_signal(signal)
    assert not rig.engine.exits_pending  # the cascade's token: decided before the signal


def test_the_next_tick_completes_the_cascade_at_its_own_price_first() -> None:
    whole = build(None, [-5, -10], 4)
    sliced = build(2, [-5, -10], 4)
    run(crash(whole, 0.5))
    whole.tick(CRASH, 0.1)

    async def go() -> None:
        sliced.tick(CRASH, 0.5)
        assert sliced.cascading
        sliced.tick(CRASH, 0.1)  # every fill of the 0.5 cascade happens at 0.5
        await sliced.until_settled()

    run(go())
    sells = [
        e.trade.price_usd
        for e in sliced.events
        if isinstance(e, ev.OrderFilled) and e.trade.side == "sell"
    ]
    assert sells and all(p == pytest.approx(0.5, rel=0.02) for p in sells)
    # The 0.5 fills settled when the 0.1 tick came (their trades carry that clock).
    assert decisions(sliced) == decisions(whole)


def test_closing_a_position_mid_cascade_meets_it_already_closing_as_in_one_transition() -> None:
    rig = build(1, [-5], 4)

    async def go() -> None:
        rig.tick(CRASH, 0.5)
        assert rig.engine.exits_pending
        last = max(rig.engine.positions.values(), key=lambda p: p.seq)
        with pytest.raises(Conflict):
            rig.runtime.apply(rig.engine.close_position, last.id)
        await rig.until_settled()

    run(go())
    reasons = {e.position.exit_reason for e in rig.events if isinstance(e, ev.PositionClosed)}
    assert reasons == {"stop_loss"}


def test_engine_alone_sliced_by_continue_exits_matches_one_transition() -> None:
    def engine_events(slice_: int | None) -> list[bytes]:
        rig = build(None, [-3, -6, -9], 3)
        rig.engine.exit_slice = slice_
        out: list[bytes] = []
        rig.clock.now += 1000
        rig.engine.on_tick(Tick(CRASH, 0.5, rig.clock.now, decimals=6))
        while rig.engine.continue_exits():
            pass
        out.extend(_enc.encode(e) for e in rig.engine.drain().events)
        return out

    assert engine_events(2) == engine_events(None)


def test_a_clock_turn_during_a_cascade_waits_for_its_end_instead_of_completing_it() -> None:
    rig = build(2, [-5, -10], 4)
    turns: list[int] = []
    rig.runtime.clock_intake.append(lambda now: turns.append(now))

    async def go() -> int:
        rig.tick(CRASH, 0.5)
        rig.runtime.clock_turn()
        assert rig.cascading and not turns  # neither completed nor applied yet
        return await rig.until_settled()

    assert run(go()) > 1
    assert len(turns) == 1  # applied once, after the cascade's last slice


def test_a_cascade_waits_between_slices_while_the_store_backlog_is_large() -> None:
    rig = build(2, [-5, -10], 4)
    backlog = [10**9]
    rig.runtime.cascade.write_backlog = lambda: backlog[0]

    async def go() -> None:
        rig.tick(CRASH, 0.5)
        for _ in range(20):  # 20 loop turns, some ms: the store does not drain
            await asyncio.sleep(0.001)
        assert rig.engine.exits_pending  # only the tick's own slice was decided
        decided = sum(isinstance(e, ev.ExitTriggered) for e in rig.events)
        assert decided == 2
        backlog[0] = 0
        await rig.until_settled()

    run(go())
    assert sum(isinstance(e, ev.PositionClosed) for e in rig.events) == 8


def test_a_store_that_never_drains_delays_a_cascade_only_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tradingd.adapters.app.cascade_driver as driver_module

    monkeypatch.setattr(driver_module, "BACKLOG_MAX_S", 0.01)
    rig = build(2, [-5, -10], 4)
    rig.runtime.cascade.write_backlog = lambda: 10**9

    async def go() -> None:
        rig.tick(CRASH, 0.5)
        for _ in range(2000):
            if not rig.cascading:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("the cascade waited for a store that never drains")

    run(go())
    assert sum(isinstance(e, ev.PositionClosed) for e in rig.events) == 8
