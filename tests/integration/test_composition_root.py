"""The daemon is the one composition root: it builds the store, metrics and WebSocket hub and
subscribes them; no constructor attaches itself to the daemon, no Daemon field is typed Any."""

from __future__ import annotations

import ast
from pathlib import Path

from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import load_settings
from tradingd.adapters.http.auth import KeyStore
from tradingd.adapters.http.ws import WsHub
from tradingd.adapters.metrics import Metrics

DAEMON_SOURCE = Path(__file__).resolve().parents[2] / "adapters" / "app" / "daemon.py"


def make_daemon(data_dir: Path) -> Daemon:
    settings = load_settings(None, {"TRADINGD_STORE": "memory", "TRADINGD_DATA_DIR": str(data_dir)})
    settings.feeds.synthetic.enabled = False
    daemon = Daemon(settings, demo=False)
    daemon.keys = KeyStore(None)
    return daemon


def wiring(daemon: Daemon) -> tuple[list[object], ...]:
    runtime = daemon.runtime
    return (
        list(runtime.event_subscribers),
        list(runtime.tick_subscribers),
        list(runtime.order_observers),
        list(daemon.cleanups),
    )


def test_metrics_and_the_hub_built_alone_attach_to_nothing(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    before = wiring(daemon)
    Metrics(daemon)
    WsHub(daemon.engine, daemon.settings, KeyStore(None))
    assert wiring(daemon) == before
    assert daemon.metrics is None and daemon.hub is None


def test_the_daemon_subscribes_what_it_builds_once(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    daemon.build_control_port()
    daemon.build_control_port()
    metrics, hub = daemon.metrics, daemon.hub
    assert metrics is not None and hub is not None
    events, ticks, orders, cleanups = wiring(daemon)
    assert events.count(metrics.on_events) == 1 and events.count(hub.dispatch.on_events) == 1
    assert ticks.count(metrics.on_ticks) == 1 and ticks.count(hub.dispatch.on_ticks) == 1
    assert orders == [metrics.on_order]
    assert cleanups == [hub.close_all]


async def test_the_store_is_subscribed_first_and_closed_last(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    store = await daemon.open_store()  # as in Daemon.run: the store, later the control port
    daemon.build_control_port()
    assert daemon.store is store
    assert daemon.runtime.event_subscribers[0] == store.on_events
    assert store.on_ticks in daemon.runtime.tick_subscribers
    assert daemon.cleanups[0] == store.close  # cleanups run last registered first
    await daemon.shutdown()


def test_no_daemon_field_is_typed_any() -> None:
    tree = ast.parse(DAEMON_SOURCE.read_text())
    fields = {
        ast.unparse(node.target): ast.unparse(node.annotation)
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target).startswith("self.")
    }
    assert {"self.store", "self.metrics", "self.hub", "self.keys", "self.feeds"} <= set(fields)
    assert {name: ann for name, ann in fields.items() if "Any" in ann} == {}
