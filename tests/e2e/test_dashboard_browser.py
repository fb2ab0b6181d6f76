"""The dashboard in headless Chromium against the real `tradingd run` with its demo (synthetic
feed, demo agent and signals): log in with a key, see the demo trading live, pause/resume the
agent and halt/resume buys from the page with the API agreeing, a wrong key and a missing scope
explained, log out, exact money, the stream's seq-gap resync, peak and stop following a new high
(pushed prices, no demo), and the page riding out a daemon restart. The main view's screenshot
lands in test-artifacts/dashboard.png.

Waits on page state pass a function (`"() => ..."`): a bare expression would be evaluated with
`eval` inside the page, which its Content-Security-Policy (rightly) refuses."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser import WAIT_MS, chromium, screenshot  # noqa: F401
from tests.e2e.conftest import DaemonProcess
from tests.polling import poll_until

# The demo's first buy comes ~2 s after start and its exits within seconds (trailing 4 %,
# take-profit at +4 %, 1.5 % steps every 0.5 s); the bound leaves room on a busy machine.
TRADE_WAIT_MS = 45_000
RESTART_WAIT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1000}


def _api(daemon: DaemonProcess, method: str, path: str, key: str | None = None) -> Any:
    request = urllib.request.Request(
        daemon.base_url + path,
        method=method,
        headers={"Authorization": f"Bearer {key or daemon.admin_key}"},
        data=b"{}" if method == "POST" else None,
    )
    if method == "POST":
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def demo(
    daemon_starter: Callable[..., DaemonProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    daemon = daemon_starter(tmp_path_factory.mktemp("dashboard"), demo=True)
    try:
        yield daemon
    finally:
        daemon.stop()


class Page:
    """A fresh browser context (its own sessionStorage) with what the page reported: console
    errors, uncaught exceptions and every URL it requested."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("request", lambda r: self.requests.append(r.url))

    def login(self, daemon: DaemonProcess, key: str | None = None) -> None:
        self.page.goto(daemon.base_url + "/")
        self.page.fill("#api-key", key or daemon.admin_key)
        self.page.click("#login-submit")


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Page]:  # noqa: F811
    page = Page(chromium)
    try:
        yield page
    finally:
        page.context.close()


def test_the_admin_key_shows_the_demo_agent_live(demo: DaemonProcess, browser_page: Page) -> None:
    page = browser_page.page
    browser_page.login(demo)
    page.wait_for_selector('#agents tbody tr[data-key="demo"]')
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator('#agents tbody tr[data-key="demo"]')
    assert row.locator(".status").inner_text() == "active"
    page.wait_for_function(
        "() => document.querySelector('#agents tr[data-key=\"demo\"] .equity')"
        ".textContent.endsWith(' SOL')"
    )
    assert page.locator("#health-status").inner_text() in ("ok", "degraded")
    # The key is kept in this tab's sessionStorage and appears in no URL the page asked for.
    stored = page.evaluate("sessionStorage.getItem('tradingd.apiKey')")
    assert stored == demo.admin_key
    assert all(demo.admin_key not in url for url in browser_page.requests)
    # Everything came from the daemon: no CDN, no other host.
    assert browser_page.requests
    assert all(url.startswith(demo.base_url + "/") for url in browser_page.requests), [
        u for u in browser_page.requests if not u.startswith(demo.base_url)
    ]
    assert browser_page.errors == []  # a CSP violation or a script error would show here


def test_a_buy_and_an_exit_appear_live(demo: DaemonProcess, browser_page: Page) -> None:
    page = browser_page.page
    browser_page.login(demo)
    page.wait_for_selector('#trades li[data-side="buy"]', timeout=TRADE_WAIT_MS)
    page.wait_for_selector('#trades li[data-side="sell"]', timeout=TRADE_WAIT_MS)
    buy = page.locator('#trades li[data-side="buy"]').first.inner_text()
    assert " SOL @ $" in buy and "atomic" not in buy, buy
    page.wait_for_selector("#positions tbody tr.selected", timeout=TRADE_WAIT_MS)
    selected = page.locator("#positions tbody tr.selected")
    for cell in (".entry", ".last", ".peak", ".stop"):
        assert selected.locator(cell).inner_text() not in ("", "—", "?"), cell
    page.wait_for_function(
        "() => document.querySelectorAll('#price-chart canvas').length > 0", timeout=WAIT_MS
    )
    # A few equity reads (5 s apart) and trades make the main view worth a picture.
    page.wait_for_function(
        "() => Number(document.querySelector('#equity-chart').dataset.points) >= 3"
        " && document.querySelectorAll('#trades li').length >= 4",
        timeout=TRADE_WAIT_MS,
    )
    screenshot(page, "dashboard")
    assert browser_page.errors == []


