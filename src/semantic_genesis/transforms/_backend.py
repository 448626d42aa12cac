"""Choice between the compiled CPU kernels and the torch implementation of the transforms.

Every transform has two implementations with the same parameter draws from the generator:

* ``"kernel"``: numba kernels (:mod:`semantic_genesis.transforms._kernels`) for float32/float64 CPU
  tensors, about 10x faster than torch on a CPU core (the local-shuffle loop over 10,000 windows per
  cube, the painting and the intensity tables in one pass per sample);
* ``"torch"``: batched torch operations, for any device and dtype, with every per-sample parameter
  drawn on the CPU (the same draws as the kernels: the two paths paint the same boxes and build the
  same intensity maps);
* ``"device"``: batched torch operations with the random draws made on the batch's device (the
  default on a GPU). One draw of the CPU generator seeds a generator on the device, which draws the
  per-sample decisions, the shuffle windows and their permutation keys, the painting boxes and the
  noise; only the intensity-map curves are drawn on the CPU (four numbers per sample, tabulated there
  and copied once per call). Every stage runs on the whole batch and is blended in per sample with
  ``torch.where``, so a call has no per-sample Python loop and synchronises with the host only for the
  copy of the tables, the local shuffle's chunk sizes and kept windows, and the exact evaluation of the
  steep cells of the intensity maps. Same laws as the other paths, different draws.

``"auto"`` (the default) uses the kernels when the batch is a float32/float64 CPU tensor and numba can
be imported, the device path for a batch on a GPU (any non-CPU device), else torch. The choice can be
forced for a block with :func:`use_backend` or for a process with the environment variable
``SEMANTIC_GENESIS_TRANSFORMS_BACKEND`` (``auto``, ``kernel``, ``torch``, ``device``). numba is imported
on the first CPU transform, never when the package is imported.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import torch

from semantic_genesis.errors import ConfigError

BACKENDS = ("auto", "kernel", "torch", "device")
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
    if name in ("torch", "device"):
        return None
    fits = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    module = kernels() if fits else None
    if name == "kernel" and module is None:
        why = _import_error if fits else f"a {x.dtype} tensor on {x.device} (need float32/float64 on the CPU)"
        raise ConfigError(f"transforms backend 'kernel' is not usable here: {why}")
    return module


def device_draws(x: torch.Tensor) -> bool:
    """Whether ``x`` is transformed by the device path (random draws on ``x``'s device): the
    ``"device"`` backend, or ``"auto"`` with ``x`` on a non-CPU device."""
    name = current_backend()
    return name == "device" or (name == "auto" and x.device.type != "cpu")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force the transforms backend (``"auto"``, ``"kernel"``, ``"torch"`` or ``"device"``) inside a ``with``
    block."""
    if name not in BACKENDS:
        raise ConfigError(f"transforms backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    _forced.append(name)
    try:
        yield
    finally:
        _forced.pop()


def new_batch_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor shaped like the float32/float64 batch ``x``, from the
    :data:`BUFFERS` pool.

    The kernels' outputs (two 16 MiB tensors per Models Genesis batch of 32 cubes) would otherwise be
    fresh memory at every call: the C library hands such blocks out with ``mmap`` and the kernel must
    fault in and zero every page on first touch, which on a virtual machine costs about as much as a
    whole transform stage. The pool hands out again the buffer of a tensor the caller has dropped.
    """
    return BUFFERS.tensor(tuple(x.shape), np.float32 if x.dtype == torch.float32 else np.float64)


class BufferPool:
    """Reuses the numpy buffers behind tensors that nobody references any more.

    ``torch.from_numpy`` keeps its array alive for as long as any tensor (view, slice, ``.numpy()``
    array) uses the memory, so an array whose only references are the pool's own is free to be handed
    out again; until then it is never touched. Moving a tensor to shared memory (as DataLoader workers
    do) copies it and releases the array as well. The pool keeps at most ``per_shape`` arrays per shape
    and dtype, for the ``shapes`` most recently requested ones (a training loop asks for the same few
    shapes), and never more than ``max_bytes`` in all: beyond that it allocates without keeping.

    Thread-safe; each process (DataLoader worker) has its own.
    """

    def __init__(self, per_shape: int = 6, shapes: int = 4, max_bytes: int = 512 * 2**20):
        self.per_shape, self.shapes, self.max_bytes = per_shape, shapes, max_bytes
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def tensor(self, shape: tuple[int, ...], dtype: type) -> torch.Tensor:
        return torch.from_numpy(self.array(tuple(shape), np.dtype(dtype)))

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        key = (shape, dtype.str)
        with self._lock:
            arrays = self._arrays.pop(key, [])
            self._arrays[key] = arrays  # most recently used last
            for array in arrays:
                # references: the list, the loop variable and getrefcount's argument
                if sys.getrefcount(array) == 3:
                    return array
            array = np.empty(shape, dtype=dtype)
            while len(self._arrays) > self.shapes:
                del self._arrays[next(iter(self._arrays))]
            held = sum(a.nbytes for kept in self._arrays.values() for a in kept)
            if len(arrays) < self.per_shape and held + array.nbytes <= self.max_bytes:
                arrays.append(array)
            return array

    def clear(self) -> None:
        """Forget every pooled array (memory in use by tensors stays with them)."""
        with self._lock:
            self._arrays.clear()

    def _after_fork(self) -> None:
        # a forked child (a DataLoader worker) starts with its own lock and pool: the parent's lock may
        # have been held by another thread at the fork
        self._lock = threading.Lock()
        self._arrays = {}


BUFFERS = BufferPool()
"""The process's pool of kernel output buffers."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=BUFFERS._after_fork)


def rows_view(x: torch.Tensor) -> np.ndarray:
    """``(B, C, V)`` numpy view of a contiguous CPU batch ``(B, C, *spatial)`` (shares memory)."""
    if not x.is_contiguous():
        raise ConfigError("transforms kernels need a contiguous batch")  # callers make it contiguous
    return x.detach().numpy().reshape(x.shape[0], x.shape[1], -1)


def dims_3d(spatial: tuple[int, ...]) -> np.ndarray:
    """The spatial shape as int64 ``(X, Y, Z)``; a 2D ``(H, W)`` becomes ``(H, W, 1)``."""
    return np.array(tuple(spatial) + (1,) * (3 - len(spatial)), dtype=np.int64)
