"""Elastic deformation of the input (Semantic Genesis code, ``elastic_transform`` in its data loader).

Reference process, per cube: two displacement fields ``d = alpha * gaussian_filter(U[-1, 1] noise,
sigma, mode="constant")`` (3D filter over the whole cube), one along X and one along Y; the slice axis Z
is not displaced. The cube is resampled at ``(x + dx, y + dy, z)`` with
``scipy.ndimage.map_coordinates(order=1, mode="reflect")``. Semantic Genesis uses ``alpha=991,
sigma=8``: a mean |displacement| of about 2.8 voxels at 64x64x32. Only the *input* is warped, so the
network must also undo the warp.

Displacement law. The reference field is ``alpha * S n``: ``S`` the separable smoothing (one matrix per
axis, zero padding = scipy's ``mode="constant"``, radius ``int(4 * sigma + 0.5)`` = scipy's default
truncation) and ``n`` i.i.d. U[-1, 1] (variance 1/3). Each value sums thousands of independent terms
(about 8,000 at the centre of a 64x64x32 cube, 1,100 in a corner, 400 in a 224x224 image), so the field
is Gaussian up to an excess kurtosis of -1.2 / that number (-1.5e-4, -1e-3, -3e-3). It is drawn here as
the Gaussian field with exactly the reference covariance ``alpha^2 / 3 * S S^T``: with ``F_a F_a^T = S_a
S_a^T`` per axis (``F_a`` the eigenvectors of the Gram matrix scaled by the singular values of ``S_a``),
``S g`` for i.i.d. normal ``g`` has the law of ``(F_x (x) F_y (x) ...) g'`` with i.i.d. normal ``g'``, and the
singular values of a Gaussian smoothing fall fast: keeping the leading directions of each axis until the
variance left out is below 1e-6 (11 of 64 and 6 of 32 at sigma 8) leaves about 2,400 normal draws and
one small matrix product per axis for a 64x64x32 cube instead of smoothing 262,144 noise values (about
12x fewer multiply-adds). The smoothing is symmetric under reversing an axis, so each column of ``F_a``
is symmetric or antisymmetric (computed so exactly; the symmetric ones first): the compiled warp gets
the displacement of plane ``X - 1 - i`` from the two partial sums of plane ``i``, at half the cost.

Resampling: the batch is resampled with one bilinear ``grid_sample`` call over all slices
(``padding_mode="reflection"``, ``align_corners=False``; a compiled kernel on float32/float64 CPU
batches). That padding reflects about the volume border half a voxel outside the edge voxels, which is
scipy's ``"reflect"`` (half-sample symmetric) mode, so results agree with scipy up to floating point.
On 2D batches both in-plane axes are displaced; the smoothing is then 2D, so the same alpha and sigma
give much larger displacements (mean about 15 pixels at 64x64 instead of 2.6 voxels at 64x64x32):
lower ``alpha`` for 2D images.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._plan import KernelWarp, warp_fits
from semantic_genesis.transforms._random import check_batch, device_generator, resolve_generator, sample_or_batch


def gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1D Gaussian with scipy's default truncation (radius ``int(4 * sigma + 0.5)``)."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def smoothing_matrix(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(size, size)`` matrix of 1D Gaussian smoothing with zero padding (scipy ``mode="constant"``).

    Row ``i`` holds the kernel weights of the inputs ``j`` with ``|i - j| <= radius``.
    """
    kernel = gaussian_kernel1d(sigma, torch.float64, torch.device("cpu"))
    radius = kernel.numel() // 2
    i = torch.arange(size)
    lag = i[None, :] - i[:, None]
    inside = lag.abs() <= radius
    matrix = torch.where(inside, kernel[(lag + radius).clamp(0, 2 * radius)], torch.zeros((), dtype=torch.float64))
    return matrix.to(dtype=dtype, device=device)


#: Variance of the reference field left out per axis by the truncated factors.
FIELD_VARIANCE_TOLERANCE = 1e-6


