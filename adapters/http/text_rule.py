"""The one rule for text that enters tradingd from outside (request bodies, the config file's
agents): no control character (U+0000..U+001F, U+007F) in any string, object keys included.

Postgres stores neither U+0000 in `text` nor `\\u0000` in `jsonb`, so one NUL accepted at the edge
would stall the write-behind; the other control characters have no place in names, ids or
reasons either. Tabs and newlines are refused as well, in free text like `reason` too: one rule
for every field, and a log line or dashboard cell never breaks on a value. Lengths are bounded
per field by the msgspec types that decode the text."""

from __future__ import annotations

import re
from typing import Any

from tradingd.engine.errors import ValidationError

CONTROL = re.compile("[\x00-\x1f\x7f]")
MESSAGE = "text must not contain control characters (U+0000..U+001F, U+007F)"


def find_control_text(obj: Any, path: str = "$") -> str | None:
    """The path of the first string in `obj` (decoded JSON or TOML: dicts, lists, scalars)
    holding a control character, or None. A bad object key is reported at its object's path,
    so the path itself never carries the character."""
    if isinstance(obj, str):
        return path if CONTROL.search(obj) else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and CONTROL.search(key):
                return path
            found = find_control_text(value, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = find_control_text(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def check_text(obj: Any, path: str = "$") -> None:
    """Raises ValidationError (422) naming the path of the first string with a control
    character."""
    found = find_control_text(obj, path)
    if found is not None:
        raise ValidationError(MESSAGE, found)


def cli_label(text: str) -> str:
    """argparse type for a name given on the command line (a key's, a wallet's): the API's
    rule, at most 128 characters and no control character (usage error, exit 2, otherwise)."""
    import argparse

    if find_control_text(text) is not None or not 0 < len(text) <= 128:
        raise argparse.ArgumentTypeError(f"1 to 128 characters; {MESSAGE}")
    return text
