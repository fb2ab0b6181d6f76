"""API keys across a cluster end to end (docs/cluster.md "API keys"): two real shards and a
hot standby of shard 0, each with its own data dir. A key created over the API on one process
authenticates on every other within a sync, the standby included, so after the active is killed
the client's key works on the process that took over; a key revoked on one is refused on all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.e2e.cluster_nodes import (
    Node,
    Nodes,
    embedded_servers,
    new_nodes,
    wait_ready,
    wait_standby,
)
from tests.polling import poll_until

CONFIG = "[cluster]\nlease_ms = 1000\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    yield from embedded_servers(tmp_path_factory, "keys-servers")


@pytest.fixture
def nodes(servers: tuple[str, str], tmp_path: Path) -> Iterator[Nodes]:
    n = new_nodes(servers, tmp_path, "key")
    yield n
    n.stop_all()


def status_with(node: Node, raw: str) -> int:
    headers = {"Authorization": f"Bearer {raw}"}
    return requests.get(node.base + "/v1/agents", headers=headers, timeout=10).status_code


def test_a_key_made_on_one_process_works_on_every_other_and_after_a_takeover(
    nodes: Nodes,
) -> None:
    shard0 = nodes.launch("s0", CONFIG, ["--shards", "2", "--shard", "0"])
    wait_ready(shard0, "shard 0 ready")
    # the cluster's first process, with no key anywhere, makes the first admin key and shares it
    r = redis.Redis.from_url(nodes.redis_url)
    poll_until(lambda: r.hlen(f"{{{nodes.namespace}}}:api_keys"), timeout_s=10, what="shared")
    assert (shard0.data_dir / "admin.key").exists()
    shard1 = nodes.launch("s1", CONFIG, ["--shards", "2", "--shard", "1"])
    wait_ready(shard1, "shard 1 ready")
    standby = nodes.launch("s0b", CONFIG, ["--shards", "2", "--shard", "0", "--role", "standby"])
    wait_standby(standby)

    # the others found the cluster's key: none made one of its own (a tester's finding)
    assert not (shard1.data_dir / "admin.key").exists()
    assert not (standby.data_dir / "admin.key").exists()
    first_admin = (shard0.data_dir / "admin.key").read_text().strip()
    poll_until(  # 503 standby, not 401: the standby took the cluster's key in
        lambda: status_with(standby, first_admin), lambda s: s == 503, timeout_s=10, what="known"
    )

    made = shard1.post("/v1/keys", {"name": "dashboard", "scopes": ["read"]})
    assert made.status_code == 201, made.text
    raw, key_id = made.json()["key"], made.json()["id"]
    # GET /v1/agents asks every shard: 200 once shard 0 took the key in (about a second)
    poll_until(lambda: status_with(shard1, raw), lambda s: s == 200, timeout_s=10, what="on s1")
    assert status_with(shard0, raw) == 200
    assert raw not in (standby.data_dir / "keys.json").read_text()  # hashes only
    poll_until(
        lambda: key_id in (standby.data_dir / "keys.json").read_text(),
        timeout_s=10,
        what="the standby holds the key before it takes over",
    )

    shard0.proc.kill()  # the standby takes shard 0 over; the client's key works there
    shard0.proc.wait(timeout=10)
    wait_ready(standby, "the standby took over")
    assert status_with(standby, raw) == 200

    gone = standby.session.delete(standby.base + f"/v1/keys/{key_id}", timeout=10)
    assert gone.status_code == 204, gone.text
    assert status_with(standby, raw) == 401
    poll_until(lambda: status_with(shard1, raw), lambda s: s == 401, timeout_s=10, what="revoked")
