"""`check-config` and `run` refuse the same bad configs with the same one line (file, key path,
agent by id) and exit code, before anything starts; the control port refuses an agent for the
same reason as the config file; `run` stops its embedded servers when the port is taken."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_harness import cli_env, embedded_data_dir, run_cli, stop_servers

REFUSAL_TIMEOUT_S = 30.0  # a refusal comes before any server starts
START_TIMEOUT_S = 120.0  # initdb of a fresh embedded cluster on a loaded machine
EMBEDDED = {"TRADINGD_STORE": "", "TRADINGD_ADMIN_KEY": "tdk_e2e_" + "k" * 32}

AGENT = '[[agents]]\nid = "alpha"\nname = "a"\n'
BAD_CONFIGS = {
    "agent_config_type": (
        AGENT + '[agents.config.stop_loss]\nmode = "trailing"\ntrail_pct = "x"\n',
        "agents[id=alpha].config.stop_loss.trail_pct: Expected `float`, got `str`",
    ),
    "agent_config_rule": (
        '[[agents]]\nid = "first"\nname = "f"\n\n[[agents]]\nid = "beta"\nname = "b"\n'
        "[agents.config.take_profit]\nenabled = true\n"
        "levels = [{gain_pct = 50, sell_pct = 25}, {gain_pct = 20, sell_pct = 25}]\n",
        "agents[id=beta].config.take_profit.levels[1]: ",
    ),
    "agent_unknown_key": (AGENT + 'venu = "paper"\n', "agents[id=alpha]: "),
    "agent_unknown_venue": (
        AGENT + 'venue = "jupiter"\n',
        "agents[id=alpha].venue: venue 'jupiter' is not configured in this daemon",
    ),
    "duplicate_agent_id": (AGENT + AGENT, "agents[id=alpha].id: duplicate agent id 'alpha'"),
    "external_store_without_urls": (
        '[store]\nkind = "external"\n',
        "store.kind: an external store needs both servers; REDIS_URL (or [store] redis_url) "
        "and DATABASE_URL (or [store] database_url) not set",
    ),
    "port_type": ('[http]\nport = "x"\n', "http.port: Expected `int`, got `str`"),
    "agent_quote_not_a_mint": (
        AGENT + 'quote = "XYZ"\n',
        "agents[id=alpha].quote: not a base58 32-byte mint address",
    ),
    "agent_quote_of_unknown_decimals": (
        AGENT + 'quote = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"\n',
        "agents[id=alpha].quote: a quote mint of unknown decimals",
    ),
    "synthetic_token_not_a_mint": (
        '[feeds.synthetic]\nenabled = true\ntokens = ["abc"]\n',
        "feeds.synthetic.tokens[0]: not a base58 32-byte mint address",
    ),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "config" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _check_config(path: Path, data_dir: Path) -> Any:
    return run_cli(["check-config", str(path)], cli_env(**EMBEDDED), data_dir, REFUSAL_TIMEOUT_S)


def _run(path: Path | None, data_dir: Path, *args: str, timeout: float = REFUSAL_TIMEOUT_S) -> Any:
    config = ["--config", str(path)] if path else []
    argv = ["run", *config, "--no-demo", "--data-dir", str(data_dir), *args]
    return run_cli(argv, cli_env(**EMBEDDED), data_dir, timeout)


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_check_config_and_run_refuse_a_bad_config_with_the_same_line(
    tmp_path: Path, name: str
) -> None:
    text, expected = BAD_CONFIGS[name]
    path = _write(tmp_path, name, text)
    data_dir = tmp_path / "var"
    checked = _check_config(path, data_dir)
    ran = _run(path, data_dir, "--port", "0")
    line = f"tradingd: invalid config: {path}: {expected}"
    assert checked.stderr.startswith(line), checked.stderr
    assert checked.stderr.count("\n") == 1, checked.stderr
    assert (ran.returncode, ran.stderr) == (checked.returncode, checked.stderr)
    assert ran.returncode != 0
    assert not data_dir.exists()  # refused before the data dir or any server was touched


def test_api_refuses_an_unknown_venue_for_the_reason_the_config_file_gets(
    tmp_path: Path, daemon: Any
) -> None:
    text, _ = BAD_CONFIGS["agent_unknown_venue"]
    checked = _check_config(_write(tmp_path, "venue", text), tmp_path / "var")
    reason = checked.stderr.strip().split("agents[id=alpha].venue: ", 1)[-1]
    resp = requests.post(
        daemon.base_url + "/v1/agents",
        json={"name": "a", "venue": "jupiter"},
        headers=daemon.headers,
        timeout=10,
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["path"] == "$.venue"
    assert resp.json()["error"]["message"] == reason


def test_port_in_use_exits_with_one_line_and_stops_the_embedded_servers() -> None:
    with embedded_data_dir() as data_dir, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            ran = _run(None, data_dir, "--port", str(port), timeout=START_TIMEOUT_S)
        finally:
            survivors = stop_servers(data_dir)
        assert (data_dir / "redis").exists()  # the embedded servers did start
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, ran.stderr
    assert str(port) in lines[0] and "--port" in lines[0], lines[0]
    assert survivors == [], "embedded servers outlived the daemon"


@pytest.mark.parametrize("command", [["keys", "create", "--scopes", "read"], ["wallet", "create"]])
def test_a_name_with_a_control_character_is_refused_by_the_cli(tmp_path: Path, command) -> None:
    argv = [*command, "--name", "ev\x01il\x1b[31m", "--data-dir", str(tmp_path / "var")]
    env = cli_env(TRADINGD_WALLET_PASSPHRASE="a long enough passphrase")
    done = run_cli(argv, env, tmp_path / "var", REFUSAL_TIMEOUT_S)
    assert done.returncode == 2 and "control characters" in done.stderr
