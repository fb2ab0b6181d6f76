"""The write-behind's acknowledgement script (stream_codec.ACK_SCRIPT) on a real Redis: a batch's
entries leave the consumer group's pending list, and the stream keeps exactly what is not yet
acknowledged and everything after it, whatever runs of ids the batch holds and in whatever order
batches are acknowledged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_harness import StoreServers
from tradingd.adapters.store.records import SEQ_BITS, SEQ_MASK, Entry, stream_id
from tradingd.adapters.store.stream_codec import ACK_SCRIPT, ack_args

GROUP = "pg-writer"
MS = 1_764_000_000_000


@pytest.fixture
async def redis(store_servers: StoreServers, namespace: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(store_servers.redis_url)
    yield r
    await r.aclose()


def _entry(entry_id: int) -> Entry:
    return Entry(entry_id, "OrderFilled", "k", "a", b"{}")


async def _stream_with(
    r: aioredis.Redis, stream: str, ids: list[int], reads: tuple[tuple[str, int], ...] = ()
) -> None:
    """The stream holding `ids`, delivered in order to the group's consumers as `reads` says
    ((consumer, count), ...; default: all of them to "c"), so pending."""
    for i in ids:
        await r.xadd(stream, {"e": b"{}"}, id=stream_id(i))
    await r.xgroup_create(stream, GROUP, id="0")
    for consumer, count in reads or (("c", len(ids) + 1),):
        await r.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)


async def _ack(r: aioredis.Redis, stream: str, batch: list[int]) -> int:
    script = r.register_script(ACK_SCRIPT)
    return int(await script(keys=[stream], args=ack_args(GROUP, [_entry(i) for i in batch])))


async def _pending_and_left(r: aioredis.Redis, stream: str) -> tuple[list[str], list[str]]:
    pending = await r.xpending_range(stream, GROUP, min="-", max="+", count=100_000)
    left = await r.xrange(stream)
    return [p["message_id"].decode() for p in pending], [sid.decode() for sid, _ in left]


async def test_a_batch_across_a_millisecond_boundary_is_acknowledged_and_trimmed(redis, namespace):
    stream = f"{{{namespace}}}:stream"
    last_of_ms = MS << SEQ_BITS | SEQ_MASK  # the next id is the next ms's first
    ids = [last_of_ms - 1, last_of_ms, last_of_ms + 1, last_of_ms + 2, last_of_ms + 10]
    await _stream_with(redis, stream, ids)
    assert await _ack(redis, stream, ids[:4]) == 4
    pending, left = await _pending_and_left(redis, stream)
    assert pending == left == [stream_id(ids[4])]
    assert await _ack(redis, stream, ids[4:]) == 1
    assert await _pending_and_left(redis, stream) == ([], [])


async def test_the_trim_stops_at_an_older_entry_still_pending(redis, namespace):
    stream = f"{{{namespace}}}:stream"
    ids = [MS << SEQ_BITS | n for n in range(1, 8)]
    await _stream_with(redis, stream, ids)
    assert await _ack(redis, stream, ids[2:5]) == 3  # ids[0:2] stay pending (a failed batch)
    pending, left = await _pending_and_left(redis, stream)
    assert pending == [stream_id(i) for i in (*ids[:2], *ids[5:])]
    assert left == [stream_id(i) for i in ids]  # nothing below the oldest pending goes


async def test_a_dead_consumers_older_batch_acknowledged_last_leaves_nothing_behind(
    redis, namespace
):
    """A takeover: the newer entries are written and acknowledged first, the dead consumer's
    older ones (reclaimed) last; then every entry is acknowledged and none may stay."""
    stream = f"{{{namespace}}}:stream"
    ids = [MS << SEQ_BITS | n for n in range(1, 21)]
    await _stream_with(redis, stream, ids, (("dead", 10), ("c", 10)))
    assert await _ack(redis, stream, ids[10:]) == 10
    pending, left = await _pending_and_left(redis, stream)
    assert pending == [stream_id(i) for i in ids[:10]] and left == [stream_id(i) for i in ids]
    assert await _ack(redis, stream, ids[:10]) == 10  # the reclaimed batch
    assert await _pending_and_left(redis, stream) == ([], [])


async def test_entries_not_yet_delivered_are_never_trimmed(redis, namespace):
    stream = f"{{{namespace}}}:stream"
    ids = [MS << SEQ_BITS | n for n in range(1, 11)]
    await _stream_with(redis, stream, ids, (("c", 4),))
    assert await _ack(redis, stream, ids[:4]) == 4
    assert await _pending_and_left(redis, stream) == ([], [stream_id(i) for i in ids[4:]])


async def test_a_batch_of_thousands_in_one_call(redis, namespace):
    stream = f"{{{namespace}}}:stream"
    ids = [(MS + n // 3000) << SEQ_BITS | (n % 3000) for n in range(7000)]
    await _stream_with(redis, stream, ids)
    assert await _ack(redis, stream, ids) == 7000
    assert await _pending_and_left(redis, stream) == ([], [])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    gaps=st.lists(st.integers(1, 3), min_size=2, max_size=40),
    start_seq=st.sampled_from([0, 5, SEQ_MASK - 3]),
    cut=st.data(),
)
async def test_any_batch_leaves_exactly_the_others_pending(redis, namespace, gaps, start_seq, cut):
    stream = f"{{{namespace}}}:stream:{start_seq}:{len(gaps)}:{sum(gaps)}"
    await redis.delete(stream)
    ids, i = [], MS << SEQ_BITS | start_seq
    for g in gaps:
        i += g
        ids.append(i)
    await _stream_with(redis, stream, ids)
    lo = cut.draw(st.integers(0, len(ids) - 1))
    hi = cut.draw(st.integers(lo + 1, len(ids)))
    assert await _ack(redis, stream, ids[lo:hi]) == hi - lo
    pending, left = await _pending_and_left(redis, stream)
    assert pending == [stream_id(x) for x in ids[:lo] + ids[hi:]]
    first = ids[0] if lo > 0 else (ids[hi] if hi < len(ids) else None)
    assert left == ([] if first is None else [stream_id(x) for x in ids if x >= first])
