"""One feed leader per source across shards, against the real Redis and a fake DexScreener
speaking the contract's wire format (tests/fakes/dexscreener.py): three shards' feeds for one
source, only the lease holder's polls, it prices every shard's watched tokens, and when it stops
or loses its lease another shard leads within about lease_ms; a leader that lost its lease
publishes nothing more."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from store_harness import StoreServers
from tradingd.adapters.app.settings import DexScreenerFeedSettings
from tradingd.adapters.cluster.feed_leader import FeedLeaders
from tradingd.adapters.feeds.dexscreener import DexScreenerFeed
from tradingd.engine.model import Tick

from tests.fakes.dexscreener import BABY, WSOL, FakeDexScreener, pumpfun_pair, sol_usdc_pair
from tests.polling import poll_until_async

LEASE_MS = 600
SOURCE = "dexscreener"


@dataclass
class Shard:
    leaders: FeedLeaders
    feed: DexScreenerFeed
    own: set[str]
    published: list[list[Tick]] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def requests(self) -> int:
        return self.feed.counters().get("requests", 0)

    def health(self) -> dict[str, Any]:
        return self.leaders.components.get("feeds", {}).get(SOURCE, {"status": "own"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeDexScreener]:
    dex = FakeDexScreener()
    dex.set_pairs(BABY, pumpfun_pair())
    dex.set_pairs(WSOL, sol_usdc_pair())
    await dex.start()
    yield dex
    await dex.close()


@pytest.fixture
async def shards(
    store_servers: StoreServers, namespace: str, fake: FakeDexScreener
) -> AsyncIterator[list[Shard]]:
    """Three shards; shard 0 watches BABY, shard 1 WSOL, shard 2 nothing."""
    own_tokens = [{BABY}, {WSOL}, set()]
    made: list[Shard] = []
    for i, own in enumerate(own_tokens):
        leaders = FeedLeaders(
            store_servers.redis_url, namespace, i, 3, instance=f"shard{i}",
            lease_ms=LEASE_MS, local_watched=lambda own=own: set(own), components={},
        )  # fmt: skip
        await leaders.open()
        settings = DexScreenerFeedSettings(url=fake.url, interval_ms=100, backoff_max_ms=50)
        shard = Shard(leaders, DexScreenerFeed(settings, leaders.watched), own)
        loop = asyncio.get_running_loop()
        shard.tasks.append(loop.create_task(leaders.share_watched()))
        made.append(shard)
    for shard in made:
        run = shard.feed.run
        loop = asyncio.get_running_loop()
        shard.tasks.append(
            loop.create_task(shard.leaders.lead(SOURCE, run, shard.published.append))
        )
    yield made
    for shard in made:
        for task in shard.tasks:
            task.cancel()
        await asyncio.gather(*shard.tasks, return_exceptions=True)
        await shard.leaders.close()


def leading(shards: list[Shard]) -> list[int]:
    return [i for i, s in enumerate(shards) if s.leaders.leads(SOURCE)]


async def one_leader(shards: list[Shard], but: int | None = None) -> int:
    got = await poll_until_async(
        lambda: (lambda ids: ids if len(ids) == 1 and ids[0] != but else None)(leading(shards)),
        what="exactly one feed leader",
        timeout_s=10,
        tries=10_000,
    )
    return got[0]


def priced(shard: Shard) -> set[str]:
    return {t.token for batch in shard.published for t in batch}


async def test_only_the_leader_polls_and_it_prices_every_shards_tokens(shards, fake):
    leader = await one_leader(shards)
    await poll_until_async(
        lambda: priced(shards[leader]) >= {BABY, WSOL},
        what="the leader prices shard 0's BABY and shard 1's WSOL",
        timeout_s=10,
        tries=10_000,
    )
    await asyncio.sleep(0.5)  # several polls of the leader
    assert leading(shards) == [leader]
    for i, shard in enumerate(shards):
        if i != leader:
            assert shard.requests() == 0 and shard.published == []
            assert shard.health()["status"] == "follower"
            assert shard.health()["leader"].endswith(f":shard{leader}")
    assert shards[leader].requests() == len(fake.token_requests())
    assert shards[leader].health() == {"status": "own"}  # the feed's own health shows


async def test_a_stopped_leader_hands_over_to_another_shard(shards, fake):
    first = await one_leader(shards)
    await shards[first].leaders.close()  # a clean stop: the lease released
    for task in shards[first].tasks:
        task.cancel()
    second = await one_leader(shards, but=first)
    polled = shards[second].requests()
    await poll_until_async(
        lambda: shards[second].requests() > polled and priced(shards[second]) >= {BABY, WSOL},
        what="the new leader polls every shard's tokens",
        timeout_s=10,
        tries=10_000,
    )


async def test_a_leader_whose_lease_is_taken_stops_publishing(shards, store_servers, namespace):
    leader = await one_leader(shards)
    r = aioredis.Redis.from_url(store_servers.redis_url)
    try:
        # another process holds the lease now (the leader was partitioned past it)
        await r.set(f"{{{namespace}:feed:{SOURCE}}}:lease", "99:elsewhere", px=60_000)
        await poll_until_async(
            lambda: not shards[leader].leaders.leads(SOURCE),
            what="the old leader gives the source up at its next renewal",
            timeout_s=5,
            tries=10_000,
        )
        await asyncio.sleep(0.05)
        before = [len(s.published) for s in shards]
        await asyncio.sleep(LEASE_MS / 1000)
        assert [len(s.published) for s in shards] == before  # nobody publishes: "elsewhere" leads
        assert leading(shards) == []
        assert all(s.health()["leader"] == "99:elsewhere" for s in shards)
    finally:
        await r.aclose()


async def test_a_stale_leaders_late_push_is_dropped(shards):
    leader = await one_leader(shards)
    shard = shards[leader]
    push = shard.leaders.guarded(SOURCE, shard.published.append)
    time.sleep(LEASE_MS / 1000 + 0.1)  # the loop stalls past the lease: by its clock, lapsed
    before = len(shard.published)
    push([Tick(BABY, 1.0, 1, SOURCE)])
    assert len(shard.published) == before and shard.leaders.dropped[SOURCE] == 1


async def test_a_leader_whose_upstream_keeps_failing_hands_the_feed_over(store_servers, namespace):
    """A tester's MEDIUM: the leader's DexScreener answered 500 for 12 s, it kept the lease,
    and every shard's prices went stale while another shard could have polled. Two shards,
    each its own path to the service (a fake each): the failing leader hands over."""
    fakes = [FakeDexScreener(), FakeDexScreener()]
    made: list[Shard] = []
    tasks: list[asyncio.Task[Any]] = []
    loop = asyncio.get_running_loop()
    try:
        for i, fake in enumerate(fakes):
            fake.set_pairs(BABY, pumpfun_pair())
            await fake.start()
            leaders = FeedLeaders(
                store_servers.redis_url, namespace, i, 2, instance=f"shard{i}",
                lease_ms=LEASE_MS, local_watched=lambda: {BABY}, components={},
                handover_after_ms=1000,
            )  # fmt: skip
            await leaders.open()
            settings = DexScreenerFeedSettings(url=fake.url, interval_ms=100, backoff_max_ms=50)
            shard = Shard(leaders, DexScreenerFeed(settings, leaders.watched), {BABY})
            made.append(shard)
            tasks.append(
                loop.create_task(
                    leaders.lead(SOURCE, shard.feed.run, shard.published.append, shard.feed.health)
                )
            )
        first = await one_leader(made)
        fakes[first].fail_next(100_000, 500)  # this shard's path to the service is broken
        other = 1 - first
        await poll_until_async(
            lambda: made[other].leaders.leads(SOURCE) and priced(made[other]) == {BABY},
            what="the other shard leads and prices",
            timeout_s=15,
            tries=100_000,
        )
        assert made[first].leaders.handovers[SOURCE] == 1
        assert made[first].health()["status"] == "follower"
        assert "upstream" in made[first].health()["reason"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for shard in made:
            await shard.leaders.close()
        for fake in fakes:
            await fake.close()
