"""The running tradingd's version, from one source: the installed distribution's metadata (the
`version` in pyproject.toml). `--version`, the build-info metric, `/health` and the OpenAPI
document all read `VERSION`."""

from __future__ import annotations

from importlib import metadata

NOT_INSTALLED = "unknown (not installed)"


def installed_version() -> str:
    """The version of the installed `tradingd` distribution, e.g. "0.1.0"; NOT_INSTALLED when
    the code runs from a source tree that was never installed."""
    try:
        return metadata.version("tradingd")
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


VERSION = installed_version()
