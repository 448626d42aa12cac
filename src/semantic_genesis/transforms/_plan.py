"""The compiled CPU path of the restoration transforms: one kernel call per batch.

A :class:`KernelPlan` holds every drawn parameter of a batch (which rows are flipped, shuffled,
mapped, in- or out-painted, and how); :func:`run_plan` converts it to the kernel's layout and runs
``_kernels.restore_rows`` once, which reads the batch once and writes each output once. The transforms
and the presets draw their parameters exactly as their torch path would and hand them over here, so
the single transforms (``local_shuffle``, ``nonlinear``, ``inpaint``, ``outpaint``), the Models Genesis
preset (all four stages and the flip) and the Semantic Genesis preset (one stage per row after the
elastic warp) share one implementation.

Layout: a 3D sample ``(X, Y, Z)`` is used as is; a 2D image ``(H, W)`` as ``(1, H, W)``, so that rows
of the image are the contiguous lines the kernel walks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._draws import BezierMaps, PaintDraw, ShuffleDraw
from semantic_genesis.transforms._random import numel

MAX_WINDOW_TABLE = 2**24
"""Largest shuffle window table the kernel builds: the voxel offsets of every window shape (int32)."""


def warp_fits(spatial: tuple[int, ...]) -> bool:
    """Whether the compiled elastic warp handles this shape: fewer than 2**31 voxels (int32 indices)."""
    return numel(spatial) < 2**31


def kernel_fits(spatial: tuple[int, ...], size_divisor: int) -> bool:
    """Whether the compiled kernels handle this shape: 2D or 3D, dimensions up to 65,536 (the shuffle's
    draws use 16-bit chunks), fewer than 2**31 voxels (the warp's int32 indices) and a window table of
    at most :data:`MAX_WINDOW_TABLE` offsets (the sum of the volumes of all window shapes, which also
    keeps every window volume below 65,536)."""
    largest = [max(1, dim // size_divisor) for dim in spatial]
    table = numel([m * (m + 1) // 2 for m in largest])
    return len(spatial) in (2, 3) and max(spatial) <= 2**16 and warp_fits(spatial) and table <= MAX_WINDOW_TABLE


class KernelWarp(NamedTuple):
    """The elastic displacement of a batch in the factored form the compiled warp takes
    (``_kernels.warp_sample``), made by ``elastic.kernel_warp``; numpy arrays in the batch's dtype.

    Attributes:
        partial: ``(B, 2, R, P)``: per sample and displaced axis, ``R`` coefficient rows over the ``P``
            voxels of a first-axis plane.
        first: ``(ceil(X / 2), R)``: the first axis's factor on the planes up to the middle one.
        even: the factor's first ``even`` columns are symmetric about the middle plane, the others
            antisymmetric, so plane ``X - 1 - c`` takes ``first[c]`` with those columns negated.
    """

    partial: np.ndarray
    first: np.ndarray
    even: int


@dataclass(frozen=True)
class KernelPlan:
    """Drawn parameters of every stage for a batch of ``batch`` samples (CPU tensors).

    Attributes:
        batch: number of samples.
        parity: ``(B, D)`` bool flips; when given, the flipped batch is also returned as the target and
            the stages work on it.
        shuffle: the shuffled rows, or None.
        maps: ``(rows, maps)`` intensity maps of ``rows``, or None.
        inpaint, outpaint: ``(rows, draw)`` paintings of ``rows``, or None.
    """

    batch: int
    parity: torch.Tensor | None = None
    shuffle: ShuffleDraw | None = None
    maps: tuple[torch.Tensor, BezierMaps] | None = None
    inpaint: tuple[torch.Tensor, PaintDraw] | None = None
    outpaint: tuple[torch.Tensor, PaintDraw] | None = None

    @classmethod
    def for_batch(cls, x: torch.Tensor, **stages) -> KernelPlan:
        return cls(batch=int(x.shape[0]), **stages)


def run_plan(
    x: torch.Tensor, plan: KernelPlan, warp: KernelWarp | None = None, keep_input: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``plan`` on the float32/float64 CPU batch ``x`` (not modified).

    Args:
        x: the batch.
        plan: the drawn stages.
        warp: the elastic warp of every row before the stages, as ``elastic.kernel_warp`` returns it
            (``partial (B, 2, R, P)``, ``first``, ``even``), or None. The kernel resamples one row at a time
            into a scratch sample that the stages then read while it is in cache.
        keep_input: return a copy of ``x`` as the target (made row by row while the row is in cache);
            not with ``plan.parity``.

    Returns:
        ``(out, target)``: new contiguous tensors shaped like ``x``; ``target`` is the flipped batch
        when ``plan.parity`` is given, the copy of ``x`` with ``keep_input``, else None.
    """
    if keep_input and plan.parity is not None:
        raise ValueError("run_plan: keep_input and a flip (plan.parity) both make the target")
    x = x.contiguous()
    spatial = tuple(int(s) for s in x.shape[2:])
    dims = _dims(spatial)
    batch = plan.batch
    out = _backend.new_batch_like(x)
    target = _backend.new_batch_like(x) if plan.parity is not None else None
    original = _backend.new_batch_like(x) if keep_input else None
    parity = np.zeros((batch, 3), dtype=np.uint8)
    if plan.parity is not None:
        parity[:, 3 - len(spatial):] = plan.parity.numpy()

    shuffle_of = np.full(batch, -1, dtype=np.int64)
    seeds = np.zeros(0, dtype=np.int64)
    num_windows = 0
    max_size = np.ones(3, dtype=np.int64)
    if plan.shuffle is not None and plan.shuffle.rows.numel() and plan.shuffle.num_windows:
        shuffle_of[plan.shuffle.rows.numpy()] = np.arange(int(plan.shuffle.rows.numel()))
        seeds = np.ascontiguousarray(plan.shuffle.seeds.numpy(), dtype=np.int64)
        num_windows = plan.shuffle.num_windows
        max_size = np.maximum(1, dims // plan.shuffle.size_divisor)
    reach = int(np.sum((max_size - 1) * np.array([dims[1] * dims[2], dims[2], 1])))
    disp = np.zeros(numel(spatial) if num_windows else 0, dtype=np.int16 if reach < 2**15 else np.int32)

    map_of = np.full(batch, -1, dtype=np.int64)
    tables = [np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 4)), np.zeros(1, dtype=np.bool_)]
    if plan.maps is not None and plan.maps[0].numel():
        rows, maps = plan.maps
        map_of[rows.numpy()] = np.arange(int(rows.numel()))
        tables = [np.ascontiguousarray(t.numpy()) for t in (maps.table, maps.slope, maps.t_grid, maps.controls)]
        tables.append(np.ascontiguousarray(maps.inverted.numpy()))

    paint = _paint_arrays(plan, batch)
    source = _backend.rows_view(x)
    _backend.kernels().restore_rows(
        source, _backend.rows_view(out),
        _backend.rows_view(target) if target is not None else np.empty((0,) + source.shape[1:], source.dtype),
        parity, dims, shuffle_of, seeds, num_windows, max_size, disp, map_of, *tables, *paint,
        24 if x.dtype == torch.float32 else 53,
        _warp_arrays(warp, spatial, x),
        _backend.rows_view(original) if original is not None else np.empty((0,) + source.shape[1:], source.dtype),
    )
    return out, target if original is None else original


