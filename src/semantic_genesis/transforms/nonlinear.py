"""Non-linear intensity transformation (Models Genesis, Zhou et al. 2019/2021, Sec. 3.1 "non-linear").

Every voxel value ``v`` in [0, 1] goes through a smooth monotone map built from a cubic Bezier curve with
control points ``(0, 0), (a1, b1), (a2, b2), (1, 1)``, ``a1, b1, a2, b2 ~ U[0, 1]`` per sample.

The reference code (``nonlinear_transformation``) evaluates the curve with *reversed* Bernstein weights
``B_i(t) = C(3, i) t^(3-i) (1-t)^i``, so its sample arrays ``xs(t)`` and ``ys(t)`` both run from 1 (t=0)
down to 0 (t=1). With probability 0.5 it sorts only ``xs``, pairing ascending x with descending y: the map
is then *inverted* (``f(0) = 1``, ``f(1) = 0``). Otherwise it sorts both, giving the increasing Bezier
curve. Both branches are monotone (the coordinate polynomials of a Bezier curve whose control values run
from 1 to 0 within [0, 1] are non-increasing). The output is ``np.interp(v, xs, ys)``.

Here the same construction is done per sample on ``curve_points`` values of t (the reference uses 100,000;
the difference is below 1e-6), turned into a lookup table of ``lut_size + 1`` equally spaced
entries, and applied to all voxels of the batch at once by linear interpolation in that table. On a
float32/float64 CPU batch a compiled kernel applies the same tables in one pass (same draws, same
formula, results equal to the torch path up to float rounding).
"""

from __future__ import annotations

import torch

import numpy as np

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._random import bernoulli, check_batch, resolve_generator, uniform


