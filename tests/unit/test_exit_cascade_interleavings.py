"""Adversarial interleavings around a sliced exit cascade (issue 13; written by a verifier that
attacked slicing, kept as regression tests): sliced (1..7) vs whole.

Each scenario: setup -> crash tick on CRASH -> an action injected after `at` loop turns in the
sliced run (right after the tick in the whole run, at the same clock) -> settle -> digest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import EntryCondition, Signal

from tests.unit.cascade_rig import CascadeRig
from tests.unit.harness import TOKENS

CRASH, OTHER, THIRD = TOKENS
MAX_TURNS = 20_000


R = CascadeRig


def digest(r: R) -> dict[str, Any]:
    exits = [
        (e.position_id, e.reason, e.price_usd, e.sell_amount, e.stop_price_usd)
        for e in r.events
        if isinstance(e, ev.ExitTriggered)
    ]
    pos_agent = {p.id: p.agent_id for p in r.engine.positions.values()}
    fills: dict[str, list[Any]] = {}
    fails: dict[str, list[Any]] = {}
    for e in r.events:
        if isinstance(e, ev.OrderFilled):
            t = e.trade
            fills.setdefault(t.agent_id, []).append(
                (t.token, t.side, t.amount, t.quote_amount, t.price_usd)
            )
        if isinstance(e, ev.OrderFailed):
            fails.setdefault(getattr(e, "agent_id", "?"), []).append(e.reason)
    positions = {
        a: [
            (
                p.token,
                str(p.status),
                p.amount,
                p.cost,
                p.realized_pnl,
                p.exit_reason,
                p.dca_count,
                p.tp_done,
            )
            for p in r.positions_of(a)
        ]
        for a in sorted(r.engine.books)
    }
    balances = {
        a: (r.engine.ledger.balance(a, "SOL").total, r.engine.ledger.balance(a, "SOL").reserved)
        for a in sorted(r.engine.books)
    }
    execs = {
        sid: {a: (x.status, x.reason) for a, x in sorted(rec.executions.items())}
        for sid, rec in r.engine.signals.items()
    }
    ended = sorted(
        (e.agent_id, e.signal_id, e.outcome, e.reason, e.price_usd)
        for e in r.events
        if isinstance(e, ev.EntryEnded)
    )
    del pos_agent
    return {
        "exits": exits,
        "fills": fills,
        "fails": fails,
        "positions": positions,
        "balances": balances,
        "execs": execs,
        "ended": ended,
        "errors": r.errors,
        "resting": sorted((x.agent_id, x.signal_id) for x in r.engine.entries.values()),
    }


STOP = {"signals": {"token_filter": "allow", "tokens": [CRASH]}}


def base(
    r: R,
    n_agents: int = 3,
    each: int = 4,
    extra: dict[str, Any] | None = None,
    venue_of: Callable[[int], str] = lambda i: "paper",
) -> None:
    r.tick(SOL_MINT, 150.0)
    r.tick(CRASH, 1.0)
    r.tick(OTHER, 2.0)
    r.tick(THIRD, 3.0)
    for i in range(n_agents):
        cfg: dict[str, Any] = {
            "limits": {"max_open_positions": 50, "max_positions_per_token": each},
            "sizing": {"amount": str(10**7 * (1 + i % 3))},
            "signals": {"token_filter": "allow", "tokens": [CRASH]},
            "stop_loss": {"default_pct": [-5, -10, -20][i % 3]},
        }
        cfg.update(extra or {})
        r.agent(f"a{i}", cfg, venue_of(i))


async def drive(
    r: R,
    price: float,
    action: Callable[[R], None] | None,
    at: int,
    advance: int = 200,
    after: Callable[[R], None] | None = None,
    setup: Callable[[R], None] | None = None,
) -> None:
    if setup:
        setup(r)
        for _ in range(MAX_TURNS):
            if not r.runtime.in_flight:
                break
            await asyncio.sleep(0.001)
    r.tick(CRASH, price)
    if r.runtime.cascade_slice is None:
        await asyncio.sleep(0)
        r.clock.now += advance
        if action:
            action(r)
    else:
        done = False
        for turn in range(MAX_TURNS):
            if turn == at and not done:
                r.mid = r.cascading
                r.clock.now += advance
                if action:
                    action(r)
                done = True
            if not r.cascading and done:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("stuck")
    for _ in range(MAX_TURNS):
        if not r.cascading and not r.runtime.in_flight:
            break
        await asyncio.sleep(0.001)
    else:
        raise AssertionError("stuck in flight")
    if after:
        after(r)
        for _ in range(MAX_TURNS):
            if not r.cascading and not r.runtime.in_flight:
                break
            await asyncio.sleep(0.001)


def compare(
    setup: Callable[[R], None],
    price: float,
    action: Callable[[R], None] | None,
    slices=(1, 2, 3, 5, 7),
    ats=(0, 1, 3),
    after=None,
    opts=None,
) -> list[str]:
    diffs = []
    whole = R(None, **(opts or {}))
    asyncio.run(drive(whole, price, action, 0, after=after, setup=setup))
    w = digest(whole)
    for s in slices:
        for at in ats:
            r = R(s, **(opts or {}))
            asyncio.run(drive(r, price, action, at, after=after, setup=setup))
            d = digest(r)
            for k in w:
                if d[k] != w[k]:
                    diffs.append(
                        f"slice={s} at={at} mid={r.mid} key={k}\n whole={w[k]}\n slice={d[k]}"
                    )
    return diffs


# ---------------------------------------------------------------------------------------------


def setup_outsider(r: R, max_open: int = 1) -> None:
    base(r)
    for n in range(4):
        r.signal(f"s{n}", CRASH)
    r.agent(
        "x",
        {
            "limits": {"max_open_positions": max_open},
            "signals": {"token_filter": "allow", "tokens": [CRASH, OTHER]},
        },
    )
    r.limit("rest", CRASH, 0.6)  # x's resting limit buy on CRASH (a* filters: CRASH only
    # -> they rest too)


def test_outsider_with_resting_entry_and_a_non_reaching_signal() -> None:
    diffs = compare(setup_outsider, 0.5, lambda r: r.signal("oth", OTHER, advance=0))
    assert not diffs, "\n".join(diffs)


def setup_capacity(r: R) -> None:
    base(r)
    for n in range(4):
        r.signal(f"s{n}", CRASH)
    r.agent("x", {"signals": {"token_filter": "allow", "tokens": [CRASH, OTHER]}})
    r.agent("y", {"signals": {"token_filter": "allow", "tokens": [OTHER]}})
    r.limit("rest", CRASH, 0.6)  # 4 entries (a0..a2, x)


def test_resting_capacity_seen_by_a_non_reaching_entry_signal() -> None:
    diffs = compare(
        setup_capacity,
        0.5,
        lambda r: r.limit("oth", OTHER, 1.0, advance=0),
        opts={"max_resting_entries": 4},
    )
    assert not diffs, "\n".join(diffs)


def setup_plain(r: R, extra: dict[str, Any] | None = None, venue_of=lambda i: "paper") -> None:
    base(r, extra=extra, venue_of=venue_of)
    r.agent("b", {"signals": {"token_filter": "allow", "tokens": [OTHER]}})
    for n in range(4):
        r.signal(f"s{n}", CRASH)


def _first(r: R) -> str:
    ps = [p for p in r.engine.positions.values() if p.token == CRASH]
    return min(ps, key=lambda p: p.seq).id if ps else "pos_none"


def _last(r: R) -> str:
    ps = [p for p in r.engine.positions.values() if p.token == CRASH]
    return max(ps, key=lambda p: p.seq).id if ps else "pos_none"


ACTIONS: dict[str, Callable[[R], None]] = {
    "close_first": lambda r: r.call(r.engine.close_position, _first(r)),
    "close_last": lambda r: r.call(r.engine.close_position, _last(r)),
    "sell_signal": lambda r: r.signal("sell", CRASH, advance=0, side="sell"),
    "buy_other_outsider": lambda r: r.signal("oth", OTHER, advance=0),
    "deposit": lambda r: r.call(r.engine.deposit, "a1", "SOL", 5),
    "pause": lambda r: r.call(r.engine.set_agent_status, "a2", "paused"),
    "pause_resume": lambda r: (
        r.call(r.engine.set_agent_status, "a2", "paused"),
        r.call(r.engine.set_agent_status, "a2", "active"),
    ),
    "config_apply": lambda r: r.call(
        r.engine.update_config,
        "a2",
        config_from_builtins(
            {
                "signals": {"token_filter": "allow", "tokens": [CRASH]},
                "stop_loss": {"default_pct": -1},
            }
        ),
        True,
    ),
    "halt_flatten": lambda r: r.call(r.engine.set_halt, True, True),
    "delete_b": lambda r: r.call(r.engine.delete_agent, "b"),
    "delete_a0": lambda r: r.call(r.engine.delete_agent, "a0"),
    "tick_same": lambda r: r.tick(CRASH, 0.3, advance=0),
    "tick_other": lambda r: r.tick(OTHER, 1.5, advance=0),
    "tick_sol": lambda r: r.tick(SOL_MINT, 100.0, advance=0),
    "clock": lambda r: r.runtime.clock_turn(),
    "pause_buys": lambda r: (r.engine.pause_buys("x"),),
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
@pytest.mark.parametrize("price", [0.93, 0.5])
def test_actions_plain(name: str, price: float) -> None:
    diffs = compare(setup_plain, price, ACTIONS[name])
    assert not diffs, "\n".join(diffs)


CONFIGS = {
    "dca": {"dca": {"enabled": True, "levels": [{"drop_pct": -5, "buy_pct": 50}]}},
    "tp": {"take_profit": {"levels": [{"gain_pct": 10, "sell_pct": 50}]}},
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
@pytest.mark.parametrize("cfg", sorted(CONFIGS))
def test_actions_configs(name: str, cfg: str) -> None:
    def setup(r: R) -> None:
        setup_plain(r, CONFIGS[cfg])
        if cfg == "tp":
            r.tick(CRASH, 1.2)  # take-profit levels taken (partial sells), then the crash

    diffs = compare(setup, 0.93, ACTIONS[name], after=lambda r: r.tick(CRASH, 0.5))
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_actions_live_mixed(name: str) -> None:
    diffs = compare(
        lambda r: setup_plain(r, venue_of=lambda i: "slow" if i == 1 else "paper"),
        0.5,
        ACTIONS[name],
        slices=(1, 3),
        ats=(0, 2),
    )
    assert not diffs, "\n".join(diffs)


def test_resting_entries_of_cascade_agents_execute_after_the_exits() -> None:
    def setup(r: R) -> None:
        setup_plain(r)
        r.limit("rest", CRASH, 0.6)
        r.limit("rest2", CRASH, 0.4)

    for name in ("buy_other_outsider", "clock", "tick_same", "deposit"):
        diffs = compare(setup, 0.5, ACTIONS[name])
        assert not diffs, name + "\n" + "\n".join(diffs)


def setup_expiring(r: R) -> None:
    base(r)
    for n in range(4):
        r.signal(f"s{n}", CRASH)
    # x rests a limit buy on THIRD far below its price, expiring just before the crash tick;
    # x sizes buys at 50% of its available balance
    r.agent(
        "x",
        {
            "sizing": {"mode": "balance_pct", "balance_pct": 50},
            "signals": {"token_filter": "allow", "tokens": [THIRD, OTHER]},
        },
    )
    r.clock.now += 1000
    r.runtime.submit_signal(
        Signal(
            id="restx",
            token=THIRD,
            received_at=r.clock.now,
            expires_at=r.clock.now + 900,
            entry=EntryCondition(type="limit", price_usd=0.01),
        )
    )


def test_entry_expiring_at_the_crash_tick_and_a_non_reaching_signal() -> None:
    diffs = compare(setup_expiring, 0.5, lambda r: r.signal("oth", OTHER, advance=0))
    assert not diffs, "\n".join(diffs)


# The recorder hears of transitions in the order they are applied, around a clock turn that
# waited for a cascade (a replay of the recording must apply them in that order).
def test_recorded_order_matches_applied_order() -> None:
    r = R(2)
    recorded: list[str] = []
    applied: list[str] = []

    async def go() -> None:
        setup_plain(r)
        r.runtime.clock_intake.append(lambda now: recorded.append("clock"))
        r.runtime.signal_intake.append(lambda s, now: recorded.append("signal:" + s.id))
        r.runtime.tick_intake.append(lambda ticks, now: recorded.append("tick"))
        on_clock, on_signal = r.engine.on_clock, r.engine.on_signal
        r.engine.on_clock = lambda: (applied.append("clock"), on_clock())[1]  # type: ignore
        r.engine.on_signal = lambda s: (applied.append("signal:" + s.id), on_signal(s))[1]  # type: ignore
        r.tick(CRASH, 0.5)
        await asyncio.sleep(0)
        r.runtime.clock_turn()  # waits for the cascade
        r.signal("again", CRASH, advance=0)  # reaches the cascade: completes it first

    asyncio.run(go())
    assert [x for x in recorded if x != "tick"] == applied
