"""URLs as they may be shown: a URL's user:password (a proxy's credentials in an account's
`urls`) is a secret. Imports no CCXT, so settings and health can use it."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@", re.I)


def hide_userinfo(text: str) -> str:
    """`text` with every URL's user:password replaced by `***`: "http://u:p@h/x" ->
    "http://***@h/x"."""
    return _USERINFO.sub(r"\1***@", text)
