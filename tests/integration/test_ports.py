"""Every adapter implements the whole of its port (engine/ports.py): each member the Protocol
declares exists on the adapter, is a coroutine function where the port awaits it (and only
there), and accepts the port's positional arguments. A fake written against the port then fits
the runtime as the real adapter does."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from tradingd.adapters.app.settings import SyntheticFeedSettings
from tradingd.adapters.feeds.replay import ReplayFeed
from tradingd.adapters.feeds.synthetic import SyntheticFeed
from tradingd.adapters.store import MemoryStore
from tradingd.adapters.store.history import HistoryReader
from tradingd.adapters.store.persistent import PersistentStore
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.core import Engine
from tradingd.engine.ports import Feed, HistoryReads, Store, Venue


def declared(port: type) -> dict[str, object]:
    return {
        name: member
        for name, member in vars(port).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def check_implements(adapter: object, port: type) -> None:
    for name, member in declared(port).items():
        assert hasattr(adapter, name), f"{type(adapter).__name__} lacks {port.__name__}.{name}"
        if isinstance(member, property):
            continue
        implemented = getattr(adapter, name)  # the port's member, read by its declared name
        assert callable(implemented), name
        awaited = inspect.iscoroutinefunction(member)
        assert inspect.iscoroutinefunction(implemented) == awaited, name
        wanted = [
            p
            for p in list(inspect.signature(member).parameters.values())[1:]  # after self
            if p.default is inspect.Parameter.empty and p.kind != p.KEYWORD_ONLY
        ]
        inspect.signature(implemented).bind(*(None for _ in wanted))


def test_the_ports_declare_what_the_runtime_and_daemon_call() -> None:
    assert {"execute", "execute_now", "in_process", "reconcile", "name"} <= set(declared(Venue))
    assert {"on_events", "on_ticks", "flushed", "close", "history"} <= set(declared(Store))
    assert {"run", "last_tick_ms", "source"} <= set(declared(Feed))


def test_the_paper_venue_is_a_venue() -> None:
    engine = Engine(wall_clock_ms)
    check_implements(PaperVenue(engine.price_usd, wall_clock_ms), Venue)


@pytest.mark.parametrize("kind", ["memory", "persistent"])
def test_both_stores_are_stores(kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        store: object = MemoryStore()
    else:  # built, not opened: no server is needed to read its shape
        store = PersistentStore(
            Engine(wall_clock_ms), tmp_path, redis_url=None, database_url=None, lock=False
        )
    check_implements(store, Store)


def test_the_postgres_history_reader_serves_history_reads() -> None:
    check_implements(HistoryReader("postgresql://127.0.0.1:1/none", "tradingd"), HistoryReads)


def test_the_synthetic_and_replay_feeds_are_feeds(tmp_path: Path) -> None:
    check_implements(SyntheticFeed(SyntheticFeedSettings()), Feed)
    check_implements(ReplayFeed(tmp_path / "none.jsonl"), Feed)


def test_a_missing_member_is_caught() -> None:
    class HalfVenue:
        name = "half"
        in_process = False

        async def execute(self, order: object) -> object:
            return order

    with pytest.raises(AssertionError, match="lacks Venue.execute_now"):
        check_implements(HalfVenue(), Venue)
