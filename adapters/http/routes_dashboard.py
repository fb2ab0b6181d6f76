"""The dashboard (`GET /` and its static files under `/dashboard/`): shipped in the package,
served by the daemon itself so it works on a box with no internet. No key is needed to load the
page; every data call it makes carries the key the user types (docs/dashboard.md).

Only the files found in the package's `dashboard/` folder at import time are served, looked up
by name in that table: a request path is never joined onto the disk, so no `..` or encoded
variant of it can reach another file."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from tradingd.adapters.http.openapi import Route
from tradingd.engine.errors import NotFound

ROOT = Path(__file__).resolve().parent / "dashboard"
VENDOR_CHARTS = ROOT / "vendor" / "lightweight-charts.standalone.production.js"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
# The chart library's attribution logo (kept on, as its licence asks) injects one <style> element
# with fixed text; its hash lets exactly that style in without 'unsafe-inline'.
_LOGO_STYLE = re.compile(rb'innerText="(a#tv-attr-logo[^"]*)"')


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def _style_hashes(vendor: Path) -> list[str]:
    if not vendor.is_file():
        return []
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
        for m in _LOGO_STYLE.findall(vendor.read_bytes())
    ]


def content_security_policy(style_hashes: list[str]) -> str:
    """Everything from this origin only: no CDN, no inline script, no framing. `connect-src
    'self'` covers the same-origin WebSocket (CSP Level 3 matches ws: / wss: for 'self')."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            " ".join(("style-src 'self'", *style_hashes)),
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def load_files(root: Path = ROOT) -> dict[str, StaticFile]:
    """Every shipped file with a known type, by its path relative to `root` (`vendor/x.js`)."""
    files = {}
    for path in sorted(root.rglob("*")):
        content_type = _TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.relative_to(root).as_posix()] = StaticFile(body, content_type, etag)
    return files


FILES = load_files()
CSP = content_security_policy(_style_hashes(VENDOR_CHARTS))
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # File names carry no version: a browser revalidates each load (a 304 when unchanged), so an
    # upgraded daemon never runs with yesterday's scripts.
    "Cache-Control": "no-cache",
}


def _serve(request: web.Request, name: str) -> web.Response:
    found = FILES.get(name)
    if found is None:
        raise NotFound("no such dashboard file", {"path": name[:128]})
    headers = {**_HEADERS, "ETag": found.etag}
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})


async def get_dashboard(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


async def get_dashboard_file(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["path"])


ROUTES = [
    Route(
        "GET",
        "/",
        get_dashboard,
        "The dashboard (web UI)",
        "dashboard",
        None,
        {200: str},
        media_type="text/html",
        description="The page asks for an API key and uses only the public API; see "
        "docs/dashboard.md.",
    ),
    Route(
        "GET",
        "/dashboard/{path:.+}",
        get_dashboard_file,
        "A static file of the dashboard (script, style sheet, chart library)",
        "dashboard",
        None,
        {200: str},
        media_type="*/*",  # the file's own type: JavaScript, CSS, a licence text
        errors=(404,),
        description="Only the files shipped in the package; anything else is 404.",
    ),
]
