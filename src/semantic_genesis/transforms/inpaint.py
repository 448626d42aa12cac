"""In-painting (Models Genesis, Zhou et al. 2019/2021, Sec. 3.1 "in-painting").

Reference process (``image_in_painting``, current Models Genesis code): ``cnt = 5; while cnt > 0 and
random() < 0.95:`` draw a window of size ``U{dim // 6 .. dim // 3}`` per axis (10..21, 10..21, 5..10 at
64x64x32) at a corner ``U{3 .. dim - size - 3}`` and fill it with uniform noise. So the number of windows
is 0 with probability 0.05, k with ``0.95**k * 0.05`` and 5 with ``0.95**5 = 0.774``. The Semantic Genesis
PyTorch code paints exactly one window (``max_windows=1, continue_prob=1``); its Keras code fills with one
random constant (``fill="constant"``).

All windows of the batch are drawn at once; the painted region is the union of the boxes. On a
float32/float64 CPU batch a compiled kernel paints the same boxes (same draws) in place, one pass per
sample; its uniform noise comes from a stream seeded by the same single draw that seeds the torch
path's noise generator, so the painted region and a constant fill are identical on both paths and the
noise is equally distributed (float32 noise on the grid ``k / 2**24``, like ``torch.rand``).
"""

from __future__ import annotations

from typing import Literal

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._draws import PaintDraw
from semantic_genesis.transforms._plan import KernelPlan, run_plan
from semantic_genesis.transforms._random import (
    box_mask,
    check_batch,
    device_constant,
    device_generator,
    draw_seed,
    geometric_counts,
    randint_between,
    resolve_generator,
    sample_or_batch,
    uniform,
)

Fill = Literal["noise", "constant"]


def sample_windows(
    generator: torch.Generator,
    batch: int,
    spatial: tuple[int, ...],
    windows: int,
    size_low: torch.Tensor,
    size_high: torch.Tensor,
    margin: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(batch, windows)`` boxes with sizes ``U{size_low .. size_high}`` per axis and corners
    ``U{margin .. dim - size - margin}`` (clamped to the volume when the margin does not fit).

    Returns:
        ``(corners, sizes)``, each ``(batch, windows, D)`` int64 on the generator's device (``size_low``
        and ``size_high`` are on it too).
    """
    device = generator.device
    dims = device_constant(spatial, device)
    shape = (batch, windows, len(spatial))
    sizes = randint_between(generator, size_low.expand(shape), size_high.expand(shape))
    sizes = torch.minimum(torch.clamp(sizes, min=1), dims)
    low = torch.full(shape, margin, dtype=torch.int64, device=device)
    high = dims - sizes - margin
    low = torch.minimum(low, torch.clamp(dims - sizes, min=0))
    corners = randint_between(generator, low, torch.maximum(high, low))
    return corners, sizes


def paint_union(
    corners: torch.Tensor, sizes: torch.Tensor, active: torch.Tensor, spatial: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Union of the active boxes per sample: ``(B, 1, *spatial)`` bool on ``device``."""
    batch, windows = active.shape
    mask = torch.zeros((batch,) + spatial, dtype=torch.bool, device=device)
    active_dev = active.to(device).view((batch, windows) + (1,) * len(spatial))
    for w in range(windows):
        mask |= box_mask(corners[:, w], sizes[:, w], spatial, device) & active_dev[:, w]
    return mask.unsqueeze(1)


def fill_values(
    x: torch.Tensor, generator: torch.Generator, fill: Fill
) -> torch.Tensor:
    """The fill of painted voxels: uniform noise in [0, 1) per voxel, or one uniform constant per sample."""
    if fill == "noise":
        dev_gen = device_generator(generator, x.device)
        return torch.rand(x.shape, generator=dev_gen, device=x.device, dtype=x.dtype)
    constant = uniform(generator, x.shape[0]).to(device=x.device, dtype=x.dtype)
    return constant.view((x.shape[0],) + (1,) * (x.dim() - 1)).expand(x.shape)