def test_pausing_from_the_page_pauses_the_agent_in_the_api(
    demo: DaemonProcess, browser_page: Page
) -> None:
    page = browser_page.page
    browser_page.login(demo)
    button = page.locator('#agents tbody tr[data-key="demo"] .pause-toggle')
    button.wait_for()
    assert button.inner_text() == "Pause"
    button.click()
    poll_until(
        lambda: _api(demo, "GET", "/v1/agents/demo")["status"],
        lambda status: status == "paused",
        timeout_s=WAIT_MS / 1000,
        interval_s=0.1,
        what="the API to report the demo agent paused",
    )
    page.wait_for_selector('#agents tbody tr[data-key="demo"][data-status="paused"]')
    assert button.inner_text() == "Resume"
    button.click()
    poll_until(
        lambda: _api(demo, "GET", "/v1/agents/demo")["status"],
        lambda status: status == "active",
        timeout_s=WAIT_MS / 1000,
        interval_s=0.1,
        what="the API to report the demo agent active again",
    )
    page.wait_for_selector('#agents tbody tr[data-key="demo"][data-status="active"]')


def test_halting_buys_from_the_page_shows_in_health_and_alerts(
    demo: DaemonProcess, browser_page: Page
) -> None:
    page = browser_page.page
    browser_page.login(demo)
    toggle = page.locator("#halt-toggle")
    toggle.wait_for()
    assert toggle.inner_text() == "Halt buys"
    try:
        toggle.click()
        poll_until(
            lambda: _api(demo, "GET", "/health")["halted"],
            timeout_s=WAIT_MS / 1000,
            interval_s=0.1,
            what="/health to report buys halted",
        )
        page.wait_for_selector('#halt-state[data-halted="true"]')
        page.wait_for_selector('#alerts li[data-code="halt_changed"]')
        assert toggle.inner_text() == "Resume buys"
        toggle.click()
        poll_until(
            lambda: _api(demo, "GET", "/health")["halted"],
            lambda halted: halted is False,
            timeout_s=WAIT_MS / 1000,
            interval_s=0.1,
            what="/health to report buys resumed",
        )
        page.wait_for_selector('#halt-state[data-halted="false"]')
    finally:  # the other tests of this module need the demo buying
        _api(demo, "DELETE", "/v1/halt")


def test_a_wrong_key_shows_an_error_and_is_not_kept(
    demo: DaemonProcess, browser_page: Page
) -> None:
    page = browser_page.page
    browser_page.login(demo, key="tdk_not_a_key_of_this_daemon")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "does not know this API key" in error.inner_text()
    assert page.locator("#app").is_hidden()
    assert page.evaluate("sessionStorage.getItem('tradingd.apiKey')") is None


def test_log_out_forgets_the_key_and_closes_the_stream(
    demo: DaemonProcess, browser_page: Page
) -> None:
    page = browser_page.page
    browser_page.login(demo)
    page.wait_for_selector('#conn[data-state="live"]')
    page.click("#logout")
    page.locator("#login").wait_for(state="visible")
    assert page.evaluate("sessionStorage.getItem('tradingd.apiKey')") is None
    assert page.locator("#conn").get_attribute("data-state") == "stopped"
    assert page.locator("#app").is_hidden()
    page.reload()  # nothing left to log in with
    page.locator("#login").wait_for(state="visible")
    assert page.locator("#app").is_hidden()