def bezier_samples(points: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample cubic Bezier curves with the reference's reversed Bernstein order.

    Args:
        points: ``(N, 4, 2)`` control points ``P_0 .. P_3`` (x, y).
        num: number of t values, evenly spaced on [0, 1].

    Returns:
        ``(xs, ys)``, each ``(N, num)``: ``sum_i C(3,i) t^(3-i) (1-t)^i P_i`` at each t, so that
        ``t = 0`` gives ``P_3`` and ``t = 1`` gives ``P_0``.
    """
    t = torch.linspace(0.0, 1.0, num, dtype=points.dtype, device=points.device)
    s = 1.0 - t
    weights = torch.stack([t**3, 3 * t**2 * s, 3 * t * s**2, s**3])  # (4, num), i = 0..3
    xs = points[:, :, 0] @ weights
    ys = points[:, :, 1] @ weights
    return xs, ys


def batched_interp(query: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.interp``: piecewise-linear interpolation with clamping at the ends.

    Args:
        query: ``(N, Q)`` points to evaluate.
        xp: ``(N, T)`` ascending sample positions.
        fp: ``(N, T)`` sample values.

    Returns:
        ``(N, Q)`` interpolated values.
    """
    num = xp.shape[1]
    right = torch.searchsorted(xp, query.contiguous(), right=True).clamp(1, num - 1)
    left = right - 1
    x0, x1 = xp.gather(1, left), xp.gather(1, right)
    f0, f1 = fp.gather(1, left), fp.gather(1, right)
    span = x1 - x0
    w = torch.where(span > 0, (query - x0) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
    w = w.clamp(0.0, 1.0)
    out = f0 + w * (f1 - f0)
    out = torch.where(query <= xp[:, :1], fp[:, :1], out)
    return torch.where(query >= xp[:, -1:], fp[:, -1:], out)


def sample_nonlinear_luts(
    n: int,
    generator: torch.Generator,
    inverted_prob: float = 0.5,
    curve_points: int = 4096,
    lut_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` random intensity maps as lookup tables (CPU, float64).

    Returns:
        ``(lut, inverted)``: ``lut`` is ``(n, lut_size + 1)``, the map evaluated at ``j / lut_size``;
        ``inverted`` is ``(n,)`` bool, True where the inverted branch was drawn.
    """
    controls = uniform(generator, n, 2, 2)  # (a1, b1), (a2, b2)
    inverted = bernoulli(generator, n, inverted_prob)
    module = _backend.kernels() if _backend.current_backend() != "torch" else None
    if module is not None:  # the same tables, built in one compiled loop (tables live on the CPU)
        lut = np.empty((n, lut_size + 1), dtype=np.float64)
        module.bezier_luts(controls.numpy(), inverted.numpy(), curve_points, lut_size, lut)
        return torch.from_numpy(lut), inverted
    points = torch.zeros(n, 4, 2, dtype=torch.float64)
    points[:, 1:3] = controls
    points[:, 3] = 1.0
    xs, ys = bezier_samples(points, curve_points)
    # xs(t) and ys(t) are mathematically non-increasing (see the module docstring), so the reference's
    # np.sort is a reversal; the running maximum only irons out rounding (ulp-sized) wiggles and is
    # much cheaper than a sort.
    xs_sorted = torch.cummax(xs.flip(1), dim=1).values
    ys_sorted = torch.cummax(ys.flip(1), dim=1).values
    ys_used = torch.where(inverted[:, None], ys, ys_sorted)
    grid = torch.linspace(0.0, 1.0, lut_size + 1, dtype=torch.float64).expand(n, -1)
    return batched_interp(grid, xs_sorted, ys_used), inverted


def apply_luts(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map every value of sample ``b`` through table ``lut[b]`` (linear interpolation).

    Args:
        x: ``(B, ...)`` float batch; values are clamped to [0, 1] first.
        lut: ``(B, L + 1)`` table of the map at ``j / L``.

    Returns:
        A new tensor shaped like ``x``.
    """
    batch = x.shape[0]
    size = lut.shape[1] - 1
    lut = lut.to(device=x.device, dtype=x.dtype)
    # Rows of size + 1 entries: index ``size`` (the value 1.0) reads the last entry with slope 0.
    slope = _slopes(lut)
    offsets = (torch.arange(batch, device=x.device, dtype=torch.int32) * (size + 1)).view(batch, 1)
    pos = x.clamp(0.0, 1.0).mul_(size)
    index = pos.to(torch.int32).view(batch, -1).add_(offsets).view(-1)
    frac = pos.frac_()
    base = lut.reshape(-1).index_select(0, index).view(x.shape)
    step = slope.reshape(-1).index_select(0, index).view(x.shape)
    return base.addcmul_(frac, step)


def _slopes(lut: torch.Tensor) -> torch.Tensor:
    """``lut[:, j + 1] - lut[:, j]``, with 0 in the last column (the value 1.0 reads the last entry)."""
    return torch.nn.functional.pad(torch.diff(lut, dim=1), (0, 1))


def nonlinear_rows_(
    dst: torch.Tensor,
    rows: torch.Tensor,
    generator: torch.Generator,
    *,
    inverted_prob: float = 0.5,
    curve_points: int = 4096,
    lut_size: int = 1024,
) -> None:
    """Compiled path: apply random maps to the rows ``rows`` of ``dst`` in place.

    Draws exactly what :func:`nonlinear` draws for ``dst[rows]``.

    Args:
        dst: contiguous float32/float64 CPU batch ``(B, C, ...)``.
        rows: ``(n,)`` int64 CPU row indices.
        generator: CPU generator.
        inverted_prob, curve_points, lut_size: as :func:`nonlinear`.
    """
    count = int(rows.numel())
    if count == 0:
        return
    lut, _ = sample_nonlinear_luts(count, generator, inverted_prob, curve_points, lut_size)
    apply_luts_(dst, rows, lut)


def apply_luts_(
    dst: torch.Tensor,
    rows: torch.Tensor,
    lut: torch.Tensor,
    keep: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Kernel of :func:`nonlinear_rows_` with drawn tables ``lut`` ``(n, L + 1)``; ``keep`` =
    ``(keep_of, corners, sizes, counts)`` optionally restricts rows to boxes (``_kernels.apply_luts``)."""
    if int(rows.numel()) == 0:
        return
    lut = lut.to(dst.dtype)
    size = lut.shape[1] - 1
    scale = np.float32(size) if dst.dtype == torch.float32 else np.float64(size)
    _backend.kernels().apply_luts(
        _backend.rows_view(dst), _backend.rows_array(rows), lut.numpy(),
        np.ascontiguousarray(_slopes(lut).numpy()), scale, *(keep if keep is not None else _backend.no_keep()),
        _backend.dims_3d(tuple(int(s) for s in dst.shape[2:])),
    )


def nonlinear(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    inverted_prob: float = 0.5,
    curve_points: int = 4096,
    lut_size: int = 1024,
) -> torch.Tensor:
    """Apply a random Bezier intensity map to every sample of a batch.

    Args:
        x: ``(B, C, X, Y, Z)`` or ``(B, C, H, W)`` float batch in [0, 1], any device. Not modified.
        generator: CPU generator for the curve parameters (None: seeded from torch's global RNG).
        inverted_prob: probability of the inverted (decreasing) branch; 0.5 in the reference.
        curve_points: t samples per curve (reference: 100,000).
        lut_size: lookup-table intervals on [0, 1].

    Returns:
        A new batch of the same shape, dtype and device, values in [0, 1].
    """
    check_batch(x, "nonlinear")
    if curve_points < 2 or lut_size < 1 or not 0.0 <= inverted_prob <= 1.0:
        raise ConfigError(
            f"nonlinear: need curve_points >= 2 (got {curve_points}), lut_size >= 1 (got {lut_size}) and "
            f"inverted_prob in [0, 1] (got {inverted_prob})"
        )
    generator = resolve_generator(generator)
    if x.shape[0] == 0:
        return x.clone()
    if _backend.kernel_for(x) is not None:
        out = x.clone(memory_format=torch.contiguous_format)
        nonlinear_rows_(out, torch.arange(x.shape[0]), generator, inverted_prob=inverted_prob,
                        curve_points=curve_points, lut_size=lut_size)
        return out
    lut, _ = sample_nonlinear_luts(x.shape[0], generator, inverted_prob, curve_points, lut_size)
    return apply_luts(x, lut)
