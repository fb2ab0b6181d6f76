"""Attribution and the per-source breaker through a real Engine: positions and trades record the
signal that opened them; an agent stops taking a decaying source's buys, with an alert, until a
reset; the scorecards survive a restart and equal a recomputation from the engine's events."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine import events as ev
from tradingd.engine.model import Signal
from tradingd.engine.scorecards import UNATTRIBUTED

from .harness import TOKENS, Clock, Harness

TOKEN = TOKENS[0]
LOSING = {
    "sizing": {"mode": "fixed", "amount": "1000000000"},
    "limits": {"max_open_positions": 100, "max_positions_per_token": 100},
    "stop_loss": {"enabled": True, "mode": "fixed", "default_pct": -10},
    "source_breaker": {"enabled": True, "consecutive_losses": 2},
}


_ids = itertools.count(1)


def post(h: Harness, source: str, side: str = "buy", key_id: str | None = None) -> str:
    signal_id = f"s{next(_ids)}"
    h.engine.on_signal(
        Signal(
            id=signal_id,
            token=TOKEN,
            side=side,  # type: ignore[arg-type]
            type="breakout",
            strength=4,
            source=source,
            received_at=h.clock.now,
            expires_at=h.clock.now + 30_000,
            key_id=key_id,
        )
    )
    h.collect()
    return signal_id


def lose_once(h: Harness, source: str) -> None:
    """Buy at 1.0 on a `source` signal, then stop out at 0.8."""
    h.tick(TOKEN, 1.0)
    post(h, source)
    h.settle()
    h.clock.now += 1000
    h.tick(TOKEN, 0.8)
    h.settle()
    h.clock.now += 1000


def alerts(h: Harness, code: str) -> list[ev.Alert]:
    return [e for e in h.events() if isinstance(e, ev.Alert) and e.code == code]


def execution_of(h: Harness, signal_id: str, agent_id: str):
    return h.engine.signals[signal_id].executions[agent_id]


def test_a_position_and_its_trades_record_the_signal_that_opened_it() -> None:
    h = Harness(Clock())
    h.sol()
    aid = h.agent(LOSING)
    h.tick(TOKEN, 2.5)
    sid = post(h, "alpha", key_id="key_1")
    h.settle()
    (p,) = h.engine.live_positions[aid].values()
    by = p.opened_by
    assert (by.signal_id, by.source, by.type, by.strength, by.key_id) == (
        sid,
        "alpha",
        "breakout",
        4,
        "key_1",
    )
    assert by.price_usd == 2.5 and by.received_at == p.opened_at
    (buy,) = h.engine.trades[aid]
    assert (buy.signal_id, buy.source) == (sid, "alpha")
    exit_id = post(h, "beta", side="sell")
    h.settle()
    closed = h.engine.positions[p.id]
    assert closed.exit_reason == "signal" and closed.exit_signal_id == exit_id
    sell = h.engine.trades[aid][-1]
    # the sell carries the signal that sold, and the source that opened the position
    assert (sell.side, sell.signal_id, sell.source) == ("sell", exit_id, "alpha")


def test_two_losses_in_a_row_trip_the_breaker_for_that_source_only() -> None:
    h = Harness(Clock())
    h.sol()
    aid = h.agent(LOSING)
    lose_once(h, "alpha")
    assert not alerts(h, "breaker_tripped")
    lose_once(h, "alpha")
    (trip,) = alerts(h, "breaker_tripped")
    assert trip.details == {
        "scope": "source",
        "agent_id": aid,
        "source": "alpha",
        "rule": "consecutive_losses",
        "losses": 2,
        "limit": 2,
    }
    h.tick(TOKEN, 1.0)
    blocked = post(h, "alpha")
    assert execution_of(h, blocked, aid).status == "skipped"
    assert execution_of(h, blocked, aid).reason == "source_breaker"
    other = post(h, "beta")
    assert execution_of(h, other, aid).status == "pending"
    # a sell signal from the tripped source still sells
    h.settle()
    sold = post(h, "alpha", side="sell")
    assert execution_of(h, sold, aid).status == "pending"
    card = h.engine.scorecards.by_agent[aid]["alpha"].window("all", h.clock.now)
    assert card.skipped == {"source_breaker": 1}
    assert (card.trades, card.wins, card.losses) == (2, 0, 2)


def test_a_manual_reset_rearms_the_breaker_with_a_fresh_memory() -> None:
    h = Harness(Clock())
    h.sol()
    aid = h.agent(LOSING)
    lose_once(h, "alpha")
    lose_once(h, "alpha")
    assert h.engine.reset_source_breaker(aid, "alpha") is True
    h.collect()
    assert h.engine.reset_source_breaker(aid, "alpha") is False  # not tripped any more
    (reset,) = alerts(h, "breaker_reset")
    assert reset.details["rule"] == "manual reset"
    lose_once(h, "alpha")  # one loss after the reset: the streak starts afresh
    assert len(alerts(h, "breaker_tripped")) == 1
    lose_once(h, "alpha")
    assert len(alerts(h, "breaker_tripped")) == 2


def test_a_timed_reset_takes_the_source_again_after_reset_after_s() -> None:
    h = Harness(Clock())
    h.sol()
    cfg = {**LOSING, "source_breaker": {**LOSING["source_breaker"], "reset_after_s": 60}}
    aid = h.agent(cfg)
    lose_once(h, "alpha")
    lose_once(h, "alpha")
    tripped_at = alerts(h, "breaker_tripped")[0].ts
    h.clock.now = tripped_at + 59_999
    h.tick(TOKEN, 1.0)
    assert execution_of(h, post(h, "alpha"), aid).reason == "source_breaker"
    h.clock.now = tripped_at + 60_000
    h.tick(TOKEN, 1.0)
    assert execution_of(h, post(h, "alpha"), aid).status == "pending"
    assert alerts(h, "breaker_reset")[0].details["rule"] == "timed reset"


def test_a_disabled_breaker_never_trips() -> None:
    h = Harness(Clock())
    h.sol()
    cfg = {**LOSING, "source_breaker": {"enabled": False, "consecutive_losses": 1}}
    aid = h.agent(cfg)
    for _ in range(3):
        lose_once(h, "alpha")
    assert not alerts(h, "breaker_tripped")
    assert h.engine.scorecards.breaker(aid, "alpha") is None


def test_cards_and_a_tripped_breaker_survive_a_restart() -> None:
    h = Harness(Clock())
    h.sol()
    aid = h.agent(LOSING)
    lose_once(h, "alpha")
    lose_once(h, "alpha")
    before = h.engine.scorecards.by_source["alpha"].window("all", h.clock.now)
    h.restart()
    assert h.engine.scorecards.by_source["alpha"].window("all", h.clock.now) == before
    assert h.engine.scorecards.breaker(aid, "alpha").tripped_at is not None
    h.tick(TOKEN, 1.0)
    assert execution_of(h, post(h, "alpha"), aid).reason == "source_breaker"


# -- the property: every card equals a recomputation from the engine's events ------------------

action = st.one_of(
    st.tuples(st.just("buy"), st.sampled_from(["alpha", "beta", ""])),
    st.tuples(st.just("sell"), st.sampled_from(["alpha", "beta"])),
    st.tuples(st.just("tick"), st.floats(-0.4, 0.4)),
    st.tuples(st.just("settle"), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 7200)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(action, max_size=40))
def test_source_cards_equal_a_recomputation_from_the_events(actions) -> None:
    h = Harness(Clock())
    h.sol()
    cfg = {
        **LOSING,
        "source_breaker": {"enabled": True, "consecutive_losses": 3, "max_drawdown_pct": 5},
    }
    aid = h.agent(cfg)
    price = 1.0
    h.tick(TOKEN, price)
    for kind, arg in actions:
        if kind == "buy":
            post(h, arg)
        elif kind == "sell":
            post(h, arg, side="sell")
        elif kind == "tick":
            price = max(price * math.exp(arg), 1e-6)
            h.clock.now += 1000
            h.tick(TOKEN, price)
        elif kind == "settle":
            h.settle(fail=arg and len(h.log) % 3 == 0)
        else:
            h.clock.now += arg * 1000
            h.clock_step()
    events = h.events()
    sources = {
        e.signal_id: e.source or UNATTRIBUTED for e in events if isinstance(e, ev.SignalReceived)
    }
    received: dict[str, int] = {}
    for s in sources.values():
        received[s] = received.get(s, 0) + 1
    closes: dict[str, list] = {}
    for e in events:
        if isinstance(e, ev.PositionClosed):
            p = e.position
            name = p.opened_by.source or UNATTRIBUTED
            closes.setdefault(name, []).append(p)
    ended: dict[str, dict[str, int]] = {}
    for e in events:
        if isinstance(e, ev.SignalExecutionRecorded) and e.status in ("filled", "failed"):
            name = sources[e.signal_id]
            ended.setdefault(name, {}).setdefault(e.status, 0)
            ended[name][e.status] += 1
    cards = h.engine.scorecards
    for name, card in cards.by_source.items():
        total = card.window("all", h.clock.now)
        assert total.received == received.get(name, 0)
        assert total.executed == ended.get(name, {}).get("filled", 0)
        assert total.failed == ended.get(name, {}).get("failed", 0)
        ps = closes.get(name, [])
        assert total.trades == len(ps)
        assert total.wins == sum(1 for p in ps if p.realized_pnl > 0)
        assert total.pnl_by_quote.get("SOL", 0) == sum(p.realized_pnl for p in ps)
        usd = [math.floor(Fraction(p.realized_pnl, 10**9) * 150 * 10**6) for p in ps]
        assert total.curve_usd.sum == sum(usd)
        assert total.exposure_ms == sum(p.closed_at - p.opened_at for p in ps)
        mine = cards.by_agent.get(aid, {}).get(name)
        if ps:
            assert mine is not None and mine.window("all", h.clock.now).pnl == sum(
                p.realized_pnl for p in ps
            )
    # the breaker's memory is the tail of the source's closes since its last reset
    for name, state in cards.breakers.get(aid, {}).items():
        pnls = [p.realized_pnl for p in closes.get(name, [])]
        if state.tripped_at is None:
            assert state.recent == pnls[-20:]


def test_the_shared_other_card_has_no_breaker() -> None:
    h = Harness(Clock())
    h.engine.scorecards.max_sources = 1  # "alpha" takes the only slot; "beta" is "other"
    h.sol()
    aid = h.agent(LOSING)
    lose_once(h, "alpha")
    for _ in range(3):
        lose_once(h, "beta")
    assert h.engine.scorecards.by_agent[aid]["other"].window("all", h.clock.now).losses == 3
    assert h.engine.scorecards.breaker(aid, "other") is None
    assert not alerts(h, "breaker_tripped")
    h.tick(TOKEN, 1.0)
    assert execution_of(h, post(h, "gamma"), aid).status == "pending"


def test_resetting_a_source_the_agent_never_saw_is_not_found() -> None:
    import pytest
    from tradingd.engine.errors import NotFound

    h = Harness(Clock())
    aid = h.agent(LOSING)
    with pytest.raises(NotFound):
        h.engine.reset_source_breaker(aid, "never-seen")
    with pytest.raises(NotFound):
        h.engine.forget_source("never-seen")


def test_a_streak_longer_than_the_memory_is_refused() -> None:
    import pytest
    from tradingd.engine.config import config_from_builtins
    from tradingd.engine.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        config_from_builtins({"source_breaker": {"enabled": True, "consecutive_losses": 21}})
    assert info.value.path == "$.source_breaker.consecutive_losses"
    config_from_builtins(
        {"source_breaker": {"enabled": True, "consecutive_losses": 21, "lookback_trades": 21}}
    )
