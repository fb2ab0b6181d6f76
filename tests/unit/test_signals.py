"""Signals: eligibility, sizing, limits, reservations and idempotency."""

from __future__ import annotations

import pytest
from tradingd.engine.errors import Conflict

from tests.unit.harness import TOKENS, Clock, Harness

T, U = TOKENS[0], TOKENS[1]


def setup(cfg: dict | None = None, deposit: int = 10 * 10**9) -> tuple[Harness, str]:
    h = Harness(Clock())
    h.sol()
    aid = h.agent(cfg or {}, deposit)
    h.tick(T, 1.0)
    h.tick(U, 2.0)
    return h, aid


def status(h: Harness, record, aid: str) -> tuple[str, str]:
    e = record.executions[aid]
    return e.status, e.reason


def test_same_client_id_twice_is_one_signal():
    h, aid = setup()
    first, dup1 = h.signal(T, client_id="prov-1")
    second, dup2 = h.signal(T, client_id="prov-1")
    assert (dup1, dup2) == (False, True)
    assert second.signal.id == first.signal.id
    assert len(h.pending) == 1


def test_expired_signal_is_not_executed():
    h, aid = setup()
    from tradingd.engine.model import Signal

    now = h.clock.now
    record, _ = h.engine.on_signal(
        Signal(id="s", token=T, received_at=now - 40_000, expires_at=now - 10_000)
    )
    h.collect()
    assert status(h, record, aid) == ("skipped", "expired")
    assert not h.pending


@pytest.mark.parametrize(
    ("cfg", "kw", "reason"),
    [
        ({"signals": {"min_strength": 4}}, {"strength": 3}, "strength_below_min"),
        ({"signals": {"types": ["Hypersurge"]}}, {"type_": "other"}, "type_filtered"),
        ({"signals": {"token_filter": "allow", "tokens": [U]}}, {}, "token_not_allowed"),
        ({"signals": {"token_filter": "deny", "tokens": [T]}}, {}, "token_denied"),
        ({"signals": {"min_liquidity_usd": 1000}}, {}, "liquidity_unknown"),
    ],
)
def test_signal_filters_skip_with_a_reason(cfg, kw, reason):
    h, aid = setup(cfg)
    record, _ = h.signal(T, **kw)
    assert status(h, record, aid) == ("skipped", reason)
    assert record.agents_matched == 0


def test_paused_agent_opens_nothing_but_exits_still_run():
    h, aid = setup({"stop_loss": {"mode": "fixed", "default_pct": -10}})
    h.signal(T)
    h.settle()
    h.engine.set_agent_status(aid, "paused")
    record, _ = h.signal(U)
    assert status(h, record, aid) == ("skipped", "agent_paused")
    h.tick(T, 0.5)
    h.settle()
    assert [p.exit_reason for p in h.engine.positions.values()] == ["stop_loss"]


def test_halt_stops_buys_and_flatten_closes_everything():
    h, aid = setup()
    h.signal(T)
    h.settle()
    h.engine.set_halt(True, flatten=True)
    h.collect()
    h.settle()
    record, _ = h.signal(U)
    assert status(h, record, aid) == ("skipped", "halted")
    assert all(p.status == "closed" for p in h.engine.positions.values())


def test_a_signal_for_the_agents_own_quote_asset_is_skipped():
    # The attack's case: a SOL-quoted agent sent a buy signal for the SOL mint spent 0.1 SOL
    # for 0.099 SOL and held a "position" in its own quote.
    from tradingd.engine.assets import SOL_MINT

    h, aid = setup()
    balance = h.engine.ledger.balance(aid, "SOL")
    before = (balance.total, balance.reserved)
    record, _ = h.signal(SOL_MINT)
    assert status(h, record, aid) == ("skipped", "token_is_quote")
    assert not h.pending and not h.engine.positions
    balance = h.engine.ledger.balance(aid, "SOL")
    assert (balance.total, balance.reserved) == before


def test_stale_price_blocks_buys():
    h, aid = setup()
    h.clock.now += 61_000
    record, _ = h.signal(T)
    assert status(h, record, aid) == ("skipped", "price_stale")


def test_two_signals_cannot_spend_the_same_balance():
    h, aid = setup({"sizing": {"amount": "6000000000"}, "limits": {"max_positions_per_token": 5}})
    a, _ = h.signal(T)
    b, _ = h.signal(T)
    assert status(h, a, aid)[0] == "pending"
    assert status(h, b, aid) == ("skipped", "insufficient_balance")
    bal = h.engine.ledger.balance(aid, "SOL")
    assert bal.reserved == 6 * 10**9 and bal.available == 4 * 10**9


def test_failed_buy_releases_its_reservation():
    h, aid = setup()
    record, _ = h.signal(T)
    h.settle(fail=True)
    bal = h.engine.ledger.balance(aid, "SOL")
    assert bal.reserved == 0 and bal.total == 10 * 10**9
    assert status(h, record, aid)[0] == "failed"
    assert not h.engine.positions


