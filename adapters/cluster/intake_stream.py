"""The intake streams' layout in Redis (docs/cluster.md "Intake", adapters/cluster/intake.py):
the cluster's shared keys under the base namespace's hash tag, the entry ids `G-S`, the
script that appends an entry (with a signal's cluster-wide client id) in one step, and how a
stream's consumer groups read (their lag and pending entries)."""

from __future__ import annotations

from typing import Any, NamedTuple

from tradingd.adapters.store.stream_codec import hash_tag

SIGNALS = "signals"
TICKS = "ticks"
STREAMS = (SIGNALS, TICKS)

# KEYS: stream, global seq, stream seq[, client key]; ARGV: maxlen, payload[, client value, px]
APPEND = """
if KEYS[4] then
  local first = redis.call('GET', KEYS[4])
  if first then
    return {0, first}
  end
  redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
end
local g = redis.call('INCR', KEYS[2])
local s = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], g .. '-' .. s, 'd', ARGV[2])
return {1, id}
"""


def entry_seq(entry_id: bytes | str) -> tuple[int, int]:
    """(G, S) of an entry id `G-S`."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    g, _, s = text.partition("-")
    return int(g), int(s or 0)


class Published(NamedTuple):
    signal_id: str
    received_at: int
    duplicate: bool


class Results(NamedTuple):
    agents_matched: int
    answered: list[int]
    pending: list[int]
    errors: list[tuple[str, str]]  # (path, message) of each shard that refused the signal


class IntakeKeys:
    """The cluster's shared keys, all under the base namespace's hash tag `{<base>}` (one slot:
    the append script and the merged read touch several; stream_codec.hash_tag)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.tag = tag = hash_tag(base)
        self.seq = f"{tag}:intake:seq"
        self.shards = f"{tag}:shards"
        self.count = f"{tag}:shard_count"  # the shard count the cluster was started with

    def stream(self, name: str) -> str:
        return f"{self.tag}:intake:{name}"

    def stream_seq(self, name: str) -> str:
        return f"{self.tag}:intake:{name}:seq"

    def client(self, client_id: str) -> str:
        return f"{self.tag}:signal_client:{client_id}"

    def result(self, signal_id: str) -> str:
        return f"{self.tag}:intake:result:{signal_id}"

    @property
    def halt(self) -> str:
        """The operator's halt of the whole cluster (`1`: buys halted, `0`: lifted)."""
        return f"{self.tag}:halt"

    @property
    def forward_token(self) -> str:
        """The secret a shard's forwarded request carries, so a client cannot pass one off as
        forwarded (adapters/cluster/forward.py)."""
        return f"{self.tag}:forward_token"

    @property
    def moved_positions(self) -> str:
        """Position id -> the shard holding it, for positions whose id names another shard
        (moved by `tradingd cluster reshard`)."""
        return f"{self.tag}:moved_positions"

    def feed_watched(self, shard: int) -> str:
        return f"{self.tag}:feed:watched:s{shard}"

    def legacy(self) -> dict[str, str]:
        """The durable keys as named before hash tags (`<base>:...`) -> their names now."""
        renamed = {f"{self.base}:{k.partition(':')[2]}": k for k in (self.seq, self.shards)}
        renamed[f"{self.base}:shard_count"] = self.count
        for name in STREAMS:
            for key in (self.stream(name), self.stream_seq(name)):
                renamed[f"{self.base}:{key.partition(':')[2]}"] = key
        return renamed


def text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def consumer_groups(
    r: Any, stream: str, last_seq: int | None = None
) -> dict[str, dict[str, Any]]:
    """A stream's consumer groups: lag (entries not yet delivered), pending (delivered, not
    acknowledged) and the last delivered id. {} without the stream. Redis 7 reports the lag;
    before it, an intake stream's lag is `last_seq` (the S of its last entry, ids being `G-S`,
    adapters/cluster/intake.py) minus the S of the last delivered id, and otherwise None."""
    from redis.exceptions import ResponseError

    try:
        groups = await r.xinfo_groups(stream)
    except ResponseError:  # no such key
        return {}
    out = {}
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
        last = g.get("last-delivered-id")
        last = last.decode() if isinstance(last, bytes) else last
        lag = g.get("lag")
        if lag is None and last_seq is not None and last:
            lag = max(0, last_seq - int(last.partition("-")[2] or 0))
        out[name] = {
            "lag": lag,
            "pending": g.get("pending"),
            "last_delivered": last,
        }
    return out
