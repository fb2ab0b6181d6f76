"""The write-through against a Redis that answers but refuses, and a spill file that refuses:
Redis counts as back only once it took a write, and a spill file it cannot use never keeps a
healthy Redis from being written (testers' findings; real Redis, real files)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from tradingd.adapters.store.embedded import EmbeddedRedis
from tradingd.adapters.store.records import Entry
from tradingd.adapters.store.redis import RedisWriteThrough
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.stream_codec import Keys
from tradingd.engine.model import Tick

from tests.polling import poll_until_async


def entries(start: int, n: int) -> list[Entry]:
    return [
        Entry((1_700_000_000_000 + i) << 20, "AgentSaved", f"a{i}", f"a{i}", b'{"x": %d}' % i)
        for i in range(start, start + n)
    ]


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.own = EmbeddedRedis(tmp_path / "own")
        url = self.own.start()
        self.admin = aioredis.Redis.from_url(url)
        self.r = aioredis.Redis.from_url(url)
        self.keys = Keys("refusals")
        self.statuses: list[bool] = []
        self.spill_dir = tmp_path / "spill"
        self.spill = SpillFile(self.spill_dir / "x.spill")
        self.wt = RedisWriteThrough(
            self.r, self.keys, self.spill, lambda up, _: self.statuses.append(up), lambda: 7
        )
        self.task = asyncio.create_task(self.wt.run())

    async def close(self) -> None:
        self.wt.stopped = True
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.admin.aclose()
        await self.r.aclose()
        self.own.stop()


async def test_prices_alone_against_a_redis_refusing_writes_report_it_down_once(
    tmp_path: Path,
) -> None:
    """Prices are never spilled, so after a refused price write nothing was left to prove
    Redis back but a PING: it was reported up and down again every few hundred ms."""
    rig = Rig(tmp_path)
    try:
        rig.wt.enqueue(entries(0, 2))
        await rig.wt.flushed(5)
        await rig.admin.config_set("maxmemory", 1)  # noeviction, the default: writes refused
        deadline = time.monotonic() + 3.0
        for n in range(60):
            if time.monotonic() > deadline:
                break
            rig.wt.enqueue_ticks([Tick("MINT1", 1.0 + n / 100, 1_700_000_000_000 + n)])
            await asyncio.sleep(0.05)
        assert rig.statuses == [False], rig.statuses
        await rig.admin.config_set("maxmemory", 0)
        rig.wt.enqueue_ticks([Tick("MINT1", 2.0, 1_700_000_001_000)])
        await poll_until_async(lambda: rig.statuses, lambda s: s == [False, True], what="back")
    finally:
        await rig.close()


async def test_a_spill_file_it_cannot_write_does_not_keep_a_healthy_redis_from_its_writes(
    tmp_path: Path,
) -> None:
    """Redis down and the spill unwritable (its directory replaced by a file): the batch waits
    in memory. Redis back, it was never written: emptying the (empty) spill file failed and
    counted as Redis refusing."""
    rig = Rig(tmp_path)
    try:
        rig.wt.enqueue(entries(0, 2))
        await rig.wt.flushed(5)
        rig.own.stop()
        rig.spill_dir.rmdir()
        rig.spill_dir.write_bytes(b"")
        rig.wt.enqueue(entries(2, 3))
        await poll_until_async(lambda: rig.statuses, lambda s: s == [False], what="down")
        rig.own.start()
        await rig.wt.flushed(10)
        assert rig.statuses == [False, True]
        ids = [e[0] for e in await rig.admin.xrange(rig.keys.stream)]
        assert len(ids) == 5 and ids == sorted(ids)
    finally:
        await rig.close()
