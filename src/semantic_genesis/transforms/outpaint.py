"""Out-painting (Models Genesis, Zhou et al. 2019/2021, Sec. 3.1 "out-painting").

Reference process (``image_out_painting``): the whole cube is replaced by uniform noise, then the
original is pasted back inside one window plus ``cnt = 4; while cnt > 0 and random() < 0.95`` more
windows (1..5 in total). Each window has size ``dim - U{3 * dim // 7 .. 4 * dim // 7}`` per axis (28..37,
28..37, 14..19 at 64x64x32) and corner ``U{3 .. dim - size - 3}``. About 35% of the voxels keep their
value. The Semantic Genesis PyTorch code keeps exactly one window (``max_extra_windows=0``); its Keras
code uses one constant background (``fill="constant"``).
"""

from __future__ import annotations

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms._random import check_batch, geometric_counts, resolve_generator, sample_or_batch
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms.inpaint import Fill, _check_fill, _paint, paint_on_device


@sample_or_batch("outpaint")
def outpaint(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    max_extra_windows: int = 4,
    continue_prob: float = 0.95,
    size_fraction: tuple[float, float] = (3 / 7, 4 / 7),
    margin: int = 3,
    fill: Fill = "noise",
) -> torch.Tensor:
    """Keep every sample only inside 1 + up to ``max_extra_windows`` random boxes; noise elsewhere.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        max_extra_windows: windows after the first (reference: 4; Semantic Genesis PyTorch: 0).
        continue_prob: probability of each further window while the previous one was drawn (0.95).
        size_fraction: window size per axis is ``dim - U{int(dim * lo) .. int(dim * hi)}``.
        margin: minimum distance of a window from the border, voxels.
        fill: background, ``"noise"`` (uniform per voxel) or ``"constant"`` (one value per sample).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    spatial = check_batch(x, "outpaint")
    _check_fill(fill, "outpaint")
    if max_extra_windows < 0:
        raise ConfigError(f"outpaint: max_extra_windows must be >= 0, got {max_extra_windows}")
    generator = resolve_generator(generator)
    batch = x.shape[0]
    if batch == 0:
        return x.clone()
    if _backend.device_draws(x):
        return paint_on_device(x, generator, 1 + max_extra_windows, continue_prob, 1, size_fraction, margin, fill,
                               inside=False)
    counts = 1 + geometric_counts(generator, batch, max_extra_windows, continue_prob)
    return _paint(
        x, generator, spatial, counts, 1 + max_extra_windows, size_fraction, margin, fill,
        inside=False, size_from_end=True,
    )
