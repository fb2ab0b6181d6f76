"""Exit requests (sell signal, manual close, a stop) that meet an order in flight are kept
pending and applied to what is held once that order settles; nothing is lost."""

from __future__ import annotations

from tradingd.engine import events as ev

from tests.unit.test_exact_money import T, cfg, opened, position, sells

DCA = {"enabled": True, "levels": [{"drop_pct": -10, "buy_pct": 50}], "cooldown_s": 0}
LADDER = {"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 50}]}


def execution(h, record, agent):
    return h.engine.signals[record.signal.id].executions[agent]


def test_sell_signal_during_a_dca_buy_sells_everything_held_after_the_fill():
    h, agent = opened(cfg(dca=DCA), 1.0)  # 100 tokens
    h.tick(T, 0.9)  # DCA: 45 USDC in flight
    assert [o.purpose for o in h.pending] == ["dca"]
    record, _ = h.signal(T, side="sell")
    assert execution(h, record, agent).status == "pending"
    assert position(h).pending_exit == "signal"
    h.settle()
    assert sells(h) == [(150_000_000, 135_000_000, "signal")]  # 100 + 50 tokens at 0.9
    assert position(h).status == "closed" and position(h).exit_reason == "signal"
    assert execution(h, record, agent).status == "filled"


def test_sell_signal_during_a_dca_buy_that_fails_sells_what_was_held():
    h, agent = opened(cfg(dca=DCA), 1.0)
    h.tick(T, 0.9)
    record, _ = h.signal(T, side="sell")
    h.settle(fail=True)  # the DCA fails; the pending sell then fails too (injected)
    assert position(h).status == "open"
    assert execution(h, record, agent).status == "failed"
    # The failed sell is not lost either: the position is still open and a new signal sells it.
    h.signal(T, side="sell")
    h.settle()
    assert sells(h) == [(100_000_000, 90_000_000, "signal")]


def test_manual_close_during_a_partial_take_profit_sells_the_rest_after_it():
    h, _ = opened(cfg(take_profit=LADDER), 1.0)
    h.tick(T, 1.1)  # sells 50 tokens: in flight
    p = position(h)
    assert p.status == "closing"
    assert h.engine.close_position(p.id, 100) is None  # kept pending
    h.collect()
    h.settle()
    assert sells(h) == [(50_000_000, 55_000_000, "take_profit"), (50_000_000, 55_000_000, "manual")]
    assert p.status == "closed" and p.exit_reason == "manual"


def test_stop_crossed_during_a_dca_buy_fires_after_the_fill():
    h, _ = opened(cfg(dca=DCA, stop_loss={"mode": "fixed", "default_pct": -20}), 1.0)
    h.tick(T, 0.9)  # DCA in flight
    h.tick(T, 0.7)  # below the -20% stop while the DCA is in flight
    assert position(h).pending_exit == "stop_loss"
    h.tick(T, 0.95)  # the price recovers before the fill: the stop was crossed, it still sells
    h.settle()
    assert [s[2] for s in sells(h)] == ["stop_loss"]
    assert position(h).status == "closed"


def test_sell_signal_for_a_position_being_sold_whole_is_skipped():
    h, agent = opened(cfg(stop_loss={"mode": "fixed", "default_pct": -10}), 1.0)
    h.tick(T, 0.8)  # the stop sells everything: in flight
    record, _ = h.signal(T, side="sell")
    assert execution(h, record, agent).reason == "position_closing"
    h.settle()
    assert [s[2] for s in sells(h)] == ["stop_loss"]


def test_pending_exit_of_a_position_sold_out_by_its_order_records_why():
    levels = [{"gain_pct": 10, "sell_pct": 100}]
    h, agent = opened(cfg(dca=DCA, take_profit={"enabled": True, "levels": levels}), 1.0)
    h.tick(T, 0.9)  # DCA in flight
    record, _ = h.signal(T, side="sell")
    h.settle()  # DCA fills, then the pending signal sells everything
    assert execution(h, record, agent).status == "filled"
    assert any(isinstance(e, ev.PositionClosed) for e in h.events())


def test_manual_close_during_the_entry_buy_sells_after_the_fill():
    from tests.unit.harness import Clock, Harness

    h = Harness(Clock())
    h.agent(cfg(), quote="USDC")
    h.tick(T, 1.0)
    h.signal(T)  # the entry buy is in flight
    p = position(h)
    assert p.status == "opening"
    assert h.engine.close_position(p.id, 100) is None
    h.collect()
    h.settle()
    assert sells(h) == [(100_000_000, 100_000_000, "manual")]
    assert p.status == "closed"
