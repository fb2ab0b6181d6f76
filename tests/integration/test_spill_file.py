"""The spill file (adapters/store/spill.py) keeps every acknowledged entry readable: a torn
frame left by an append that never completed is cut when the file is opened and before the
next append, and an append the disk cannot take whole raises, keeping nothing of its batch
(a tester's findings: frames appended after a torn one were fsync'd and acknowledged, yet
unreadable, and dropped at the next replay)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tradingd.adapters.store.embedded import EmbeddedRedis
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.store.records import Entry
from tradingd.adapters.store.redis import RedisWriteThrough
from tradingd.adapters.store.spill import SpillFile
from tradingd.adapters.store.stream_codec import Keys

from tests.polling import poll_until_async


def entries(start: int, n: int) -> list[Entry]:
    return [
        Entry((1_700_000_000_000 + i) << 20, "BalanceChanged", f"k{i}", "a1", b'{"v": %d}' % i)
        for i in range(start, start + n)
    ]


def test_a_torn_tail_is_cut_at_open_and_what_is_appended_after_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.spill"
    first = SpillFile(path)
    first.append(entries(0, 3))
    whole = path.stat().st_size
    with path.open("ab") as f:  # a frame whose append was killed: 40 bytes said, 10 written
        f.write(b"\x00\x00\x00\x28\x12\x34\x56\x78" + b"x" * 10)

    spill = SpillFile(path)
    assert spill.count == 3 and path.stat().st_size == whole
    spill.append(entries(3, 2))
    assert [e.key for e in spill.read()] == ["k0", "k1", "k2", "k3", "k4"]
    assert SpillFile(path).count == 5


def test_zeros_a_crash_left_and_damage_are_cut_at_open_and_kept_beside_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.spill"
    SpillFile(path).append(entries(0, 4))
    data = bytearray(path.read_bytes())
    frame = len(data) // 4  # the frames are the same size
    data[frame + 9] ^= 0xFF  # the second frame's body damaged
    path.write_bytes(bytes(data) + bytes(64))  # and zeros after the last one

    spill = SpillFile(path)
    assert [e.key for e in spill.read()] == ["k0"] and spill.count == 1
    (aside,) = tmp_path.glob("x.spill.cut-*")
    assert aside.read_bytes() == bytes(data[frame:]) + bytes(64)  # for the operator


def test_a_spill_file_deleted_under_the_daemon_is_started_anew_not_padded(tmp_path: Path) -> None:
    path = tmp_path / "x.spill"
    spill = SpillFile(path)
    spill.append(entries(0, 3))
    path.unlink()
    spill.append(entries(3, 2))
    assert [e.key for e in spill.read()] == ["k3", "k4"] and spill.count == 2
    assert SpillFile(path).count == 2


def test_an_append_the_disk_cannot_take_whole_raises_and_keeps_nothing_of_it(
    tmp_path: Path,
) -> None:
    """RLIMIT_FSIZE stands in for a full disk (a write taken in part, then refused), in a
    child process so the limit stays there."""
    script = textwrap.dedent(
        f"""
        import resource, signal
        from pathlib import Path
        from tradingd.adapters.store.records import Entry
        from tradingd.adapters.store.spill import SpillFile

        def entries(start, n):
            return [Entry((1_700_000_000_000 + i) << 20, "BalanceChanged", f"k{{i}}", "a1",
                          b'{{"v": "%s"}}' % (b"x" * 200)) for i in range(start, start + n)]

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = Path({str(tmp_path / "x.spill")!r})
        spill = SpillFile(path)
        spill.append(entries(0, 2))
        size = path.stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, resource.RLIM_INFINITY))
        try:
            spill.append(entries(2, 10))
        except OSError:
            pass
        else:
            raise SystemExit("a short write was taken for a whole one")
        assert spill.count == 2 and path.stat().st_size == size
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        spill.append(entries(12, 1))
        assert [e.key for e in spill.read()] == ["k0", "k1", "k12"], spill.read()
        assert SpillFile(path).count == 3
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


async def test_a_batch_the_spill_file_refuses_is_not_acknowledged_and_is_kept_for_later(
    tmp_path: Path,
) -> None:
    """Redis down and the spill file refusing too (here its directory replaced by a file, as
    a full disk refuses): the write-through acknowledges nothing, keeps the batch in memory
    and spills it, in order, once the file takes it; Redis then gets it all."""
    own = EmbeddedRedis(tmp_path / "own")
    url = own.start()
    r = aioredis.Redis.from_url(url)
    keys = Keys("spilltest")
    spill_dir = tmp_path / "spill"
    spill = SpillFile(spill_dir / "x.spill")
    wt = RedisWriteThrough(r, keys, spill, lambda up, _: None, lambda: 7)
    task = asyncio.create_task(wt.run())
    try:
        wt.enqueue(entries(0, 2))
        await wt.flushed(5)
        own.stop()
        spill_dir.rmdir()
        spill_dir.write_bytes(b"")  # open() under it fails: ENOTDIR
        wt.enqueue(entries(2, 3))
        with pytest.raises(StoreUnavailable):
            await wt.flushed(1.0)
        wt.enqueue(entries(5, 1))  # behind the refused batch
        spill_dir.unlink()
        spill_dir.mkdir()
        await wt.flushed(5)  # spilled now, in order
        assert [e.key for e in spill.read()] == ["k2", "k3", "k4", "k5"]

        own.start()
        await poll_until_async(lambda: spill.count, lambda n: n == 0, what="spill replayed")
        ids = [e[0] for e in await r.xrange(keys.stream)]
        assert len(ids) == 6 and ids == sorted(ids)
    finally:
        wt.stopped = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await r.aclose()
        own.stop()


def test_a_spill_file_replaced_by_a_longer_one_is_read_again_not_cut_mid_frame(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.spill"
    spill = SpillFile(path)
    spill.append(entries(0, 2))
    other = tmp_path / "other.spill"
    SpillFile(other).append(entries(50, 3))  # longer than ours
    other.replace(path)
    spill.append(entries(10, 1))
    assert [e.key for e in spill.read()] == ["k50", "k51", "k52", "k10"]
    assert SpillFile(path).count == 4
