"""Wiring of the recorder (`[feeds.record]`, `tradingd record`) into the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon


def start_recording(daemon: Daemon) -> None:
    """Attach a recorder to the daemon's runtime when `[feeds.record] enabled`."""
    if not daemon.settings.feeds.record.enabled:
        return
    raise NotImplementedError("recording is being built (issue 10)")
