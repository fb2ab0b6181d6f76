"""The price book is bounded: a flood of distinct mints cannot grow it past `[prices]
max_tokens`; beyond it a new token is refused (`token_capacity`) unless watched, and prices
nobody needs (unwatched, too old to buy on) are evicted to make room."""

from __future__ import annotations

import asyncio
import hashlib
import time

import base58
from http_harness import TOKEN, Api, serve

CAP = 10


def mint(i: int) -> str:
    return base58.b58encode(hashlib.sha256(f"flood-{i}".encode()).digest()).decode()


async def push(api: Api, tokens: list[str], price: float = 1.0) -> dict:
    ticks = [{"token": t, "price_usd": price, "decimals": 6} for t in tokens]
    return await api.ok("POST", "/v1/prices", {"ticks": ticks})


async def test_a_flood_of_mints_is_refused_beyond_the_bound_and_keeps_watched_prices(tmp_path):
    async with serve(tmp_path, prices={"max_tokens": CAP}) as api:
        agent = await api.agent({"sizing": {"mode": "fixed", "amount": "100000000"}})
        await api.prices(("So11111111111111111111111111111111111111112", 150.0))
        await push(api, [TOKEN])
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "strength": 3})
        await api.settle()
        for start in range(0, 400, 40):
            doc = await push(api, [mint(i) for i in range(start, start + 40)])
            assert doc["accepted"] + doc.get("reasons", {}).get("token_capacity", 0) == 40
        engine = api.daemon.engine
        assert len(engine.prices) <= CAP + 1
        assert TOKEN in engine.prices  # held: never evicted
        assert (await api.ok("GET", f"/v1/prices/{TOKEN}"))["price_usd"] == 1.0
        positions = (await api.ok("GET", f"/v1/agents/{agent}/positions?status=open"))["items"]
        assert len(positions) == 1
        assert len(engine.decimals) < 50  # learned decimals of evicted tokens leave too


async def test_a_new_token_is_refused_when_every_price_is_watched(tmp_path):
    watched = [mint(i) for i in range(CAP)]
    async with serve(tmp_path, prices={"max_tokens": CAP, "watchlist": watched}) as api:
        assert (await push(api, watched))["accepted"] == CAP
        doc = await push(api, [mint(1000)])
        assert doc == {"accepted": 0, "rejected": 1, "reasons": {"token_capacity": 1}}
        status, _ = await api.call("GET", f"/v1/prices/{mint(1000)}")
        assert status == 404
        assert (await push(api, watched, 2.0))["accepted"] == CAP  # known tokens still move


async def test_stale_unwatched_prices_are_evicted_to_admit_a_new_token(tmp_path):
    async with serve(tmp_path, prices={"max_tokens": CAP, "max_price_age_ms": 300}) as api:
        old = int(time.time() * 1000) - 301  # a tick already too old is refused, never applied
        doc = await api.ok(
            "POST", "/v1/prices", {"ticks": [{"token": mint(0), "price_usd": 1.0, "ts": old}]}
        )
        assert doc["reasons"] == {"stale": 1}
        ticks = [{"token": mint(i), "price_usd": 1.0} for i in range(CAP)]
        assert (await api.ok("POST", "/v1/prices", {"ticks": ticks}))["accepted"] == CAP
        await asyncio.sleep(0.35)  # every price is now older than max_price_age_ms
        doc = await push(api, [mint(1000)])
        assert doc["accepted"] == 1
        assert set(api.daemon.engine.prices) == {mint(1000)}
        status, _ = await api.call("GET", f"/v1/prices/{mint(0)}")
        assert status == 404


async def test_a_token_named_by_a_signal_is_priced_even_right_after_a_refusal(tmp_path):
    async with serve(tmp_path, prices={"max_tokens": CAP}) as api:
        await push(api, [mint(i) for i in range(CAP)])
        assert (await push(api, [mint(500)]))["reasons"] == {"token_capacity": 1}
        await api.ok("POST", "/v1/signals", {"token": mint(501), "strength": 3})
        assert (await push(api, [mint(501)]))["accepted"] == 1  # watched: always priced


async def test_signals_cannot_grow_the_book_past_twice_the_bound(tmp_path):
    async with serve(tmp_path, prices={"max_tokens": CAP}) as api:
        for round_ in range(5):  # each round names new mints by signal, then prices them
            tokens = [mint(100 * round_ + i) for i in range(CAP)]
            for t in tokens:
                await api.ok("POST", "/v1/signals", {"token": t, "strength": 3})
            await push(api, tokens)
        assert len(api.daemon.engine.prices) <= 2 * CAP
