"""Notification channels created over the control port (`POST /v1/notifications`), kept in
`<data_dir>/notify_channels.json` so they come back after a restart, whatever the store
(TRADINGD_STORE=memory included: it is the data dir, not the store).

Each is stored as it was given: a secret written in the request is in the file, because sending
needs it (the file's mode, 0600, is its protection, as for hooks.json's HMAC secrets); one given
as `env:VAR_NAME` stays a reference, resolved at each start. The file is edited under a lock and
replaced atomically (adapters/app/record_file.py); only the daemon writes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec
from msgspec import Struct
from tradingd.adapters.app.record_file import RecordFile
from tradingd.adapters.notify.config import (
    MAX_CHANNELS,
    ChannelSettings,
    NotifySettings,
    resolve_channel,
)
from tradingd.engine.errors import ValidationError

log = logging.getLogger("tradingd.notify")


class StoredChannel(Struct, kw_only=True):
    created_at: int  # epoch ms
    channel: ChannelSettings  # as given: secrets written out, or env:VAR_NAME references

    def __repr__(self) -> str:  # ChannelSettings' repr redacts the secrets
        return f"StoredChannel(created_at={self.created_at}, channel={self.channel!r})"


class _Document(Struct, kw_only=True):
    version: int = 1
    channels: list[StoredChannel] = []


_decoder = msgspec.json.Decoder(_Document)
_encoder = msgspec.json.Encoder()


def channels_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "notify_channels.json"


class ChannelFile:
    """The stored channels by name. `lock` serializes the control port's changes (check, write,
    start) so two requests cannot both take the last free name or slot."""

    def __init__(self, path: Path | None) -> None:
        self.lock = asyncio.Lock()
        self.stored: dict[str, StoredChannel] = {}
        self._file: RecordFile[StoredChannel] = RecordFile(
            path,
            decode=lambda raw: _decoder.decode(raw).channels,
            encode=lambda channels: _encoder.encode(_Document(channels=channels)),
            on_load=self._index,
            what="notification channels file",
            plural="channels",
            log=log,
        )

    def _index(self, channels: list[StoredChannel]) -> None:
        self.stored = {s.channel.name: s for s in channels}

    def load(self) -> None:
        """Read the file. Raises ValidationError when it is corrupt (start-up stops: a file
        written again from nothing would lose the operator's channels)."""
        self._file.load()

    def add(self, stored: StoredChannel) -> None:
        """Write one more channel (durably: call it off the event loop)."""
        with self._file.edit() as channels:
            channels[:] = [s for s in channels if s.channel.name != stored.channel.name]
            channels.append(stored)

    def remove(self, name: str) -> bool:
        """Remove a channel from the file; False when it was not there."""
        if name not in self.stored:
            return False
        with self._file.edit() as channels:
            channels[:] = [s for s in channels if s.channel.name != name]
        return True

    def startable(
        self, notify: NotifySettings, env: Mapping[str, str]
    ) -> list[tuple[ChannelSettings, int]]:
        """The stored channels to start next to the config file's, their secrets resolved, with
        their creation time. One that cannot start (its name now in the config file, the bound
        reached, an `env:` variable unset) is logged by name and skipped, and stays in the file:
        fixed and restarted, it comes back; `DELETE /v1/notifications/{name}` removes it."""
        taken = {c.name for c in notify.channels}
        out: list[tuple[ChannelSettings, int]] = []
        for stored in sorted(self.stored.values(), key=lambda s: (s.created_at, s.channel.name)):
            name = stored.channel.name
            reason = None
            if name in taken:
                reason = "the config file has a channel of this name"
            elif len(taken) >= MAX_CHANNELS:
                reason = f"{MAX_CHANNELS} channels already run"
            else:
                try:
                    out.append((resolve_channel(stored.channel, env), stored.created_at))
                    taken.add(name)
                    continue
                except ValidationError as exc:
                    reason = exc.message
            log.error("notification channel not started", extra={"channel": name, "reason": reason})
        return out


def hide_in_logs(values: Iterable[str]) -> None:
    """Give secrets learnt after start-up (a channel created over the API, or read from the
    channel file) to the daemon's log filter (adapters/app/logs.py), as the config file's are."""
    from tradingd.adapters.app.logs import RedactSecrets

    new = tuple(v for v in values if len(v) >= 8)
    if not new:
        return
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, RedactSecrets):
                f.literals = (*f.literals, *(v for v in new if v not in f.literals))
