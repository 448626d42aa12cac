"""Choice between the compiled CPU kernels and the torch implementation of the transforms.

Every transform has two implementations with the same parameter draws from the generator:

* ``"kernel"``: numba kernels (:mod:`semantic_genesis.transforms._kernels`) for float32/float64 CPU
  tensors, about 10x faster than torch on a CPU core (the local-shuffle loop over 10,000 windows per
  cube, the painting and the intensity tables in one pass per sample);
* ``"torch"``: batched torch operations, for any device (CUDA) and dtype.

``"auto"`` (the default) uses the kernels when the batch is a float32/float64 CPU tensor and numba can
be imported, else torch. The choice can be forced for a block with :func:`use_backend` or for a
process with the environment variable ``SEMANTIC_GENESIS_TRANSFORMS_BACKEND`` (``auto``, ``kernel``,
``torch``). numba is imported on the first CPU transform, never when the package is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import torch

from semantic_genesis.errors import ConfigError

BACKENDS = ("auto", "kernel", "torch")
ENV_VAR = "SEMANTIC_GENESIS_TRANSFORMS_BACKEND"

_forced: list[str] = []
_kernels: ModuleType | None = None
_import_error: str | None = None


def kernels() -> ModuleType | None:
    """The compiled-kernel module, or None when numba cannot be imported (imported once)."""
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        try:
            from semantic_genesis.transforms import _kernels as module
        except ImportError as exc:  # numba missing or broken: torch path only
            _import_error = f"{type(exc).__name__}: {exc}"
        else:
            _kernels = module
    return _kernels


def current_backend() -> str:
    """The requested backend: the innermost :func:`use_backend`, else the environment, else ``"auto"``."""
    name = _forced[-1] if _forced else os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ConfigError(f"{ENV_VAR}={name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def kernel_for(x: torch.Tensor) -> ModuleType | None:
    """The kernel module if ``x`` is to be transformed by the compiled kernels, else None (torch path).

    Raises:
        ConfigError: the ``"kernel"`` backend is forced but numba is missing or ``x`` is not a
            float32/float64 CPU tensor.
    """
    name = current_backend()
    if name == "torch":
        return None
    fits = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    module = kernels() if fits else None
    if name == "kernel" and module is None:
        why = _import_error if fits else f"a {x.dtype} tensor on {x.device} (need float32/float64 on the CPU)"
        raise ConfigError(f"transforms backend 'kernel' is not usable here: {why}")
    return module


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force the transforms backend (``"auto"``, ``"kernel"`` or ``"torch"``) inside a ``with`` block."""
    if name not in BACKENDS:
        raise ConfigError(f"transforms backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def new_batch_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor shaped like the float32/float64 batch ``x``
    (:func:`new_cpu_tensor`)."""
    return new_cpu_tensor(tuple(x.shape), x.dtype)


def new_cpu_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous float32/float64 CPU tensor of ``shape``.

    Allocated by numpy (plain ``malloc``) rather than torch (``posix_memalign``): glibc reuses a freed
    block for the next ``malloc`` of its size, while an aligned request is slightly larger than the
    block it could reuse and lands on fresh pages. With
    :func:`semantic_genesis.utils.allocator.keep_large_blocks_in_heap` the batch buffers of successive
    calls then cost no page faults at all.
    """
    return torch.from_numpy(np.empty(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))


def rows_view(x: torch.Tensor) -> np.ndarray:
    """``(B, C, V)`` numpy view of a contiguous CPU batch ``(B, C, *spatial)`` (shares memory)."""
    if not x.is_contiguous():
        raise ConfigError("transforms kernels need a contiguous batch")  # callers make it contiguous
    return x.detach().numpy().reshape(x.shape[0], x.shape[1], -1)


def as_3d(values: torch.Tensor, fill: int) -> np.ndarray:
    """``(..., D)`` per-axis integers as contiguous int32 ``(..., 3)``; a 2D image gets ``fill`` on a
    third axis of size 1 (0 for corners, 1 for sizes)."""
    values = values.to(torch.int32)
    if values.shape[-1] == 2:
        values = torch.nn.functional.pad(values, (0, 1), value=fill)
    return np.ascontiguousarray(values.numpy())


def dims_3d(spatial: tuple[int, ...]) -> np.ndarray:
    """The spatial shape as int64 ``(X, Y, Z)``; a 2D ``(H, W)`` becomes ``(H, W, 1)``."""
    return np.array(tuple(spatial) + (1,) * (3 - len(spatial)), dtype=np.int64)


def rows_array(rows: torch.Tensor) -> np.ndarray:
    """Batch row indices as contiguous int64 numpy."""
    return np.ascontiguousarray(rows.to(torch.int64).numpy())


def no_keep() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The empty ``(keep_of, corners, sizes, counts)`` of the kernels: every voxel is processed."""
    boxes = np.zeros((0, 1, 3), dtype=np.int32)
    return np.empty(0, dtype=np.int64), boxes, boxes.copy(), np.empty(0, dtype=np.int64)
