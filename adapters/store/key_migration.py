"""Redis keys renamed to carry a Redis Cluster hash tag (stream_codec.hash_tag, 2026-12-01):
`<ns>:events` became `{<ns>}:events`, and so on for every key of a namespace.

A daemon upgraded in place renames its namespace's keys still under their old names before it
reads anything (the store before recovery, the hot standby before it looks at the lease): the
stream keeps every entry not yet in Postgres and the write-behind's consumer group, the lease its
holder and TTL. One script renames them all, atomically, and leaves a tombstone under the old
lease name (no TTL): an old-version process still running, or started again, on the same Redis
finds a lease that is never its own nor free — its renewal fails, every write it tries is fenced
(the old write script checks that key), and it can never take the lease, so it steps down or
waits as a standby for good. (A tester's rolling upgrade without it: the old standby took the
freed old name while a new process took the new one — two actives, a signal bought twice.) The
lease, renamed with its TTL, lapses and a new-version process takes it. A key present under both
names (an old version run again after the new one) is left as it is and named in a warning."""

from __future__ import annotations

import logging
from typing import Any

from tradingd.adapters.store.stream_codec import Keys

log = logging.getLogger("tradingd.store")

# KEYS: old1, new1, old2, new2, ...[, tombstone]; ARGV[1]: the tombstone's value ("": none).
# Returns {renamed old names..., "|", both present...}.
RENAME = """
local out, both = {}, {}
local pairs_end = #KEYS
if ARGV[1] ~= '' then
  pairs_end = #KEYS - 1
end
for i = 1, pairs_end, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('EXISTS', KEYS[i + 1]) == 0 then
      redis.call('RENAME', KEYS[i], KEYS[i + 1])
      out[#out + 1] = KEYS[i]
    else
      both[#both + 1] = KEYS[i]
    end
  end
end
if ARGV[1] ~= '' and #out > 0 then
  redis.call('SET', KEYS[#KEYS], ARGV[1])
end
out[#out + 1] = '|'
for _, k in ipairs(both) do out[#out + 1] = k end
return out
"""
# Under the old lease name once a namespace is migrated: no process's `<token>:<instance>`.
TOMBSTONE = "moved-to-hash-tagged-keys"


def legacy_names(namespace: str) -> dict[str, str]:
    """Every key of `namespace` under its name before hash tags -> its name now."""
    keys = Keys(namespace)
    return {f"{namespace}:{name}": f"{keys.tag}:{name}" for name in keys.every_name()}


def legacy_lease(namespace: str) -> str:
    """The lease's name before hash tags (where the tombstone goes)."""
    return f"{namespace}:lease"


async def rename_legacy_keys(
    r: Any, renames: dict[str, str], tombstone: str | None = None
) -> list[str]:
    """Rename each key of `renames` (old -> new) that exists under its old name only; the old
    names renamed. With `tombstone` (the old lease's name), leave TOMBSTONE there when
    anything was renamed (an old process must never find that name free). Raises what the Redis client raises. Not for Redis Cluster (old names of one
    namespace hash to different slots; a cluster deployment never had them)."""
    from redis.asyncio.cluster import RedisCluster

    if not renames or isinstance(r, RedisCluster):
        return []
    flat = [k for pair in renames.items() for k in pair]
    if tombstone is not None:
        flat.append(tombstone)
    reply = [
        x.decode() if isinstance(x, bytes) else str(x)
        for x in await r.eval(RENAME, len(flat), *flat, TOMBSTONE if tombstone else "")
    ]
    cut = reply.index("|")
    renamed, both = reply[:cut], reply[cut + 1 :]
    if renamed:
        log.warning(
            "redis keys renamed to their hash-tagged names",
            extra={"renamed": renamed, "count": len(renamed)},
        )
    if both:
        log.error(
            "redis keys present under both their old and their hash-tagged names: the old ones "
            "are left alone (an old version ran after the new one?)",
            extra={"keys": both},
        )
    return renamed