def test_limits_max_open_and_per_token_and_cooldown():
    h, aid = setup({"limits": {"max_open_positions": 1, "token_cooldown_s": 60}})
    h.signal(T)
    h.settle()
    record, _ = h.signal(U)
    assert status(h, record, aid) == ("skipped", "max_open_positions")
    (p,) = h.engine.positions.values()
    h.engine.close_position(p.id)
    h.collect()
    h.settle()
    record, _ = h.signal(T)
    assert status(h, record, aid) == ("skipped", "token_cooldown")
    h.clock.now += 60_000
    h.tick(T, 1.0)
    record, _ = h.signal(T)
    assert status(h, record, aid)[0] == "pending"


def test_daily_loss_limit_stops_buys_for_the_day():
    h, aid = setup(
        {
            "limits": {"daily_loss_limit_pct": 5, "max_positions_per_token": 3},
            "sizing": {"amount": "5000000000"},
            "execution": {"slippage_bps": 0},
        }
    )
    h.signal(T)
    h.settle()
    h.tick(T, 0.5)  # default -32% stop fires: lose ~2.5 SOL of 10
    h.settle()
    record, _ = h.signal(U)
    assert status(h, record, aid) == ("skipped", "daily_loss_limit")
    h.clock.now += 86_400_000
    h.tick(U, 2.0)
    record, _ = h.signal(U)
    assert status(h, record, aid)[0] == "pending"


@pytest.mark.parametrize(
    ("sizing", "expected"),
    [
        ({"mode": "fixed", "amount": "300000000"}, 300_000_000),
        ({"mode": "balance_pct", "balance_pct": 12.5}, 1_250_000_000),
        (
            {
                "mode": "tiers",
                "tiers": [
                    {"min_balance": "0", "amount": "1"},
                    {"min_balance": "5000000000", "amount": "700000000"},
                ],
            },
            700_000_000,
        ),
        ({"mode": "balance_pct", "balance_pct": 50, "min_reserve": "9000000000"}, None),
    ],
)
def test_sizing_modes(sizing, expected):
    h, aid = setup({"sizing": sizing})
    record, _ = h.signal(T)
    if expected is None:
        assert status(h, record, aid) == ("skipped", "insufficient_balance")
    else:
        assert h.pending[0].amount_in == expected


def test_max_per_token_caps_the_buy():
    h, aid = setup(
        {
            "sizing": {"amount": "500000000", "max_per_token": "700000000"},
            "limits": {"max_positions_per_token": 3},
        }
    )
    h.signal(T)
    h.signal(T)
    r3, _ = h.signal(T)
    assert [o.amount_in for o in h.pending] == [500_000_000, 200_000_000]
    assert status(h, r3, aid) == ("skipped", "max_per_token")


def test_sell_signal_closes_open_positions_in_the_token():
    h, aid = setup()
    h.signal(T)
    h.settle()
    record, _ = h.signal(T, side="sell")
    assert status(h, record, aid)[0] == "pending"
    h.settle()
    assert status(h, record, aid)[0] == "filled"  # the record follows the sell to its fill
    assert [p.exit_reason for p in h.engine.positions.values()] == ["signal"]


def test_closing_twice_is_a_conflict():
    h, aid = setup()
    h.signal(T)
    h.settle()
    (p,) = h.engine.positions.values()
    h.engine.close_position(p.id)
    with pytest.raises(Conflict):
        h.engine.close_position(p.id)


def test_realized_pnl_and_performance_after_a_round_trip():
    h, aid = setup(
        {"execution": {"slippage_bps": 0, "fee_bps": 0}, "sizing": {"amount": "1000000000"}}
    )
    h.signal(T)
    h.settle()
    h.tick(T, 1.5)
    (p,) = h.engine.positions.values()
    h.engine.close_position(p.id)
    h.collect()
    h.settle()
    perf = h.engine.agents[aid].perf
    assert perf.trades == 1 and perf.wins == 1
    assert perf.realized_pnl == pytest.approx(500_000_000, abs=2)
    assert h.engine.ledger.balance(aid, "SOL").total == 10 * 10**9 + perf.realized_pnl


def test_unknown_decimals_take_the_default_once_and_raise_an_alert():
    h = Harness(Clock())
    h.sol()
    h.agent({"limits": {"max_positions_per_token": 2}})
    h.tick(T, 1.0, decimals=None)
    h.signal(T)
    h.signal(T)
    alerts = [e for e in h.events() if type(e).__name__ == "Alert"]
    assert [(a.code, a.details["decimals"]) for a in alerts] == [("decimals_defaulted", 6)]
    assert {o.token_decimals for o in h.pending} == {6}
