"""Opens the control port: has the daemon build keys, metrics and the WebSocket hub, serves the
app on `[http] host:port`, and registers the cleanup that closes it at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from tradingd.adapters.http.app import build_app
from tradingd.adapters.http.connections import ConnectionLimits, connection_cap, raise_fd_limit
from tradingd.adapters.http.protocol_errors import json_protocol_errors

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")


def wire_control_port(daemon: Daemon) -> web.Application:
    """Have the daemon build keys, metrics and the ws hub, and build the app (no socket yet)."""
    daemon.build_control_port()
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
    daemon.control_port = port  # the shards register their URL (adapters/cluster/intake.py)
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