def _check_fill(fill: str, name: str) -> None:
    if fill not in ("noise", "constant"):
        raise ConfigError(f"{name}: fill must be 'noise' or 'constant', got {fill!r}")


@sample_or_batch("inpaint")
def inpaint(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    max_windows: int = 5,
    continue_prob: float = 0.95,
    size_fraction: tuple[float, float] = (1 / 6, 1 / 3),
    margin: int = 3,
    fill: Fill = "noise",
) -> torch.Tensor:
    """Replace up to ``max_windows`` random boxes of every sample with noise (or a constant).

    Args:
        x: ``(B, C, X, Y, Z)`` float batch in [0, 1] (2D and single samples: ``spatial_dims``), any device. Not modified.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        max_windows: at most this many windows (reference: 5; Semantic Genesis PyTorch: 1).
        continue_prob: each window (including the first) is drawn with this probability while the
            previous one was (reference: 0.95; 1.0 gives exactly ``max_windows``).
        size_fraction: window size per axis is ``U{int(dim * lo) .. int(dim * hi)}``
            (``dim // 6 .. dim // 3`` by default).
        margin: minimum distance of a window from the border, voxels.
        fill: ``"noise"`` (uniform per voxel, as the current reference) or ``"constant"`` (one uniform
            value per sample, as the Semantic Genesis Keras code).

    Returns:
        A new batch of the same shape, dtype and device.
    """
    spatial = check_batch(x, "inpaint")
    _check_fill(fill, "inpaint")
    if max_windows < 0:
        raise ConfigError(f"inpaint: max_windows must be >= 0, got {max_windows}")
    generator = resolve_generator(generator)
    batch = x.shape[0]
    if batch == 0 or max_windows == 0:
        return x.clone()
    if _backend.device_draws(x):
        return paint_on_device(x, generator, max_windows, continue_prob, 0, size_fraction, margin, fill, inside=True)
    counts = geometric_counts(generator, batch, max_windows, continue_prob)
    return _paint(x, generator, spatial, counts, max_windows, size_fraction, margin, fill, inside=True)


def paint_on_device(
    x: torch.Tensor, generator: torch.Generator, max_windows: int, continue_prob: float, first: int,
    size_fraction: tuple[float, float], margin: int, fill: Fill, inside: bool,
) -> torch.Tensor:
    """In- (``inside``) or out-painting of every sample with the draws on ``x``'s device (the device
    path); ``generator`` is the caller's CPU generator, which seeds the device's."""
    device_gen = device_generator(generator, x.device)
    spatial = tuple(int(s) for s in x.shape[2:])
    region = paint_region_on_device(device_gen, x.shape[0], spatial, max_windows, continue_prob, first,
                                    size_fraction, margin, size_from_end=not inside)
    values = paint_fill_on_device(x, device_gen, fill)
    return torch.where(region if inside else ~region, values, x)


