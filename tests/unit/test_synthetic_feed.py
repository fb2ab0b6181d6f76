"""Synthetic feed: seeded, valid demo mints, and continuity across a restart."""

from __future__ import annotations

from tradingd.adapters.app.settings import SyntheticFeedSettings
from tradingd.adapters.feeds.synthetic import DEMO_TOKENS, RandomWalk, SyntheticFeed
from tradingd.engine.assets import SOL_MINT, is_mint


def test_demo_tokens_are_valid_mints_and_the_walk_is_seeded():
    assert all(is_mint(t) for t in DEMO_TOKENS)
    walks = RandomWalk(DEMO_TOKENS, 3, 1.0, 1.5), RandomWalk(DEMO_TOKENS, 3, 1.0, 1.5)
    a = [walks[0].step() for _ in range(50)]
    b = [walks[1].step() for _ in range(50)]
    assert a == b and a[0] != a[-1]


def test_a_restarted_feed_continues_from_known_prices():
    token = next(iter(DEMO_TOKENS))
    feed = SyntheticFeed(
        SyntheticFeedSettings(enabled=True, volatility_pct=0.001), known={token: 42.0}
    )
    ticks = {t.token: t.price_usd for t in feed.ticks(1)}
    assert abs(ticks[token] - 42.0) < 0.01
    assert ticks[SOL_MINT] == 150.0
