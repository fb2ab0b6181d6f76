"""Top frames of a `py-spy record --format raw` profile (collapsed stacks, `a;b;c count`), by own
time (the frame is the leaf) and by cumulative time (the frame is anywhere on the stack, counted
once per sample), for the daemon's main thread (its event loop). Line numbers are dropped, so a
function's lines add up.

    .venv/bin/python benchmarks/_profile_top.py PROFILE.raw [--top 15] [--under FUNCTION]
        [--split FUNCTION]

--under keeps only the samples whose stack holds FUNCTION (e.g. `Runtime.push_ticks`); --split
also shows where the time under FUNCTION goes, by the frame just below it (e.g. `Runner.run`:
which task or callback of the event loop)."""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

LINE = re.compile(r":\d+\)$")
MAIN = "_run_module_as_main"  # the stack root of the main thread of `python -m ...`


def frames(stack: str) -> list[str]:
    return [LINE.sub(")", f) for f in stack.split(";")]


def top(path: str, n: int, under: str | None, split: str | None = None) -> str:
    own: Counter[str] = Counter()
    below: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack.startswith(MAIN):
                continue
            fs = frames(stack)
            if under is not None and not any(under in x for x in fs):
                continue
            k = int(count)
            total += k
            own[fs[-1]] += k
            for x in set(fs):
                cumulative[x] += k
            if split is not None:
                at = next((i for i, x in enumerate(fs) if split in x), None)
                if at is not None:
                    below[fs[at + 1] if at + 1 < len(fs) else "(itself)"] += k
    out = [f"{total} main-thread samples" + (f" under {under}" if under else "")]
    tables = [("own", own), ("cumulative", cumulative)]
    if split is not None:
        tables.append((f"the frame below {split}", below))
    for title, counter in tables:
        out.append(f"\ntop {n} by {title} time:")
        for frame, k in counter.most_common(n):
            out.append(f"{100 * k / max(total, 1):6.1f}%  {k:>6}  {frame}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--under", help="only samples whose stack holds this function")
    parser.add_argument("--split", help="group the time under this function by its callee")
    args = parser.parse_args()
    print(top(args.profile, args.top, args.under, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
