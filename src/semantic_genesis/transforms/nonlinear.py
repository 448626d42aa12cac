"""Non-linear intensity transformation (Models Genesis, Zhou et al. 2019/2021, Sec. 3.1 "non-linear").

Every voxel value ``v`` in [0, 1] goes through a smooth monotone map built from a cubic Bezier curve with
control points ``(0, 0), (a1, b1), (a2, b2), (1, 1)``, ``a1, b1, a2, b2 ~ U[0, 1]`` per sample.

The reference code (``nonlinear_transformation``) evaluates the curve with *reversed* Bernstein weights
``B_i(t) = C(3, i) t^(3-i) (1-t)^i``, so its coordinates

    X(t) = 3 t^2 (1-t) a1 + 3 t (1-t)^2 a2 + (1-t)^3,    Y(t) = the same with b1, b2,

both run from 1 (t = 0) down to 0 (t = 1). Both are non-increasing for every control point in the unit
square (their Bernstein derivative coefficients ``a2 - 1``, ``a1 - a2``, ``-a1`` never allow a positive
derivative), so sorting the samples is a reversal. With probability 0.5 the reference sorts only the x
samples, pairing ascending x with descending y: the map is then *inverted*, ``f(v) = Y(1 - t(v))``
(``f(0) = 1``, ``f(1) = 0``); otherwise it sorts both: ``f(v) = Y(t(v))``. Here ``t(v)`` solves
``X(t) = v``. The reference computes ``np.interp(v, xs, ys)`` on 100,000 samples of t, which is this
exact map up to its sampling (below 1e-5).

Implementation: per sample, a table of the exact map at ``lut_size + 1`` equally spaced values (each
entry solves ``X(t) = j / lut_size`` to machine precision) and linear interpolation in it. Where the
curve is steep (``X'(t)`` near 0, a square-root-like end or middle of the curve), linear interpolation
would err by up to a few 1e-2; the table marks such cells (their interpolation would differ from the
exact map by more than :data:`CELL_TOLERANCE` at the curve's own sample points) and values falling in
them are evaluated exactly (a safeguarded Newton solve of ``X(t) = v``). The result matches the
reference's ``np.interp`` to better than 1e-4 everywhere (tested). On a float32/float64 CPU batch the
compiled kernels build and apply the same tables (same draws, same formula).
"""

from __future__ import annotations

import numpy as np
import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._draws import BezierMaps
from semantic_genesis.transforms._plan import KernelPlan, run_plan
from semantic_genesis.transforms._random import bernoulli, check_batch, resolve_generator, sample_or_batch, uniform

CELL_TOLERANCE = 2e-5
"""A table cell is evaluated exactly when its linear interpolation misses a curve sample inside it by
more than this."""

CURVE_SAMPLES = 2048
"""Samples of t used to bracket the table's solves and to find the cells that need exact evaluation."""


