"""Prometheus metrics of a real Daemon driven through its runtime: latencies observed in the
runtime hooks, gauges read at scrape time, one registry per daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_ws_stack import SOL, TOKEN_A, Stack
from tradingd.adapters.metrics import Metrics


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    stack = await Stack().start()
    stack.metrics = stack.daemon.build_metrics()
    yield stack
    await stack.stop()


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_signal_to_order_latency_is_observed_once_per_order(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.create_agent("agt-b")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    samples = scrape(stack.metrics)
    assert value(samples, "tradingd_signal_to_order_seconds_count") == 2
    for agent in ("agt-a", "agt-b"):
        for status in ("pending", "filled"):
            labels = {"agent": agent, "status": status, "reason": ""}
            assert value(samples, "tradingd_signal_executions_total", **labels) == 1


async def test_order_round_trip_is_labelled_by_venue_side_and_outcome(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    samples = scrape(stack.metrics)
    assert (
        value(
            samples,
            "tradingd_order_round_trip_seconds_count",
            venue="paper",
            side="buy",
            outcome="filled",
        )
        == 1
    )


async def test_tick_to_exit_decision_is_observed_for_a_batch_that_triggers_a_stop(
    stack: Stack,
) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    stack.prices((TOKEN_A, 1.01))
    assert value(scrape(stack.metrics), "tradingd_tick_to_exit_decision_seconds_count") == 0
    stack.prices((TOKEN_A, 0.5))  # below the default -32% stop
    await stack.settle()
    samples = scrape(stack.metrics)
    assert value(samples, "tradingd_tick_to_exit_decision_seconds_count") == 1
    assert value(samples, "tradingd_engine_events_total", event="ExitTriggered") == 1


async def test_manual_close_is_not_a_tick_exit(stack: Stack) -> None:
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()
    (position_id,) = list(stack.engine.positions)
    stack.runtime.apply(stack.engine.close_position, position_id)
    await stack.settle()
    assert value(scrape(stack.metrics), "tradingd_tick_to_exit_decision_seconds_count") == 0


async def test_state_gauges_are_read_at_scrape_time(stack: Stack) -> None:
    metrics: Metrics = stack.metrics
    stack.create_agent("agt-a")
    stack.prices(SOL, (TOKEN_A, 1.0))
    stack.signal(TOKEN_A, "s1")
    await stack.settle()

    class Feed:
        last_tick_ms = 0

    stack.daemon.feeds["push"] = Feed()
    stack.runtime.apply(stack.engine.set_halt, True)
    samples = scrape(metrics)
    assert value(samples, "tradingd_positions", status="open") == 1
    assert value(samples, "tradingd_agents") == 1
    assert value(samples, "tradingd_halted") == 1
    assert (value(samples, "tradingd_feed_age_seconds", source="push") or 0) > 1e6


async def test_websocket_figures_come_from_the_hub(stack: Stack) -> None:
    client = await stack.connect()
    await client.subscribe(["alerts"])
    samples = scrape(stack.metrics)
    assert value(samples, "tradingd_ws_clients") == 1
    assert value(samples, "tradingd_ws_messages_sent_total") == 1
    assert value(samples, "tradingd_ws_messages_dropped_total") == 0
    assert value(samples, "tradingd_ws_slow_consumers_total") == 0


async def test_http_requests_are_counted_by_route_method_and_status(stack: Stack) -> None:
    metrics: Metrics = stack.metrics
    metrics.observe_http("/v1/signals", "POST", 202, 0.001)
    metrics.observe_http("/v1/signals", "POST", 202, 0.002)
    metrics.observe_http("/v1/signals", "POST", 422, 0.001)
    samples = scrape(metrics)
    assert (
        value(
            samples,
            "tradingd_http_requests_total",
            route="/v1/signals",
            method="POST",
            status="202",
        )
        == 2
    )
    assert (
        value(
            samples,
            "tradingd_http_requests_total",
            route="/v1/signals",
            method="POST",
            status="422",
        )
        == 1
    )
    assert (
        value(
            samples,
            "tradingd_http_request_duration_seconds_count",
            route="/v1/signals",
            method="POST",
        )
        == 3
    )


async def test_event_loop_lag_is_sampled(stack: Stack) -> None:
    metrics: Metrics = stack.metrics
    sampler = asyncio.create_task(metrics.sample_loop_lag(0.005))
    try:
        for _ in range(500):
            if (value(scrape(metrics), "tradingd_event_loop_lag_seconds_count") or 0) >= 3:
                break
            await asyncio.sleep(0.01)
        assert (value(scrape(metrics), "tradingd_event_loop_lag_seconds_count") or 0) >= 3
    finally:
        sampler.cancel()


async def test_garbage_collector_pauses_are_counted_by_generation_while_the_sampler_runs(
    stack: Stack,
) -> None:
    import gc

    metrics: Metrics = stack.metrics
    before = scrape(metrics)
    assert value(before, "tradingd_gc_pause_seconds_count", generation="2") == 0
    sampler = asyncio.create_task(metrics.sample_loop_lag(0.005))
    await asyncio.sleep(0.02)
    try:
        gc.collect()  # a full collection: generation 2
        gc.collect(0)
        after = scrape(metrics)
        assert value(after, "tradingd_gc_pause_seconds_count", generation="2") == 1
        assert (value(after, "tradingd_gc_pause_seconds_count", generation="0") or 0) >= 1
        assert (value(after, "tradingd_gc_pause_seconds_sum", generation="2") or 0) > 0
        assert value(after, "tradingd_gc_pause_seconds_bucket", generation="2", le="+Inf") == value(
            after, "tradingd_gc_pause_seconds_count", generation="2"
        )
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    gc.collect()  # the sampler stopped: no longer counted
    assert value(scrape(metrics), "tradingd_gc_pause_seconds_count", generation="2") == 1


async def test_process_cpu_memory_and_open_files_are_exported(stack: Stack) -> None:
    samples = scrape(stack.metrics)
    assert (value(samples, "process_resident_memory_bytes") or 0) > 10_000_000
    assert (value(samples, "process_open_fds") or 0) > 3
    assert value(samples, "process_cpu_seconds_total") is not None


async def test_two_daemons_in_one_process_have_separate_registries() -> None:
    first, second = Stack(), Stack()
    a, b = Metrics(first.daemon), Metrics(second.daemon)
    a.observe_http("/health", "GET", 200, 0.001)
    assert (
        value(
            scrape(a), "tradingd_http_requests_total", route="/health", method="GET", status="200"
        )
        == 1
    )
    assert (
        value(
            scrape(b), "tradingd_http_requests_total", route="/health", method="GET", status="200"
        )
        is None
    )
    await first.daemon.shutdown()
    await second.daemon.shutdown()


async def test_store_figures_come_from_the_store(stack: Stack) -> None:
    class Store:  # the store interface the daemon holds: write_behind_lag() and components
        components = {
            "redis": {"status": "down", "reason": "refused"},
            "postgres": {"status": "ok"},
        }
        dead_letters = 3

        def write_behind_lag(self) -> dict[str, float]:
            return {"entries": 12, "seconds": 1.5}

    stack.daemon.store = Store()
    samples = scrape(stack.metrics)
    assert value(samples, "tradingd_write_behind_lag_entries") == 12
    assert value(samples, "tradingd_write_behind_lag_seconds") == 1.5
    assert value(samples, "tradingd_store_up", component="redis") == 0
    assert value(samples, "tradingd_store_up", component="postgres") == 1
    assert value(samples, "tradingd_write_behind_dead_letters_total") == 3


async def test_websocket_connections_are_counted_but_not_timed(stack: Stack) -> None:
    stack.metrics.observe_http("/v1/ws", "GET", 101, 3600.0)
    samples = scrape(stack.metrics)
    assert (
        value(samples, "tradingd_http_requests_total", route="/v1/ws", method="GET", status="101")
        == 1
    )
    assert (
        value(samples, "tradingd_http_request_duration_seconds_count", route="/v1/ws", method="GET")
        is None
    )
