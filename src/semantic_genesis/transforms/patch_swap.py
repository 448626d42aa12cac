"""Patch swapping: the corruption of context restoration (Chen et al., Medical Image Analysis 2019).

Chen et al., "Self-supervised learning for medical image analysis using image context restoration",
MedIA 58 (2019): select two small, non-overlapping patches of an image and swap their contents;
repeat ``T`` times; a network restores the original image (L2 loss). The intensity histogram of the
image is unchanged; only the spatial context is corrupted.

Implementation (batched, any device, 2D and 3D): the image is tiled with a grid of patch-sized cells
whose origin is shifted by a random offset per sample (so patches are not tied to fixed positions);
``2T`` distinct cells are drawn per sample without replacement and paired, so the swapped patches never
overlap by construction. The swap is expressed as a gather index over the flattened voxels, which is
an involution: applying the same gather to the corrupted image restores the original exactly
(:func:`apply_index`). Parameters (offsets, cells) are drawn on the CPU from an explicit generator;
the index is built on the data's device.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms._random import check_batch, randint_between, resolve_generator, sample_or_batch, strides


def patch_shape(spatial: Sequence[int], patch_size: Sequence[int] | None, patch_fraction: float) -> tuple[int, ...]:
    """Patch size per axis: ``patch_size`` if given, else ``max(1, int(dim * patch_fraction))``.

    Raises:
        ConfigError: a size that is not positive, does not match the number of axes, or exceeds the image.
    """
    if patch_size is not None:
        size = tuple(int(s) for s in patch_size)
        if len(size) != len(spatial):
            raise ConfigError(f"patch_size {list(size)} has {len(size)} axes, the images have {len(spatial)} ({list(spatial)})")
    else:
        if not 0 < patch_fraction <= 0.5:
            raise ConfigError(f"patch_fraction must be in (0, 0.5], got {patch_fraction}")
        size = tuple(max(1, int(d * patch_fraction + 1e-9)) for d in spatial)
    if any(s < 1 or s > d for s, d in zip(size, spatial)):
        raise ConfigError(f"patch size {list(size)} does not fit images of {list(spatial)}")
    return size


def sample_swap_index(
    generator: torch.Generator,
    batch: int,
    spatial: Sequence[int],
    patch: Sequence[int],
    swaps: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Gather index of ``swaps`` random swaps of non-overlapping patch pairs per sample.

    Args:
        generator: CPU generator for the parameters.
        batch: number of samples B.
        spatial: image shape (D axes).
        patch: patch size per axis.
        swaps: T, pairs swapped per sample (``2T`` distinct cells of the grid are used).
        device: where the index is built.

    Returns:
        int64 ``(B, N)`` with ``N = prod(spatial)``: voxel ``n`` of the corrupted sample takes the value
        of voxel ``index[b, n]`` of the original. The index is a permutation and its own inverse.

    Raises:
        ConfigError: ``swaps < 0`` or more than half the grid's cells.
    """
    spatial = tuple(int(s) for s in spatial)
    patch = tuple(int(p) for p in patch)
    n_voxels = math.prod(spatial)
    index = torch.arange(n_voxels, device=device, dtype=torch.int64).expand(batch, n_voxels).clone()
    if swaps < 0:
        raise ConfigError(f"patch swapping: swaps must be >= 0, got {swaps}")
    cells_per_axis = [d // p for d, p in zip(spatial, patch)]
    n_cells = math.prod(cells_per_axis)
    if 2 * swaps > n_cells:
        raise ConfigError(
            f"patch swapping: {swaps} swaps need {2 * swaps} non-overlapping patches of {list(patch)}, but images of "
            f"{list(spatial)} hold only {n_cells}; use fewer swaps or smaller patches"
        )
    if swaps == 0 or batch == 0:
        return index
    slack = torch.tensor([d - c * p for d, c, p in zip(spatial, cells_per_axis, patch)], dtype=torch.int64)
    offsets = randint_between(generator, torch.zeros(batch, len(spatial), dtype=torch.int64), slack.expand(batch, -1))
    cells = torch.rand(batch, n_cells, generator=generator).argsort(dim=1)[:, : 2 * swaps]  # (B, 2T) distinct
    coords = []
    rest = cells
    for c in reversed(cells_per_axis):  # row-major cell id -> per-axis cell coordinate
        coords.append(rest % c)
        rest = rest // c
    coords = torch.stack(coords[::-1], dim=-1)  # (B, 2T, D)
    corners = offsets[:, None, :] + coords * torch.tensor(patch, dtype=torch.int64)
    stride = torch.tensor(strides(spatial), dtype=torch.int64)
    flat_corner = (corners * stride).sum(-1).to(device)  # (B, 2T)
    within = torch.zeros((), dtype=torch.int64)
    for axis, p in enumerate(patch):  # flat offsets of the voxels of one patch
        within = within[..., None] + torch.arange(p, dtype=torch.int64) * int(stride[axis])
    within = within.reshape(-1).to(device)  # (P,)
    first = (flat_corner[:, :swaps, None] + within).reshape(batch, -1)
    second = (flat_corner[:, swaps:, None] + within).reshape(batch, -1)
    index.scatter_(1, first, second)
    index.scatter_(1, second, first)
    return index


def apply_index(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather voxels: ``out[b, c, n] = x[b, c, index[b, n]]`` over flattened spatial axes (same shape as ``x``)."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    return flat.gather(2, index[:, None, :].expand(b, c, -1)).reshape(x.shape)


@sample_or_batch("patch_swap")
def patch_swap(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    swaps: int = 10,
    patch_size: Sequence[int] | None = None,
    patch_fraction: float = 1 / 8,
    return_index: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Swap ``swaps`` random pairs of non-overlapping patches in every sample.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        swaps: T, patch pairs swapped per sample.
        patch_size: patch size per axis (voxels); default ``patch_fraction`` of each axis.
        patch_fraction: patch side as a fraction of the image side (1/8: 8x8x4 at 64x64x32).
        return_index: also return the ``(B, N)`` swap index (see :func:`sample_swap_index`).

    Returns:
        The corrupted batch (same shape, dtype, device), and the index if ``return_index``.
    """
    spatial = check_batch(x, "patch_swap")
    generator = resolve_generator(generator)
    patch = patch_shape(spatial, patch_size, patch_fraction)
    index = sample_swap_index(generator, x.shape[0], spatial, patch, int(swaps), x.device)
    out = apply_index(x, index)
    return (out, index) if return_index else out


class PatchShuffleRecipe:
    """``recipe(x, generator) -> (input, target)``: patch-swapped input, original target.

    Args:
        swaps, patch_size, patch_fraction: as :func:`patch_swap`.
        spatial_dims: 2 or 3: batches ``(B, C, *spatial)`` (and single samples) of that many spatial
            axes; None: 5D batches ``(B, C, X, Y, Z)`` only.
    """

    name = "patch_shuffling"
    OPTIONS = {"swaps": 10, "patch_size": None, "patch_fraction": 1 / 8}

    def __init__(self, swaps: int = 10, patch_size: Sequence[int] | None = None, patch_fraction: float = 1 / 8,
                 spatial_dims: int | None = None):
        if int(swaps) < 0:
            raise ConfigError(f"patch_shuffling: swaps must be >= 0, got {swaps}")
        self.swaps = int(swaps)
        self.patch_size = None if patch_size is None else tuple(int(s) for s in patch_size)
        self.patch_fraction = float(patch_fraction)
        self.spatial_dims = spatial_dims

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = patch_swap(x, generator, swaps=self.swaps, patch_size=self.patch_size, patch_fraction=self.patch_fraction,
                         spatial_dims=self.spatial_dims)
        return out, x.clone()
