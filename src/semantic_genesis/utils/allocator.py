"""Keep freed large blocks in the process heap so that CPU batch buffers are reused, not re-faulted.

Why: every transform call returns fresh ``(B, C, X, Y, Z)`` tensors (16 MiB for the Models Genesis batch
of 32 cubes of 64x64x32). glibc serves such blocks with ``mmap`` and gives them back with ``munmap``
on free, so the next batch's buffers are new pages that the kernel must fault in and zero: on the
2-core development VM that costs 0.1-0.3 ms per cube, as much as a whole transform stage, and shows up
as system time. glibc's dynamic threshold sometimes avoids it and sometimes not, depending on the
allocation history, which also makes timings erratic. Raising ``M_MMAP_THRESHOLD`` to its maximum
(32 MiB on 64-bit) and ``M_TRIM_THRESHOLD`` well above it keeps such blocks in the heap, where a freed
buffer is handed to the next allocation of its size with its pages still mapped. This is the same
remedy as PyTorch's CPU performance guide's advice to preload jemalloc or tcmalloc, without a
preload.

This covers plain ``malloc`` blocks; torch's own CPU allocator asks for 64-byte-aligned blocks, which
glibc cannot fit into the block just freed. The transform kernels no longer depend on it: they take
their outputs from a pool of reusable buffers (:data:`semantic_genesis.transforms._backend.BUFFERS`),
so that a user's loop or DataLoader worker needs no allocator setting.

The cost is that up to ``trim_threshold`` bytes of freed heap stay resident instead of returning to
the system (the peak working set, not a leak). Applied by the training engine when the transforms run
on the CPU; a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
DEFAULT_TRIM_THRESHOLD = 256 * 1024 * 1024

_applied: dict[str, int] | None = None


def keep_large_blocks_in_heap(
    mmap_threshold: int = MMAP_THRESHOLD_MAX, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> dict[str, int] | None:
    """Ask glibc to serve blocks below ``mmap_threshold`` bytes from the heap and to keep up to
    ``trim_threshold`` bytes of freed heap mapped. Idempotent; process-wide.

    Args:
        mmap_threshold: blocks of at least this many bytes still use ``mmap`` (glibc caps it at
            32 MiB on 64-bit systems).
        trim_threshold: free memory at the top of the heap above this is returned to the system.

    Returns:
        The settings in force (``{"mmap_threshold": ..., "trim_threshold": ...}``), or None where the
        C library is not glibc or refuses them (then nothing changed).

    Raises:
        ValueError: a threshold that is not positive, or an mmap threshold above glibc's cap.
    """
    global _applied
    if mmap_threshold <= 0 or trim_threshold <= 0:
        raise ValueError(f"allocator thresholds must be positive, got mmap {mmap_threshold}, trim {trim_threshold}")
    if mmap_threshold > MMAP_THRESHOLD_MAX:
        raise ValueError(f"glibc caps M_MMAP_THRESHOLD at {MMAP_THRESHOLD_MAX} bytes, got {mmap_threshold}")
    wanted = {"mmap_threshold": mmap_threshold, "trim_threshold": trim_threshold}
    if _applied == wanted:
        return _applied
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return None
    # mallopt returns 1 on success, 0 on error
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold) or not mallopt(M_TRIM_THRESHOLD, trim_threshold):
        return None
    _applied = wanted
    return _applied


def applied() -> dict[str, int] | None:
    """The settings made by :func:`keep_large_blocks_in_heap` in this process, or None."""
    return _applied


def _glibc_mallopt():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
