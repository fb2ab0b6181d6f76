"""The demo signal source of the built-in paper profile: seeded buy signals for the synthetic
feed's demo tokens only, labelled `source = "demo"`. Off with --no-demo or any config file."""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from tradingd.engine.config import AgentConfig, config_from_builtins
from tradingd.engine.model import Signal

if TYPE_CHECKING:
    from tradingd.adapters.app.runtime import Runtime

DEMO_AGENT_ID = "demo"


def demo_agent_config(tokens: list[str]) -> AgentConfig:
    return config_from_builtins(
        {
            "signals": {"token_filter": "allow", "tokens": tokens, "types": ["demo"]},
            "sizing": {"mode": "fixed", "amount": "1000000000"},
            "limits": {
                "max_open_positions": 3,
                "max_positions_per_token": 1,
                "token_cooldown_s": 5,
            },
            "stop_loss": {"mode": "trailing", "trail_pct": 4, "default_pct": -6},
            "take_profit": {
                "enabled": True,
                "levels": [{"gain_pct": 4, "sell_pct": 30}, {"gain_pct": 8, "sell_pct": 30}],
            },
            "dca": {
                "enabled": True,
                "levels": [{"drop_pct": -3, "buy_pct": 50}],
                "max_count": 1,
                "cooldown_s": 5,
            },
            "max_hold_s": 120,
        }
    )


class DemoSignals:
    def __init__(self, tokens: list[str], seed: int, interval_s: float = 4.0) -> None:
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.count = 0

    def next_signal(self, now_ms: int) -> Signal:
        self.count += 1
        return Signal(
            id=f"demo-{now_ms}-{self.count}",
            token=self.rng.choice(self.tokens),
            type="demo",
            strength=self.rng.randint(1, 5),
            source="demo",
            reason="synthetic demo signal",
            received_at=now_ms,
            expires_at=now_ms + 30_000,
        )

    async def run(self, runtime: Runtime) -> None:
        await asyncio.sleep(2.0)  # let the feed publish prices first
        while True:
            if runtime.accepting and self.tokens:
                runtime.submit_signal(self.next_signal(time.time_ns() // 1_000_000))
            await asyncio.sleep(self.interval_s)
