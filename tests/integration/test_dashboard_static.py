"""The dashboard's files as the control port serves them: the page without a key and with a
strict Content-Security-Policy, every shipped file with its content type and cache headers,
nothing outside the shipped files (no path traversal), and nothing in them that loads from
another host (the daemon often runs with no internet)."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from http_harness import serve
from tradingd.adapters.http import routes_dashboard
from tradingd.adapters.http.routes_dashboard import FILES, ROOT
from yarl import URL

EXPECTED_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
    ".md": "text/plain",
}
# Hosts a shipped file may name: the chart library's attribution link (a link a person may
# follow, never loaded by the page), and in the library the SVG namespace (an identifier, never
# fetched) and its licence header's link.
LINKED_HOSTS = {"www.tradingview.com"}
VENDOR_HOSTS = {"www.w3.org", "www.apache.org"}
URL_IN_TEXT = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)<>]*""")


def _own_files() -> list[Path]:
    return [p for p in ROOT.iterdir() if p.is_file()]


async def test_the_page_is_served_without_a_key_under_a_strict_content_security_policy(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        async with api.client.get("/") as resp:
            body = await resp.text()
            assert resp.status == 200
            assert resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
            headers = resp.headers
    assert '<script type="module" src="/dashboard/main.js">' in body
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"


async def test_every_shipped_file_is_served_with_its_content_type(tmp_path: Path) -> None:
    shipped = sorted(
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.is_file() and p.suffix in EXPECTED_TYPES
    )
    assert "main.js" in shipped and "vendor/lightweight-charts.standalone.production.js" in shipped
    async with serve(tmp_path) as api:
        for name in shipped:
            async with api.client.get(f"/dashboard/{name}") as resp:
                body = await resp.read()
                assert resp.status == 200, name
                assert resp.content_type == EXPECTED_TYPES[Path(name).suffix], name
                assert resp.headers["Cache-Control"] == "no-cache"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert body == (ROOT / name).read_bytes()


@pytest.mark.parametrize("path", ["/", "/dashboard/main.js", "/dashboard/dashboard.css"])
async def test_head_answers_as_get_does_without_a_body(tmp_path: Path, path: str) -> None:
    """Uptime checkers probe with HEAD: the same status and headers as GET, no body."""
    async with serve(tmp_path) as api:
        async with api.client.get(path) as got:
            body = await got.read()
        async with api.client.head(path) as head:
            assert head.status == got.status == 200
            assert await head.read() == b""
            for name in ("Content-Type", "ETag", "Content-Security-Policy", "Cache-Control"):
                assert head.headers[name] == got.headers[name], name
            assert head.headers["Content-Length"] == str(len(body))
        async with api.client.head("/dashboard/missing.js") as missing:
            assert missing.status == 404


async def test_an_unchanged_file_is_revalidated_with_304(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        async with api.client.get("/dashboard/main.js") as resp:
            etag = resp.headers["ETag"]
        async with api.client.get("/dashboard/main.js", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
            assert await resp.read() == b""
        async with api.client.get("/dashboard/main.js", headers={"If-None-Match": '"x"'}) as resp:
            assert resp.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/../routes_dashboard.py",
        "/dashboard/%2e%2e/routes_dashboard.py",
        "/dashboard/..%2Froutes_dashboard.py",
        "/dashboard/vendor/../../app.py",
        "/dashboard/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/dashboard//etc/passwd",
        "/dashboard/missing.js",
        "/dashboard/",
        "/dashboard/main.js%00.png",
    ],
)
async def test_a_path_outside_the_shipped_files_is_404(tmp_path: Path, path: str) -> None:
    async with serve(tmp_path) as api:
        async with api.client.get(URL(path, encoded=True)) as resp:
            body = await resp.text()
    assert resp.status == 404, (path, resp.status)
    assert "import" not in body and "root:" not in body  # no file's content leaked


def test_no_dashboard_file_names_another_host() -> None:
    """Our own files name no host but the licence's attribution link; the vendored library only
    that link, the SVG namespace and its licence's link. (The CSP would block a load anyway; this keeps the files
    honest, and the browser test checks that no request leaves 127.0.0.1.)"""
    for path in _own_files():
        hosts = {urlsplit(u if ":" in u else "http:" + u).hostname for u in _urls(path)}
        assert hosts <= LINKED_HOSTS, (path.name, hosts)
    vendor_hosts = {
        urlsplit(u if ":" in u else "http:" + u).hostname
        for u in _urls(routes_dashboard.VENDOR_CHARTS)
    }
    assert vendor_hosts <= LINKED_HOSTS | VENDOR_HOSTS, vendor_hosts


def _urls(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    # `//` also opens JS comments: keep only what looks like a URL with a dotted host
    return [u for u in URL_IN_TEXT.findall(text) if not u.startswith("// ")]


def test_the_page_references_only_files_that_are_served() -> None:
    html = (ROOT / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    local = [r for r in refs if r.startswith("/")]
    assert local, refs
    for ref in local:
        assert ref.startswith("/dashboard/") and ref.removeprefix("/dashboard/") in FILES, ref
    for ref in refs:
        assert ref.startswith(("/", "data:", "https://www.tradingview.com/")), ref
    for path in ROOT.glob("*.js"):
        for target in re.findall(r'from "(\./[^"]+)"', path.read_text(encoding="utf-8")):
            assert target.removeprefix("./") in FILES, (path.name, target)


def test_the_attribution_logo_style_is_allowed_by_its_hash() -> None:
    """The chart library injects one <style> for its attribution logo (kept on, as its licence
    asks): the policy lets exactly that text in, no other inline style."""
    vendor = routes_dashboard.VENDOR_CHARTS.read_bytes()
    (style,) = re.findall(rb'innerText="(a#tv-attr-logo[^"]*)"', vendor)
    digest = base64.b64encode(hashlib.sha256(style).digest()).decode()
    assert f"'sha256-{digest}'" in routes_dashboard.CSP


def test_no_dashboard_script_writes_markup_from_strings() -> None:
    """Text from the API becomes text nodes (dom.js `el`), never parsed markup."""
    for path in ROOT.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (path.name, sink)


def test_every_served_file_is_in_the_package_data() -> None:
    """The wheel carries what pyproject's package-data globs name (as setuptools globs them): a
    file in a new subfolder without its glob would be served here and missing when installed."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["tradingd.adapters.http"]
    http = ROOT.parent
    packaged = {p for pattern in globs for p in http.glob(pattern) if p.is_file()}
    served = {ROOT / name for name in FILES}
    assert served - packaged == set()