def test_a_read_only_key_is_told_it_may_not_pause(demo: DaemonProcess, browser_page: Page) -> None:
    created = urllib.request.Request(
        demo.base_url + "/v1/keys",
        method="POST",
        data=json.dumps({"name": "dashboard-reader", "scopes": ["read"]}).encode(),
        headers={**demo.headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(created, timeout=10) as resp:
        reader = json.loads(resp.read())["key"]
    page = browser_page.page
    browser_page.login(demo, key=reader)
    page.locator('#agents tbody tr[data-key="demo"] .pause-toggle').click()
    message = page.locator("#action-msg")
    message.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('#action-msg').textContent.includes('403')"
    )
    assert '"trade" scope' in message.inner_text()
    assert _api(demo, "GET", "/v1/agents/demo")["status"] == "active"


def test_money_is_shown_exactly_in_decimal_units(demo: DaemonProcess, browser_page: Page) -> None:
    page = browser_page.page
    page.goto(demo.base_url + "/")
    shown = page.evaluate(
        """async () => {
          const m = await import('/dashboard/money.js');
          return [
            m.money('123456789012345678901', 9, 'SOL'),
            m.money('-5', 9, 'SOL', {signed: true}),
            m.money('44629216', 9, 'SOL', {signed: true}),
            m.money('1000000', 6, 'USDC'),
            m.money('7', 0, 'X'),
            m.decimalText(m.sum(['9007199254740993', '1']), 0),
          ];
        }"""
    )
    assert shown == [
        "123,456,789,012.345678901 SOL",
        "-0.000000005 SOL",
        "+0.044629216 SOL",
        "1 USDC",
        "7 X",
        "9007199254740994",  # past 2^53: a float would give ...992
    ]


# A stand-in WebSocket for the page's Stream (stream.js): records what the client sends and lets
# the test deliver messages and closes, so a seq gap and a reconnect can be made on purpose.
FAKE_SOCKET_RUN = """async () => {
  const sockets = [];
  class FakeSocket {
    static OPEN = 1;
    constructor(url) {
      this.url = url; this.sent = []; this.readyState = 1; sockets.push(this);
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.readyState = 3; }
    deliver(msg) { this.onmessage({ data: JSON.stringify(msg) }); }
    drop() { this.readyState = 3; this.onclose({ code: 1006 }); }
  }
  window.WebSocket = FakeSocket;
  const { Stream } = await import('/dashboard/stream.js');
  const seen = { snapshots: 0, messages: [], states: [] };
  const stream = new Stream('k-123', {
    onSnapshot: () => { seen.snapshots += 1; },
    onMessage: (m) => seen.messages.push(m.seq),
    onState: (name, info) => seen.states.push([name, info.waitMs || 0]),
    onAuthFailed: () => seen.states.push(['auth_failed', 0]),
  });
  const tick = () => new Promise((r) => setTimeout(r, 20));
  stream.start();
  await tick();
  const first = sockets[0];
  first.deliver({ type: 'snapshot', seq: 1, ts: 0, data: {} });
  first.deliver({ type: 'heartbeat', seq: 2, ts: 0, data: {} });
  first.deliver({ type: 'trade', seq: 5, ts: 0, data: {} });  // 3 and 4 were lost
  const afterGap = first.sent.map((op) => op.op);
  first.drop();
  await new Promise((r) => setTimeout(r, 700));  // the first retry waits 250..500 ms
  const second = sockets[1];
  const reconnect = second ? second.sent.map((op) => op.op) : [];
  stream.stop();
  return { url: first.url, auth: first.sent[0], afterGap, reconnect, seen };
}"""


def test_the_stream_resyncs_on_a_seq_gap_and_resubscribes_after_a_drop(
    demo: DaemonProcess, browser_page: Page
) -> None:
    page = browser_page.page
    page.goto(demo.base_url + "/")
    out = page.evaluate(FAKE_SOCKET_RUN)
    assert out["url"] == demo.base_url.replace("http:", "ws:") + "/v1/ws"  # no key in the URL
    assert out["auth"] == {"op": "auth", "key": "k-123"}  # the key goes in the first message
    # after the gap: a second subscribe, whose snapshot replaces what was missed
    assert out["afterGap"] == ["auth", "subscribe", "subscribe"]
    assert out["seen"]["messages"] == [2, 5]
    states = [name for name, _ in out["seen"]["states"]]
    assert states[:4] == ["connecting", "live", "resyncing", "reconnecting"], states
    wait_ms = out["seen"]["states"][3][1]
    assert 250 <= wait_ms <= 500, wait_ms  # first backoff step, with jitter
    assert out["reconnect"] == ["auth", "subscribe"]  # a new connection subscribes again


SOL = "So11111111111111111111111111111111111111112"
BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"


def _send(daemon: DaemonProcess, method: str, path: str, body: object) -> Any:
    request = urllib.request.Request(
        daemon.base_url + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={**daemon.headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def test_a_new_high_moves_peak_and_stop_on_the_page_without_a_fill(
    daemon_factory: Callable[..., DaemonProcess], browser_page: Page
) -> None:
    """The stream sends a position on fills and exits only; the page's open-positions read
    brings the peak and the trailing stop that a new high moved."""
    daemon = daemon_factory()  # no demo: prices only from this test's pushes
    agent = _send(
        daemon,
        "POST",
        "/v1/agents",
        {"name": "trailer", "config": {"stop_loss": {"mode": "trailing", "trail_pct": 10}}},
    )
    _send(
        daemon,
        "POST",
        f"/v1/agents/{agent['id']}/deposits",
        {"asset": "SOL", "amount": "5000000000"},
    )
    _send(
        daemon,
        "POST",
        "/v1/prices",
        {"ticks": [{"token": SOL, "price_usd": 150.0}, {"token": BONK, "price_usd": 1.0}]},
    )
    _send(daemon, "POST", "/v1/signals", {"token": BONK, "symbol": "BONK", "strength": 4})
    open_positions = f"/v1/agents/{agent['id']}/positions?status=open"
    (position,) = poll_until(
        lambda: _api(daemon, "GET", open_positions)["items"],
        lambda items: len(items) == 1 and items[0]["status"] == "open",
        timeout_s=WAIT_MS / 1000,
        interval_s=0.05,
        what="the position to open",
    )
    page = browser_page.page
    browser_page.login(daemon)
    row = page.locator(f'#positions tbody tr[data-key="{position["id"]}"]')
    row.wait_for()
    assert row.locator(".token").inner_text() == "BONK"
    assert row.locator(".amount").inner_text().endswith(" BONK")
    _send(daemon, "POST", "/v1/prices", {"ticks": [{"token": BONK, "price_usd": 1.5}]})
    moved = _api(daemon, "GET", f"/v1/positions/{position['id']}")
    assert moved["peak_price_usd"] == 1.5 and moved["stop_price_usd"] > position["stop_price_usd"]
    # the cells' tooltips carry the price as given (JS and Python print floats alike)
    page.wait_for_selector(f'#positions tr[data-key="{position["id"]}"] .peak[title="1.5"]')
    stop = repr(moved["stop_price_usd"])
    page.wait_for_selector(f'#positions tr[data-key="{position["id"]}"] .stop[title="{stop}"]')
    # the last price comes on the stream (a batch every [ws] price_interval_ms): it may trail
    # a REST read that happened to come right after the push
    page.wait_for_selector(f'#positions tr[data-key="{position["id"]}"] .last[title="1.5"]')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_page_reconnects_after_a_daemon_restart(
    daemon_factory: Callable[..., DaemonProcess], browser_page: Page
) -> None:
    port = _free_port()
    first = daemon_factory(demo=True, args=("--port", str(port)))
    page = browser_page.page
    browser_page.login(first)
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector('#agents tbody tr[data-key="demo"]')
    first.stop()
    page.wait_for_selector('#conn[data-state="reconnecting"]')
    assert "disconnected" in page.locator("#conn").inner_text()
    second = daemon_factory(demo=True, args=("--port", str(port)), admin_key=first.admin_key)
    assert second.base_url == first.base_url
    page.wait_for_selector('#conn[data-state="live"]', timeout=RESTART_WAIT_MS)
    page.wait_for_selector('#agents tbody tr[data-key="demo"]')
    # Data flows again: a trade made by the new process arrives on the new stream.
    trades_before = page.locator("#trades li").count()
    page.wait_for_function(
        f"() => document.querySelectorAll('#trades li').length > {trades_before}",
        timeout=TRADE_WAIT_MS,
    )
    page.wait_for_selector('#health-status[data-status="ok"]', timeout=RESTART_WAIT_MS)


def test_a_renamed_agent_with_a_long_name_and_huge_balance_fits_and_relabels_its_line(
    daemon_factory: Callable[..., DaemonProcess], browser_page: Page
) -> None:
    daemon = daemon_factory()
    agent = _send(daemon, "POST", "/v1/agents", {"name": "before"})
    huge = "18446744073676185278"  # 20 digits: 18,446,744,073.676185278 SOL
    _send(daemon, "POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": huge})
    _send(daemon, "POST", "/v1/prices", {"ticks": [{"token": SOL, "price_usd": 150.0}]})
    page = browser_page.page
    browser_page.login(daemon)
    row = f'#agents tbody tr[data-key="{agent["id"]}"]'
    page.wait_for_selector(f"{row} .name >> text=before")
    long_name = "N" * 128
    _send(daemon, "PATCH", f"/v1/agents/{agent['id']}", {"name": long_name})
    page.reload()  # the page learns names from the snapshot and the agent reads; a fresh one
    page.wait_for_function(
        "([sel, name]) => document.querySelector(sel + ' .name')?.textContent === name",
        arg=[row, long_name],
    )
    page.wait_for_function(
        "(sel) => document.querySelector(sel + ' .balance').textContent.endsWith(' SOL')",
        arg=row,
    )
    assert (
        page.locator(f"{row} .balance")
        .inner_text()
        .replace("\n", "")
        .startswith("18,446,744,073.676185278")
    )
    fits = page.evaluate(
        """(sel) => {
          const card = document.querySelector('#agents').closest('.card').getBoundingClientRect();
          const button = document.querySelector(sel + ' .pause-toggle').getBoundingClientRect();
          const doc = document.documentElement;
          return { sideways: doc.scrollWidth - doc.clientWidth,
                   buttonInside: button.right <= card.right && button.left >= card.left };
        }""",
        row,
    )
    assert fits == {"sideways": 0, "buttonInside": True}
    screenshot(page, "dashboard-long-name")
    assert page.locator(f"{row} .name").get_attribute("title") == long_name
    assert browser_page.errors == []


def test_the_equity_line_follows_a_rename_without_a_reload(
    daemon_factory: Callable[..., DaemonProcess], browser_page: Page
) -> None:
    daemon = daemon_factory()
    agent = _send(daemon, "POST", "/v1/agents", {"name": "before"})
    page = browser_page.page
    browser_page.login(daemon)
    titles = "JSON.parse(document.querySelector('#equity-chart').dataset.titles || '{}')"
    page.wait_for_function(f"(id) => {titles}[id] === 'before'", arg=agent["id"])
    _send(daemon, "PATCH", f"/v1/agents/{agent['id']}", {"name": "after"})
    page.wait_for_selector(f'#agents tbody tr[data-key="{agent["id"]}"] .name >> text=after')
    page.wait_for_function(f"(id) => {titles}[id] === 'after'", arg=agent["id"])
    assert browser_page.errors == []


def test_a_trade_shown_before_its_symbol_was_known_is_relabelled(
    daemon_factory: Callable[..., DaemonProcess], browser_page: Page
) -> None:
    daemon = daemon_factory()
    agent = _send(
        daemon,
        "POST",
        "/v1/agents",
        {"name": "trailer", "config": {"stop_loss": {"mode": "trailing", "trail_pct": 10}}},
    )
    _send(daemon, "POST", f"/v1/agents/{agent['id']}/deposits",
          {"asset": "SOL", "amount": "5000000000"})  # fmt: skip
    ticks = [{"token": SOL, "price_usd": 150.0}, {"token": BONK, "price_usd": 1.0}]
    _send(daemon, "POST", "/v1/prices", {"ticks": ticks})
    page = browser_page.page
    browser_page.login(daemon)
    page.wait_for_selector('#conn[data-state="live"]')
    _send(daemon, "POST", "/v1/signals", {"token": BONK, "strength": 4})  # no symbol yet
    page.wait_for_selector('#trades li[data-side="buy"]', timeout=TRADE_WAIT_MS)
    first = page.locator('#trades li[data-side="buy"] .amount').first
    assert "BONK" not in first.inner_text() and "DezX…B263" in first.inner_text()
    _send(daemon, "POST", "/v1/prices", {"ticks": [{"token": BONK, "price_usd": 0.5}]})
    page.wait_for_selector('#trades li[data-side="sell"]', timeout=TRADE_WAIT_MS)
    _send(daemon, "POST", "/v1/prices", {"ticks": [{"token": BONK, "price_usd": 1.0}]})
    _send(daemon, "POST", "/v1/signals", {"token": BONK, "symbol": "BONK", "strength": 4})
    page.wait_for_function(
        "() => document.querySelectorAll('#trades li[data-side=\"buy\"]').length === 2",
        timeout=TRADE_WAIT_MS,
    )
    page.wait_for_function(
        """() => [...document.querySelectorAll('#trades li .amount')]
                  .every((a) => a.textContent.endsWith(' BONK'))""",
        timeout=WAIT_MS,
    )
    assert browser_page.errors == []
