"""Moving agents' rows between shard schemas (adapters/cluster/agent_moves.py) on the real
Postgres: everything keyed by the agent moves in the caller's transaction, including the
marker of an earlier agent deleted under the same id; nothing else does; a conflict moves
nothing."""

from __future__ import annotations

import json

import asyncpg
import pytest
from store_harness import StoreServers
from tradingd.adapters.cluster.agent_moves import agent_schemas, agents_in, move_rows
from tradingd.adapters.store import postgres as pg

SEP = "\x1f"


@pytest.fixture
async def shard_schemas(store_servers: StoreServers, namespace: str):
    """Shard 0's and shard 1's schemas of the namespace, migrated; dropped after the test."""
    url = store_servers.database_url
    src, dst = f"{namespace}_s0", f"{namespace}_s1"
    for schema in (src, dst):
        await pg.migrate(url, schema)
    yield src, dst
    conn = await asyncpg.connect(url)
    for schema in (src, dst):
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def _seed(conn: asyncpg.Connection, schema: str, agent: str) -> None:
    s = f'"{schema}"'
    await conn.execute(
        f"INSERT INTO {s}.agents (id, version, doc) VALUES ($1, 5, $2::jsonb)",
        agent,
        json.dumps({"id": agent}),
    )
    await conn.execute(
        f"INSERT INTO {s}.positions (id, version, agent_id, token, status, doc) "
        "VALUES ($1, 3, $2, 'tok', 'closed', '{}'::jsonb)",
        f"pos_{agent}",
        agent,
    )
    await conn.execute(
        f"INSERT INTO {s}.balances (agent_id, asset, version, decimals, total, reserved) "
        "VALUES ($1, 'USDC', 4, 6, 100, 0)",
        agent,
    )
    for key in (f"card{SEP}{agent}{SEP}tv", f"deleted:{agent}"):
        await conn.execute(
            f"INSERT INTO {s}.engine_state (key, version, value) VALUES ($1, 2, '{{}}'::jsonb)",
            key,
        )


async def _count(conn: asyncpg.Connection, schema: str, table: str, agent: str) -> int:
    col = "id" if table == "agents" else "agent_id"
    if table == "engine_state":
        return int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".engine_state WHERE key LIKE $1 OR key = $2',
                f"card{SEP}{agent}{SEP}%",
                f"deleted:{agent}",
            )
        )
    return int(
        await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table} WHERE {col} = $1', agent)
    )


async def test_an_agents_rows_move_whole_and_nothing_else_does(
    store_servers: StoreServers, namespace: str, shard_schemas: tuple[str, str]
) -> None:
    url = store_servers.database_url
    src, dst = shard_schemas
    conn = await asyncpg.connect(url)
    try:
        await _seed(conn, src, "agt_moving")
        await _seed(conn, src, "agt_staying")
        await conn.execute(
            f"INSERT INTO \"{src}\".engine_state (key, version, value) VALUES ('halt', 1, '{{}}')"
        )
        assert await agent_schemas(conn, namespace) == [src, dst]
        async with conn.transaction():
            moved = await move_rows(conn, src, dst, ["agt_moving"])
        assert moved["agents"] == 1 and moved["positions"] == 1 and moved["balances"] == 1
        assert moved["engine_state"] == 2  # its scorecard and the deleted marker
        for table in ("agents", "positions", "balances", "engine_state"):
            assert await _count(conn, dst, table, "agt_moving") > 0, table
            assert await _count(conn, src, table, "agt_moving") == 0, table
            assert await _count(conn, src, table, "agt_staying") > 0, table
            assert await _count(conn, dst, table, "agt_staying") == 0, table
        assert await agents_in(conn, dst) == ["agt_moving"]
        # a deleted agent's id moves too (its rows and marker with it; a tester's finding)
        await conn.execute(
            f"INSERT INTO \"{src}\".agents (id, version, deleted) VALUES ('agt_gone', 7, true)"
        )
        assert sorted(await agents_in(conn, src)) == ["agt_gone", "agt_staying"]
        halt = await conn.fetchval(
            f"SELECT count(*) FROM \"{src}\".engine_state WHERE key = 'halt'"
        )
        assert halt == 1  # the shard's own state stays
    finally:
        await conn.close()


async def test_a_row_already_in_the_destination_moves_nothing(
    store_servers: StoreServers, shard_schemas: tuple[str, str]
) -> None:
    url = store_servers.database_url
    src, dst = shard_schemas
    conn = await asyncpg.connect(url)
    try:
        await _seed(conn, src, "agt_twice")
        await conn.execute(
            f"INSERT INTO \"{dst}\".agents (id, version, doc) VALUES ('agt_twice', 9, '{{}}')"
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await move_rows(conn, src, dst, ["agt_twice"])
        for table in ("agents", "positions", "balances", "engine_state"):
            assert await _count(conn, src, table, "agt_twice") > 0, table
        assert await _count(conn, dst, "positions", "agt_twice") == 0
    finally:
        await conn.close()
