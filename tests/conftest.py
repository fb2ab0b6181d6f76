"""Import every tradingd module before any test runs.

Hypothesis draws some values from the literal constants of the project's modules that are
imported when a test runs (hypothesis.internal.conjecture.providers._get_local_constants), so
without this the examples of a `derandomize=True` test, and the coverage floors the oracle
tests check on them, depended on which tests had run before and what they had imported (a
full run reached "restarts while resting" twice where the file alone reached it forty times).
With every module imported first, the same code gives the same examples in any run."""

from __future__ import annotations

import importlib
import pkgutil

import tradingd.adapters
import tradingd.engine


def _import_all() -> None:
    for package in (tradingd.engine, tradingd.adapters):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)


_import_all()
