"""Changing a cluster's shard count end to end (docs/cluster.md "Changing the shard count"): two
real shards trade, `tradingd cluster reshard --shards 3` is refused while they run, then run on
the stopped cluster (one shard killed with SIGKILL, so its stream still holds what Postgres has
not), and three shards start. Every agent is then its new owner's, with the same positions (ids
included), balances and trades, read from any shard, position ids too; the old shards hold
nothing of a moved agent in Postgres or Redis; a stop crossed after the move fires once, on the
new owner; a new signal buys once per agent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from tradingd.adapters.cluster.shards import owner, shard_namespace
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.store.stream_codec import Keys

from tests.e2e.cluster_nodes import Node, Nodes, embedded_servers, new_nodes, wait_ready
from tests.e2e.conftest import REPO
from tests.polling import poll_until

TOKENS = [demo_mint(0), demo_mint(1)]
DEPOSIT = 1_000_000_000  # 1,000 USDC


def agent_ids() -> list[str]:
    """Eight agents: some stay on their shard going from 2 to 3 shards, some move."""
    return [f"agt_rs_{n}" for n in range(8)]


AGENTS = agent_ids()
MOVING = [
    a
    for a in AGENTS
    if shard_namespace("x", owner(a, 2), 2) != shard_namespace("x", owner(a, 3), 3)
]


def config() -> str:
    out = ["[engine]", "max_price_age_ms = 600000", "", "[cluster]", "lease_ms = 1000", ""]
    for k, agent in enumerate(AGENTS):
        out += [
            "[[agents]]",
            f'id = "{agent}"',
            f'name = "agent {k}"',
            'venue = "paper"',
            'quote = "USDC"',
            f"paper_deposit = {DEPOSIT}",
            "",
            "[agents.config]",
            f'sizing = {{ mode = "fixed", amount = {(20 + k) * 1_000_000} }}',
            'stop_loss = { mode = "fixed", default_pct = -5 }',
            "execution = { slippage_bps = 0, fee_bps = 0 }",
            "",
        ]
    return "\n".join(out)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from embedded_servers(tmp_path_factory, "reshard-servers")


@pytest.fixture
def nodes(servers: tuple[str, str], tmp_path: Path) -> Iterator[Nodes]:
    n = new_nodes(servers, tmp_path, "rsh")
    yield n
    n.stop_all()


def start(nodes: Nodes, shards: int, shard: int) -> Node:
    node = nodes.launch(
        f"n{shards}_{shard}", config(), ["--shards", str(shards), "--shard", str(shard)]
    )
    wait_ready(node, f"shard {shard} of {shards} ready")
    return node


def reshard(
    nodes: Nodes, shards: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tradingd.adapters.app.cli", "cluster", "reshard"]
    return subprocess.run(
        [*cmd, "--shards", str(shards), *extra],
        cwd=REPO,
        env=store_env(nodes) | (env or {}),
        capture_output=True,
        text=True,
        timeout=180,
    )


def other_db(url: str, name: str) -> str:
    """`url` naming another database of the same server: Redis db `name`, or Postgres `name`."""
    parts = urlsplit(url)
    if parts.scheme.startswith("redis") or parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        if parts.scheme == "unix":
            return urlunsplit(parts._replace(query="&".join(filter(None, [query, f"db={name}"]))))
        return urlunsplit(parts._replace(path=f"/{name}", query=query))
    return urlunsplit(parts._replace(path=f"/{name}"))


def reshard_when_stopped(
    nodes: Nodes, shards: int, *extra: str, waits: tuple[str, ...] = ("is writing",)
) -> subprocess.CompletedProcess[str]:
    """`reshard`, run again while it is refused for a reason in `waits` that passes by itself
    (a stopped process's write-behind read its stream < 5 s ago, a killed one's lease)."""
    return poll_until(
        lambda: reshard(nodes, shards, *extra),
        lambda r: not any(w in r.stderr for w in waits),
        timeout_s=60,
        interval_s=0.5,
        what=f"reshard --shards {shards} no longer refused for {waits}",
    )


def ticks(node: Node, prices: list[float]) -> None:
    now = int(time.time() * 1000)
    body = {
        "ticks": [
            {"token": t, "price_usd": p, "ts": now, "decimals": 6, "source": "e2e"}
            for t, p in zip(TOKENS, prices, strict=True)
        ]
    }
    resp = node.post("/v1/prices", body)
    assert resp.status_code == 202, resp.text


def signal(node: Node, sid: str, token: int, side: str = "buy") -> None:
    body = {"id": sid, "token": TOKENS[token], "side": side, "expires_in_ms": 600_000}
    resp = node.post("/v1/signals", body)
    assert resp.status_code in (200, 202), resp.text


def settled(node: Node) -> bool:
    cluster = node.get("/health").json()["cluster"]
    return all(s["lag"] == 0 and s["pending"] == 0 for s in cluster["intake"].values())


def wait_settled(shards: list[Node]) -> None:
    for node in shards:
        poll_until(
            lambda n=node: settled(n), bool, timeout_s=30, interval_s=0.1, what="intake applied"
        )


def get_ok(node: Node, path: str) -> Any:
    resp = node.get(path)
    assert resp.status_code == 200, (path, resp.text)
    return resp.json()


def state_of(node: Node, agent: str) -> dict[str, Any]:
    positions = get_ok(node, f"/v1/agents/{agent}/positions?limit=1000")["items"]
    for p in positions:
        p.pop("current_price_usd", None), p.pop("unrealized_pnl", None), p.pop("age_ms", None)
    return {
        "positions": sorted(positions, key=lambda p: p["id"]),
        "balances": get_ok(node, f"/v1/agents/{agent}/balances"),
        "trades": sorted(
            get_ok(node, f"/v1/agents/{agent}/trades?limit=1000")["items"], key=lambda t: t["id"]
        ),
    }


def test_reshard_moves_every_agent_whole_to_its_new_shard(nodes: Nodes) -> None:
    assert 2 <= len(MOVING) < len(AGENTS)
    two = [start(nodes, 2, i) for i in range(2)]
    ticks(two[0], [1.0, 2.0])
    signal(two[1], "b0", 0)
    signal(two[0], "b1", 1)
    wait_settled(two)
    # shard 1's write-behind blocks on a lock: what follows is only in its Redis stream
    r = redis.Redis.from_url(nodes.redis_url)
    stream_1 = Keys(shard_namespace(nodes.namespace, 1, 2)).stream
    with TableLock(nodes.database_url, f'"{shard_namespace(nodes.namespace, 1, 2)}".trades'):
        ticks(two[1], [1.02, 2.2])
        signal(two[0], "s1", 1, side="sell")  # token 1 closed: trades on both sides
        signal(two[1], "b2", 1)  # and bought again: open positions on both tokens
        wait_settled(two)
        poll_until(
            lambda: [len(state_of(two[0], a)["positions"]) for a in AGENTS],
            lambda counts: counts == [3] * len(AGENTS),
            timeout_s=20,
            what="every agent holds three positions",
        )
        before = {a: state_of(two[0], a) for a in AGENTS}
        assert r.xlen(stream_1) > 0
        two[1].proc.kill()  # its stream holds what Postgres has not: the reshard drains it
        two[1].proc.wait(timeout=10)

    refused = reshard(nodes, 3)  # shard 0 runs (and shard 1's lease has not lapsed)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "held" in refused.stderr and "stop every shard" in refused.stderr
    # Redis and Postgres of two clusters (a tester's finding: rows moved under running shards
    # with an empty Redis db; a count recorded over an empty database): refused, nothing changed
    empty_redis = reshard(nodes, 3, env={"REDIS_URL": other_db(nodes.redis_url, "1")})
    assert empty_redis.returncode == 1 and "is REDIS_URL the cluster's" in empty_redis.stderr
    empty_pg = reshard(nodes, 3, env={"DATABASE_URL": other_db(nodes.database_url, "postgres")})
    assert empty_pg.returncode == 1 and "is DATABASE_URL the cluster's" in empty_pg.stderr
    two[0].stop()
    done = reshard_when_stopped(nodes, 3, waits=("held", "is writing"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(MOVING)} agent(s) moving" in done.stdout, done.stdout
    assert "_s1: stream drained into Postgres" in done.stdout, done.stdout
    again = reshard(nodes, 3)  # a second run (say, after a crash) finds nothing left to move
    assert again.returncode == 0 and "3 -> 3 shards, 0 agent(s) moving" in again.stdout, again

    three = [start(nodes, 3, i) for i in range(3)]
    for agent in AGENTS:
        home = owner(agent, 3)
        for i, node in enumerate(three):
            resp = node.get(f"/v1/agents/{agent}")
            assert resp.status_code == 200, resp.text
            if i != home:
                assert resp.headers["X-Tradingd-Owner-Shard"] == str(home)
            assert state_of(node, agent) == before[agent], (agent, i)
            for p in before[agent]["positions"]:
                one = get_ok(node, f"/v1/positions/{p['id']}")
                assert one["id"] == p["id"] and one["agent_id"] == agent

    # the signal list on any shard holds every shard's executions of each signal
    for node in three:
        listed = {s["id"]: s for s in get_ok(node, "/v1/signals?limit=2")["items"]}
        listed |= {s["id"]: s for s in get_ok(node, "/v1/signals?limit=1000")["items"]}
        for sid in ("b0", "b1", "b2"):
            assert listed[sid]["agents_matched"] == len(AGENTS), (sid, listed[sid])
            assert sorted(e["agent_id"] for e in listed[sid]["executions"]) == AGENTS

    # nothing of a moved agent is left where it was: Postgres rows and the Redis live view
    for i in range(3):
        ns = shard_namespace(nodes.namespace, i, 3)
        held = {k.decode() for k in r.hkeys(Keys(ns).hash("agents"))}
        assert held <= {a for a in AGENTS if owner(a, 3) == i}, (ns, held)
    rows = asyncio.run(_agent_rows(nodes.database_url, nodes.namespace))
    for (ns, table), agents in rows.items():
        shard = int(ns.rpartition("_s")[2])
        assert all(owner(a, 3) == shard for a in agents), (ns, table, agents)

    # a stop crossed after the move fires once, on the new owner; a new buy trades once each
    ticks(three[2], [0.9, 2.2])
    signal(three[1], "b3", 0)
    wait_settled(three)

    def outcome() -> list[tuple[int, int]]:
        out = []
        for a in AGENTS:
            ps = state_of(three[0], a)["positions"]
            stopped = sum(1 for p in ps if p["exit_reason"] == "stop_loss")
            out.append((stopped, len(ps)))
        return out

    poll_until(outcome, lambda o: o == [(1, 4)] * len(AGENTS), timeout_s=20, what="stops and buys")


class TableLock:
    """An ACCESS EXCLUSIVE lock on a table, held by a connection in a thread of its own while
    the `with` block runs: a writer touching the table waits."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, table
        self.held, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                self.held.set()
                while not self.release.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def __enter__(self) -> TableLock:
        self.thread.start()
        assert self.held.wait(10), "lock not taken"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


