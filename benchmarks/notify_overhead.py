"""What notifications cost the trading path: signal -> fill latency through the real Daemon and
Runtime (in-process, memory store, paper venue) with no channel, with a healthy channel (a local
aiohttp server answering 204 like Discord) and with a hanging one (accepts TCP, never answers),
each taking fills and exits.

Each round, a buy signal for K paper agents "arrives" at a scheduled loop time; the latency of a
round is from that time until its K fills are settled (they settle within submit_signal on the
paper venue), so it counts both the transition (the notifier's subscriber runs in it) and any
delay the senders' work on the same event loop caused before the signal could be taken. A sell
signal (untimed) then closes the K positions, so every round starts alike. Scenarios alternate
round by round so machine load hits them alike.

    .venv/bin/python benchmarks/notify_overhead.py [--agents K] [--rounds N] [--json PATH]

Figures are microseconds: p50/p99 of `scheduled_us` (from the scheduled arrival) and of
`transition_us` (the submit_signal call alone), per scenario, plus each channel's counters, and
the subscriber's own cost in ns per event. `scheduled_us` includes the OS waking the process
after its 2 ms sleep: on a loaded machine that dominates it and it varies run to run; compare
scenarios on `transition_us` and the subscriber's ns there."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from _stats import add_json_arg, percentiles, run_loop, write_json
from tradingd.adapters.app.daemon import Daemon, tune_gc
from tradingd.adapters.app.settings import load_settings
from tradingd.adapters.notify.config import NotifySettings
from tradingd.engine.model import Signal, Tick

SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
GAP_S = 0.002  # between a round's sell and the next buy's scheduled arrival
AGENT = {
    "sizing": {"mode": "fixed", "amount": "10000000"},
    "limits": {"max_open_positions": 100, "max_positions_per_token": 1},
    "stop_loss": {"enabled": False},
}


# The channels' servers run in their own process: only the daemon's side of a notification (the
# subscriber, the sender task, aiohttp's client) shares the benchmark's event loop.
SERVERS = """
import asyncio, contextlib, sys
from aiohttp import web

async def execute(request):
    await request.read()
    return web.Response(status=204)

async def hold(reader, writer):
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass

