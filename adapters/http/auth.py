"""API keys with scopes, stored hashed, and a per-key token-bucket rate limit.

Keys are `tdk_` + 32 random bytes (urlsafe): high-entropy, so a plain sha256 is a sufficient
hash (no slow KDF needed). Until the key table moves to Postgres they live in
`<data_dir>/keys.json` (mode 0600, replaced atomically under a lock so the CLI and the daemon
can both write it); the daemon re-reads the file when it changes. The raw key is returned
once by `create` and never stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from msgspec import Struct
from tradingd.adapters.app.record_file import RELOAD_CHECK_S as RELOAD_CHECK_S  # ws.py reads it
from tradingd.adapters.app.record_file import RecordFile, write_atomic
from tradingd.adapters.timestamps import wall_clock_ms as _wall_ms
from tradingd.engine.errors import NotFound, ValidationError

log = logging.getLogger("tradingd.http")

SCOPES = frozenset(("signals", "feed", "read", "trade", "admin"))
KEY_PREFIX = "tdk_"
BOOTSTRAP_ENV = "TRADINGD_ADMIN_KEY"
BOOTSTRAP_ID = "env-admin"


class ApiKey(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str
    scopes: frozenset[str]
    created_at: int  # epoch ms
    hash: str  # sha256 hex of the raw key
    # epoch ms it was revoked: kept (hash only) so that a cluster's processes, which share their
    # keys (adapters/cluster/shared_keys.py), never bring a revoked key back
    revoked_at: int | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class _KeyFile(Struct, kw_only=True):
    version: int = 1
    keys: list[ApiKey] = []


_file_decoder = msgspec.json.Decoder(_KeyFile)
_file_encoder = msgspec.json.Encoder()


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _news(mine: list[ApiKey], others: list[ApiKey]) -> dict[str, ApiKey]:
    """The keys of `others` that change `mine`: ids unknown to it, and revocations of keys it
    holds live."""
    have = {k.id: k for k in mine}
    out = {}
    for other in others:
        known = have.get(other.id)
        if known is None or (other.revoked_at is not None and known.revoked_at is None):
            out[other.id] = other
    return out


class KeyStore:
    """create / list / revoke / authenticate: the whole interface a Postgres table would need."""

    def __init__(
        self,
        path: Path | None,
        bootstrap_key: str | None = None,
        clock: Callable[[], int] = _wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.clock = clock
        self._by_hash: dict[str, ApiKey] = {}
        self._ids: frozenset[str] = frozenset()
        self.generation = 0  # bumped on every (re)load: a revocation may have happened
        # revoked by another process of the cluster while this file could not be written:
        # refused here all the same (adapters/cluster/shared_keys.py)
        self._revoked_elsewhere: set[str] = set()
        self._file = RecordFile(
            path,
            decode=lambda data: _file_decoder.decode(data).keys,
            encode=lambda keys: _file_encoder.encode(_KeyFile(keys=keys)),
            on_load=self._index,
            what="key file",
            plural="keys",
            log=log,
            monotonic=monotonic,
        )
        self._bootstrap: ApiKey | None = None
        if bootstrap_key:
            self._bootstrap = ApiKey(
                id=BOOTSTRAP_ID,
                name=BOOTSTRAP_ENV,
                scopes=frozenset({"admin"}),
                created_at=clock(),
                hash=key_hash(bootstrap_key),
            )
        self._file.load()

    def _index(self, keys: list[ApiKey]) -> None:
        gone = self._revoked_elsewhere
        live = [k for k in keys if k.revoked_at is None and k.id not in gone]
        self._by_hash = {k.hash: k for k in live}
        self._ids = frozenset(k.id for k in live)
        self.generation += 1

    def refresh(self) -> None:
        """Re-read the key file now if another process (the CLI) changed it."""
        self._file.refresh()

    # -- interface ----------------------------------------------------------------------------

    def create(self, name: str, scopes: frozenset[str]) -> tuple[ApiKey, str]:
        """A new key; the raw secret is in the return value only."""
        unknown = scopes - SCOPES
        if unknown or not scopes:
            raise ValidationError(
                f"scopes must be a non-empty subset of {sorted(SCOPES)}", "$.scopes"
            )
        raw = new_raw_key()
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            scopes=frozenset(scopes),
            created_at=self.clock(),
            hash=key_hash(raw),
        )
        with self._file.edit() as keys:
            keys.append(key)
        log.info("api key created", extra={"key_id": key.id, "scopes": sorted(key.scopes)})
        return key, raw

    def create_first_admin(self, key_file: Path) -> ApiKey | None:
        """On a store with no keys: a new admin key whose raw value goes once to `key_file`
        (0600), before its hash is stored, so a crash between the two leaves no key nobody has.
        None (and no file) when the store already has keys."""
        if self._by_hash or self.path is None:
            return None
        raw = new_raw_key()
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name="admin (created at first start)",
            scopes=frozenset({"admin"}),
            created_at=self.clock(),
            hash=key_hash(raw),
        )
        with self._file.edit() as keys:
            if any(k.revoked_at is None for k in keys):  # `tradingd keys create` ran meanwhile
                return None
            write_atomic(key_file, (raw + "\n").encode(), durable=True)
            keys.append(key)
        log.info("api key created", extra={"key_id": key.id, "scopes": ["admin"]})
        return key

    def list(self) -> list[ApiKey]:
        self._file.refresh_if_due()
        return sorted(self._by_hash.values(), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str) -> ApiKey:
        with self._file.edit() as keys:
            at = next((i for i, k in enumerate(keys) if k.id == key_id), None)
            if at is None or keys[at].revoked_at is not None:
                if key_id.startswith(KEY_PREFIX):  # a key pasted for its id: never echoed
                    raise NotFound("unknown key id: this is a key itself, not its id (key_...)")
                raise NotFound(f"unknown key {key_id!r}", {"key_id": key_id})
            found = keys[at]
            keys[at] = msgspec.structs.replace(found, revoked_at=self.clock())
        log.info("api key revoked", extra={"key_id": key_id})
        return found

    def records(self) -> list[ApiKey]:
        """Every key of the file, revoked ones included (their hash and `revoked_at`)."""
        self._file.refresh()
        return list(self._file.records)

    def merge(self, others: list[ApiKey]) -> int:
        """Take in keys another process of the cluster has: a key not known here is added, and
        a revocation wins over a live copy (a revoked key never comes back). Returns how many
        keys changed here; the file is written only when one did."""
        news = _news(self.records(), others)
        if not news:
            return 0
        try:
            with self._file.edit() as keys:
                news = _news(keys, others)
                count = len(news)
                keys[:] = [news.pop(k.id, k) for k in keys] + list(news.values())
        except (ValidationError, OSError):
            # the file cannot be read or written: a revocation still holds at once, here
            revoked = {k.id for k in news.values() if k.revoked_at is not None}
            if revoked - self._revoked_elsewhere:
                self._revoked_elsewhere |= revoked
                self._index(self._file.records)
            raise
        if count:
            log.info("api keys taken from the cluster", extra={"keys": count})
        return count

    def is_live(self, key_id: str | None) -> bool:
        """Whether `key_id` still authenticates (as of the last load of the key file)."""
        boot = self._bootstrap
        return key_id is not None and (
            key_id in self._ids or (boot is not None and key_id == boot.id)
        )

    def authenticate(self, raw: str) -> ApiKey | None:
        digest = key_hash(raw)
        boot = self._bootstrap
        if boot is not None and hmac.compare_digest(digest, boot.hash):
            return boot
        self._file.refresh_if_due()
        key = self._by_hash.get(digest)
        # The dict lookup is by a hash of a high-entropy secret; the compare is belt and braces.
        if key is not None and hmac.compare_digest(digest, key.hash):
            return key
        return None


class RateLimiter:
    """A token bucket per key id: `rate` tokens per second, at most `burst` banked."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)

    def take(self, key_id: str) -> float | None:
        """Spend one token; None if allowed, else seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return None
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / self.rate


def bearer_key(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def keys_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "keys.json"


def admin_key_path(data_dir: str | Path) -> Path:
    """Where `tradingd run` writes the admin key it creates for a data dir without keys."""
    return Path(data_dir) / "admin.key"
