"""Fake notification services on 127.0.0.1, speaking their real wire formats, recording every
request (arrival time, path, headers, JSON body) and answering from a script of faults.

- `FakeTelegram`: Bot API `POST /bot<token>/sendMessage` -> {"ok": true, "result": Message};
  faults: 429 {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after N",
  "parameters": {"retry_after": N}}, 500, 401 {"ok": false, "error_code": 401, ...}.
- `FakeDiscord`: execute webhook `POST /api/webhooks/<id>/<token>` -> 204; 429 {"message": "You
  are being rate limited.", "retry_after": s, "global": false} with Retry-After and
  X-RateLimit-* headers; 500.
- `WebhookSink`: any `POST /hook` -> 200, checking X-Tradingd-Signature with its secret.
`BlackHole` (tests/fakes/hermes.py) accepts and never answers: a hanging channel."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.hermes import BlackHole

__all__ = ["BlackHole", "FakeDiscord", "FakeTelegram", "Seen", "WebhookSink"]

BOT_TOKEN = "123456789:AAF-fake-bot-token-0123456789abcdefXYZ"


@dataclass
class Seen:
    at: float  # time.monotonic() at arrival
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int = 0  # what the fake answered

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class _Fake:
    """Common part: an aiohttp app on 127.0.0.1, a script of faults (consumed one per request;
    "ok" once empty) and the requests seen."""

    faults: deque[tuple[str, float]] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def script(self, *faults: str | tuple[str, float]) -> None:
        """Answer the next requests with these faults, in order: "429" (with a tuple's
        retry_after), "500", "401"."""
        for f in faults:
            self.faults.append(f if isinstance(f, tuple) else (f, 0.0))

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> tuple[Seen, tuple[str, float] | None]:
        raw = await request.read()
        seen = Seen(time.monotonic(), request.path, dict(request.headers), raw)
        self.seen.append(seen)
        return seen, (self.faults.popleft() if self.faults else None)

    @property
    def delivered(self) -> list[Seen]:
        return [s for s in self.seen if 200 <= s.status < 300]


class FakeTelegram(_Fake):
    token = BOT_TOKEN

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/sendMessage", self._send)

    async def _send(self, request: web.Request) -> web.Response:
        seen, fault = await self._record(request)
        if request.match_info["token"] != self.token:
            seen.status = 401
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        if fault is not None and fault[0] == "429":
            after = int(fault[1])
            seen.status = 429
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {after}",
                    "parameters": {"retry_after": after},
                },
                status=429,
            )
        if fault is not None:
            seen.status = int(fault[0])
            return web.json_response(
                {"ok": False, "error_code": seen.status, "description": "Internal Server Error"},
                status=seen.status,
            )
        body = seen.body
        for key in ("chat_id", "text"):
            if key not in body:
                seen.status = 400
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": f"Bad Request: {key} is empty"},
                    status=400,
                )
        seen.status = 200
        message = {
            "message_id": len(self.delivered),
            "date": int(time.time()),
            "chat": {"id": body["chat_id"], "type": "private"},
            "text": body["text"],
        }
        return web.json_response({"ok": True, "result": message})

    @property
    def texts(self) -> list[str]:
        return [s.body["text"] for s in self.delivered]


class FakeDiscord(_Fake):
    webhook_path = "/api/webhooks/1234567890/discord-fake-webhook-token-abcdefghijkl"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/webhooks/{id}/{token}", self._execute)

    async def _execute(self, request: web.Request) -> web.Response:
        seen, fault = await self._record(request)
        if fault is not None and fault[0] == "429":
            seen.status = 429
            return web.json_response(
                {
                    "message": "You are being rate limited.",
                    "retry_after": fault[1],
                    "global": False,
                },
                status=429,
                headers={
                    "Retry-After": str(max(1, round(fault[1]))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": str(fault[1]),
                    "X-RateLimit-Scope": "shared",
                },
            )
        if fault is not None:
            seen.status = int(fault[0])
            return web.json_response(
                {"message": "500: Internal Server Error", "code": 0}, status=seen.status
            )  # noqa: E501
        body = seen.body
        if not body.get("content") and not body.get("embeds"):
            seen.status = 400
            return web.json_response(
                {"message": "Cannot send an empty message", "code": 50006}, status=400
            )  # noqa: E501
        seen.status = 204
        return web.Response(status=204)

    @property
    def contents(self) -> list[str]:
        return [s.body["content"] for s in self.delivered]


class WebhookSink(_Fake):
    secret = "whsec-fake-signing-secret-0123456789"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)

    def verifies(self, seen: Seen) -> bool:
        expected = "sha256=" + hmac.new(self.secret.encode(), seen.raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(seen.headers.get("X-Tradingd-Signature", ""), expected)

    async def _hook(self, request: web.Request) -> web.Response:
        seen, fault = await self._record(request)
        if fault is not None:
            seen.status = int(fault[0])
            headers = {"Retry-After": str(fault[1])} if fault[0] == "429" else {}
            return web.Response(status=seen.status, headers=headers)
        seen.status = 200 if self.verifies(seen) else 401
        return web.Response(status=seen.status)
