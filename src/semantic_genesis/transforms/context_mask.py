"""Region masking of context encoders (Pathak et al., CVPR 2016), in 3D.

Pathak, Krahenbuhl, Donahue, Darrell, Efros, "Context encoders: feature learning by inpainting",
CVPR 2016: regions of the image are dropped (set to the mean value) and the network must fill them in
from their context. Of the paper's region shapes (central block, random blocks, random regions), we
use random blocks: ``U{min_windows .. max_windows}`` axis-aligned boxes per sample with sides
``U{int(dim * lo) .. int(dim * hi)}`` per axis, drawn with the window sampler of
:mod:`semantic_genesis.transforms.inpaint`. The dropped region is the union of the boxes.

Fills: ``"mean"`` (the sample's mean intensity, the analogue of the paper's mean fill on [0, 1]
data), ``"zero"``, or ``"noise"`` (uniform per voxel, as Models Genesis in-painting).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms._random import check_batch, randint_between, resolve_generator, sample_or_batch
from semantic_genesis.transforms.inpaint import fill_values, paint_union, sample_windows

Fill = Literal["mean", "zero", "noise"]
FILLS = ("mean", "zero", "noise")


@sample_or_batch("context_mask")
def context_mask(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    min_windows: int = 1,
    max_windows: int = 3,
    size_fraction: Sequence[float] = (1 / 4, 1 / 2),
    margin: int = 0,
    fill: Fill = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop random boxes from every sample.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        min_windows, max_windows: the number of boxes per sample is uniform on this range.
        size_fraction: ``(lo, hi)``: box side per axis ``U{int(dim * lo) .. int(dim * hi)}``.
        margin: minimum distance of a box from the border (voxels; clamped when it does not fit).
        fill: value of dropped voxels, see the module doc.

    Returns:
        ``(input, mask)``: the masked batch (same shape, dtype, device) and bool ``(B, 1, *spatial)``,
        True exactly on the dropped voxels (where ``input`` holds the fill).

    Raises:
        ConfigError: bad counts, fractions or fill.
    """
    spatial = check_batch(x, "context_mask")
    if fill not in FILLS:
        raise ConfigError(f"inpainting: fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if not 0 <= int(min_windows) <= int(max_windows) or int(max_windows) < 1:
        raise ConfigError(f"inpainting: need 0 <= min_windows <= max_windows and max_windows >= 1, got {min_windows}, {max_windows}")
    lo, hi = (float(v) for v in size_fraction)
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"inpainting: size_fraction must satisfy 0 < lo <= hi <= 1, got {list(size_fraction)}")
    generator = resolve_generator(generator)
    batch = x.shape[0]
    max_windows = int(max_windows)
    counts = randint_between(
        generator, torch.full((batch,), int(min_windows), dtype=torch.int64), torch.full((batch,), max_windows, dtype=torch.int64)
    )
    low = torch.tensor([max(1, int(d * lo + 1e-9)) for d in spatial], dtype=torch.int64)
    high = torch.tensor([max(1, int(d * hi + 1e-9)) for d in spatial], dtype=torch.int64)
    corners, sizes = sample_windows(generator, batch, spatial, max_windows, low, high, int(margin))
    active = torch.arange(max_windows)[None, :] < counts[:, None]
    mask = paint_union(corners, sizes, active, spatial, x.device)
    if fill == "noise":
        values = fill_values(x, generator, "noise")
    elif fill == "zero":
        values = torch.zeros((), dtype=x.dtype, device=x.device)
    else:
        values = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return torch.where(mask, values, x), mask


class ContextInpaintRecipe:
    """``recipe(x, generator) -> (input, target)`` with the context-encoder masking (target = original).

    :meth:`sample` also returns the mask (for the masked-region loss). Arguments as :func:`context_mask`;
    ``spatial_dims`` (2 or 3) lets the recipe take 2D batches ``(B, C, H, W)`` (and single samples);
    None: 5D batches ``(B, C, X, Y, Z)`` only.
    """

    name = "inpainting"
    OPTIONS = {"min_windows": 1, "max_windows": 3, "size_fraction": (1 / 4, 1 / 2), "margin": 0, "fill": "mean"}

    def __init__(self, min_windows: int = 1, max_windows: int = 3, size_fraction: Sequence[float] = (1 / 4, 1 / 2),
                 margin: int = 0, fill: Fill = "mean", spatial_dims: int | None = None):
        self.kwargs = {"min_windows": int(min_windows), "max_windows": int(max_windows),
                       "size_fraction": tuple(float(v) for v in size_fraction), "margin": int(margin), "fill": fill}
        self.spatial_dims = spatial_dims
        # validate now rather than at the first batch
        dims = spatial_dims or 3
        context_mask(torch.zeros(1, 1, *(8,) * dims), torch.Generator().manual_seed(0), spatial_dims=dims,
                     **self.kwargs)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input, target, mask)``."""
        inputs, mask = context_mask(x, generator, spatial_dims=self.spatial_dims, **self.kwargs)
        return inputs, x.clone(), mask

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, target, _ = self.sample(x, generator)
        return inputs, target
