"""The `tradingd` command line: `--version`, and help text with its default on every option."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tradingd.adapters.app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _options() -> list[tuple[str, argparse.Action]]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [
        (f"{name} {'/'.join(action.option_strings) or action.dest}", action)
        for name, parser in _parsers(build_parser(), "tradingd")
        for action in parser._actions
        if not isinstance(action, skip)
    ]


def test_version_prints_the_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run(
        [sys.executable, "-m", "tradingd.adapters.app.cli", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"tradingd {version}")


@pytest.mark.parametrize("name,action", _options(), ids=[n for n, _ in _options()])
def test_every_option_has_help_that_shows_its_default(name: str, action: argparse.Action) -> None:
    assert action.help, name
    if action.option_strings:  # a positional has no default to show
        assert ("default" in action.help) != action.required, (name, action.help)


def test_run_help_names_the_port_default() -> None:
    run = dict(_parsers(build_parser(), "tradingd"))["tradingd run"]
    assert "8080" in run.format_help()


def test_log_format_option_env_and_config_key() -> None:
    from tradingd.adapters.app.settings import load_settings
    from tradingd.engine.errors import ValidationError

    run = dict(_parsers(build_parser(), "tradingd"))["tradingd run"]
    assert "auto: pretty on a terminal, json otherwise" in " ".join(run.format_help().split())
    assert build_parser().parse_args(["run", "--log-format", "pretty"]).log_format == "pretty"
    assert load_settings(None, {}).log_format == "auto"
    assert load_settings(None, {"TRADINGD_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ValidationError, match="TRADINGD_LOG_FORMAT"):
        load_settings(None, {"TRADINGD_LOG_FORMAT": "xml"})
