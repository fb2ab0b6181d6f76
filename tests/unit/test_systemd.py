"""sd_notify over a fake NOTIFY_SOCKET: a bound AF_UNIX datagram socket stands in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tradingd.adapters.app import systemd


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_sends_the_state_as_one_datagram(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1") is True
    assert notify_socket.recv(4096) == b"READY=1"


def test_notify_keeps_the_order_of_states(notify_socket: socket.socket) -> None:
    systemd.notify("READY=1")
    systemd.notify("STOPPING=1")
    assert [notify_socket.recv(4096), notify_socket.recv(4096)] == [b"READY=1", b"STOPPING=1"]


def test_notify_reaches_an_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tradingd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"


def test_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_to_a_vanished_socket_reports_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.notify("READY=1") is False


def test_watchdog_pings_at_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval_s() == 15.0


def test_watchdog_meant_for_another_process_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval_s() is None


def test_no_watchdog_without_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.watchdog_interval_s() is None


async def test_watchdog_loop_keeps_pinging(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # pings every 10 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notify_socket.setblocking(False)
    loop_task = asyncio.create_task(systemd.watchdog_loop())
    loop = asyncio.get_running_loop()
    try:
        pings = [await asyncio.wait_for(loop.sock_recv(notify_socket, 4096), 5) for _ in range(3)]
    finally:
        loop_task.cancel()
    assert pings == [b"WATCHDOG=1"] * 3


async def test_watchdog_loop_ends_at_once_without_a_watchdog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(systemd.watchdog_loop(), 5)
