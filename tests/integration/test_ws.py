"""WebSocket stream `/v1/ws` against a real Daemon: auth, subscriptions, snapshots, message
shapes, filters, price coalescing, heartbeats, errors. Every received message is checked for
seq = previous + 1 by the Reader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType
from test_ws_stack import SOL, TOKEN_A, TOKEN_B, Stack

Factory = Callable[..., Any]


@pytest.fixture
async def make_stack() -> AsyncIterator[Factory]:
    stacks: list[Stack] = []

    async def make(**ws: Any) -> Stack:
        stack = await Stack(**ws).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.stop()


@pytest.fixture
async def stack(make_stack: Factory) -> Stack:
    return await make_stack()


# -- auth ------------------------------------------------------------------------------------


async def test_header_auth_connects_and_subscribe_answers_with_a_snapshot(stack: Stack) -> None:
    client = await stack.connect()
    snap = await client.subscribe(["positions"])
    assert snap["seq"] == 1
    assert snap["data"]["subscription"] == {
        "channels": ["positions"],
        "agents": None,
        "tokens": None,
    }


async def test_first_message_auth_connects(stack: Stack) -> None:
    client = await stack.connect(header=False)
    snap = await client.subscribe(["alerts"])
    assert snap["type"] == "snapshot" and snap["seq"] == 1


async def test_unknown_key_in_header_is_401_before_upgrade(stack: Stack) -> None:
    assert stack.client is not None
    resp = await stack.client.get(
        "/v1/ws",
        headers={
            "Authorization": "Bearer tdk_nope",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_key_without_read_scope_is_refused(stack: Stack) -> None:
    assert stack.client is not None
    with pytest.raises(Exception) as info:
        await stack.client.ws_connect(
            "/v1/ws", headers={"Authorization": f"Bearer {stack.feed_key}"}
        )
    assert "403" in str(info.value)


async def test_unknown_key_in_first_message_gets_error_and_policy_close(stack: Stack) -> None:
    client = await stack.connect(key="tdk_wrong", header=False)
    err = await client.recv()
    assert err["type"] == "error" and err["data"]["code"] == "unauthorized"
    msg = await client.ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1008


async def test_no_auth_message_in_time_closes_the_connection(make_stack: Factory) -> None:
    stack = await make_stack(auth_timeout_s=0.1)
    assert stack.client is not None
    ws = await stack.client.ws_connect("/v1/ws")
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT and '"auth_timeout"' in msg.data
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1008


# -- snapshot --------------------------------------------------------------------------------


async def test_snapshot_holds_positions_balances_and_prices_of_the_subscription(
    stack: Stack,
) -> None:
    stack.create_agent("agt-a")
    stack.create_agent("agt-b")
    stack.prices(SOL, (TOKEN_A, 1.0), (TOKEN_B, 2.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    client = await stack.connect()
    snap = (await client.subscribe(["positions", "prices"], agents=["agt-a"], tokens=[TOKEN_A]))[
        "data"
    ]
    assert [a["id"] for a in snap["agents"]] == ["agt-a"]
    assert [(p["agent_id"], p["token"], p["status"]) for p in snap["positions"]] == [
        ("agt-a", TOKEN_A, "open")
    ]
    position = snap["positions"][0]
    assert isinstance(position["amount"], str) and int(position["amount"]) > 0
    assert isinstance(position["cost"], str) and position["cost"] == "1000000000"
    assert position["stop_price_usd"] is not None
    assert {b["agent_id"] for b in snap["balances"]} == {"agt-a"}
    sol = next(b for b in snap["balances"] if b["asset"] == "SOL")
    assert sol == {
        "agent_id": "agt-a",
        "asset": "SOL",
        "decimals": 9,
        "total": "99000000000",
        "reserved": "0",
        "available": "99000000000",
    }
    assert [p["token"] for p in snap["prices"]] == [TOKEN_A]
    assert snap["prices"][0]["price_usd"] == 1.0
    assert snap["halted"] is False


async def test_every_subscribe_gets_its_own_snapshot(stack: Stack) -> None:
    client = await stack.connect()
    first = await client.subscribe(["prices"])
    second = await client.subscribe(["trades"])
    assert (first["seq"], second["seq"]) == (1, 2)
    assert second["data"]["subscription"]["channels"] == ["trades"]


# -- the paper flow on the socket -----------------------------------------------------------


async def test_paper_flow_streams_signal_position_trade_and_agent_messages_in_seq(
    stack: Stack,
) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    client = await stack.connect()
    await client.subscribe(["positions", "trades", "signals", "agents"])
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    got = await client.until(lambda d: d["type"] == "position" and d["data"]["event"] == "opened")
    kinds = [(d["type"], d["data"].get("event")) for d in got]
    assert ("signal", "received") in kinds
    assert ("signal", "execution") in kinds
    assert ("trade", None) in kinds
    assert kinds.index(("trade", None)) < kinds.index(("position", "opened"))
    trade = next(d for d in got if d["type"] == "trade")["data"]
    assert set(trade) >= {
        "id",
        "position_id",
        "side",
        "token",
        "amount",
        "quote_amount",
        "price_usd",
        "fee",
        "venue",
        "venue_ref",
        "reason",
        "ts",
    }
    assert trade["side"] == "buy" and trade["token"] == TOKEN_A and trade["venue"] == "paper"
    assert trade["quote_amount"] == "1000000000" and isinstance(trade["amount"], str)
    assert isinstance(trade["ts"], str) and trade["ts"].endswith("Z")  # ISO, as in REST
    assert all(isinstance(d["ts"], int) for d in got)  # the envelope: epoch ms


async def test_close_streams_a_sell_trade_and_a_closed_position(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    client = await stack.connect()
    snap = await client.subscribe(["positions", "trades"])
    position_id = snap["data"]["positions"][0]["id"]
    stack.runtime.apply(stack.engine.close_position, position_id)
    await stack.settle()
    got = await client.until(lambda d: d["type"] == "position" and d["data"]["event"] == "closed")
    sell = next(d["data"] for d in got if d["type"] == "trade")
    assert sell["side"] == "sell" and sell["position_id"] == position_id
    closed = got[-1]["data"]
    assert (
        closed["status"] == "closed"
        and closed["exit_reason"] == "manual"
        and closed["amount"] == "0"
    )


# -- filters ---------------------------------------------------------------------------------


async def test_agent_filter_admits_only_that_agents_messages(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.create_agent("agt-b")
    stack.prices(SOL, (TOKEN_A, 1.0))
    client = await stack.connect()
    await client.subscribe(["trades", "positions"], agents=["agt-b"])
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    got = await client.until(lambda d: d["type"] == "position" and d["data"]["event"] == "opened")
    got += await client.quiet(0.1)
    assert {d["data"]["agent_id"] for d in got if d["type"] in ("trade", "position")} == {"agt-b"}


async def test_token_filter_admits_only_that_tokens_messages(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0), (TOKEN_B, 1.0))
    client = await stack.connect()
    await client.subscribe(["trades"], tokens=[TOKEN_B])
    stack.signal(TOKEN_A, "s1")
    stack.signal(TOKEN_B, "s2")
    await stack.settle()
    trade = await client.recv_type("trade")
    assert trade["data"]["token"] == TOKEN_B
    assert [d for d in await client.quiet(0.1) if d["type"] == "trade"] == []


async def test_unsubscribed_channel_gets_nothing(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    client = await stack.connect()
    await client.subscribe(["trades", "signals"])
    await client.ws.send_json({"op": "unsubscribe", "channels": ["signals"]})
    await client.ws.send_json({"op": "ping"})
    await client.recv_type("pong")  # the unsubscribe is applied before anything after it
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    await client.recv_type("trade")
    assert [d for d in client.seen if d["type"] == "signal"] == []


async def test_unknown_channel_is_a_validation_error(stack: Stack) -> None:
    client = await stack.connect()
    await client.ws.send_json({"op": "subscribe", "channels": ["prices", "candles"]})
    err = await client.recv()
    assert err["type"] == "error" and err["data"]["code"] == "validation_error"
    # the failing field in details.path, as REST gives it; the message without msgspec's suffix
    assert err["data"]["details"] == {"path": "$.channels[1]"}
    assert "- at `" not in err["data"]["message"]


async def test_invalid_token_is_a_validation_error(stack: Stack) -> None:
    client = await stack.connect()
    await client.ws.send_json({"op": "subscribe", "channels": ["prices"], "tokens": ["not-a-mint"]})
    err = await client.recv()
    assert (
        err["data"]["code"] == "validation_error" and err["data"]["details"]["path"] == "$.tokens"
    )


# -- prices ----------------------------------------------------------------------------------


async def test_prices_are_coalesced_to_the_latest_tick_per_token(make_stack: Factory) -> None:
    stack = await make_stack(price_interval_ms=200)
    client = await stack.connect()
    await client.subscribe(["prices"])
    for i in range(50):  # all within one loop iteration: one flush
        stack.prices((TOKEN_A, 1.0 + i), (TOKEN_B, 100.0 - i))
    batch = await client.recv_type("prices")
    ticks = {t["token"]: t for t in batch["data"]["ticks"]}
    assert len(batch["data"]["ticks"]) == 2
    assert ticks[TOKEN_A]["price_usd"] == 50.0 and ticks[TOKEN_B]["price_usd"] == 51.0
    assert set(ticks[TOKEN_A]) == {"token", "price_usd", "source", "ts"}


async def test_price_batches_keep_the_interval(make_stack: Factory) -> None:
    stack = await make_stack(price_interval_ms=1000)
    client = await stack.connect()
    await client.subscribe(["prices"])
    stack.prices((TOKEN_A, 1.0))
    await client.recv_type("prices")
    stack.prices((TOKEN_A, 2.0))  # inside the interval: held back
    assert [d for d in await client.quiet(0.2) if d["type"] == "prices"] == []
    later = await client.recv_type("prices")
    assert later["data"]["ticks"][0]["price_usd"] == 2.0


async def test_price_token_filter(stack: Stack) -> None:
    client = await stack.connect()
    await client.subscribe(["prices"], tokens=[TOKEN_B])
    stack.prices((TOKEN_A, 1.0), (TOKEN_B, 3.0))
    batch = await client.recv_type("prices")
    assert [t["token"] for t in batch["data"]["ticks"]] == [TOKEN_B]


# -- control messages ------------------------------------------------------------------------


async def test_heartbeats_arrive_every_interval(make_stack: Factory) -> None:
    stack = await make_stack(heartbeat_s=0.05)
    client = await stack.connect()
    beats = [await client.recv_type("heartbeat") for _ in range(3)]
    assert [b["seq"] for b in beats] == [1, 2, 3]


async def test_ping_gets_pong(stack: Stack) -> None:
    client = await stack.connect()
    await client.ws.send_json({"op": "ping"})
    pong = await client.recv()
    assert pong["type"] == "pong" and pong["seq"] == 1


async def test_malformed_message_gets_an_error_and_the_connection_stays(stack: Stack) -> None:
    client = await stack.connect()
    await client.ws.send_str("{nope")
    err = await client.recv()
    assert err["type"] == "error" and err["data"]["code"] == "malformed_json"
    await client.ws.send_json({"op": "subscribe", "channels": ["prices"], "typo": 1})
    assert (await client.recv())["data"]["code"] == "validation_error"
    await client.ws.send_json({"op": "ping"})
    assert (await client.recv())["type"] == "pong"


async def test_oversized_message_is_rejected_with_1009(stack: Stack) -> None:
    client = await stack.connect()
    await client.ws.send_str('{"op":"ping","pad":"' + "x" * (stack.hub.max_msg_size + 10) + '"}')
    msg = await client.ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009


# -- alerts ----------------------------------------------------------------------------------


async def test_halt_is_an_alert(stack: Stack) -> None:
    client = await stack.connect()
    await client.subscribe(["alerts"])
    stack.runtime.apply(stack.engine.set_halt, True)
    alert = await client.recv_type("alert")
    assert alert["data"]["code"] == "halt_changed" and alert["data"]["details"]["buys"] is True


async def test_close_all_closes_clients_with_going_away(stack: Stack) -> None:
    client = await stack.connect()
    await client.subscribe(["alerts"])
    await stack.hub.close_all()
    msg = await client.ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1001


async def test_an_engine_transition_only_queues_fan_out_work(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    client = await stack.connect()
    await client.subscribe(["signals", "trades", "positions"])
    (hub_client,) = stack.hub.clients
    stack.signal(TOKEN_A, "s1")
    # Inside the transition no client was visited; the paper order was already filled (an
    # in-process venue settles in the same loop turn) and its trade waits in the backlog.
    assert stack.hub.dispatch.backlog > 0 and len(hub_client.outbox.queue) == 0
    assert not stack.runtime.in_flight
    assert [p.status for p in stack.engine.positions.values()] == ["open"]
    await stack.settle()
    await client.recv_type("trade")


async def test_shutdown_delivers_what_was_published_before_closing(stack: Stack) -> None:
    client = await stack.connect()
    await client.subscribe(["alerts"])
    stack.runtime.apply(stack.engine.set_halt, True)  # published, not yet fanned out
    await stack.hub.close_all()
    alert = await client.recv()
    assert alert["type"] == "alert" and alert["data"]["code"] == "halt_changed"
    msg = await client.ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1001


async def test_a_duplicate_key_in_the_auth_message_does_not_authenticate(stack: Stack) -> None:
    assert stack.client is not None
    ws = await stack.client.ws_connect("/v1/ws")
    await ws.send_str(f'{{"op": "auth", "key": "x", "key": "{stack.read_key}"}}')
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT and '"unauthorized"' in msg.data
    await ws.close()


async def test_a_subscribe_with_a_duplicate_key_or_a_control_character_is_refused(
    stack: Stack,
) -> None:
    client = await stack.connect()
    for raw in (
        '{"op": "subscribe", "channels": ["prices"], "channels": ["alerts"]}',
        '{"op": "subscribe", "channels": ["agents"], "agents": ["x\\u0000"]}',
    ):
        await client.ws.send_str(raw)
        err = await client.recv()
        assert err["type"] == "error" and err["data"]["code"] == "validation_error", raw
