"""Elastic deformation of the input (Semantic Genesis code, ``elastic_transform`` in its data loader).

Reference process, per cube: two displacement fields ``d = alpha * gaussian_filter(U[-1, 1] noise,
sigma, mode="constant")`` (3D filter over the whole cube), one along X and one along Y; the slice axis Z
is not displaced. The cube is resampled at ``(x + dx, y + dy, z)`` with
``scipy.ndimage.map_coordinates(order=1, mode="reflect")``. Semantic Genesis uses ``alpha=991,
sigma=8``: a mean |displacement| of about 2.8 voxels at 64x64x32. Only the *input* is warped, so the
network must also undo the warp.

Batched formulation: the noise of the whole batch is smoothed with a separable Gaussian (one banded
matrix product per axis, zero padding = scipy's ``mode="constant"``, radius ``int(4 * sigma + 0.5)`` =
scipy's default truncation), and the batch is resampled with one bilinear ``grid_sample`` call over all
slices (``padding_mode="reflection"``, ``align_corners=False``). That padding reflects about the volume
border half a voxel outside the edge voxels, which is scipy's ``"reflect"`` (half-sample symmetric)
mode, so results agree with scipy up to floating point. On 2D batches both in-plane axes are displaced;
the smoothing is then 2D, so the same alpha and sigma give much larger displacements (mean about 15
pixels at 64x64 instead of 2.6 voxels at 64x64x32): lower ``alpha`` for 2D images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._random import check_batch, device_generator, draw_seed, resolve_generator


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


def gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of every channel with zero padding.

    Each axis is filtered by a matrix product with :func:`smoothing_matrix` (exactly the truncated,
    zero-padded 1D convolution), which is much faster than a convolution with a 65-tap kernel.

    Args:
        field: ``(N, K, *spatial)`` with 2 or 3 spatial axes.
        sigma: standard deviation in voxels (> 0).

    Returns:
        The smoothed field, same shape.
    """
    out = field.contiguous()
    shape = out.shape
    for axis in range(2, field.dim()):
        size = shape[axis]
        matrix = smoothing_matrix(size, sigma, field.dtype, field.device)
        pre = math.prod(shape[:axis])
        post = math.prod(shape[axis + 1 :])
        if post == 1:
            out = out.view(pre, size) @ matrix.T
        else:
            out = torch.matmul(matrix, out.view(pre, size, post))
    return out.view(shape)


def sample_displacement(
    generator: torch.Generator,
    batch: int,
    spatial: tuple[int, ...],
    alpha: float,
    sigma: float,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Smoothed random displacement in voxels: ``(batch, 2, *spatial)`` (along the first two axes).

    The U[-1, 1) noise is drawn on ``device`` from a generator seeded by one draw of ``generator``;
    with the compiled kernels (CPU, float32/float64) it comes from their counter-based stream
    seeded by that same one draw instead (same law, about 60x faster than ``torch.rand`` on a CPU).
    """
    probe = torch.empty(0, dtype=dtype, device=device)
    kernels = _backend.kernel_for(probe)
    if kernels is not None:
        noise = _backend.new_cpu_tensor((batch, 2) + tuple(spatial), dtype)
        kernels.uniform_noise(noise.numpy().reshape(-1), draw_seed(generator), -1.0, 1.0)
    else:
        dev_gen = device_generator(generator, device)
        noise = torch.rand((batch, 2) + spatial, generator=dev_gen, device=device, dtype=dtype) * 2 - 1
    return gaussian_smooth(noise, sigma).mul_(alpha)



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


def elastic(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    alpha: float = 991.0,
    sigma: float = 8.0,
) -> torch.Tensor:
    """Elastically deform every sample of a batch (in-plane displacement).

    Args:
        x: ``(B, C, X, Y, Z)`` or ``(B, C, H, W)`` float batch in [0, 1], any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG); the noise itself is drawn on
            the data's device from a generator seeded by it.
        alpha: displacement scale (Semantic Genesis 991).
        sigma: Gaussian smoothing of the noise, voxels (Semantic Genesis 8).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    spatial = check_batch(x, "elastic")
    if not (sigma > 0 and math.isfinite(sigma) and math.isfinite(alpha)):
        raise ConfigError(f"elastic: sigma must be > 0 and alpha finite, got sigma={sigma}, alpha={alpha}")
    generator = resolve_generator(generator)
    if x.shape[0] == 0:
        return x.clone()
    displacement = sample_displacement(generator, x.shape[0], spatial, alpha, sigma, x.device)
    if _backend.kernel_for(x) is not None:
        return _warp_kernel(x, displacement)
    return warp(x, displacement)


def _warp_kernel(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """:func:`warp` by the compiled kernel ``_kernels.warp_inplane`` (float32/float64 CPU batches):
    one pass over the voxels instead of building a normalised grid for ``grid_sample``."""
    src = x.contiguous()
    out = _backend.new_batch_like(src)
    _backend.kernels().warp_inplane(
        _backend.rows_view(src), _backend.rows_view(out),
        np.ascontiguousarray(displacement.to(x.dtype).numpy()).reshape(x.shape[0], 2, -1),
        _backend.dims_3d(tuple(int(s) for s in x.shape[2:])),
    )
    return out