@functools.lru_cache(maxsize=16)
def _symmetric_factor(size: int, sigma: float) -> tuple[torch.Tensor, int]:
    """``(factor, even)``: :func:`smoothing_factor` and its number of symmetric columns.

    The Gram matrix ``S S^T`` of the smoothing commutes with the reversal of the axis, so its eigenvectors
    split into symmetric and antisymmetric ones; each kind is found in its own half-size subspace, so that
    every column is exactly (anti)symmetric in floating point (a row of a basis matrix holds one value).
    """
    gram = smoothing_matrix(size, sigma, torch.float64, torch.device("cpu"))
    gram = gram @ gram.T
    half = size // 2
    symmetric, antisymmetric = _parity_basis(size)
    symmetric[:, :half] *= math.sqrt(0.5)  # orthonormal: the middle plane's column (odd size) holds one 1
    antisymmetric *= math.sqrt(0.5)
    values, columns = [], []
    for basis in (symmetric, antisymmetric):
        value, vector = torch.linalg.eigh(basis.T @ gram @ basis)
        value = value.clamp_min(0.0)
        values.append(value)
        columns.append((basis @ vector) * value.sqrt())
    is_even = torch.cat([torch.ones(size - half, dtype=torch.bool), torch.zeros(half, dtype=torch.bool)])
    values, columns = torch.cat(values), torch.cat(columns, 1)
    order = torch.argsort(values, descending=True, stable=True)
    left = 1.0 - torch.cumsum(values[order], 0) / values.sum()
    keep = order[: int((left > FIELD_VARIANCE_TOLERANCE).sum()) + 1]
    even, odd = keep[is_even[keep]], keep[~is_even[keep]]
    return columns[:, torch.cat([even, odd])], int(even.numel())


def smoothing_factor(size: int, sigma: float) -> torch.Tensor:
    """``(size, r)`` float64 ``F`` with ``F F^T`` the Gram matrix ``S S^T`` of :func:`smoothing_matrix` up to
    the smallest directions: the leading eigenvectors, scaled by the square roots of their eigenvalues (the
    singular values of ``S``), that carry all but :data:`FIELD_VARIANCE_TOLERANCE` of the field's variance.
    The symmetric columns (``F[size - 1 - i] = F[i]``) come first, then the antisymmetric ones, each in
    order of decreasing variance."""
    return _symmetric_factor(size, sigma)[0]


