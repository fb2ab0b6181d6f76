"""Agent shards end to end (docs/cluster.md "Shards"): three real `tradingd run --shards 3
--shard I` processes on one Redis and one Postgres (embedded servers this module starts), each
with its own data dir, and one single process on the same servers as the reference.

A storm of ticks and signals is posted round-robin to the shards, and the same records, in the
same order, to the single process. Every agent is traded by exactly one shard (its owner: other
shards answer 421 for it and hold nothing of it, in their API or in their Redis namespace), and
per agent the positions (token, status, amounts, prices, realized PnL; ids and timestamps aside)
equal the single process's. One shard is killed with SIGKILL mid-storm and started again: it
reads its pending entries first, catches up, and trades nothing twice."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from tradingd.adapters.cluster.shards import owner
from tradingd.adapters.feeds.synthetic import DEMO_TOKENS, demo_mint

from tests.e2e.cluster_nodes import Node, Nodes, embedded_servers, wait_ready, wait_standby
from tests.e2e.conftest import REPO
from tests.polling import poll_until

SHARDS = 3
AGENTS_PER_SHARD = 2
STEPS = int(os.environ.get("TRADINGD_SHARD_STEPS", "40"))
KILL_AT, RESTART_AT = STEPS // 2, STEPS // 2 + 4
INTAKE_TIMEOUT_MS = 1500
TOKENS = [demo_mint(i) for i in range(3)]
DEPOSIT = 2_000_000_000  # 2,000 USDC


def agent_ids() -> list[str]:
    """AGENTS_PER_SHARD agents owned by each shard."""
    by_shard: dict[int, list[str]] = {i: [] for i in range(SHARDS)}
    n = 0
    while any(len(v) < AGENTS_PER_SHARD for v in by_shard.values()):
        candidate = f"agt_e2e_{n}"
        n += 1
        mine = by_shard[owner(candidate, SHARDS)]
        if len(mine) < AGENTS_PER_SHARD:
            mine.append(candidate)
    return sorted(a for v in by_shard.values() for a in v)


AGENTS = agent_ids()


def config(shards: int | None) -> str:
    out = ["[engine]", "max_price_age_ms = 600000", ""]
    if shards:
        out += ["[cluster]", f"intake_timeout_ms = {INTAKE_TIMEOUT_MS}", "lease_ms = 1000", ""]
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
            f'sizing = {{ mode = "fixed", amount = {(40 + 7 * k) * 1_000_000} }}',
            f'stop_loss = {{ mode = "fixed", default_pct = {-3 - k} }}',
            "execution = { slippage_bps = 0, fee_bps = 0 }",
            "",
        ]
    return "\n".join(out)


class Cluster(Nodes):
    def start(
        self,
        name: str,
        shard: int | None,
        namespace: str | None = None,
        role: str | None = None,
        wait: bool = True,
    ) -> Node:
        args: list[str] = []
        if shard is not None:
            args += ["--shards", str(SHARDS), "--shard", str(shard)]
        if role is not None:
            args += ["--role", role]
        cfg = config(SHARDS if shard is not None else None)
        node = self.launch(name, cfg, args, namespace=namespace)
        if wait:
            self.wait_ready(node, name)
        return node

    def wait_ready(self, node: Node, name: str) -> None:
        wait_ready(node, f"{name} ready")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from embedded_servers(tmp_path_factory, "shard-servers")


@pytest.fixture
def cluster(servers: tuple[str, str], tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        servers[0],
        servers[1],
        f"shd_{uuid.uuid4().hex[:10]}",
        "tdk_e2e_" + secrets.token_urlsafe(24),
        tmp_path,
        [],
    )
    yield c
    c.stop_all()


def storm(seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """The records: per step one push of a tick per token (a random walk), one buy, and every
    fifth step a sell. Tick timestamps are set when posted (the same for both runs' order)."""
    rnd = random.Random(seed)
    prices = [1.0, 2.0, 0.5]
    ops: list[tuple[str, dict[str, Any]]] = []
    for step in range(STEPS):
        for i in range(len(prices)):
            prices[i] = round(prices[i] * (1 + rnd.uniform(-0.06, 0.06)), 6)
        ops.append(("ticks", {"prices": list(prices)}))
        ops.append(("buy", {"id": f"b{step}", "token": rnd.randrange(len(TOKENS))}))
        if step % 5 == 4:
            ops.append(("sell", {"id": f"s{step}", "token": rnd.randrange(len(TOKENS))}))
    return ops


def post(node: Node, op: tuple[str, dict[str, Any]], run: str) -> requests.Response:
    kind, data = op
    if kind == "ticks":
        now = int(time.time() * 1000)
        ticks = [
            {"token": t, "price_usd": p, "ts": now, "decimals": 6, "source": "e2e"}
            for t, p in zip(TOKENS, data["prices"], strict=True)
        ]
        return node.post("/v1/prices", {"ticks": ticks})
    body = {
        "id": f"{run}-{data['id']}",
        "token": TOKENS[data["token"]],
        "side": kind,
        "expires_in_ms": 600_000,
    }
    return node.post("/v1/signals", body)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if not (k == "id" or k.endswith("_id") or k.endswith("_at") or k in ("ts", "age_ms"))
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def projection(positions: list[dict[str, Any]]) -> list[str]:
    """Positions without their ids and timestamps (nested too), as sorted text."""
    return sorted(json.dumps(_strip(p), sort_keys=True) for p in positions)


def positions_of(node: Node, agent: str) -> list[dict[str, Any]]:
    resp = node.get(f"/v1/agents/{agent}/positions?limit=1000")
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]


