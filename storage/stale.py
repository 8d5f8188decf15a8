"""What processes killed on this host (SIGKILL, OOM) leave behind: temporary files and folders
whose names carry the writer's pid. A later run removes those whose process is gone; files of
live processes, of other users, and names without a pid are never touched."""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def process_is_gone(pid: int) -> bool:
    """Whether no process of this host has this pid (an alive one of another user counts as
    alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stale_name(prefix: str) -> str:
    """A temporary name for this process that `remove_stale(folder, prefix)` recognises."""
    return f"{prefix}{os.getpid()}-"


def remove_stale(folder: str | Path, prefix: str) -> int:
    """Remove the entries of `folder` named `prefix<pid>` or `prefix<pid>-...` whose process
    is gone. Returns how many were removed."""
    removed = 0
    for entry in Path(folder).glob(f"{glob.escape(prefix)}*"):
        pid = re.match(r"(\d+)(-|$)", entry.name[len(prefix):])
        if not pid or not process_is_gone(int(pid[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.info("removed %s, left by process %s (gone)", entry, pid[1])
        removed += 1
    return removed
