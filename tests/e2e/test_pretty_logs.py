"""`tradingd run --log-format pretty` against the real process: a buy and a stop-loss sell read as
sentences with decimal amounts, symbols and the exit reason, and the output never holds the key."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.test_protocol_errors import raw_request
from tests.e2e.test_rest_flow import SOL, TOKEN, Client


def test_pretty_log_lines_read_as_sentences_and_hold_no_key(daemon_factory: Any):
    daemon = daemon_factory(args=("--log-format", "pretty"))
    api = Client(daemon)
    agent = api.ok(
        "POST",
        "/v1/agents",
        {
            "name": "reader",
            "venue": "paper",
            "quote": "SOL",
            "config": {"stop_loss": {"mode": "trailing", "trail_pct": 10, "default_pct": -30}},
        },
    )
    api.ok("POST", f"/v1/agents/{agent['id']}/deposits", {"asset": "SOL", "amount": "5000000000"})
    api.ok(
        "POST",
        "/v1/prices",
        {"ticks": [{"token": SOL, "price_usd": 150.0}, {"token": TOKEN, "price_usd": 0.0000202}]},
    )
    signal = {"id": "pretty-1", "token": TOKEN, "symbol": "BONK", "decimals": 5, "strength": 4}
    assert api.call("POST", "/v1/signals", signal).status_code == 202
    positions = f"/v1/agents/{agent['id']}/positions?status=open"
    opened = api.until(positions, lambda d: d["items"] and d["items"][0]["status"] == "open")
    position_id = opened["items"][0]["id"]
    api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 0.00004}]})
    api.ok("POST", "/v1/prices", {"ticks": [{"token": TOKEN, "price_usd": 0.000034}]})
    closed = api.until(f"/v1/positions/{position_id}", lambda p: p["status"] == "closed")
    assert closed["exit_reason"] == "stop_loss"
    # a refused request quoting the key in its Authorization header gets logged (redacted)
    key = daemon.admin_key.encode()
    raw_request(
        daemon.port,
        b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + key
        + b"\x01\r\n\r\n",
    )
    assert daemon.stop() == 0

    output = daemon.log_path.read_text()
    assert daemon.admin_key not in output
    assert "malformed HTTP request refused" in output
    assert not [line for line in output.splitlines() if line.startswith("{")]  # no JSON lines
    trade_lines = [line for line in output.splitlines() if " reader " in line]
    assert trade_lines and not [line for line in trade_lines if "{" in line or '"' in line]
    amount = r"\d{1,3}(,\d{3})*(\.\d+)?"
    time_level = r"^\d\d:\d\d:\d\d\.\d{3} INFO +reader "
    bought = [line for line in trade_lines if " bought " in line]
    assert len(bought) == 1
    assert re.search(
        time_level + rf"bought {amount} BONK for {amount} SOL at \$0\.0000\d+ \(signal", bought[0]
    )
    assert re.search(rf"exit stop_loss on BONK at \$0\.000034\b.*: selling {amount} BONK", output)
    (sold,) = [line for line in trade_lines if " sold " in line]
    assert re.search(
        time_level + rf"sold {amount} BONK for {amount} SOL at \$0\.0000\d+ \(stop_loss\)", sold
    )
    assert re.search(rf"closed BONK position \(stop_loss\), realized PnL \+{amount} SOL", output)
    # the bought amount is the position's, in whole tokens (5 decimals), not atomic units
    whole = opened["items"][0]["amount"]
    assert f" {int(whole) / 10**5:,.5f}".rstrip("0").rstrip(".") + " BONK" in bought[0]