async def _agent_rows(url: str, base: str, shards: int = 3) -> dict[tuple[str, str], list[str]]:
    conn = await asyncpg.connect(url)
    try:
        out = {}
        for i in range(shards):
            ns = shard_namespace(base, i, shards)
            for table in ("agents", "positions", "trades", "balances"):
                col = "id" if table == "agents" else "agent_id"
                rows = await conn.fetch(f'SELECT DISTINCT {col} AS a FROM "{ns}".{table}')
                out[(ns, table)] = [r["a"] for r in rows]
        return out
    finally:
        await conn.close()


def test_a_single_process_becomes_two_shards(nodes: Nodes) -> None:
    """The common case: one process outgrew its core. Its agents all move (a single process
    keeps them under the base namespace); its position ids name no shard, so any shard finds
    them through the moved-positions map. A running single process holds no lease: its
    write-behind reading the stream is what refuses the reshard."""
    one = nodes.launch("single", config(), [])
    wait_ready(one, "the single process ready")
    ticks(one, [1.0, 2.0])
    signal(one, "b0", 0)
    signal(one, "b1", 1)
    poll_until(
        lambda: [len(state_of(one, a)["positions"]) for a in AGENTS],
        lambda counts: counts == [2] * len(AGENTS),
        timeout_s=20,
        what="every agent holds two positions",
    )
    before = {a: state_of(one, a) for a in AGENTS}
    refused = reshard(nodes, 2)
    assert refused.returncode == 1 and "is writing" in refused.stderr, refused.stderr
    one.stop()
    done = reshard_when_stopped(nodes, 2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"1 -> 2 shards, {len(AGENTS)} agent(s) moving" in done.stdout, done.stdout
    two = [start(nodes, 2, i) for i in range(2)]
    for agent in AGENTS:
        for node in two:
            assert state_of(node, agent) == before[agent], agent
            for p in before[agent]["positions"]:
                assert get_ok(node, f"/v1/positions/{p['id']}")["agent_id"] == agent
    ticks(two[1], [0.9, 2.0])  # every token-0 stop (-5 %) crossed: each fires once
    wait_settled(two)

    def stopped() -> list[int]:
        return [
            sum(p["exit_reason"] == "stop_loss" for p in state_of(two[0], a)["positions"])
            for a in AGENTS
        ]

    poll_until(stopped, lambda s: s == [1] * len(AGENTS), timeout_s=20, what="one stop each")


def test_reshard_waits_for_every_signal_to_be_applied(nodes: Nodes) -> None:
    """A signal accepted while a shard was down must be applied by that shard (it owned those
    agents when the signal came): the reshard is refused until the shard caught up."""
    two = [start(nodes, 2, i) for i in range(2)]
    ticks(two[0], [1.0, 2.0])
    wait_settled(two)
    two[1].stop()
    signal(two[0], "while-down", 0)
    two[0].stop()
    refused = reshard_when_stopped(nodes, 3)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "shard 1 has not applied every signal" in refused.stderr, refused.stderr
    late = start(nodes, 2, 1)  # alone: it applies what it missed, then stops
    wait_settled([late])
    late.stop()
    done = reshard_when_stopped(nodes, 3)
    assert done.returncode == 0, done.stdout + done.stderr
    three = [start(nodes, 3, i) for i in range(3)]
    for agent in AGENTS:  # every agent bought once on the signal, wherever it lives now
        assert len(state_of(three[0], agent)["positions"]) == 1, agent


def store_env(nodes: Nodes) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADINGD_")},
        "REDIS_URL": nodes.redis_url,
        "DATABASE_URL": nodes.database_url,
        "TRADINGD_STORE_NAMESPACE": nodes.namespace,
        "TRADINGD_ADMIN_KEY": nodes.admin_key,
    }


