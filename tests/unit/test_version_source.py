"""The version has one source: the installed distribution's metadata (pyproject.toml)."""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

from tradingd.adapters.app.version import VERSION

REPO = Path(__file__).resolve().parents[2]


def test_the_running_version_is_the_installed_distributions() -> None:
    assert VERSION == metadata.version("tradingd")


def test_no_source_file_writes_the_version_itself() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    copies = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for room in ("engine", "adapters")
        for path in sorted((REPO / room).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value == version
    ]
    assert copies == []
