"""An adapter's pause of buys is a transition of the engine: buys are refused with its reason
while paused, taken again once resumed; exits go on."""

from __future__ import annotations

from tests.unit.harness import TOKENS, Clock, Harness

T = TOKENS[0]


def opened_agent() -> Harness:
    h = Harness(Clock())
    h.sol()
    h.agent({"sizing": {"mode": "fixed", "amount": "100000000"}})
    h.tick(T, 1.0)
    return h


def test_a_buy_while_paused_is_skipped_with_the_pause_reason():
    h = opened_agent()
    h.engine.pause_buys("store_unavailable")
    record, _ = h.signal(T)
    assert [(x.status, x.reason) for x in record.executions.values()] == [
        ("skipped", "store_unavailable")
    ]
    assert not h.pending and not h.engine.positions


def test_a_buy_after_resume_is_placed():
    h = opened_agent()
    h.engine.pause_buys("store_unavailable")
    h.engine.resume_buys()
    assert h.engine.buys_paused_reason is None
    record, _ = h.signal(T)
    assert [x.status for x in record.executions.values()] == ["pending"]
    assert len(h.pending) == 1


def test_a_sell_signal_while_paused_still_sells():
    h = opened_agent()
    h.signal(T)
    h.settle()
    h.engine.pause_buys("store_unavailable")
    record, _ = h.signal(T, side="sell")
    assert [x.status for x in record.executions.values()] == ["pending"]
    h.settle()
    assert [p.status for p in h.engine.positions.values()] == ["closed"]
