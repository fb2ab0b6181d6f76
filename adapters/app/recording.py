"""Wiring of the recorder (`[feeds.record]`, `tradingd record`) into the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tradingd.adapters.feeds.recorder import Recorder
from tradingd.engine.ports import ComponentHealth

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.adapters.app.runtime import Runtime
    from tradingd.adapters.app.settings import RecordSettings


def record_path(settings: RecordSettings, data_dir: Path) -> Path:
    """`[feeds.record] path`, relative to the data dir unless absolute."""
    path = Path(settings.path).expanduser()
    return path if path.is_absolute() else data_dir / path


def wire_recorder(recorder: Recorder, runtime: Runtime) -> None:
    """Subscribe the recorder to what the runtime receives, as it receives it, and to its
    events (a clock turn that moved something is written even within the coalescing gap)."""
    runtime.tick_intake.append(recorder.on_ticks)
    runtime.signal_intake.append(recorder.on_signal)
    runtime.clock_intake.append(recorder.on_clock)
    runtime.cancel_intake.append(recorder.on_cancel)
    runtime.event_subscribers.append(recorder.on_events)


def start_recording(daemon: Daemon) -> Recorder | None:
    """When `[feeds.record] enabled`: a recorder on the daemon's runtime intake (ticks, signals,
    clock turns, before any feed starts), its writer task, its health at `components.feeds.record`
    (republished by the recorder when it changes), and its close among the cleanups, so
    the queue is written out at shutdown. Raises OSError when the directory cannot be made."""
    settings = daemon.settings.feeds.record
    if not settings.enabled:
        return None
    feeds = daemon.components.setdefault("feeds", {})

    def publish(health: ComponentHealth) -> None:
        feeds["record"] = health

    recorder = Recorder(
        record_path(settings, daemon.data_dir),
        max_bytes=settings.max_bytes,
        rotate_daily=settings.rotate_daily,
        max_queue=settings.max_queue,
        publish_health=publish,
        rules_of=daemon.engine.instruments.get,
    )
    recorder.start()
    wire_recorder(recorder, daemon.runtime)
    publish(recorder.health())
    daemon.spawn(recorder.run(), "recorder")
    daemon.cleanups.append(recorder.close)
    return recorder
