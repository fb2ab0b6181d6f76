"""Opens the control port: wires keys, metrics and the WebSocket hub onto the daemon, serves the
app on `[http] host:port`, and registers the cleanup that closes it at shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from aiohttp import web
from tradingd.adapters.http.app import build_app
from tradingd.adapters.http.auth import BOOTSTRAP_ENV, KeyStore, admin_key_path, keys_path
from tradingd.adapters.http.connections import ConnectionLimits, connection_cap, raise_fd_limit
from tradingd.adapters.http.protocol_errors import json_protocol_errors

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")


def wire_control_port(daemon: Daemon) -> web.Application:
    """Attach keys, metrics and the ws hub to the daemon and build the app (no socket yet)."""
    from tradingd.adapters.http.ws import WsHub
    from tradingd.adapters.metrics import Metrics

    if daemon.keys is None:
        daemon.keys = KeyStore(keys_path(daemon.data_dir), os.environ.get(BOOTSTRAP_ENV) or None)
        key_file = admin_key_path(daemon.data_dir)
        created = daemon.keys.create_first_admin(key_file)
        if created is not None:  # the path only: the key itself is in the file, nowhere else
            log.warning(
                "no API keys in the data dir: created an admin key, written once to `path`",
                extra={"path": str(key_file), "key_id": created.id},
            )
    if daemon.metrics is None:
        daemon.metrics = Metrics(daemon)
    if daemon.hub is None:
        daemon.hub = WsHub(daemon)
    return build_app(daemon)


async def serve_control_port(daemon: Daemon) -> None:
    """Listen on `[http] host:port` behind the connection bounds (connections.py): a cap on open
    connections (evicting idle and half-sent ones), header- and body-read timeouts and aiohttp's
    idle keep-alive timeout."""
    app = wire_control_port(daemon)
    http = daemon.settings.http
    # access logs off: one line per request would dominate the log; metrics count requests
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2.0,
        keepalive_timeout=http.keepalive_timeout_s,
        lingering_time=http.body_timeout_s,  # draining an unread body after the response
    )
    await runner.setup()
    fd_limit = raise_fd_limit()
    cap = connection_cap(http.max_connections, fd_limit)
    limits = ConnectionLimits(
        json_protocol_errors(runner.server), cap, http.header_timeout_s, http.body_timeout_s
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        limits, http.host, http.port, backlog=1024, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1] if server.sockets else http.port  # real for port 0
    log.info(
        "control port open",
        extra={"host": http.host, "port": port, "max_connections": cap, "fd_limit": fd_limit},
    )

    async def close() -> None:
        server.close()  # stop accepting; open connections are closed by the hub and the runner
        await daemon.hub.close_all()
        await runner.cleanup()
        log.info("control port closed")

    daemon.cleanups.append(close)
