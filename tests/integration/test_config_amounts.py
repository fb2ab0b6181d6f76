"""TOML configs accept atomic amounts as integers as well as strings; a bad amount is refused
with one message naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from tradingd.adapters.app.cli import main
from tradingd.adapters.app.config_amounts import AMOUNT_RULE
from tradingd.adapters.app.settings import agent_config, load_settings
from tradingd.engine.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]

AGENT = '[[agents]]\nid = "alpha"\nname = "a"\n'


def _load(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_settings(str(path), {})


def test_integer_amounts_in_toml_equal_their_strings(tmp_path: Path) -> None:
    ints = _load(
        tmp_path,
        AGENT + "paper_deposit = 50000000000\n"
        '[agents.config.sizing]\nmode = "tiers"\namount = 100000000\nmin_reserve = 0\n'
        'tiers = [{min_balance = 0, amount = 5}, {min_balance = 1000, amount = "7"}]\n'
        "[agents.config.execution]\ndust_quote = 10\n",
    ).agents[0]
    strings = _load(
        tmp_path,
        AGENT + 'paper_deposit = "50000000000"\n'
        '[agents.config.sizing]\nmode = "tiers"\namount = "100000000"\nmin_reserve = "0"\n'
        'tiers = [{min_balance = "0", amount = "5"}, {min_balance = "1000", amount = "7"}]\n'
        '[agents.config.execution]\ndust_quote = "10"\n',
    ).agents[0]
    assert ints.paper_deposit == "50000000000"
    assert agent_config(ints) == agent_config(strings)


@pytest.mark.parametrize(
    "line,key",
    [
        ("paper_deposit = -1", "agents[id=alpha].paper_deposit"),
        ("paper_deposit = 1.5", "agents[id=alpha].paper_deposit"),
        ('paper_deposit = "ten"', "agents[id=alpha].paper_deposit"),
        ("paper_deposit = true", "agents[id=alpha].paper_deposit"),
        ("config.sizing.amount = 0.1", "agents[id=alpha].config.sizing.amount"),
        ('config.sizing.amount = "1e9"', "agents[id=alpha].config.sizing.amount"),
        ('config.sizing.amount = "99999999999999999999"', "agents[id=alpha].config.sizing.amount"),
        (
            "config.sizing.tiers = [{min_balance = -3, amount = 1}]",
            "agents[id=alpha].config.sizing.tiers[0].min_balance",
        ),
    ],
)
def test_a_bad_amount_is_refused_with_the_amount_rule(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _load(tmp_path, AGENT + line + "\n")
    assert f"c.toml: {key}: {AMOUNT_RULE}" in refused.value.message


def test_check_config_accepts_integer_amounts(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        AGENT + "paper_deposit = 50000000000\n[agents.config.sizing]\namount = 100000000\n"
    )
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 agent(s)")


def test_the_shipped_example_configs_pass_check_config(monkeypatch, capsys) -> None:
    """What the README tells an operator to copy must load as written (the live profile needs
    its external servers named, as it says)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/tradingd")
    for name in ("paper.toml", "market.example.toml", "live.example.toml"):
        assert main(["check-config", str(REPO / "config" / name)]) == 0, name
