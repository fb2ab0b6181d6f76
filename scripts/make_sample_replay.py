"""Regenerate adapters/samples/sample.jsonl, the recorded file `tradingd replay` demos with.

Deterministic (fixed seed, fixed start time): running it again gives the same bytes. The price
paths are crafted for the sample agents (adapters/samples/sample_agents.toml):
SAMPLEA crashes (DCA, then stop-loss), SAMPLEB runs +130% (take-profit ladder, moon bag kept),
SAMPLEC dips and recovers (DCA, take-profit, then a stop in profit), SAMPLED drifts sideways
until a sell signal closes it. Token mints are synthetic (`demo_mint`), never a real token's.

    .venv/bin/python scripts/make_sample_replay.py [OUT]
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.engine.assets import SOL_MINT

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DURATION_S = 600
TICK_EVERY_S = 4
SOL_EVERY_S = 30
CLOCK_EVERY_S = 60
NOISE = 0.002  # multiplicative gaussian noise on every tick, sigma

# (seconds, USD price) knots; prices between knots interpolate in log space.
PATHS: dict[str, list[tuple[int, float]]] = {
    "SAMPLEA": [(0, 1.00), (60, 1.08), (120, 1.04), (240, 0.70), (600, 0.72)],
    "SAMPLEB": [
        (0, 0.50),
        (30, 0.51),
        (150, 0.70),
        (200, 0.65),
        (330, 1.05),
        (420, 1.20),
        (600, 1.17),
    ],
    "SAMPLEC": [
        (0, 2.00),
        (40, 2.00),
        (100, 1.72),
        (160, 1.76),
        (300, 2.60),
        (450, 2.62),
        (600, 2.30),
    ],
    "SAMPLED": [(0, 0.020), (45, 0.0202), (400, 0.0208), (600, 0.0206)],
}
SOL_PATH = [(0, 150.0), (600, 153.0)]

SIGNALS = [
    {"at": 10, "symbol": "SAMPLEA", "id": "sig-a-1", "type": "breakout", "strength": 4},
    {"at": 20, "symbol": "SAMPLEB", "id": "sig-b-1", "type": "hypersurge", "strength": 5},
    {"at": 30, "symbol": "SAMPLEC", "id": "sig-c-1", "type": "dip", "strength": 2},
    {"at": 45, "symbol": "SAMPLED", "id": "sig-d-1", "type": "breakout", "strength": 4},
    {"at": 50, "symbol": "SAMPLEA", "id": "sig-a-2", "type": "breakout", "strength": 4},
    {
        "at": 420,
        "symbol": "SAMPLED",
        "id": "sig-d-exit",
        "type": "exit",
        "strength": 3,
        "side": "sell",
    },
]


def price_at(path: list[tuple[int, float]], t: float) -> float:
    for (t0, p0), (t1, p1) in zip(path, path[1:], strict=False):
        if t0 <= t <= t1:
            f = (t - t0) / (t1 - t0)
            return math.exp(math.log(p0) + f * (math.log(p1) - math.log(p0)))
    return path[-1][1]


def records(seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[tuple[int, int, dict[str, object]]] = []  # (ms, order within ms, record)
    for t in range(0, DURATION_S + 1, SOL_EVERY_S):
        rec = {
            "kind": "tick",
            "ts": START_MS + t * 1000,
            "token": SOL_MINT,
            "price_usd": round(price_at(SOL_PATH, t), 4),
            "decimals": 9,
            "source": "pyth",
        }
        out.append((t * 1000, 0, rec))
    for i, (symbol, path) in enumerate(PATHS.items()):
        mint = demo_mint(symbol)
        # Tokens tick at staggered offsets so the file interleaves like a real recording.
        for t in range(0, DURATION_S + 1, TICK_EVERY_S):
            ms = t * 1000 + 250 * (i + 1)
            price = price_at(path, ms / 1000) * (1 + rng.gauss(0, NOISE))
            rec = {
                "kind": "tick",
                "ts": START_MS + ms,
                "token": mint,
                "price_usd": float(f"{price:.6g}"),
                "decimals": 6,
                "source": "dexscreener",
            }
            out.append((ms, 1, rec))
    for s in SIGNALS:
        ms = int(s["at"]) * 1000 + 900  # type: ignore[call-overload]
        rec = {
            "kind": "signal",
            "ts": START_MS + ms,
            "id": s["id"],
            "token": demo_mint(str(s["symbol"])),
            "symbol": s["symbol"],
            "side": s.get("side", "buy"),
            "type": s["type"],
            "strength": s["strength"],
            "expires_in_ms": 30_000,
        }
        out.append((ms, 2, rec))
    for t in range(CLOCK_EVERY_S, DURATION_S + 1, CLOCK_EVERY_S):
        out.append((t * 1000 + 999, 3, {"kind": "clock", "ts": START_MS + t * 1000 + 999}))
    out.sort(key=lambda r: (r[0], r[1]))
    return [r for _, _, r in out]


def main(argv: list[str]) -> int:
    target = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).resolve().parents[1] / "adapters/samples/sample.jsonl"
    )
    lines = [json.dumps(r, separators=(",", ":")) for r in records()]
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} records to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
