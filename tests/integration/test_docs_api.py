"""docs/api.md, the project's API reference, names every route the daemon serves and every error
code the control port can answer with: a route or code added without its documentation fails."""

from __future__ import annotations

from pathlib import Path

import msgspec
import tradingd.adapters.app.daemon  # noqa: F401  (these import every module that defines an error class)
import tradingd.adapters.store.errors  # noqa: F401
from http_harness import serve
from tradingd.adapters.http import connections, errors, protocol_errors
from tradingd.engine.errors import TradingdError

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def error_codes() -> set[str]:
    """Every `code` an error body can carry: our error classes, the names given to aiohttp's
    own HTTP errors and to protocol errors, and the header timeout's canned answer."""
    codes = {cls.code for cls in _subclasses(TradingdError)}
    codes |= set(errors._HTTP_CODES.values())
    codes |= set(protocol_errors._CODES.values())
    raw = connections._timeout_response("x")
    codes.add(msgspec.json.decode(raw.partition(b"\r\n\r\n")[2])["error"]["code"])
    return codes


async def test_every_served_route_is_in_docs_api_md(tmp_path):
    text = API_MD.read_text(encoding="utf-8")
    async with serve(tmp_path) as api:
        doc = await api.ok("GET", "/v1/openapi.json", key=None)
        served = {
            (r.method, r.resource.canonical)
            for r in api.client.app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        }
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} | served
    assert ("GET", "/v1/ws") in routes
    missing = sorted(f"{m} {p}" for m, p in routes if f"`{m} {p}`" not in text)
    assert not missing, f"routes missing from docs/api.md: {missing}"


def test_every_error_code_is_in_docs_api_md():
    text = API_MD.read_text(encoding="utf-8")
    codes = error_codes()
    assert {"validation_error", "unsupported_media_type", "rate_limited", "not_ready"} <= codes
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert not missing, f"error codes missing from docs/api.md: {missing}"
