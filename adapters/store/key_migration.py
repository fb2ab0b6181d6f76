"""Redis keys renamed to carry a Redis Cluster hash tag (stream_codec.hash_tag, 2026-12-01):
`<ns>:events` became `{<ns>}:events`, and so on for every key of a namespace.

A daemon upgraded in place renames its namespace's keys still under their old names before it
reads anything (the store before recovery, the hot standby before it looks at the lease): the
stream keeps every entry not yet in Postgres and the write-behind's consumer group, the lease its
holder and TTL. One script renames them all, atomically. An old-version process still running
on the same Redis then finds its lease key gone: its next renewal fails and every write it tries
is fenced (the write script checks the lease under the old name), so it steps down; the lease,
renamed with its TTL, lapses and a new-version process takes it. A key present under both names
(an old version run again after the new one) is left as it is and named in a warning."""

from __future__ import annotations

import logging
from typing import Any

from tradingd.adapters.store.stream_codec import Keys

log = logging.getLogger("tradingd.store")

# KEYS: old1, new1, old2, new2, ...; returns {renamed old names..., "|", both present...}
RENAME = """
local out, both = {}, {}
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('EXISTS', KEYS[i + 1]) == 0 then
      redis.call('RENAME', KEYS[i], KEYS[i + 1])
      out[#out + 1] = KEYS[i]
    else
      both[#both + 1] = KEYS[i]
    end
  end
end
out[#out + 1] = '|'
for _, k in ipairs(both) do out[#out + 1] = k end
return out
"""


def legacy_names(namespace: str) -> dict[str, str]:
    """Every key of `namespace` under its name before hash tags -> its name now."""
    keys = Keys(namespace)
    return {f"{namespace}:{name}": f"{keys.tag}:{name}" for name in keys.every_name()}


async def rename_legacy_keys(r: Any, renames: dict[str, str]) -> list[str]:
    """Rename each key of `renames` (old -> new) that exists under its old name only; the old
    names renamed. Raises what the Redis client raises. Not for Redis Cluster (old names of one
    namespace hash to different slots; a cluster deployment never had them)."""
    from redis.asyncio.cluster import RedisCluster

    if not renames or isinstance(r, RedisCluster):
        return []
    flat = [k for pair in renames.items() for k in pair]
    reply = [
        x.decode() if isinstance(x, bytes) else str(x)
        for x in await r.eval(RENAME, len(flat), *flat)
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