async def main():
    app = web.Application()
    app.router.add_post("/api/webhooks/{id}/{token}", execute)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hole = await asyncio.start_server(hold, "127.0.0.1", 0)
    print(runner.addresses[0][1], hole.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def start_servers() -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    healthy, hanging = proc.stdout.readline().split()
    return (
        proc,
        f"http://127.0.0.1:{healthy}/api/webhooks/1/bench",
        f"http://127.0.0.1:{hanging}/api/webhooks/1/hang",
    )


def build(data_dir: Path, url: str | None, agents: int) -> Daemon:
    settings = load_settings(None, {"TRADINGD_STORE": "memory", "TRADINGD_DATA_DIR": str(data_dir)})
    settings.feeds.synthetic.enabled = False
    settings.engine.max_price_age_ms = 86_400_000
    if url is not None:
        channel = {"name": "bench", "kind": "discord", "url": url, "events": ["fills", "exits"],
                   "timeout_s": 30.0, "max_retries": 0}  # fmt: skip
        settings.notify = msgspec.convert({"channels": [channel]}, NotifySettings)
    daemon = Daemon(settings, demo=False)
    from tradingd.engine.config import config_from_builtins

    for i in range(agents):
        agent_id = f"a{i}"
        daemon.runtime.apply(
            daemon.engine.create_agent, agent_id, "paper", config_from_builtins(AGENT), "SOL",
            None, agent_id,
        )  # fmt: skip
        daemon.runtime.apply(daemon.engine.deposit, agent_id, "SOL", 10**12)
    now = daemon.engine.clock()
    daemon.runtime.push_ticks(
        [Tick(SOL, 150.0, now, decimals=9), Tick(TOKEN, 1.0, now, decimals=6)]
    )
    return daemon


def signal(daemon: Daemon, side: str) -> Signal:
    now = daemon.engine.clock()
    return Signal(id=uuid.uuid4().hex, token=TOKEN, side=side, strength=3, type="bench",  # type: ignore[arg-type]
                  received_at=now, expires_at=now + 30_000)  # fmt: skip


async def round_trip(daemon: Daemon, agents: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    scheduled = loop.time() + GAP_S
    await asyncio.sleep(GAP_S)
    started = time.perf_counter()
    lag = loop.time() - scheduled
    record, _ = daemon.runtime.submit_signal(signal(daemon, "buy"))
    transition = time.perf_counter() - started
    filled = sum(1 for x in record.executions.values() if x.status == "filled")
    if filled != agents:
        raise RuntimeError(f"{filled} of {agents} agents filled")
    daemon.runtime.submit_signal(signal(daemon, "sell"))
    return (max(0.0, lag) + transition) * 1e6, transition * 1e6


def subscriber_cost(daemon: Daemon, agents: int, reps: int = 200) -> dict[str, float]:
    """The notifier's runtime subscriber alone, in ns, over the events of one buy round and one
    sell round (recorded once, replayed `reps` times into a channel taking fills and exits)."""
    assert daemon.notifier is not None
    events: list[Any] = []
    daemon.runtime.event_subscribers.append(events.extend)
    daemon.runtime.submit_signal(signal(daemon, "buy"))
    daemon.runtime.submit_signal(signal(daemon, "sell"))
    daemon.runtime.event_subscribers.remove(events.extend)
    on_events = daemon.notifier.on_events
    kept = sum(1 for e in events if type(e).__name__ in ("OrderFilled", "PositionClosed"))
    started = time.perf_counter_ns()
    for _ in range(reps):
        on_events(events)
    per_round = (time.perf_counter_ns() - started) / reps
    return {
        "events_per_round": len(events),
        "notices_per_round": kept,
        "ns_per_event": per_round / len(events),
        "ns_per_notice": per_round / max(1, kept),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    proc, healthy_url, hanging_url = start_servers()
    daemons: dict[str, Daemon] = {}
    samples: dict[str, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (("none", None), ("healthy", healthy_url), ("hanging", hanging_url)):
            daemons[name] = daemon = build(Path(tmp) / name, url, args.agents)
            daemon.start_notifications()
            samples[name] = ([], [])
        tune_gc()  # as the daemon does once started (a young-generation collection is rarer)
        for _ in range(args.warmup):
            for daemon in daemons.values():
                await round_trip(daemon, args.agents)
        order = list(daemons.items())
        for i in range(args.rounds):
            for name, daemon in order[i % 3 :] + order[: i % 3]:  # each goes first in turn
                scheduled, transition = await round_trip(daemon, args.agents)
                samples[name][0].append(scheduled)
                samples[name][1].append(transition)
        out: dict[str, Any] = {"agents": args.agents, "rounds": args.rounds, "scenarios": {}}
        for name, daemon in daemons.items():
            channels = daemon.notifier.health() if daemon.notifier is not None else {}
            out["scenarios"][name] = {
                "scheduled_us": percentiles(samples[name][0]),
                "transition_us": percentiles(samples[name][1]),
                "channel": channels.get("bench"),
            }
            if daemon.notifier is not None:
                await daemon.notifier.close()
        out["subscriber"] = subscriber_cost(daemons["hanging"], args.agents)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    return out


def report(out: dict[str, Any]) -> None:
    sub = out["subscriber"]
    print(
        f"subscriber: {sub['ns_per_event']:.0f} ns per event over {sub['events_per_round']:.0f} "
        f"events of a buy + sell round ({sub['ns_per_notice']:.0f} ns per notice kept)"
    )
    print(f"signal -> {out['agents']} fills, {out['rounds']} rounds per scenario (µs)")
    print(
        f"{'scenario':<9} {'sched p50':>10} {'sched p99':>10} {'trans p50':>10} {'trans p99':>10}  channel"
    )
    for name, s in out["scenarios"].items():
        sch, tr, ch = s["scheduled_us"], s["transition_us"], s["channel"]
        shown = "" if ch is None else (
            f"sent {ch['sent']} failed {ch['failed']} dropped {ch['dropped']} queued {ch['queued']}"
        )  # fmt: skip
        print(
            f"{name:<9} {sch['p50']:>10.0f} {sch['p99']:>10.0f} {tr['p50']:>10.0f} {tr['p99']:>10.0f}  {shown}"
        )  # noqa: E501


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    add_json_arg(parser)
    a = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the hanging channel's drops at the end are expected
    result = run_loop(main(a))
    report(result)
    write_json(a.json, result)
    sys.exit(0)
