"""Helpers every benchmark shares: percentiles of timing samples, the `--json PATH` option, and
writing the result file. Benchmarks run as scripts (`python benchmarks/x.py`), which puts this
directory on sys.path, so they import it as:

    from _stats import add_json_arg, percentiles, write_json

    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    args = parser.parse_args()
    ...
    write_json(args.json, {"ticks_per_s": rate, "tick_latency_us": percentiles(samples_us)})
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

POINTS = (50.0, 90.0, 99.0, 99.9)


def _key(point: float) -> str:
    return "p" + f"{point:g}".replace(".", "")  # 50 -> p50, 99.9 -> p999


def percentiles(samples: Sequence[float], points: Sequence[float] = POINTS) -> dict[str, float]:
    """count, min, mean, max and nearest-rank percentiles (p50, p90, p99, p999 by default) of
    `samples`, in the samples' unit. Empty input gives count 0 and NaN elsewhere."""
    n = len(samples)
    if n == 0:
        return {"count": 0, "min": math.nan, "mean": math.nan, "max": math.nan} | {
            _key(p): math.nan for p in points
        }
    ordered = sorted(samples)
    out: dict[str, float] = {
        "count": n,
        "min": ordered[0],
        "mean": math.fsum(ordered) / n,
        "max": ordered[-1],
    }
    for p in points:
        out[_key(p)] = ordered[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))]
    return out


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's coroutine on uvloop (the daemon's loop), or asyncio's where uvloop is
    missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    """The common `--json PATH` option: where to write the machine-readable figures."""
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")


def write_json(path: str | Path | None, obj: Any) -> None:
    """Write `obj` as indented JSON (creating parent directories); no-op when `path` is None.
    NaN/inf become null so the file stays valid JSON."""
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
