"""sd_notify written directly to $NOTIFY_SOCKET (no libsystemd): READY, STOPPING, WATCHDOG."""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    """Send one notification; False when not run under systemd (no NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000  # ping at half the watchdog timeout
    except ValueError:
        return None


async def watchdog_loop() -> None:
    """Pings from the event loop itself, so a blocked loop stops the pings and systemd acts."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