def settled(node: Node) -> bool:
    cluster = node.get("/health").json()["cluster"]
    return all(s["lag"] == 0 and s["pending"] == 0 for s in cluster["intake"].values())


@pytest.mark.parametrize("recovery", ["restart", "standby"])
def test_three_shards_equal_one_process_and_survive_a_kill(cluster: Cluster, recovery: str) -> None:
    """`restart`: the killed shard is started again; `standby`: shard 1 runs as an active and a
    hot standby (docs/cluster.md), and the standby takes its agents over."""
    killed = 1
    role = "active" if recovery == "standby" else None
    shards = [
        cluster.start(f"shard{i}", i, role=role if i == killed else None) for i in range(SHARDS)
    ]
    standby = None
    if recovery == "standby":
        standby = cluster.start(f"shard{killed}b", killed, role="standby", wait=False)
        wait_standby(standby, "the standby standing by")
    ops = storm()
    acked: list[str] = []
    alive = list(range(SHARDS))
    for k, op in enumerate(ops):
        step = sum(1 for o in ops[: k + 1] if o[0] == "ticks") - 1
        stopped = step == KILL_AT and op[0] == "buy" and killed in alive
        if stopped:
            # Paused in its blocking read (caught up: waiting for the next entry): Redis
            # delivers the next entry to it (pending in its group) and it never applies it;
            # then killed. Its restart must read it first.
            poll_until(
                lambda: settled(shards[killed]),
                lambda ok: ok,
                timeout_s=30,
                interval_s=0.05,
                what="the shard to kill caught up",
            )
            shards[killed].proc.send_signal(signal.SIGSTOP)
            alive.remove(killed)
        if step == RESTART_AT and op[0] == "ticks" and killed not in alive:
            if standby is not None:  # it took the lease and opened intake by itself
                cluster.wait_ready(standby, "the standby taking over")
                shards[killed] = standby
            else:
                shards[killed] = cluster.start(f"shard{killed}", killed)
            alive.append(killed)
            alive.sort()
        target = shards[alive[k % len(alive)]]
        resp = post(target, op, "c")
        assert resp.status_code == 202, resp.text
        if stopped:
            shards[killed].proc.send_signal(signal.SIGKILL)
            shards[killed].proc.wait(timeout=10)
            with redis.Redis.from_url(cluster.redis_url) as r:
                held = r.xpending(f"{{{cluster.namespace}}}:intake:signals", f"s{killed}")
            # (a standby may have taken over and read it already: its log says so below)
            assert held["pending"] >= 1 or standby, "the killed shard was delivered nothing"
        if op[0] != "ticks":
            body = resp.json()
            acked.append(body["signal_id"])
            if killed not in alive and standby is None:
                assert body["shards_pending"] == [killed], body
            elif killed not in alive:  # the standby may have taken over already
                assert body.get("shards_pending", [killed]) == [killed], body
            else:
                assert "shards_pending" not in body, body
    # a repeat of a client id, to another shard, is the first signal
    again = post(shards[2], ops[1], "c")
    assert again.status_code == 200 and again.json()["duplicate"], again.text
    assert again.json()["signal_id"] == acked[0]
    for node in shards:
        poll_until(
            lambda n=node: settled(n),
            lambda ok: ok,
            timeout_s=60,
            interval_s=0.1,
            what="every shard's intake applied and acknowledged",
        )
    single = cluster.start("single", None, namespace=cluster.namespace + "_one")
    for op in ops:
        resp = post(single, op, "c")
        assert resp.status_code == 202, resp.text

    r = redis.Redis.from_url(cluster.redis_url)
    try:
        for agent in AGENTS:
            mine = owner(agent, SHARDS)
            for i, node in enumerate(shards):
                if i != mine:  # any shard answers for it: the owner's answer, forwarded
                    resp = node.get(f"/v1/agents/{agent}")
                    assert resp.status_code == 200, resp.text
                    assert resp.headers["X-Tradingd-Owner-Shard"] == str(mine)
                    assert resp.json() == shards[mine].get(f"/v1/agents/{agent}").json()
                    assert positions_of(node, agent) == positions_of(shards[mine], agent)
                    held = r.hget(f"{{{cluster.namespace}_s{i}}}:agents", agent)
                    assert held is None, f"shard {i} holds {agent}"
            assert r.hget(f"{{{cluster.namespace}_s{mine}}}:agents", agent) is not None
            got = positions_of(shards[mine], agent)
            want = positions_of(single, agent)
            assert got, f"{agent} traded nothing: the storm must reach every agent"
            assert projection(got) == projection(want), agent
            # nothing traded twice: one position per (agent, signal) at most
            sids = [p["signal_id"] for p in got if p.get("signal_id")]
            assert len(sids) == len(set(sids)), agent
    finally:
        r.close()
    restarted = shards[killed].log_path.read_text(errors="replace")
    assert "pending intake entries applied" in restarted, "the restart read no pending entry"
    health = shards[1].get("/health").json()["cluster"]
    assert (health["shards"], health["shard"]) == (SHARDS, 1)
    assert health["intake"]["signals"]["applied"] > 0 and health["intake"]["ticks"]["lost"] == 0
    metrics = shards[1].get("/metrics").text
    assert 'tradingd_cluster_intake_lag{stream="ticks"} 0.0' in metrics
    # A signal every shard refuses is a 422, and its client id may be sent again.
    bad = {"id": "c-bad", "token": TOKENS[0], "side": "sell", "decimals": 9}
    resp = shards[0].post("/v1/signals", bad)
    assert resp.status_code == 422, resp.text
    assert "decimals" in resp.json()["error"]["message"]
    assert resp.json()["error"]["details"]["path"] == "$.decimals"
    resp = shards[2].post("/v1/signals", {**bad, "decimals": 6})
    assert resp.status_code == 202 and not resp.json()["duplicate"], resp.text
    # The same client ids posted at once to every shard: one signal each, cluster-wide.
    from concurrent.futures import ThreadPoolExecutor

    def send(job: tuple[int, int]) -> tuple[str, int, str]:
        n, i = job
        body = {"id": f"race-{n}", "token": TOKENS[n % 3], "side": "buy", "expires_in_ms": 60_000}
        resp = shards[i].session.post(shards[i].base + "/v1/signals", json=body, timeout=30)
        return body["id"], resp.status_code, resp.json().get("signal_id", resp.text)

    jobs = [(n, i) for n in range(15) for i in range(SHARDS) for _ in range(2)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(send, jobs))
    by_client: dict[str, list[tuple[int, str]]] = {}
    for client_id, status, sid in answers:
        by_client.setdefault(client_id, []).append((status, sid))
    for client_id, got in by_client.items():
        assert sorted(status for status, _ in got) == [200] * 5 + [202], (client_id, got)
        assert len({sid for _, sid in got}) == 1, (client_id, got)
    for agent in AGENTS:
        mine = positions_of(shards[owner(agent, SHARDS)], agent)
        sids = [p["signal_id"] for p in mine if p.get("signal_id")]
        assert len(sids) == len(set(sids)), agent
    # An agent created over the API lives on the shard that created it.
    for i, node in enumerate(shards):
        resp = node.post("/v1/agents", {"name": f"api {i}", "venue": "paper", "quote": "USDC"})
        assert resp.status_code == 201, resp.text
        made = resp.json()["id"]
        assert owner(made, SHARDS) == i
        assert node.get(f"/v1/agents/{made}").status_code == 200
        other = shards[(i + 1) % SHARDS].get(f"/v1/agents/{made}/positions")
        assert other.status_code == 200 and other.headers["X-Tradingd-Owner-Shard"] == str(i)


