"""Agent shards (docs/cluster.md "Shards"): which shard owns an agent, the store namespace of a
shard, and the 421 a shard answers for an agent it does not own.

An agent belongs to shard `owner(agent_id, shards)`: the first 8 bytes of sha256(agent_id), big
endian, modulo the shard count. Stable (a pure function of the id and the count) and balanced
(sha256 is uniform). Shard i of base namespace `ns` keeps its own state under `ns_s<i>` (Redis key
prefix and Postgres schema); what the shards share (the intake streams, the idempotency keys, the
shards' control URLs) is under `ns` itself."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from tradingd.engine.errors import TradingdError

MAX_SHARDS = 64
COUNT_READ_S = 30.0  # how long a start waits for Redis to say the recorded shard count
# Drawing an id for shard i of N takes N draws on average; the chance that 64 * N draws all miss
# is (1 - 1/N)^(64 N) < e^-64.
DRAWS_PER_SHARD = 64


def owner(agent_id: str, shards: int) -> int:
    """The shard that owns `agent_id` among `shards` (0 with one shard)."""
    if shards <= 1:
        return 0
    digest = hashlib.sha256(agent_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def id_node(shard: int, shards: int) -> str:
    """The prefix a shard's engine puts in the ids it makes (`pos_s2_...`, `ord_s2_...`), so
    an id names its shard and is unique across the cluster; none for a single process."""
    return f"s{shard}_" if shards > 1 else ""


def shard_of_id(entity_id: str, shards: int) -> int | None:
    """The shard an id made by a shard's engine names (`<prefix>_s<i>_...`), or None (an id made
    before shards, by a single process, or not one of ours)."""
    _, _, rest = entity_id.partition("_")
    node, sep, _ = rest.partition("_")
    digits = node[1:]
    if not sep or node[:1] != "s" or not (digits.isascii() and digits.isdigit()) or len(node) > 3:
        return None
    shard = int(digits)
    return shard if shard < shards else None


def shard_namespace(base: str, shard: int, shards: int) -> str:
    """The store namespace of shard `shard`: the base itself for a single process."""
    return base if shards <= 1 else f"{base}_s{shard}"


def new_agent_id() -> str:
    return f"agt_{secrets.token_hex(8)}"


def draw_agent_id(shard: int, shards: int, draw: Callable[[], str] = new_agent_id) -> str:
    """A fresh agent id that `shard` owns: random ids drawn until one hashes to it."""
    for _ in range(DRAWS_PER_SHARD * max(1, shards)):
        agent_id = draw()
        if owner(agent_id, shards) == shard:
            return agent_id
    raise RuntimeError(f"no id for shard {shard} of {shards} in {DRAWS_PER_SHARD * shards} draws")


class Misdirected(TradingdError):
    """A request naming an agent (or a position) another shard owns that is not forwarded there
    (adapters/cluster/forward.py): 421, with the owner shard (and its control URL when it
    registered one)."""

    code = "misdirected"
    status = 421


def owned_details(kind: str, named: str, owner_shard: int, url: str | None) -> dict[str, Any]:
    """`{"<kind>_id": named, "owner_shard", "owner_url"?}` of a 421 or 503 about what another
    shard owns (`kind`: "agent" or "position")."""
    details: dict[str, Any] = {f"{kind}_id": named, "owner_shard": owner_shard}
    if url:
        details["owner_url"] = url
    return details


def misdirected(named: str, owner_shard: int, url: str | None, kind: str = "agent") -> Misdirected:
    return Misdirected(
        f"{kind} {named[:128]!r} belongs to shard {owner_shard}: send this request there",
        owned_details(kind, named, owner_shard, url),
    )


RESHARDING = "resharding"  # the recorded count while a reshard moves rows: `resharding:N:M`


def recorded_count(raw: bytes | str | None) -> tuple[int, int | None]:
    """The shard count recorded in `{<ns>}:shard_count`, and the count an interrupted reshard
    was going to (None when none was): (1, None) with nothing recorded (one process)."""
    if raw is None:
        return 1, None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    if text.startswith(RESHARDING + ":"):
        _, frm, to = text.split(":")
        return int(frm), int(to)
    return int(text), None


async def check_recorded_count(redis_url: str, base: str, shards: int, wait_s: float = 0.0) -> None:
    """Before a process on the external store recovers anything: refused when the cluster's
    recorded shard count is not its own (a single process on a namespace that became shards, a
    shard started with another count) or a reshard was interrupted. Waits up to `wait_s`
    (default COUNT_READ_S) for Redis to answer. Raises ShardCountMismatch, ReshardInterrupted,
    ShardCountUnknown."""
    from tradingd.adapters.cluster.intake_stream import IntakeKeys
    from tradingd.adapters.store.redis import client
    from tradingd.adapters.transient import REDIS_FAILURES

    key = IntakeKeys(base).count
    r = client(redis_url, 2.0)
    deadline = time.monotonic() + (wait_s or COUNT_READ_S)
    try:
        while True:
            try:
                raw = await r.get(key)
                break
            except REDIS_FAILURES as exc:
                # never skipped: a process that started unchecked could re-create agents that
                # moved to the shards (a tester's finding, with Redis paused at its start)
                if time.monotonic() >= deadline:
                    raise ShardCountUnknown(key, exc, wait_s or COUNT_READ_S) from None
                await asyncio.sleep(0.5)
    finally:
        await r.aclose()
    if raw is not None:
        refuse_another_count(key, raw, shards)


def refuse_another_count(key: str, raw: bytes | str, shards: int) -> None:
    """Raises ReshardInterrupted or ShardCountMismatch unless `raw`, the value recorded under
    `key`, is `shards`."""
    known, interrupted = recorded_count(raw)
    if interrupted is not None:
        raise ReshardInterrupted(known, interrupted)
    if known != shards:
        raise ShardCountMismatch(key, known, shards)


class ShardCountUnknown(TradingdError):
    """The cluster's recorded shard count could not be read from Redis at start-up."""

    code = "shard_count_unknown"

    def __init__(self, key: str, exc: BaseException, waited_s: float) -> None:
        super().__init__(
            f"cannot read {key} from Redis within {waited_s:.0f} s ({exc}): a process "
            "starts only once it knows the cluster's shard count; start it again when Redis "
            "answers",
            {"key": key},
        )


class ReshardInterrupted(TradingdError):
    """`tradingd cluster reshard` stopped between moving rows and recording the new count:
    no shard may start with either count until a run of it finishes."""

    code = "reshard_interrupted"

    def __init__(self, known: int, to: int) -> None:
        super().__init__(
            f"a reshard from {known} to {to} shards was interrupted: run `tradingd cluster "
            f"reshard --shards {to}` to finish it, then start {to} shards",
            {"from": known, "to": to},
        )


class ShardCountMismatch(TradingdError):
    """A shard started with another shard count than the cluster's: agents would belong to
    different shards in its eyes (a tester's finding: it joined, its agents were unreachable
    and it answered for a shard it is not). Refused at start-up."""

    code = "shard_count_mismatch"

    def __init__(self, key: str, known: int, given: int) -> None:
        change = (
            f"to change the count, stop every shard and run `tradingd cluster reshard "
            f"--shards {given}`"
            if given > 1
            else "its agents moved into the shards' namespaces"
        )
        super().__init__(
            f"this cluster runs {known} shards ({key}), not {given}: start every process with "
            f"--shards {known} --shard <i> ({change}: docs/cluster.md)",
            {"known": known, "given": given},
        )
