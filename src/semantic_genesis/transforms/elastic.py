"""Elastic deformation of the input (Semantic Genesis code, ``elastic_transform`` in its data loader).

Reference process, per cube: two displacement fields ``d = alpha * gaussian_filter(U[-1, 1] noise,
sigma, mode="constant")`` (3D filter over the whole cube), one along X and one along Y; the slice axis Z
is not displaced. The cube is resampled at ``(x + dx, y + dy, z)`` with
``scipy.ndimage.map_coordinates(order=1, mode="reflect")``. Semantic Genesis uses ``alpha=991,
sigma=8``: a mean |displacement| of about 2.8 voxels at 64x64x32. Only the *input* is warped, so the
network must also undo the warp.

Batched formulation: the noise of the whole batch is smoothed with a separable Gaussian (one 1D
convolution per axis, zero padding = scipy's ``mode="constant"``, radius ``int(4 * sigma + 0.5)`` =
scipy's default truncation), and the batch is resampled with one ``grid_sample`` call (trilinear /
bilinear, ``padding_mode="reflection"``, ``align_corners=False``). That padding reflects about the volume
border half a voxel outside the edge voxels, which is scipy's ``"reflect"`` (half-sample symmetric)
mode, so results agree with scipy up to floating point. On 2D batches both in-plane axes are displaced.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms._random import check_batch, device_generator, resolve_generator


def gaussian_kernel1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1D Gaussian with scipy's default truncation (radius ``int(4 * sigma + 0.5)``)."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of every channel with zero padding.

    Args:
        field: ``(N, K, *spatial)`` with 2 or 3 spatial axes.
        sigma: standard deviation in voxels (> 0).

    Returns:
        The smoothed field, same shape.
    """
    kernel = gaussian_kernel1d(sigma, field.dtype, field.device)
    radius = kernel.numel() // 2
    n, k = field.shape[:2]
    spatial = field.shape[2:]
    ndim = len(spatial)
    conv = F.conv3d if ndim == 3 else F.conv2d
    out = field.reshape((n * k, 1) + tuple(spatial))
    for axis in range(ndim):
        shape = [1, 1] + [1] * ndim
        shape[axis + 2] = kernel.numel()
        padding = [0] * ndim
        padding[axis] = radius
        out = conv(out, kernel.view(shape), padding=tuple(padding))
    return out.reshape(field.shape)


def sample_displacement(
    generator: torch.Generator,
    batch: int,
    spatial: tuple[int, ...],
    alpha: float,
    sigma: float,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Smoothed random displacement in voxels: ``(batch, 2, *spatial)`` (along the first two axes)."""
    dev_gen = device_generator(generator, device)
    noise = torch.rand((batch, 2) + spatial, generator=dev_gen, device=device, dtype=dtype) * 2 - 1
    return gaussian_smooth(noise, sigma) * alpha


def warp(x: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` at ``index + displacement`` (linear, scipy-``reflect`` borders).

    Args:
        x: ``(B, C, *spatial)`` batch, 2 or 3 spatial axes.
        displacement: ``(B, 2, *spatial)`` voxels along the first two spatial axes (the third, if
            any, is not displaced).

    Returns:
        The warped batch, same shape, dtype and device as ``x``.
    """
    spatial = tuple(x.shape[2:])
    coords = []
    for axis, dim in enumerate(spatial):
        view = [1] * len(spatial)
        view[axis] = dim
        c = torch.arange(dim, device=x.device, dtype=displacement.dtype).view(view).expand(spatial)
        c = c.unsqueeze(0).expand((x.shape[0],) + spatial)
        if axis < 2:
            c = c + displacement[:, axis]
        coords.append((2 * c + 1) / dim - 1)  # align_corners=False voxel centres
    grid = torch.stack(coords[::-1], dim=-1)  # grid_sample wants (W, H, D) order
    mode = "bilinear"  # trilinear for 5D inputs
    out = F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=False)
    return out


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
    return warp(x, displacement)