@functools.lru_cache(maxsize=16)
def _factor_on(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`smoothing_factor` on ``device`` in ``dtype``, copied there once (a copy waits for a GPU)."""
    return smoothing_factor(size, sigma).to(device=device, dtype=dtype)


def _coefficients(
    generator: torch.Generator, batch: int, spatial: tuple[int, ...], alpha: float, sigma: float,
    device: torch.device, dtype: torch.dtype,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The normal coefficients ``(2 * batch, r_0, .., r_k)`` (scaled) and the per-axis factors ``(size, r)``
    of the displacement; the draws come from a generator on ``device`` seeded by one draw of ``generator``."""
    factors = [_factor_on(size, sigma, torch.device(device), dtype) for size in spatial]
    ranks = tuple(f.shape[1] for f in factors)
    dev_gen = device_generator(generator, device)
    coefficients = torch.randn((batch * 2,) + ranks, generator=dev_gen, device=device, dtype=dtype)
    return coefficients.mul_(alpha / math.sqrt(3.0)), factors  # U[-1, 1] noise has variance 1/3


def _expand(field: torch.Tensor, factors: list[torch.Tensor], down_to: int) -> torch.Tensor:
    """Apply ``factors[axis]`` along the coefficient axes ``axis = k .. down_to`` (the last first): each step
    is one (batched) matrix product that leaves the field contiguous, ``(.., r_axis, after) -> (.., size_axis,
    after)``. Returns ``(N, r_0, .., r_{down_to - 1}, prod(sizes[down_to:]))``."""
    ranks = [f.shape[1] for f in factors]
    count = field.shape[0]
    after = 1
    for axis in range(len(factors) - 1, down_to - 1, -1):
        before = count * math.prod(ranks[:axis])
        if after == 1:
            field = field.reshape(before, ranks[axis]) @ factors[axis].T
        else:
            field = torch.matmul(factors[axis], field.reshape(before, ranks[axis], after))
        after *= factors[axis].shape[0]
    return field.reshape([count] + ranks[:down_to] + [after])


def sample_displacement(
    generator: torch.Generator,
    batch: int,
    spatial: tuple[int, ...],
    alpha: float,
    sigma: float,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random displacement in voxels with the reference's covariance: ``(batch, 2, *spatial)`` (along
    the first two axes; see the module docstring)."""
    coefficients, factors = _coefficients(generator, batch, spatial, alpha, sigma, device, dtype)
    return _expand(coefficients, factors, 0).reshape((batch, 2) + tuple(spatial))


def warp(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` at ``index + displacement`` (linear, scipy-``reflect`` borders).

    Args:
        x: ``(B, C, *spatial)`` batch, 2 or 3 spatial axes.
        displacement: ``(B, 2, *spatial)`` voxels along the first two spatial axes (the third, if
            any, is not displaced, so a 3D batch is resampled slice by slice with bilinear
            interpolation, which equals trilinear interpolation at integer Z).

    Returns:
        The warped batch, same shape, dtype and device as ``x``.
    """
    batch, channels = x.shape[:2]
    spatial = tuple(x.shape[2:])
    if len(spatial) == 3:
        depth = spatial[2]
        slices = x.permute(0, 4, 1, 2, 3).reshape(batch * depth, channels, spatial[0], spatial[1])
        disp = displacement.permute(0, 4, 1, 2, 3).reshape(batch * depth, 2, spatial[0], spatial[1])
        out = warp(slices, disp)
        return out.view(batch, depth, channels, spatial[0], spatial[1]).permute(0, 2, 3, 4, 1).contiguous()
    rows, cols = spatial
    r = torch.arange(rows, device=x.device, dtype=displacement.dtype).view(1, rows, 1) + displacement[:, 0]
    c = torch.arange(cols, device=x.device, dtype=displacement.dtype).view(1, 1, cols) + displacement[:, 1]
    # align_corners=False: voxel i has normalised centre (2 i + 1) / n - 1; grid order is (col, row).
    grid = torch.stack(((2 * c + 1) / cols - 1, (2 * r + 1) / rows - 1), dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


@sample_or_batch("elastic")
def elastic(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    alpha: float = 991.0,
    sigma: float = 8.0,
) -> torch.Tensor:
    """Elastically deform every sample of a batch (in-plane displacement).

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG); the noise itself is drawn on
            the data's device from a generator seeded by it.
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        alpha: displacement scale (Semantic Genesis 991).
        sigma: Gaussian smoothing of the noise, voxels (Semantic Genesis 8).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    spatial = check_batch(x, "elastic")
    check_elastic(alpha, sigma)
    generator = resolve_generator(generator)
    if x.shape[0] == 0:
        return x.clone()
    if _backend.kernel_for(x) is None or not warp_fits(spatial):
        return warp(x, sample_displacement(generator, x.shape[0], spatial, alpha, sigma, x.device))
    return _warp_kernel(x, *kernel_warp(x, generator, alpha, sigma))


def check_elastic(alpha: float, sigma: float) -> None:
    """Raise :class:`ConfigError` unless ``sigma > 0`` and both are finite."""
    if not (sigma > 0 and math.isfinite(sigma) and math.isfinite(alpha)):
        raise ConfigError(f"elastic: sigma must be > 0 and alpha finite, got sigma={sigma}, alpha={alpha}")


def kernel_warp(x: torch.Tensor, generator: torch.Generator, alpha: float, sigma: float) -> KernelWarp:
    """Draw the warp of the non-empty float32/float64 CPU batch ``x`` for the compiled kernels, consuming
    ``generator`` as :func:`elastic` does, as ``_kernels.warp_sample`` takes it (:class:`~semantic_genesis.
    transforms._plan.KernelWarp`, in ``x``'s dtype). The kernel applies the first axis's factor plane by
    plane: the full field is never stored."""
    check_elastic(alpha, sigma)
    spatial = tuple(x.shape[2:])
    coefficients, factors = _coefficients(generator, x.shape[0], spatial, alpha, sigma, x.device, x.dtype)
    return _kernel_arrays(x, _expand(coefficients, factors, 1), factors[0], _symmetric_factor(spatial[0], sigma)[1])


def _kernel_arrays(
    x: torch.Tensor, partial: torch.Tensor, first: torch.Tensor | None = None, even: int | None = None
) -> KernelWarp:
    """The :class:`~semantic_genesis.transforms._plan.KernelWarp` of ``partial`` ``(2 * B, R, P)`` and the
    first axis's factor ``first`` ``(X, R)`` with ``even`` symmetric columns first. With ``first`` None,
    ``partial`` is the full displacement ``(B, 2, *spatial)``, written in the basis of :func:`_mirror_basis`."""
    size = x.shape[2]
    if first is not None and even is None:
        raise ValueError("_kernel_arrays: a factor needs its number of symmetric columns (even)")
    if first is None:
        first, even = _mirror_basis(size)
        half = (size + 1) // 2
        flat = partial.to(torch.float64).reshape(x.shape[0], 2, size, -1)
        mirror = flat.flip(2)
        partial = torch.cat([(flat + mirror)[:, :, :half] * 0.5, (flat - mirror)[:, :, : size // 2] * 0.5], 2)
    partial = partial.to(x.dtype).reshape(x.shape[0], 2, first.shape[1], -1)
    first = first[: (size + 1) // 2].to(x.dtype)
    return KernelWarp(np.ascontiguousarray(partial.numpy()), np.ascontiguousarray(first.numpy()), int(even))


def _parity_basis(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(symmetric, antisymmetric)`` float64 bases of the vectors of ``size`` values that reversal keeps or
    negates: column ``k`` of ``symmetric`` ``(size, ceil(size / 2))`` is 1 at ``k`` and ``size - 1 - k``, column
    ``k`` of ``antisymmetric`` ``(size, size // 2)`` is 1 at ``k`` and -1 at ``size - 1 - k``."""
    half, even = size // 2, (size + 1) // 2
    symmetric = torch.zeros(size, even, dtype=torch.float64)
    k = torch.arange(even)
    symmetric[k, k] = 1.0
    symmetric[size - 1 - k, k] = 1.0
    antisymmetric = torch.zeros(size, half, dtype=torch.float64)
    k = torch.arange(half)
    antisymmetric[k, k] = 1.0
    antisymmetric[size - 1 - k, k] = -1.0
    return symmetric, antisymmetric


def _mirror_basis(size: int) -> tuple[torch.Tensor, int]:
    """``(basis, even)``: a ``(size, size)`` factor for a full displacement, in the form the kernel takes:
    the :func:`_parity_basis` columns, the ``even = ceil(size / 2)`` symmetric ones first. A displacement
    ``d`` along the axis has the coefficients ``(d[k] + d[size - 1 - k]) / 2`` and ``(d[k] - d[size - 1 - k]) / 2``."""
    symmetric, antisymmetric = _parity_basis(size)
    return torch.cat([symmetric, antisymmetric], 1), symmetric.shape[1]


def _warp_kernel(x: torch.Tensor, partial: np.ndarray, first: np.ndarray, even: int) -> torch.Tensor:
    """:func:`warp` by the compiled kernel ``_kernels.warp_inplane`` (float32/float64 CPU batches).

    Args:
        x: the batch.
        partial, first, even: as :func:`kernel_warp` returns them (:func:`_kernel_arrays` makes them from
            a given factored or full displacement).
    """
    src = x.contiguous()
    out = _backend.new_batch_like(src)
    _backend.kernels().warp_inplane(
        _backend.rows_view(src), _backend.rows_view(out), partial, first, even,
        _backend.dims_3d(tuple(int(s) for s in x.shape[2:])),
    )
    return out
