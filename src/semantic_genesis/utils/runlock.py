"""One command per run folder: an exclusive lock ``RUN/.lock`` held while a command writes there.

Two commands writing the same run folder at once (a second ``pretrain`` started by mistake, a
re-submitted cluster job) would interleave their checkpoints, metrics and weights and corrupt both
runs. Every command that writes a run folder (``cubes``, ``discover``, ``pretrain``, ``finetune``,
``evaluate``) therefore holds :func:`run_lock` on it while it works:

* the lock is an ``flock`` on ``RUN/.lock`` (atomic; the kernel drops it when the process dies, also
  on SIGKILL, so a crashed run never blocks its rerun); the file records ``pid``, ``host`` and the
  start time, for the message the second command prints:
  ``RUN is in use by pid N (started YYYY-MM-DD HH:MM:SS)``;
* a lock file left behind by a process that no longer holds it (killed before it could remove the
  file) is taken over with a one-line warning naming that process;
* the file is removed when the command ends, normally or with an error;
* under ``torchrun`` only rank 0 locks (``RANK`` unset or ``0``): the other ranks write nothing, and
  if rank 0 is refused, ``torchrun`` stops them with it;
* ``--dry-run`` writes nothing and takes no lock.

POSIX only (``fcntl``); on network file systems the lock is as reliable as their ``flock`` (Linux NFS
maps it to byte-range locks, which work across machines).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Iterator

from semantic_genesis.errors import RunInUseError

LOCK_NAME = ".lock"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _read_holder(handle) -> dict[str, str]:
    """``{"pid", "host", "started"}`` recorded in an open lock file (missing keys when it is empty)."""
    handle.seek(0)
    holder: dict[str, str] = {}
    for line in handle.read().splitlines():
        key, _, value = line.partition("=")
        if key in ("pid", "host", "started"):
            holder[key] = value.strip()
    return holder


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, enabled: bool | None = None) -> Iterator[Path | None]:
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the duration of the block.

    Args:
        run_dir: the run folder.
        enabled: ``False`` takes no lock; ``None`` (default) locks on rank 0 only (``RANK``).

    Yields:
        The lock file's path (``None`` when no lock was taken).

    Raises:
        RunInUseError: another live process holds the lock; the message is
            ``RUN is in use by pid N (started YYYY-MM-DD HH:MM:SS)``.
    """
    if enabled is None:
        enabled = _is_main_rank()
    if not enabled:
        yield None
        return
    run_dir = Path(run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    handle = _acquire(path, run_dir)
    try:
        yield path
    finally:
        # remove the file while still holding the lock, so no one else can be holding it meanwhile
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                path.unlink()
        handle.close()


def _acquire(path: Path, run_dir: Path):
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_of_busy_lock(handle)
            handle.close()
            raise RunInUseError(
                f"{run_dir} is in use by pid {holder.get('pid', '?')} (started {holder.get('started', '?')})"
            ) from None
        except BaseException:
            handle.close()
            raise
        # the previous holder may have removed the file between our open and our flock: then we locked
        # a file nobody else will ever see; start again on the current one
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            handle.close()
            continue
        previous = _read_holder(handle)
        if previous.get("pid"):
            warnings.warn(
                f"{run_dir}: taking over the lock of pid {previous['pid']} on {previous.get('host', '?')} "
                f"(started {previous.get('started', '?')}), which no longer holds it", stacklevel=3
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={time.strftime(TIME_FORMAT)}\n")
        handle.flush()
        os.fsync(handle.fileno())
        return handle


def _holder_of_busy_lock(handle) -> dict[str, str]:
    """The holder's record; it writes it right after locking, so wait a moment for an empty file."""
    holder = _read_holder(handle)
    for _ in range(20):
        if holder.get("pid"):
            break
        time.sleep(0.05)
        holder = _read_holder(handle)
    return holder
