"""The Redis a benchmark talks to: REDIS_URL when set, else an embedded one in a temporary dir,
stopped on exit."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tradingd.adapters.store.embedded import EmbeddedRedis


@contextmanager
def bench_redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tradingd-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        try:
            yield server.start()
        finally:
            server.stop()
