"""An account breaker's trip persists like the operator's halt (HaltChanged written through to
Redis and behind to Postgres' engine_state): after a graceful restart, a crash, or from
Postgres alone, buys are still halted and the trip (rule, numbers) is known again, so an
admin's reset lifts it."""

from __future__ import annotations

from pathlib import Path

from store_harness import TOKENS, StoreNode, StoreServers, postgres_snapshot
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.account_breakers import BreakerRules
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal

RULES = BreakerRules(consecutive_stop_outs=1)
TOKEN = TOKENS[0]
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},
    "stop_loss": {"mode": "fixed", "default_pct": -10},
    "execution": {"slippage_bps": 0, "fee_bps": 0},
}


def node_with_breakers(tmp_path: Path, servers: StoreServers, namespace: str) -> StoreNode:
    """A StoreNode whose engine has the account breakers `RULES` (the daemon builds its engine
    from `[breakers]` the same way)."""
    node = StoreNode(tmp_path, servers, namespace)
    node.engine = Engine(wall_clock_ms, breakers=RULES)
    venue = PaperVenue(node.engine.price_usd, wall_clock_ms)
    node.runtime = Runtime(node.engine, {"paper": venue}, wall_clock_ms)
    return node


async def trip(node: StoreNode) -> None:
    """One USDC agent stopped out once: the breaker (1 stop-out) trips."""
    e, rt = node.engine, node.runtime
    rt.apply(e.create_agent, "a", "paper", config_from_builtins(CONFIG), "USDC", None, "a")
    rt.apply(e.deposit, "a", "USDC", 1000 * 10**6)
    node.tick(TOKEN, 1.0)
    now = wall_clock_ms()
    rt.apply(e.on_signal, Signal(id="s1", token=TOKEN, received_at=now, expires_at=now + 30_000))
    await node.settle()
    node.tick(TOKEN, 0.85)
    await node.settle()
    assert e.halted_buys and e.breakers.tripped is not None


def assert_trip_back(node: StoreNode) -> None:
    trip = node.engine.breakers.tripped
    assert node.engine.halted_buys
    assert trip is not None and trip.rule == "consecutive_stop_outs"
    assert trip.details == {"rule": "consecutive_stop_outs", "streak": 1, "threshold": 1}


async def test_a_trip_survives_a_graceful_restart_and_a_reset_lifts_it(
    tmp_path, store_servers, namespace
):
    node = await node_with_breakers(tmp_path, store_servers, namespace).start()
    await trip(node)
    at = node.engine.breakers.tripped.at  # type: ignore[union-attr]
    await node.stop()

    again = await node_with_breakers(tmp_path, store_servers, namespace).start()
    assert_trip_back(again)
    assert again.engine.breakers.tripped.at == at  # type: ignore[union-attr]
    again.runtime.apply(again.engine.reset_breakers)
    await again.store.flushed()  # type: ignore[union-attr]
    await again.stop()

    third = await node_with_breakers(tmp_path, store_servers, namespace).start()
    assert not third.engine.halted_buys and third.engine.breakers.tripped is None
    await third.stop()


async def test_a_trip_survives_a_crash(tmp_path, store_servers, namespace):
    node = await node_with_breakers(tmp_path, store_servers, namespace).start()
    await trip(node)
    await node.crash()

    again = await node_with_breakers(tmp_path, store_servers, namespace).start()
    assert_trip_back(again)
    await again.stop()


async def test_postgres_alone_holds_the_trip(tmp_path, store_servers, namespace):
    node = await node_with_breakers(tmp_path, store_servers, namespace).start()
    await trip(node)
    assert node.store is not None and await node.store.writer.drain(10)
    snap = await postgres_snapshot(store_servers.database_url, namespace)
    assert snap.halted_buys and snap.breaker_trip is not None
    assert snap.breaker_trip.rule == "consecutive_stop_outs"
    assert snap.breaker_trip.details["streak"] == 1
    await node.stop()
