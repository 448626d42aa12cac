"""Why a path cannot be read, in words: missing, broken or looping symlink, permission, empty file.

The readers call :func:`require_path` before handing a path to a library, so that a symlink loop is
not reported as "no such file" and an empty file not as a parser error deep inside nibabel or ITK.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from semantic_genesis.errors import ImageReadError


def unreadable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened (``None`` when it exists and can be read).

    Returns one of: ``"symlink loop (...)"``, ``"broken symlink (points to ...)"``, ``"no such file or
    folder"``, ``"permission denied"``, ``"a parent of this path is a file, not a folder"``.
    """
    path = Path(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (the link leads back to itself); point it at a real file"
        if exc.errno == errno.EACCES:
            return "permission denied"
        if exc.errno == errno.ENOTDIR:
            return "no such file (a parent of this path is a file, not a folder)"
        if os.path.islink(path):
            return f"broken symlink (points to {os.readlink(path)}, which does not exist)"
        if exc.errno == errno.ENOENT:
            return "no such file or folder"
        return f"cannot be opened ({exc.strerror or exc})"
    if not os.access(path, os.R_OK):
        return "permission denied (not readable)"
    return None


def require_path(path: str | Path) -> Path:
    """Return ``path`` if it exists and is readable, else raise :class:`ImageReadError` saying why."""
    path = Path(path)
    reason = unreadable_reason(path)
    if reason is not None:
        raise ImageReadError(path, reason)
    return path


def require_nonempty_file(path: Path, what: str) -> None:
    """Raise :class:`ImageReadError` when ``path`` is a zero-byte file (e.g. an interrupted download)."""
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(path, f"empty file (0 bytes); expected {what}")
