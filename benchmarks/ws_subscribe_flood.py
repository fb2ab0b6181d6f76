"""One `read` WebSocket client floods the real `tradingd run` process with subscribe/unsubscribe
pairs on a large state without reading, then reads what it was sent. Measured: the daemon's RSS
(idle and peak while the flood is served), `/health/live` latency meanwhile, and what the client
saw: messages, seq gaps, the close code and whether a `slow_consumer` alert preceded it.

The state is AGENTS agents and TOKENS priced tokens, so every snapshot is a few hundred KiB. The
client socket has a small receive buffer and does not read during the flood. `--source DIR`
runs the daemon from another checkout (e.g. an older commit, to compare).

    .venv/bin/python benchmarks/ws_subscribe_flood.py [--json PATH] [--pairs 2000] [--source DIR]

Bounded: the flood is `--pairs` pairs, RSS is sampled for at most SAMPLE_S, the client reads for
at most READ_S; a run takes under a minute."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from _stats import add_json_arg, percentiles, write_json
from slowloris import REPO, probe, rss_mib, start_daemon
from tradingd.adapters.feeds.synthetic import demo_mint

AGENTS = 200
TOKENS = 2000
SAMPLE_S = 10.0
READ_S = 30.0
SMALL_BUFFER = 4096
TEXT, CLOSE = 0x1, 0x8


async def build_state(base: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        for i in range(AGENTS):
            async with http.post("/v1/agents", json={"name": f"flood-{i}"}) as resp:
                assert resp.status == 201, await resp.text()
        now = time.time_ns() // 1_000_000
        ticks = [
            {"token": demo_mint(f"FLOOD-{i}"), "price_usd": 1.0 + i, "ts": now}
            for i in range(TOKENS)
        ]
        for i in range(0, TOKENS, 500):
            async with http.post("/v1/prices", json={"ticks": ticks[i : i + 500]}) as resp:
                assert resp.status == 202, await resp.text()


class RawWs:
    """Just enough RFC 6455 to not read on purpose, then read everything."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, key: str) -> RawWs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        writer.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b0 & 0x0F, await self.reader.readexactly(length)

    async def read_all(self) -> dict[str, Any]:
        """Read until the close frame, EOF or READ_S: counts, gaps, close code, last type."""
        seen = {"messages": 0, "bytes": 0, "gaps": 0, "close_code": None, "last": None}
        last_seq = 0
        try:
            async with asyncio.timeout(READ_S):
                while True:
                    opcode, payload = await self.frame()
                    if opcode == CLOSE:
                        seen["close_code"] = struct.unpack("!H", payload[:2])[0]
                        self.send(CLOSE, payload[:2])
                        break
                    if opcode == TEXT:
                        msg = msgspec.json.decode(payload)
                        seen["messages"] += 1
                        seen["bytes"] += len(payload)
                        seen["gaps"] += int(msg["seq"] != last_seq + 1)
                        last_seq = msg["seq"]
                        seen["last"] = f"{msg['type']}:{msg['data'].get('code', '')}"
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            seen["ended_by"] = type(exc).__name__
        return seen


async def run(source: Path, pairs: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="ws-flood-"))
    key = "tdk_" + secrets.token_urlsafe(24)
    proc, port, _ = start_daemon(source, data_dir, key)
    try:
        await build_state(f"http://127.0.0.1:{port}", key)
        await asyncio.sleep(1.0)
        result: dict[str, Any] = {"source": str(source), "pairs": pairs, "agents": AGENTS}
        result |= {"tokens": TOKENS, "rss_idle_mib": round(rss_mib(proc.pid), 1)}
        ws = await RawWs.connect(port, key)
        sub = msgspec.json.encode({"op": "subscribe", "channels": ["prices", "agents"]})
        unsub = msgspec.json.encode({"op": "unsubscribe"})
        for _ in range(pairs):
            ws.send(TEXT, sub)
            ws.send(TEXT, unsub)
        peak, probes = 0.0, []
        loop = asyncio.get_running_loop()
        end = loop.time() + SAMPLE_S
        while loop.time() < end:
            peak = max(peak, rss_mib(proc.pid))
            probes.append(await probe(port))
            await asyncio.sleep(0.05)
        answered = [p * 1000 for p in probes if p is not None]
        result |= {
            "rss_peak_mib": round(peak, 1),
            "health": {"answered": len(answered), "probes": len(probes)},
            "health_latency_ms": percentiles(answered),
        }
        result["client"] = await ws.read_all()
        ws.writer.transport.abort()
        result["alive"] = proc.poll() is None
        return result
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except Exception:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


def show(r: dict[str, Any]) -> None:
    c, lat = r["client"], r["health_latency_ms"]
    print(f"daemon from {r['source']}: {r['agents']} agents, {r['tokens']} priced tokens")
    print(
        f"{r['pairs']} subscribe/unsubscribe pairs, not read: RSS {r['rss_idle_mib']} -> peak "
        f"{r['rss_peak_mib']} MiB; /health/live answered {r['health']['answered']}/"
        f"{r['health']['probes']}, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms"
    )
    print(
        f"client read {c['messages']} messages ({c['bytes'] / 2**20:.1f} MiB), seq gaps "
        f"{c['gaps']}, close code {c['close_code']}, last message {c['last']}"
        + (f", ended by {c['ended_by']}" if "ended_by" in c else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--source", default=str(REPO), help="checkout to run the daemon from")
    args = parser.parse_args()
    result = asyncio.run(run(Path(args.source).resolve(), args.pairs))
    show(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
