"""Scorecards and per-source breakers persist like other state (ScorecardSaved records written
through to Redis and behind to Postgres' engine_state): after a graceful restart, a crash, or
from Postgres alone, every card and a tripped breaker come back exactly."""

from __future__ import annotations

from pathlib import Path

import msgspec
from store_harness import TOKENS, StoreNode, StoreServers, postgres_snapshot
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Signal

TOKEN = TOKENS[0]
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},
    "limits": {"max_open_positions": 10, "max_positions_per_token": 10},
    "stop_loss": {"mode": "fixed", "default_pct": -10},
    "execution": {"slippage_bps": 0, "fee_bps": 0},
    "source_breaker": {"enabled": True, "consecutive_losses": 2},
}


async def losses(node: StoreNode, source: str, n: int, first: int = 0) -> None:
    """`n` round trips from `source` signals, each stopped out (1.0 -> 0.85)."""
    e, rt = node.engine, node.runtime
    if "a" not in e.agents:
        rt.apply(e.create_agent, "a", "paper", config_from_builtins(CONFIG), "USDC", None, "a")
        rt.apply(e.deposit, "a", "USDC", 1000 * 10**6)
    for i in range(n):
        node.tick(TOKEN, 1.0)
        now = wall_clock_ms()
        sig = Signal(
            id=f"{source}{first + i}",
            token=TOKEN,
            source=source,
            received_at=now,
            expires_at=now + 30_000,
        )
        rt.apply(e.on_signal, sig)
        await node.settle()
        node.tick(TOKEN, 0.85)
        await node.settle()


def cards(node: StoreNode) -> object:
    return msgspec.to_builtins(
        sorted(node.engine.scorecards.saved(), key=lambda c: (c.agent_id, c.source))
    )


async def test_cards_and_a_tripped_breaker_survive_a_graceful_restart(
    tmp_path: Path, store_servers: StoreServers, namespace: str
) -> None:
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await losses(node, "alpha", 2)
    await losses(node, "beta", 1)
    before = cards(node)
    assert node.engine.scorecards.breaker("a", "alpha").tripped_at is not None
    await node.stop()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert cards(again) == before
    breaker = again.engine.scorecards.breaker("a", "alpha")
    assert breaker is not None and breaker.rule == "consecutive_losses"
    await again.stop()


async def test_cards_survive_a_crash(
    tmp_path: Path, store_servers: StoreServers, namespace: str
) -> None:
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await losses(node, "alpha", 1)
    before = cards(node)
    await node.crash()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert cards(again) == before
    await losses(again, "alpha", 1, first=1)  # the second loss in a row, across the crash
    assert again.engine.scorecards.breaker("a", "alpha").tripped_at is not None
    await again.stop()


async def test_postgres_alone_holds_the_cards(
    tmp_path: Path, store_servers: StoreServers, namespace: str
) -> None:
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await losses(node, "alpha", 2)
    assert node.store is not None and await node.store.writer.drain(10)
    snap = await postgres_snapshot(store_servers.database_url, namespace)
    saved = {(c.agent_id, c.source): c for c in snap.scorecards}
    assert saved[("", "alpha")].card.window("all", wall_clock_ms()).trades == 2
    assert saved[("a", "alpha")].breaker.rule == "consecutive_losses"
    await node.stop()


async def test_a_forgotten_source_stays_forgotten_after_a_restart(
    tmp_path: Path, store_servers: StoreServers, namespace: str
) -> None:
    node = await StoreNode(tmp_path, store_servers, namespace).start()
    await losses(node, "alpha", 1)
    await losses(node, "beta", 1)
    node.runtime.apply(node.engine.forget_source, "alpha")
    await node.settle()
    await node.stop()

    again = await StoreNode(tmp_path, store_servers, namespace).start()
    assert set(again.engine.scorecards.by_source) == {"beta"}
    assert set(again.engine.scorecards.by_agent["a"]) == {"beta"}
    await again.stop()