def bezier_xy(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``3 t^2 (1-t) a + 3 t (1-t)^2 b + (1-t)^3``: one coordinate of the reference's curve (elementwise)."""
    u = 1.0 - t
    return 3.0 * t * t * u * a + 3.0 * t * u * u * b + u * u * u


def _bezier_dxy(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Derivative of :func:`bezier_xy` in t."""
    u = 1.0 - t
    return 3.0 * ((a - b) * 2.0 * t * u - a * t * t + (b - 1.0) * u * u)


def _secant_start(value, a1, a2, low, high):
    """The secant point of ``X(t) = value`` on the bracket ``[low, high]`` (elementwise)."""
    f_low = bezier_xy(low, a1, a2) - value
    span = f_low - (bezier_xy(high, a1, a2) - value)
    start = low + (high - low) * (f_low / torch.where(span > 0, span, torch.ones_like(span)))
    return torch.where(span > 0, start, 0.5 * (low + high)).clamp(min=low, max=high)


def _newton_step(value, a1, a2, low, high, t):
    """One Newton step from ``t`` for ``X(t) = value``, kept only if it stays inside ``(low, high)``."""
    d = _bezier_dxy(t, a1, a2)
    newton = t - (bezier_xy(t, a1, a2) - value) / torch.where(d < 0, d, torch.full_like(d, -1.0))
    return torch.where((d < 0) & (newton > low) & (newton < high), newton, t)


def solve_t(
    value: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """The t in ``[low, high]`` with ``X(t) = value`` (X non-increasing), to machine precision.

    Safeguarded Newton from the secant point of the bracket: each step keeps a bracket and falls back
    to bisection when Newton leaves it (where ``X'`` vanishes), so it converges for every curve; values
    that have converged drop out. All arguments are float64 tensors of one shape (elementwise solves).
    """
    shape = value.shape
    value, a1, a2 = value.reshape(-1), a1.reshape(-1), a2.reshape(-1)
    low, high = low.reshape(-1).clone(), high.reshape(-1).clone()
    t = _secant_start(value, a1, a2, low, high)
    result = t.clone()
    active = torch.arange(t.numel(), device=t.device)
    for _ in range(100):
        f = bezier_xy(t, a1, a2) - value
        low = torch.where(f > 0, t, low)  # X(t) > value: the root lies at larger t
        high = torch.where(f > 0, high, t)
        d = _bezier_dxy(t, a1, a2)
        newton = t - f / torch.where(d < 0, d, torch.full_like(d, -1.0))
        step = torch.where((d < 0) & (newton > low) & (newton < high), newton, 0.5 * (low + high))
        done = (f == 0) | ((step - t).abs() <= 4e-16) | (high - low <= 4e-16)
        result[active[done]] = t[done]
        going = ~done
        if not bool(going.any()):
            break
        active, t, value, a1, a2 = active[going], step[going], value[going], a1[going], a2[going]
        low, high = low[going], high[going]
    else:
        result[active] = t
    return result.view(shape)


SECTIONS = 256
"""Sub-intervals per round of :func:`section_t` (8 bits of t per round)."""


def section_t(value: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
              rounds: int) -> torch.Tensor:
    """The t in ``[low, high]`` with ``X(t) = value`` by ``rounds`` rounds of 256-section (the device path).

    Each round evaluates ``X`` (non-increasing) at 255 interior points of the bracket and keeps the
    sub-interval where it crosses ``value``, so the bracket shrinks 256-fold per round whatever the
    curve: a fixed number of operations with no convergence test (no host synchronisation on a GPU).
    The result is the bracket's midpoint, within ``(high - low) / 2**(8 * rounds + 1)`` of the root.
    Float64 ``(N,)`` arguments.
    """
    c1 = 3.0 * a2 - 3.0  # X(t) = 1 + c1 t + c2 t^2 + c3 t^3 (the Bernstein form expanded)
    c2 = 3.0 * a1 - 6.0 * a2 + 3.0
    c3 = 3.0 * a2 - 3.0 * a1 - 1.0
    coefficients = [c[:, None] for c in (c1, c2, c3)]
    fractions = torch.arange(1, SECTIONS, device=value.device, dtype=value.dtype) / SECTIONS
    target = value[:, None] - 1.0
    for _ in range(rounds):
        width = (high - low) / SECTIONS
        points = torch.addcmul(low[:, None], high[:, None] - low[:, None], fractions)
        x = torch.addcmul(coefficients[1], coefficients[2], points)
        x = torch.addcmul(coefficients[0], x, points).mul_(points)
        below = (x > target).sum(dim=1).to(value.dtype)  # sub-intervals left of the crossing
        low = torch.addcmul(low, below, width)
        high = low + width
    return 0.5 * (low + high)


def exact_values(values: torch.Tensor, controls: torch.Tensor, inverted: torch.Tensor,
                 low: torch.Tensor | None = None, high: torch.Tensor | None = None) -> torch.Tensor:
    """The exact maps ``f(v)`` of values clamped to [0, 1] (float64, elementwise).

    Args:
        values: ``(N,)`` inputs.
        controls: ``(N, 4)`` control values ``a1, b1, a2, b2`` of each input's map.
        inverted: ``(N,)`` bool.
        low, high: optional ``(N,)`` t brackets (default ``[0, 1]``).
    """
    values = values.to(torch.float64).clamp(0.0, 1.0)
    a1, b1, a2, b2 = controls.to(torch.float64).unbind(1)
    low = torch.zeros_like(values) if low is None else low.to(torch.float64)
    high = torch.ones_like(values) if high is None else high.to(torch.float64)
    t = solve_t(values, a1, a2, low, high)
    return bezier_xy(torch.where(inverted, 1.0 - t, t), b1, b2)


def build_maps(controls: torch.Tensor, inverted: torch.Tensor, lut_size: int = 1024) -> BezierMaps:
    """Tables of the maps with control values ``controls`` ``(n, 4)`` and branches ``inverted`` ``(n,)``.

    The compiled kernel builds them when numba is available (and the torch backend is not forced);
    both constructions solve the same equations to machine precision and mark the same cells.
    """
    n = controls.shape[0]
    controls = controls.to(torch.float64).contiguous()
    module = _backend.kernels() if _backend.current_backend() != "torch" else None
    if module is not None:
        table = np.empty((n, lut_size + 1))
        slope = np.empty((n, lut_size + 1))
        t_grid = np.empty((n, lut_size + 1))
        module.bezier_tables(controls.numpy(), inverted.numpy(), CURVE_SAMPLES, CELL_TOLERANCE, table, slope,
                             t_grid)
        return BezierMaps(controls, inverted, torch.from_numpy(table), torch.from_numpy(slope),
                          torch.from_numpy(t_grid))
    a1, b1, a2, b2 = (c[:, None] for c in controls.unbind(1))
    # curve samples in ascending x: t from 1 down to 0 (the same t values as the compiled builder)
    q = torch.arange(CURVE_SAMPLES, dtype=torch.float64)
    t_samples = (1.0 - q / (CURVE_SAMPLES - 1)).expand(n, -1)
    xs = bezier_xy(t_samples, a1, a2)
    ys = bezier_xy(torch.where(inverted[:, None], 1.0 - t_samples, t_samples), b1, b2)
    grid = (torch.arange(lut_size + 1, dtype=torch.float64) / lut_size).expand(n, -1).contiguous()
    # bracket each grid value between consecutive samples (xs is non-decreasing along q up to rounding)
    reach = torch.cummax(xs, dim=1).values.contiguous()
    right = torch.searchsorted(reach, grid, right=False).clamp(1, CURVE_SAMPLES - 1)
    high = t_samples.gather(1, right - 1)
    low = t_samples.gather(1, right)
    a1_grid, a2_grid = a1.expand_as(grid), a2.expand_as(grid)
    # secant point and one Newton step: machine precision wherever X' is not small (there the cells
    # are evaluated exactly, and their edges are solved fully below)
    t_grid = _newton_step(grid, a1_grid, a2_grid, low, high, _secant_start(grid, a1_grid, a2_grid, low, high))
    t_grid[:, 0], t_grid[:, -1] = 1.0, 0.0  # X(1) = 0 and X(0) = 1 exactly
    table = bezier_xy(torch.where(inverted[:, None], 1.0 - t_grid, t_grid), b1, b2)
    slope = torch.nn.functional.pad(torch.diff(table, dim=1), (0, 1))
    # cells whose interpolation misses a curve sample inside them by more than the tolerance
    cell = torch.floor(xs * lut_size).to(torch.int64).clamp(0, lut_size - 1)
    frac = xs * lut_size - cell
    miss = (table.gather(1, cell) + frac * slope.gather(1, cell) - ys).abs()
    worst = torch.zeros(n, lut_size, dtype=torch.float64).scatter_reduce_(1, cell, miss, reduce="amax")
    exact = worst > CELL_TOLERANCE
    edges = torch.zeros(n, lut_size + 1, dtype=torch.bool)
    edges[:, :-1] |= exact
    edges[:, 1:] |= exact
    edges[:, 0] = edges[:, -1] = False
    if bool(edges.any()):  # the exact cells' brackets must be exact
        t_grid[edges] = solve_t(grid[edges], a1_grid[edges], a2_grid[edges], low[edges], high[edges])
        table = bezier_xy(torch.where(inverted[:, None], 1.0 - t_grid, t_grid), b1, b2)
        slope = torch.nn.functional.pad(torch.diff(table, dim=1), (0, 1))
    slope[:, :-1] = torch.where(exact, torch.full_like(worst, float("nan")), slope[:, :-1])
    return BezierMaps(controls, inverted, table, slope, t_grid)


def sample_nonlinear_maps(
    n: int, generator: torch.Generator, inverted_prob: float = 0.5, lut_size: int = 1024
) -> BezierMaps:
    """Draw ``n`` random intensity maps: the control values ``U[0, 1]``, then the branches."""
    controls = uniform(generator, n, 2, 2)  # (a1, b1), (a2, b2)
    inverted = bernoulli(generator, n, inverted_prob)
    return build_maps(controls.reshape(n, 4), inverted, lut_size)


def apply_maps(x: torch.Tensor, maps: BezierMaps) -> torch.Tensor:
    """Map every value of sample ``b`` through map ``b`` (torch path, any device).

    Args:
        x: ``(B, ...)`` float batch; values are clamped to [0, 1] first, NaN stays NaN.
        maps: ``B`` maps.

    Returns:
        A new tensor shaped like ``x``.
    """
    batch = x.shape[0]
    size = maps.lut_size
    table = maps.table.to(device=x.device, dtype=x.dtype)
    slope = maps.slope.to(device=x.device, dtype=x.dtype)
    offsets = (torch.arange(batch, device=x.device, dtype=torch.int32) * (size + 1)).view(batch, 1)
    clamped = x.clamp(0.0, 1.0)
    pos = clamped * size
    cell = pos.to(torch.int32).view(batch, -1)
    index = (cell + offsets).view(-1)
    frac = pos.frac_()
    base = table.reshape(-1).index_select(0, index).view(x.shape)
    step = slope.reshape(-1).index_select(0, index).view(x.shape)
    out = base.addcmul_(frac, step)
    exact = torch.isnan(step) & ~torch.isnan(x)
    if bool(exact.any()):
        where = exact.view(batch, -1).nonzero()
        rows, flat = where[:, 0].cpu(), where[:, 1]
        cells = cell[where[:, 0], flat].cpu().to(torch.int64)
        values = clamped.view(batch, -1)[where[:, 0], flat].cpu()
        fixed = exact_values(values, maps.controls[rows], maps.inverted[rows], maps.t_grid[rows, cells + 1],
                             maps.t_grid[rows, cells])
        out.view(batch, -1)[where[:, 0], flat] = fixed.to(device=x.device, dtype=x.dtype)
    return out


@sample_or_batch("nonlinear")
def nonlinear(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    inverted_prob: float = 0.5,
    lut_size: int = 1024,
) -> torch.Tensor:
    """Apply a random Bezier intensity map to every sample of a batch.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator for the curve parameters (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        inverted_prob: probability of the inverted (decreasing) branch; 0.5 in the reference.
        lut_size: table intervals on [0, 1] (speed only: values in steep cells are evaluated exactly).

    Returns:
        A new batch of the same shape, dtype and device, values in [0, 1].
    """
    check_batch(x, "nonlinear")
    if lut_size < 1 or not 0.0 <= inverted_prob <= 1.0:
        raise ConfigError(
            f"nonlinear: need lut_size >= 1 (got {lut_size}) and inverted_prob in [0, 1] (got {inverted_prob})"
        )
    generator = resolve_generator(generator)
    if x.shape[0] == 0:
        return x.clone()
    if _backend.device_draws(x):
        maps = device_maps(generator, x.shape[0], inverted_prob, lut_size, x.device)
        mapped, exact = map_on_device(x, maps)
        return fix_exact_on_device(mapped, x, exact, maps)
    maps = sample_nonlinear_maps(x.shape[0], generator, inverted_prob, lut_size)
    if _backend.kernel_for(x) is not None:
        return run_plan(x, KernelPlan.for_batch(x, maps=(torch.arange(x.shape[0]), maps)))[0]
    return apply_maps(x, maps)


def device_maps(generator: torch.Generator, n: int, inverted_prob: float, lut_size: int, device: torch.device) -> BezierMaps:
    """:func:`sample_nonlinear_maps` (drawn and tabulated on the CPU: four numbers per map) with every
    tensor copied to ``device`` in one copy (the device path's only host-to-device copy per call; on
    CUDA from page-locked memory, so that it does not wait for the work already queued)."""
    maps = sample_nonlinear_maps(n, generator, inverted_prob, lut_size)
    if torch.device(device).type == "cpu":
        return maps
    parts = (maps.controls, maps.inverted.to(torch.float64)[:, None], maps.table, maps.slope, maps.t_grid)
    flat = torch.cat([part.reshape(n, -1) for part in parts], dim=1)
    if torch.device(device).type == "cuda":  # from page-locked memory the copy does not wait for the GPU
        flat = flat.pin_memory().to(device, non_blocking=True)
    else:
        flat = flat.to(device)
    controls, inverted, table, slope, t_grid = flat.split([4, 1, lut_size + 1, lut_size + 1, lut_size + 1], dim=1)
    return BezierMaps(controls, inverted[:, 0] > 0.5, table, slope, t_grid)


def map_on_device(x: torch.Tensor, maps: BezierMaps) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`apply_maps` without its exact evaluations (the device path): the table interpolation of
    every value, and ``(B, N)`` bool the values that fall in a cell to be evaluated exactly
    (:func:`fix_exact_on_device` writes them; deferred so that a preset synchronises once, at its end).

    Args:
        x: ``(B, ...)`` float batch on the maps' device.
        maps: ``B`` maps on that device.
    """
    batch = x.shape[0]
    size = maps.lut_size
    offsets = (torch.arange(batch, device=x.device, dtype=torch.int32) * (size + 1)).view(batch, 1)
    pos = x.clamp(0.0, 1.0).mul_(size)
    index = (pos.to(torch.int32).view(batch, -1) + offsets).view(-1)
    frac = pos.frac_()
    base = maps.table.to(x.dtype).reshape(-1).index_select(0, index).view(x.shape)
    step = maps.slope.to(x.dtype).reshape(-1).index_select(0, index).view(x.shape)
    exact = torch.isnan(step) & ~torch.isnan(x)
    return base.addcmul_(frac, step), exact.view(batch, -1)


def fix_exact_on_device(out: torch.Tensor, x: torch.Tensor, exact: torch.Tensor, maps: BezierMaps) -> torch.Tensor:
    """Write into ``out`` (in place; returned) the exact maps of the values of ``x`` where ``exact``
    ``(B, N)`` is set: one synchronisation to find them, then :func:`section_t` on the device."""
    batch = x.shape[0]
    where = exact.nonzero()
    if where.shape[0] == 0:
        return out
    rows, flat = where[:, 0], where[:, 1]
    size = maps.lut_size
    clamped = x.reshape(batch, -1)[rows, flat].clamp(0.0, 1.0)
    cells = (clamped * size).to(torch.int64)  # the cell of the table look-up (same arithmetic)
    values = clamped.to(torch.float64)
    t_grid = maps.t_grid.reshape(-1)
    a1, b1, a2, b2 = maps.controls[rows].unbind(1)
    rounds = 7 if out.dtype == torch.float64 else 4  # t to 2**-57 or 2**-33: the map to about 1e-13 or 1e-9
    t = section_t(values, a1, a2, t_grid[rows * (size + 1) + cells + 1], t_grid[rows * (size + 1) + cells], rounds)
    fixed = bezier_xy(torch.where(maps.inverted[rows], 1.0 - t, t), b1, b2)
    out.reshape(batch, -1)[rows, flat] = fixed.to(out.dtype)
    return out
