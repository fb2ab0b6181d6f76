"""The data dir holds every balance, position, API key and wallet: it is owner-only (0700 dirs,
0600 files). `secure_data_dir` creates it so, or tightens one an older version left open."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("tradingd.data_dir")

# The process umask of every tradingd command and of the embedded servers: new files 0600,
# new directories 0700.
OWNER_ONLY_UMASK = 0o077


def secure_data_dir(path: Path, traverse_gid: int | None = None) -> None:
    """Create `path` (0700) or take group/other permissions off it and everything in it, with
    one warning line when anything changed. `traverse_gid`: a group that may traverse the top
    directory (0710): the embedded Postgres account when tradingd runs as root. Symlinks are
    not followed. Raises OSError if the dir cannot be created or changed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    top = path.stat()
    allowed = 0o010 if traverse_gid is not None else 0
    changed = 0
    if traverse_gid is not None and top.st_gid != traverse_gid:
        os.chown(path, -1, traverse_gid)
    target = stat.S_IMODE(top.st_mode) & ~0o077 | allowed
    if stat.S_IMODE(top.st_mode) != target:
        path.chmod(target)
        changed += bool(top.st_mode & 0o077 & ~allowed)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            changed += _owner_only(Path(root) / name)
    if changed:
        log.warning(
            "data dir permissions tightened to owner-only",
            extra={
                "data_dir": str(path),
                "old_mode": oct(stat.S_IMODE(top.st_mode)),
                "entries": changed,
            },
        )


def _owner_only(entry: Path) -> int:
    """1 if `entry` lost group/other permissions, else 0 (symlinks and vanished entries: 0)."""
    try:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            return 0
        entry.chmod(stat.S_IMODE(st.st_mode) & ~0o077)
    except FileNotFoundError:  # a server removed it meanwhile (pid file, socket lock)
        return 0
    return 1
