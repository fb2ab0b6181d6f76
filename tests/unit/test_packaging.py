"""The installed distribution is one import package, `tradingd`, mapped from the repository's
`engine/` and `adapters/` folders (pyproject `package-dir`). These checks keep the mapping whole
and keep any module from importing the folders under their bare names, which would load a second
copy of every module beside `tradingd.*`."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("engine", "adapters", "tests", "benchmarks", "scripts")


def _python_files() -> list[Path]:
    return [p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        "tradingd." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("engine", "adapters")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk == listed


def test_no_module_imports_engine_or_adapters_by_its_bare_name() -> None:
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("engine", "adapters")
            ]
    assert offenders == []


def test_the_core_imports_nothing_from_the_adapters() -> None:
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("tradingd.adapters", "adapters")
            ):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                offenders.append(f"{path.name}:{node.lineno} (relative import out of engine/)")
    assert offenders == []
