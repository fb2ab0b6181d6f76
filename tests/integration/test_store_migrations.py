"""Schema migrations: `tradingd migrate`, idempotence, concurrent runs under the advisory lock,
and the two staging modes (COPY, executemany) writing the same rows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from tradingd.adapters.store import postgres as pg
from tradingd.adapters.store.records import EntryIds, to_entries
from tradingd.engine import events as ev
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Balance

REPO = Path(__file__).resolve().parents[2]


def test_tradingd_migrate_applies_once(store_servers, namespace):
    env = {
        **os.environ,
        "DATABASE_URL": store_servers.database_url,
        "REDIS_URL": store_servers.redis_url,
        "TRADINGD_STORE_NAMESPACE": namespace,
    }
    first = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0 and "0001_initial" in first.stdout
    again = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "up to date" in again.stdout


async def test_concurrent_migrations_apply_each_file_once(store_servers, namespace):
    results = await asyncio.gather(
        *(pg.migrate(store_servers.database_url, namespace) for _ in range(4))
    )
    assert sorted(map(len, results)) == [0, 0, 0, len(pg.migration_files())]
    conn = await asyncpg.connect(store_servers.database_url)
    tables = {
        r["tablename"]
        for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", namespace
        )
    }
    await conn.close()
    assert {
        "agents",
        "agent_configs",
        "api_keys",
        "wallets",
        "signals",
        "signal_executions",
        "positions",
        "trades",
        "balances",
        "events",
    } <= tables


async def test_copy_and_executemany_write_the_same_rows(store_servers, namespace):
    ids = EntryIds()
    cfg = config_from_builtins({})
    events: list[ev.Event] = [
        ev.AgentCreated(
            ts=1, agent_id="a", name="a", venue="paper", quote="SOL", quote_decimals=9, config=cfg
        ),
        ev.BalanceChanged(ts=2, agent_id="a", asset="SOL", decimals=9, total=2**64 - 1, reserved=5),
        ev.HaltChanged(ts=3, buys=True, flatten=False),
    ]
    entries = to_entries(events, ids)
    rows = {}
    for mode, schema in (("copy", namespace), ("executemany", namespace + "_x")):
        await pg.migrate(store_servers.database_url, schema)
        conn = await pg.connect(store_servers.database_url, schema)
        writer = pg.BatchWriter(conn, mode)  # type: ignore[arg-type]
        await writer.write(entries)
        await writer.write(entries)  # a re-delivered batch changes nothing
        rows[mode] = (
            await conn.fetch("SELECT id, type FROM events ORDER BY id"),
            await conn.fetch("SELECT agent_id, asset, total, reserved FROM balances"),
            await conn.fetch("SELECT agent_id FROM agent_configs"),
        )
        if schema != namespace:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    assert rows["copy"] == rows["executemany"]
    assert len(rows["copy"][0]) == 3
    assert (
        int(rows["copy"][1][0]["total"]) == Balance(asset="SOL", decimals=9, total=2**64 - 1).total
    )
