"""Hook records: create / list / revoke / find by the hook id (the URL's secret), and the usage
counters `GET /v1/hooks` shows.

Like API keys (adapters/http/auth.py KeyStore), hooks live in `<data_dir>/hooks.json`, mode
0600, replaced atomically under a lock so the CLI and the daemon can both write it; the daemon
re-reads it when it changes. A hook id is stored only as its sha256. An HMAC secret is stored as
written: checking a signature needs it (the file's mode is its protection, as for keys.json's
hashes). Usage (counts, last use) is counted in memory and saved to `hooks.usage.json` every few
seconds and at shutdown, never on the request path."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import Struct
from tradingd.adapters.app.record_file import RecordFile, write_atomic
from tradingd.adapters.hooks.secret import hook_hash, new_hmac_secret, new_hook_id, shown_prefix
from tradingd.adapters.http.auth import ApiKey, KeyStore
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.engine.errors import Conflict, NotFound, ValidationError
from tradingd.engine.scorecards import is_reserved

log = logging.getLogger("tradingd.hooks")

Template = Literal["tradingview", "json", "text"]
TEMPLATES: tuple[Template, ...] = ("tradingview", "json", "text")


class Hook(Struct, frozen=True, kw_only=True):
    id: str  # the public record id (`hook_...`): lists and revocation use it, never the secret
    name: str
    key_id: str  # the `signals` key its signals are attributed to
    template: Template
    source: str | None = None  # set on every signal, over the body's
    type: str | None = None  # the signal's type when the body gives none
    strength: int | None = None  # the signal's strength when the body gives none
    hmac_secret: str | None = None  # requests must be signed with it
    created_at: int  # epoch ms
    prefix: str  # the hook id's first characters, for people to tell URLs apart
    hash: str  # sha256 hex of the hook id


class HookUsage(Struct, kw_only=True):
    accepted: int = 0  # signals submitted (202)
    duplicate: int = 0  # repeats of a client id (200)
    refused: int = 0  # bodies that did not make a signal (400, 413, 415, 422)
    bad_signature: int = 0  # 401
    rate_limited: int = 0  # 429
    last_used_at: int | None = None  # epoch ms of the last request that reached the hook


class _HookFile(Struct, kw_only=True):
    version: int = 1
    hooks: list[Hook] = []


_file_decoder = msgspec.json.Decoder(_HookFile)
_usage_decoder = msgspec.json.Decoder(dict[str, HookUsage])
_encoder = msgspec.json.Encoder()


def hooks_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "hooks.json"


def bound_key(keys: KeyStore | None, key_id: str) -> ApiKey | None:
    """The live key `key_id` if it may post signals, else None (revoked, or no `signals`). The
    keys file's own keys only (`list` re-reads it when the CLI changed it); never the
    process-lifetime TRADINGD_ADMIN_KEY."""
    if keys is None:
        return None
    key = next((k for k in keys.list() if k.id == key_id), None)
    return key if key is not None and key.allows("signals") else None


class HookStore:
    def __init__(
        self,
        path: Path | None,
        clock: Callable[[], int] = wall_clock_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.clock = clock
        self._by_hash: dict[str, Hook] = {}
        self._file = RecordFile(
            path,
            decode=lambda data: _file_decoder.decode(data).hooks,
            encode=lambda hooks: _encoder.encode(_HookFile(hooks=hooks)),
            on_load=self._index,
            what="hooks file",
            plural="hooks",
            log=log,
            monotonic=monotonic,
        )
        self.usage: dict[str, HookUsage] = self._read_usage()
        self._usage_dirty = False
        self._file.load()

    # -- file ---------------------------------------------------------------------------------

    @property
    def usage_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name("hooks.usage.json")

    def _index(self, hooks: list[Hook]) -> None:
        self._by_hash = {h.hash: h for h in hooks}

    def refresh(self) -> None:
        """Re-read the hooks file now if another process (the CLI) changed it."""
        self._file.refresh()

    # -- interface ----------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        key_id: str,
        template: Template,
        source: str | None = None,
        type: str | None = None,
        strength: int | None = None,
        hmac: bool = False,
        max_hooks: int,
    ) -> tuple[Hook, str]:
        """A new hook; the hook id (and the HMAC secret, in the record) are returned once. The
        caller has checked that `key_id` may post signals (`bound_key`). Raises ValidationError
        for a fixed `source` the scorecards reserve (every signal would be refused)."""
        if source is not None and is_reserved(source):
            raise ValidationError(
                f"source {source!r} is reserved: the scorecards' card shared by sources",
                "$.source",
            )
        hook_id = new_hook_id()
        hook = Hook(
            id="hook_" + secrets.token_hex(8),
            name=name,
            key_id=key_id,
            template=template,
            source=source,
            type=type,
            strength=strength,
            hmac_secret=new_hmac_secret() if hmac else None,
            created_at=self.clock(),
            prefix=shown_prefix(hook_id),
            hash=hook_hash(hook_id),
        )
        with self._file.edit() as hooks:
            if len(hooks) >= max_hooks:
                raise Conflict(
                    f"{len(hooks)} hooks exist, the most allowed ([hooks] max_hooks): revoke one",
                    {"limit": max_hooks},
                )
            hooks.append(hook)
        log.info("hook created", extra={"hook": hook.id, "key_id": key_id})
        return hook, hook_id

    def list(self) -> list[Hook]:
        self._file.refresh_if_due()
        return sorted(self._by_hash.values(), key=lambda h: (h.created_at, h.id))

    def revoke(self, record_id: str) -> Hook:
        with self._file.edit() as hooks:
            found = next((h for h in hooks if h.id == record_id), None)
            if found is None:
                # not echoed: an operator may paste the secret where the record id goes
                raise NotFound("unknown hook")
            hooks.remove(found)
        self.usage.pop(record_id, None)
        self._usage_dirty = True
        log.info("hook revoked", extra={"hook": record_id})
        return found

    def find(self, hook_id: str) -> Hook | None:
        """The hook whose id is `hook_id`, or None. Looked up by the hash of a 256-bit secret,
        then compared in constant time, as API keys are."""
        digest = hook_hash(hook_id)
        self._file.refresh_if_due()
        hook = self._by_hash.get(digest)
        if hook is not None and hmac.compare_digest(digest, hook.hash):
            return hook
        return None

    # -- usage --------------------------------------------------------------------------------

    def used(self, hook: Hook, outcome: str) -> None:
        """Count one request that reached `hook`; `outcome` is a HookUsage counter's name."""
        usage = self.usage.get(hook.id)
        if usage is None:
            usage = self.usage[hook.id] = HookUsage()
        setattr(usage, outcome, getattr(usage, outcome) + 1)
        usage.last_used_at = self.clock()
        self._usage_dirty = True

    def usage_of(self, record_id: str) -> HookUsage:
        return self.usage.get(record_id) or HookUsage()

    def _read_usage(self) -> dict[str, HookUsage]:
        path = self.usage_path
        if path is None or not path.exists():
            return {}
        try:
            return _usage_decoder.decode(path.read_bytes())
        except msgspec.DecodeError:
            log.warning("hook usage file unreadable: counting from zero", extra={"path": str(path)})
            return {}

    def save_usage(self) -> None:
        """Write the usage counters if they changed (of live hooks only). Counters, not money:
        no fsync, a crash loses at most the last few seconds of counts."""
        path = self.usage_path
        if path is None or not self._usage_dirty:
            return
        self._usage_dirty = False
        live = {h.id for h in self._by_hash.values()}
        kept = {k: v for k, v in self.usage.items() if k in live}
        write_atomic(path, _encoder.encode(kept), durable=False)