def test_shards_need_the_external_store_and_a_shard_below_shards(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")},
        "TRADINGD_STORE": "memory",
    }
    base = [sys.executable, "-m", "tradingd.adapters.app.cli", "run", "--no-demo", "--port", "0"]
    for extra, says in (
        (["--shards", "3", "--shard", "1"], "need the external store"),
        (["--shards", "2", "--shard", "2"], "shard 2 of 2"),
        (["--shards", "65", "--shard", "0"], "1..64"),
        (["--shards", "2"], "needs --shard"),  # a tester's finding: it ran as shard 0
    ):
        done = subprocess.run(
            [*base, "--data-dir", str(tmp_path / "d"), *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert says in done.stderr.decode(), done.stderr


SYNTHETIC = "[feeds.synthetic]\nenabled = true\ninterval_ms = 100\n"


def synthetic_states(nodes: list[Node]) -> list[dict[str, Any]]:
    return [n.health()["components"]["feeds"]["synthetic"] for n in nodes]


def one_leader(nodes: list[Node]) -> int:
    """The index of the one node leading the synthetic feed, the others following it."""

    def leader() -> int | None:
        states = synthetic_states(nodes)
        leading = [i for i, s in enumerate(states) if s.get("status") != "follower"]
        if len(leading) != 1:
            return None
        followed = {s.get("leader") for i, s in enumerate(states) if i != leading[0]}
        return leading[0] if len(followed) == 1 and None not in followed else None

    return poll_until(
        leader, lambda i: i is not None, timeout_s=20, interval_s=0.1, what="one feed leader"
    )  # type: ignore[return-value]


def price_ts(node: Node) -> int:
    resp = node.get(f"/v1/prices/{next(iter(DEMO_TOKENS))}")
    return resp.json()["ts"] if resp.status_code == 200 else 0


def test_one_shard_leads_a_feed_and_another_takes_over_when_it_dies(cluster: Cluster) -> None:
    """Three shards with the synthetic feed: one runs it (the others follow, their /health
    naming its lease) and every shard gets its ticks from the tick stream; the leader killed
    with SIGKILL, one of the other two leads within about lease_ms and prices move on."""
    nodes = []
    for i in range(SHARDS):
        args = ["--shards", str(SHARDS), "--shard", str(i)]
        nodes.append(cluster.launch(f"feed{i}", config(SHARDS) + "\n" + SYNTHETIC, args))
    for i, node in enumerate(nodes):
        cluster.wait_ready(node, f"feed{i}")
    first = one_leader(nodes)
    leaders = [
        int(n.get("/metrics").text.split('tradingd_feed_leader{source="synthetic"} ')[1][:1])
        for n in nodes
    ]
    assert leaders == [int(i == first) for i in range(SHARDS)]
    for node in nodes:  # every shard applies the leader's ticks
        poll_until(lambda node=node: price_ts(node), timeout_s=10, what="a synthetic price")
    nodes[first].proc.kill()
    nodes[first].proc.wait(timeout=10)
    rest = [n for i, n in enumerate(nodes) if i != first]
    second = one_leader(rest)
    taken = [x for x in rest[second].logs() if x.get("msg") == "cluster: feed leader"]
    assert [x["source"] for x in taken] == ["synthetic"]
    seen = max(price_ts(n) for n in rest)
    for node in rest:  # ticks flow again, now from the new leader
        poll_until(lambda node=node: price_ts(node) > seen, timeout_s=10, what="newer prices")


def test_any_shard_forwards_an_agents_reads_and_writes_to_its_owner(cluster: Cluster) -> None:
    """Writes for another shard's agent, sent to any shard, are the owner's: applied and durable
    there, answered with its status and error shape; a request already forwarded is not
    forwarded again (421); the owner down is a 503 `owner_unavailable` naming it."""
    shards = [cluster.start(f"fw{i}", i) for i in range(SHARDS)]
    agent = next(a for a in AGENTS if owner(a, SHARDS) == 0)
    # Any shard lists every shard's agents, paged in creation order.
    listed, cursor = [], None
    for _ in range(len(AGENTS)):  # bounded: pages of 2
        page = shards[1].get("/v1/agents?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 2
        listed += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(a["id"] for a in listed) == AGENTS
    assert [a["created_at"] for a in listed] == sorted(a["created_at"] for a in listed)
    paused = shards[1].post(f"/v1/agents/{agent}/pause", {})
    assert paused.status_code == 200, paused.text
    assert paused.headers["X-Tradingd-Owner-Shard"] == "0"
    assert shards[0].get(f"/v1/agents/{agent}").json()["status"] == "paused"
    assert shards[2].get(f"/v1/agents/{agent}").json()["status"] == "paused"
    deposit = shards[2].post(f"/v1/agents/{agent}/deposits", {"asset": "USDC", "amount": "5"})
    assert deposit.status_code == 200, deposit.text
    balances = shards[1].get(f"/v1/agents/{agent}/balances").json()
    assert balances == shards[0].get(f"/v1/agents/{agent}/balances").json()
    assert [b["total"] for b in balances if b["asset"] == "USDC"] == [str(DEPOSIT + 5)]
    bad = shards[1].session.put(
        shards[1].base + f"/v1/agents/{agent}/config",
        json={"sizing": {"mode": "fixed", "amount": "-1"}},
        timeout=10,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error", bad.text
    # a request a shard forwarded (it carries the cluster's token) is never forwarded again
    token = redis.Redis.from_url(cluster.redis_url).get(f"{{{cluster.namespace}}}:forward_token")
    marked = {"X-Tradingd-Forwarded-From": "2", "X-Tradingd-Forward-Token": token.decode()}
    again = shards[1].session.get(
        shards[1].base + f"/v1/agents/{agent}", headers=marked, timeout=10
    )
    assert again.status_code == 421 and again.json()["error"]["code"] == "misdirected"
    # a client's own header, without the token, changes nothing (a tester's finding: it made
    # the halt act on one shard): the request is forwarded and answered by the owner
    forged = {"X-Tradingd-Forwarded-From": "2", "X-Tradingd-Forward-Token": "guess"}
    owned = shards[1].session.get(
        shards[1].base + f"/v1/agents/{agent}", headers=forged, timeout=10
    )
    assert owned.status_code == 200 and owned.headers["X-Tradingd-Owner-Shard"] == "0"
    halted = shards[1].session.post(
        shards[1].base + "/v1/halt", json={}, headers=forged, timeout=10
    )
    assert halted.status_code == 200, halted.text
    assert [s.get("/health").json()["halted"] for s in shards] == [True] * SHARDS
    assert shards[0].session.delete(shards[0].base + "/v1/halt", timeout=10).status_code == 200
    assert [s.get("/health").json()["halted"] for s in shards] == [False] * SHARDS
    # the path goes to the owner exactly as sent: `..` is an agent id, not a parent segment
    dots = shards[1].get("/v1/agents/%2E%2E/sources")
    assert (
        dots.status_code == shards[owner("..", SHARDS)].get("/v1/agents/%2E%2E/sources").status_code
    )
    assert dots.status_code == 404 and "unknown agent" in dots.json()["error"]["message"], dots.text
    unknown_key = requests.get(
        shards[1].base + f"/v1/agents/{agent}",
        headers={"Authorization": "Bearer tdk_nobody_knows_this_key_at_all"},
        timeout=10,
    )
    assert unknown_key.status_code == 401  # refused where it arrived, never forwarded
    metrics = shards[1].get("/metrics").text
    assert 'tradingd_cluster_forwarded_total{outcome="answered"}' in metrics
    # A position's id names its shard: any shard answers for it.
    assert shards[2].post(f"/v1/agents/{agent}/resume", {}).status_code == 200
    now = int(time.time() * 1000)
    tick = {"ticks": [{"token": TOKENS[0], "price_usd": 1.0, "ts": now, "decimals": 6}]}
    assert shards[1].post("/v1/prices", tick).status_code == 202
    posted = shards[1].post("/v1/signals", {"token": TOKENS[0]})
    assert posted.status_code == 202, posted.text
    [position] = poll_until(
        lambda: positions_of(shards[0], agent), timeout_s=20, what="the agent's position"
    )
    # the signal's record on any shard holds every shard's executions
    record = shards[2].get(f"/v1/signals/{posted.json()['signal_id']}").json()
    assert record["agents_matched"] == posted.json()["agents_matched"] > 1
    executed = {e["agent_id"] for e in record["executions"]}
    assert agent in executed and len({owner(a, SHARDS) for a in executed}) == SHARDS
    assert position["id"].startswith("pos_s0_")
    seen = shards[2].get(f"/v1/positions/{position['id']}")
    assert seen.status_code == 200 and seen.headers["X-Tradingd-Owner-Shard"] == "0"
    assert seen.json() == shards[0].get(f"/v1/positions/{position['id']}").json()
    assert shards[2].get("/v1/positions/pos_s1_nothing").status_code == 404  # shard 1's answer
    # The kill switch and its lifting, sent to one shard, hold on every shard.
    halted = shards[1].post("/v1/halt", {"buys": True})
    assert halted.status_code == 200, halted.text
    assert [n.health()["halted"] for n in shards] == [True] * SHARDS
    assert shards[2].session.delete(shards[2].base + "/v1/halt", timeout=10).status_code == 200
    assert [n.health()["halted"] for n in shards] == [False] * SHARDS
    shards[0].proc.kill()
    shards[0].proc.wait(timeout=10)
    partial = shards[1].post("/v1/halt", {"buys": True})
    assert partial.status_code == 503, partial.text
    err = partial.json()["error"]
    assert err["code"] == "shards_incomplete" and err["details"]["applied"] == [1, 2]
    assert list(err["details"]["failed"]) == ["0"]
    assert shards[2].health()["halted"] is True
    down = shards[1].get(f"/v1/agents/{agent}")
    assert down.status_code == 503, down.text
    err = down.json()["error"]
    assert err["code"] == "owner_unavailable" and err["details"]["owner_shard"] == 0
    gone = shards[1].get(f"/v1/positions/{position['id']}").json()["error"]
    assert gone["code"] == "owner_unavailable" and gone["details"]["position_id"] == position["id"]
    # the shard that was down when the halt was sent follows it when it comes back
    back = cluster.start("fw0-again", 0)
    assert back.health()["halted"] is True
