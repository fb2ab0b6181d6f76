"""Requests the HTTP parser refuses, against the real `tradingd run` process: the answer is the
one JSON error shape and quotes nothing the client sent, and the process's log never holds the
API key that came in the refused header."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

TIMEOUT_S = 5.0


def raw_request(port: int, request: bytes) -> bytes:
    """Send `request` as is and read the reply until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        chunks = []
        for _ in range(64):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def split(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("bad", [b"\x01", b"\x00", b"\x7f", b"\x1b[2J"])
def test_a_control_character_in_authorization_gets_json_400_without_the_key(
    daemon: Any, bad: bytes
):
    key = daemon.admin_key.encode()
    reply = raw_request(
        daemon.port,
        b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + key + bad + b"QQsuffixQQ\r\n\r\n",
    )
    status, headers, body = split(reply)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "details"}
    assert doc["error"]["code"] == "bad_request"
    assert key not in reply and b"QQsuffixQQ" not in reply and b"Bearer" not in reply

    # the process is still serving, and its whole output so far never held the key
    ok = raw_request(
        daemon.port,
        b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    assert split(ok)[0] == 200
    daemon.stop()
    output = daemon.log_path.read_bytes()
    assert key not in output
    assert b"malformed HTTP request refused" in output
