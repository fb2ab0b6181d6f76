"""The WebSocket `sources` channel: a source's card in the snapshot, then a `source` message
after its signals trade, coalesced to at most one per source per interval."""

from __future__ import annotations

import msgspec
from test_ws_stack import SOL, TOKEN_A, Stack, now_ms
from tradingd.engine.model import Signal


def signal_from(stack: Stack, source: str, signal_id: str) -> None:
    now = now_ms()
    sig = Signal(
        id=signal_id,
        token=TOKEN_A,
        type="t",
        strength=3,
        source=source,
        received_at=now,
        expires_at=now + 30_000,
    )
    stack.runtime.apply(stack.engine.on_signal, sig)


async def test_sources_channel_sends_the_cards_snapshot_then_their_changes() -> None:
    stack = await Stack(token_interval_ms=50).start()
    try:
        stack.create_agent("agt-a")
        stack.prices(SOL, (TOKEN_A, 1.0))
        signal_from(stack, "alpha", "s1")
        await stack.settle()
        client = await stack.connect()
        snap = (await client.subscribe(["sources"]))["data"]
        (card,) = snap["sources"]
        assert card["source"] == "alpha"
        assert card["windows"]["all"]["signals"]["received"] == 1
        assert card["windows"]["all"]["signals"]["executed"] == 1
        for i in range(3):  # three signals inside one interval: one message
            signal_from(stack, "alpha", f"s{i + 2}")
        await stack.settle()
        msg = await client.recv_type("source")
        assert msg["data"]["source"] == "alpha"
        assert set(msg["data"]["windows"]) == {"24h", "all"}
        assert msg["data"]["windows"]["all"]["signals"]["received"] == 4
        assert not [m for m in await client.quiet(0.3) if m["type"] == "source"]
        await client.close()
    finally:
        await stack.stop()


async def test_a_client_not_on_the_sources_channel_gets_no_source_message() -> None:
    stack = await Stack(token_interval_ms=50).start()
    try:
        stack.create_agent("agt-a")
        stack.prices(SOL, (TOKEN_A, 1.0))
        client = await stack.connect()
        snap = (await client.subscribe(["trades"]))["data"]
        assert snap["sources"] == []
        signal_from(stack, "alpha", "s1")
        await stack.settle()
        got = [m["type"] for m in await client.quiet(0.3)]
        assert "trade" in got and "source" not in got
        await client.close()
    finally:
        await stack.stop()


def test_the_channel_list_names_sources() -> None:
    from tradingd.adapters.http import ws_wire

    op = msgspec.json.decode(b'{"op": "subscribe"}', type=ws_wire.Subscribe)
    assert "sources" in op.channels


async def test_the_snapshot_holds_only_the_most_recently_active_cards() -> None:
    from tradingd.adapters.http.ws_subscriptions import SNAPSHOT_SOURCES

    stack = await Stack(token_interval_ms=50).start()
    try:
        stack.create_agent("agt-a")
        stack.prices(SOL, (TOKEN_A, 1.0))
        for i in range(SNAPSHOT_SOURCES + 5):
            signal_from(stack, f"src{i:03d}", f"s{i}")
        await stack.settle()
        client = await stack.connect()
        snap = (await client.subscribe(["sources"]))["data"]
        names = [c["source"] for c in snap["sources"]]
        assert len(names) == SNAPSHOT_SOURCES
        cards = stack.engine.scorecards.by_source
        newest = sorted(cards, key=lambda n: cards[n].updated_at, reverse=True)
        assert set(names) == set(newest[:SNAPSHOT_SOURCES])  # the most recently active
        await client.close()
    finally:
        await stack.stop()