def _warp_arrays(warp: KernelWarp | None, spatial: tuple[int, ...], x: torch.Tensor) -> tuple:
    """The kernel's ``warp`` argument ``(partial, first, even, dims, axis)``: the arrays of ``warp`` (a no-op
    warp of 0 rows for None), the warp's own layout ``dims`` (``_backend.dims_3d``: a 2D image as ``(H, W,
    1)``) and the axis of the kernel layout that is its first axis."""
    if warp is None:
        dtype = np.float32 if x.dtype == torch.float32 else np.float64
        return np.zeros((0, 2, 1, 1), dtype), np.zeros((1, 1), dtype), 1, np.ones(3, dtype=np.int64), 0
    partial, first, even = warp
    return partial, first, even, _backend.dims_3d(spatial), 3 - len(spatial)


def _dims(spatial: tuple[int, ...]) -> np.ndarray:
    """Kernel layout ``(X, Y, Z)``: 3D as is, a 2D ``(H, W)`` as ``(1, H, W)``."""
    return np.array((1,) * (3 - len(spatial)) + tuple(spatial), dtype=np.int64)


def _boxes(values: torch.Tensor, fill: int) -> np.ndarray:
    """``(n, W, D)`` box corners or sizes as int32 ``(n, W, 3)`` in the kernel layout (a leading axis of
    size 1 for 2D images: corner 0, size 1)."""
    values = values.to(torch.int32)
    if values.shape[-1] == 2:
        values = torch.nn.functional.pad(values, (1, 0), value=fill)
    return values.numpy()


def _paint_arrays(plan: KernelPlan, batch: int) -> tuple:
    """The kernel's painting arguments: in- and out-paintings stacked, boxes padded to one width."""
    paint_of = np.full(batch, -1, dtype=np.int64)
    stages = []
    for stage, inside in ((plan.inpaint, True), (plan.outpaint, False)):
        if stage is not None and stage[0].numel():
            stages.append((stage[0], stage[1], inside))
    width = max([int(draw.corners.shape[1]) for _, draw, _ in stages] + [1])
    total = sum(int(rows.numel()) for rows, _, _ in stages)
    corners = np.zeros((total, width, 3), dtype=np.int32)
    sizes = np.zeros((total, width, 3), dtype=np.int32)
    counts = np.zeros(total, dtype=np.int64)
    inside_of = np.zeros(total, dtype=np.bool_)
    constants = np.zeros(total, dtype=np.float64)
    use_constant = np.zeros(total, dtype=np.bool_)
    noise_seed = np.zeros(total, dtype=np.int64)
    noise_index = np.zeros(total, dtype=np.int64)
    start = 0
    for rows, draw, inside in stages:
        n = int(rows.numel())
        span = slice(start, start + n)
        paint_of[rows.numpy()] = np.arange(start, start + n)
        w = int(draw.corners.shape[1])
        corners[span, :w] = _boxes(draw.corners, 0)
        sizes[span, :w] = _boxes(draw.sizes, 1)
        counts[span] = draw.counts.numpy()
        inside_of[span] = inside
        constants[span] = draw.constants.to(torch.float64).numpy()
        use_constant[span] = draw.fill == "constant"
        noise_seed[span] = draw.seed
        noise_index[span] = np.arange(n)
        start += n
    return paint_of, inside_of, corners, sizes, counts, constants, use_constant, noise_seed, noise_index