def refused_start(nodes: Nodes, name: str, args: list[str]) -> str:
    """`tradingd run` that must refuse to start: its output (it exits 1 before recovery)."""
    data_dir = nodes.root / name
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tradingd.toml").write_text(config())
    cmd = [
        sys.executable, "-m", "tradingd.adapters.app.cli", "run", "--no-demo", "--host",
        "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), "--config",
        str(data_dir / "tradingd.toml"), *args,
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=REPO, env=store_env(nodes), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stderr


def test_a_reshard_killed_after_its_commit_blocks_every_start_until_a_run_finishes_it(
    nodes: Nodes,
) -> None:
    """A tester's finding: killed between the Postgres commit and recording the new count, the
    old shards could start again and re-create the moved agents with a fresh deposit. The
    count now says `resharding` from before the commit: every start is refused until a run
    finishes it, with any count (here 4, not the 3 the killed run was going to)."""
    two = [start(nodes, 2, i) for i in range(2)]
    ticks(two[0], [1.0, 2.0])
    signal(two[1], "b0", 0)
    wait_settled(two)
    poll_until(
        lambda: [len(state_of(two[0], a)["positions"]) for a in AGENTS],
        lambda counts: counts == [1] * len(AGENTS),
        timeout_s=20,
        what="every agent holds a position",
    )
    before = {a: state_of(two[0], a) for a in AGENTS}
    for node in two:
        node.stop()
    planned = reshard_when_stopped(nodes, 3, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    cmd = [sys.executable, "-u", "-m", "tradingd.adapters.app.cli", "cluster", "reshard"]
    killed = subprocess.Popen(
        [*cmd, "--shards", "3"], cwd=REPO, env=store_env(nodes), stdout=subprocess.PIPE, text=True
    )
    lines = []
    try:
        assert killed.stdout is not None
        for line in killed.stdout:  # bounded: the run prints a handful of lines, then ends
            lines.append(line)
            if "committed" in line:
                killed.kill()
                break
    finally:
        killed.kill()
        killed.wait(timeout=10)
    assert any("committed" in line for line in lines), lines
    r = redis.Redis.from_url(nodes.redis_url)
    for args in (["--shards", "2", "--shard", "0"], ["--shards", "3", "--shard", "0"], []):
        said = refused_start(nodes, f"refused{len(args)}", args)
        assert "interrupted" in said and "reshard --shards 3" in said, said
        if args:  # refused after taking its shard's lease: it let go (the next run need not wait)
            shard = shard_namespace(nodes.namespace, 0, int(args[1]))
            assert r.get(Keys(shard).lease) is None, (shard, r.get(Keys(shard).lease))
    r.close()

    done = reshard_when_stopped(nodes, 4, waits=("held by another reshard",))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finishing an interrupted reshard from 2 to 3 shards" in done.stdout, done.stdout
    four = [start(nodes, 4, i) for i in range(4)]
    for agent in AGENTS:
        assert state_of(four[(owner(agent, 4) + 1) % 4], agent) == before[agent], agent
    rows = asyncio.run(_agent_rows(nodes.database_url, nodes.namespace, 4))
    for (ns, table), agents in rows.items():
        assert all(owner(a, 4) == int(ns.rpartition("_s")[2]) for a in agents), (ns, table)
    assert "runs 4 shards" in refused_start(nodes, "single", [])  # nor a single process
