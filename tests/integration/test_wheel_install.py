"""The installed wheel works on its own: built from what the Dockerfile copies (pyproject.toml,
README.md, engine/, adapters/), installed into an empty directory, and imported by a Python that
sees only that directory and the venv's site-packages for the dependencies (`-I -S`: no cwd, no
user site, no .pth files, so the editable install of this repo cannot answer instead)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER_COPIES = ("pyproject.toml", "README.md", "engine", "adapters")
PIP_OFFLINE = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

# Runs in the clean interpreter: imports every module of the installed package and reports
# where each came from. argv: the install dir, the dependencies' site-packages.
IMPORT_ALL = """
import importlib, json, pathlib, sys
target, deps = sys.argv[1], sys.argv[2]
sys.path[:] = [target, deps, *[p for p in sys.path if "site-packages" not in p]]
root = pathlib.Path(target) / "tradingd"
names = sorted(
    ".".join(("tradingd", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for p in root.rglob("*.py")
)
files = {name: importlib.import_module(name).__file__ for name in names}
for top in ("engine", "adapters"):
    try:
        importlib.import_module(top)
    except ModuleNotFoundError:
        continue
    files[top] = "importable at top level"
print(json.dumps(files))
"""
RUN_CLI = """
import runpy, sys
target, deps = sys.argv[1], sys.argv[2]
sys.path[:] = [target, deps, *[p for p in sys.path if "site-packages" not in p]]
del sys.argv[1:3]
runpy.run_module("tradingd.adapters.app.cli", run_name="__main__", alter_sys=True)
"""


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args],
        check=True,
        env=PIP_OFFLINE,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the repo, installed with --target; the install dir."""
    base = tmp_path_factory.mktemp("wheel")
    source, wheels, target = base / "src", base / "dist", base / "site"
    source.mkdir()
    for name in DOCKER_COPIES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source))
    (wheel,) = wheels.glob("tradingd-*.whl")
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def _clean_python(code: str, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    deps = sysconfig.get_paths()["purelib"]  # this venv's site-packages: the dependencies
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(target), deps, *args],
        cwd=target.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_module_imports_from_the_installed_wheel(installed: Path) -> None:
    done = _clean_python(IMPORT_ALL, installed)
    assert done.returncode == 0, done.stderr
    files: dict[str, str] = json.loads(done.stdout)
    expected = {
        ".".join(
            ("tradingd", room, *p.relative_to(REPO / room).with_suffix("").parts)
        ).removesuffix(".__init__")
        for room in ("engine", "adapters")
        for p in (REPO / room).rglob("*.py")
    }
    assert set(files) == expected  # every source module is in the wheel, nothing at top level
    elsewhere = {name: f for name, f in files.items() if not Path(f).is_relative_to(installed)}
    assert elsewhere == {}
    assert "tradingd.adapters.app.daemon" in files and "tradingd.engine" in files


def test_the_wheel_carries_the_migrations_and_the_samples(installed: Path) -> None:
    adapters = installed / "tradingd" / "adapters"
    for folder, pattern in (("store/migrations", "*.sql"), ("samples", "*")):
        shipped = sorted(p.name for p in (REPO / "adapters" / folder).glob(pattern))
        assert shipped and sorted(p.name for p in (adapters / folder).glob(pattern)) == shipped


def test_the_installed_cli_prints_the_distribution_version(installed: Path) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = _clean_python(RUN_CLI, installed, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tradingd {version}"