def _window_bounds(
    spatial: tuple[int, ...], size_fraction: tuple[float, float], size_from_end: bool,
    device: torch.device = torch.device("cpu"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis window size range ``(low, high)``, inclusive (int64 on ``device``, cached there)."""
    # The small epsilon makes e.g. 64 * (1/3) floor to 21 exactly like the reference's 64 // 3.
    low = [int(d * size_fraction[0] + 1e-9) for d in spatial]
    high = [int(d * size_fraction[1] + 1e-9) for d in spatial]
    if size_from_end:  # out-painting: size = dim - U{lo .. hi}
        low, high = [d - h for d, h in zip(spatial, high)], [d - lo for d, lo in zip(spatial, low)]
    return device_constant(tuple(low), device), device_constant(tuple(high), device)


def draw_paint(
    dst: torch.Tensor,
    count: int,
    generator: torch.Generator,
    counts: torch.Tensor,
    max_windows: int,
    size_fraction: tuple[float, float],
    margin: int,
    fill: Fill,
    size_from_end: bool,
) -> PaintDraw:
    """Draw the boxes and fill of ``count`` samples, in the order :func:`_paint` draws them."""
    spatial = tuple(int(s) for s in dst.shape[2:])
    low, high = _window_bounds(spatial, size_fraction, size_from_end)
    corners, sizes = sample_windows(generator, count, spatial, max_windows, low, high, margin)
    if fill == "noise":
        seed, constants = draw_seed(generator), torch.zeros(count, dtype=dst.dtype)
    else:
        seed, constants = 0, uniform(generator, count).to(dst.dtype)
    return PaintDraw(corners, sizes, counts, fill, seed, constants)


def paint_region_on_device(
    generator: torch.Generator,
    batch: int,
    spatial: tuple[int, ...],
    max_windows: int,
    continue_prob: float,
    first: int,
    size_fraction: tuple[float, float],
    margin: int,
    size_from_end: bool,
) -> torch.Tensor:
    """The union of ``first + geometric`` random boxes per sample, drawn on the generator's device (the
    device path): ``(B, 1, *spatial)`` bool. In-painting: ``first=0``, up to ``max_windows`` boxes;
    out-painting: ``first=1`` and ``max_windows - 1`` further boxes, sizes from the end."""
    device = generator.device
    counts = first + geometric_counts(generator, batch, max_windows - first, continue_prob)
    low, high = _window_bounds(spatial, size_fraction, size_from_end, device)
    corners, sizes = sample_windows(generator, batch, spatial, max_windows, low, high, margin)
    active = torch.arange(max_windows, device=device)[None, :] < counts[:, None]
    # the union of all boxes at once: (B, W, *spatial) memberships, a handful of operations
    batch_windows = (batch, max_windows)
    inside = active.view(batch_windows + (1,) * len(spatial))
    ends = corners + sizes
    for axis, dim in enumerate(spatial):
        coords = torch.arange(dim, device=device)
        along = (coords >= corners[..., axis, None]) & (coords < ends[..., axis, None])
        view = [1] * len(spatial)
        view[axis] = dim
        inside = inside & along.view(batch_windows + tuple(view))
    return inside.any(dim=1, keepdim=True)


def paint_fill_on_device(x: torch.Tensor, generator: torch.Generator, fill: Fill) -> torch.Tensor:
    """:func:`fill_values` from a generator on ``x``'s device: noise per voxel or one constant per sample."""
    if fill == "noise":
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    constant = uniform(generator, x.shape[0]).to(x.dtype)
    return constant.view((x.shape[0],) + (1,) * (x.dim() - 1)).expand(x.shape)


def _paint(
    x: torch.Tensor,
    generator: torch.Generator,
    spatial: tuple[int, ...],
    counts: torch.Tensor,
    max_windows: int,
    size_fraction: tuple[float, float],
    margin: int,
    fill: Fill,
    inside: bool,
    size_from_end: bool = False,
) -> torch.Tensor:
    """Shared body of in- and out-painting: fill inside (or outside) the union of the active windows."""
    if _backend.kernel_for(x) is not None:
        draw = draw_paint(x, x.shape[0], generator, counts, max_windows, size_fraction, margin, fill, size_from_end)
        stage = {"inpaint" if inside else "outpaint": (torch.arange(x.shape[0]), draw)}
        return run_plan(x, KernelPlan.for_batch(x, **stage))[0]
    low, high = _window_bounds(spatial, size_fraction, size_from_end)
    corners, sizes = sample_windows(generator, x.shape[0], spatial, max_windows, low, high, margin)
    active = torch.arange(max_windows)[None, :] < counts[:, None]
    mask = paint_union(corners, sizes, active, spatial, x.device)
    values = fill_values(x, generator, fill)
    if inside:
        return torch.where(mask, values, x)
    return torch.where(mask, x, values)
