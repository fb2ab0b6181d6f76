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


async def test_a_feed_that_starts_leading_again_continues_from_the_prices_known_then():
    """A tester's MEDIUM: with shards the feed stops and starts as its leadership moves; a new
    leader restarted its walk from the start price (1.61 -> 1.01 in one tick), an old one from
    where it had stopped, firing every paper stop on failover."""
    import asyncio

    token = next(iter(DEMO_TOKENS))
    market = {token: 1.0}
    feed = SyntheticFeed(
        SyntheticFeedSettings(enabled=True, volatility_pct=0.001, interval_ms=1),
        known=lambda: dict(market),
    )
    pushed: list[float] = []

    def push(ticks: list) -> None:
        pushed.extend(t.price_usd for t in ticks if t.token == token)

    for price in (1.61, 7.5):  # the price every shard has when this one starts leading
        market[token] = price
        pushed.clear()
        task = asyncio.ensure_future(feed.run(push))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert pushed and abs(pushed[0] - price) < 0.01 * price, (price, pushed[:3])
