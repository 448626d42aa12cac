"""Random flips of input and target together (Models Genesis ``data_augmentation``).

Reference process, per cube: ``cnt = 3; while random() < 0.4 and cnt > 0:`` flip both the input and the
target along ``random.choice([0, 1, 2])``, then ``cnt -= 1``. On a ``(1, 64, 64, 32)`` cube axis 0 is the
*channel* axis, so one third of the flips do nothing and the depth axis is never flipped (a bug of the
official code; its ``competition/`` variant uses axes -1, -2, -3). Here the axis is drawn from **all
spatial axes** by default (``axes="spatial"``); ``axes="official"`` reproduces the reference exactly
(choices: no-op, X, Y).

Only the parity of the number of flips along each axis matters, so each sample is flipped at most once
per axis.
"""

from __future__ import annotations

from typing import Literal

import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms._random import check_batch, resolve_generator, sample_or_batch, uniform

FlipAxes = Literal["spatial", "official"]


def sample_flip_parity(
    generator: torch.Generator, batch: int, ndim: int, prob: float = 0.4, max_flips: int = 3, axes: FlipAxes = "spatial"
) -> torch.Tensor:
    """``(batch, ndim)`` bool on the generator's device: True where a sample ends up flipped along a
    spatial axis."""
    if axes not in ("spatial", "official"):
        raise ConfigError(f"flip: axes must be 'spatial' or 'official', got {axes!r}")
    go = uniform(generator, batch, max_flips) < prob
    done = torch.cumprod(go.to(torch.int64), dim=1).bool()  # flip k happens iff draws 0..k all succeeded
    if axes == "spatial":
        choice = torch.floor(uniform(generator, batch, max_flips) * ndim).to(torch.int64)
        # spatial axis index 0..ndim-1
    else:
        # reference: choice among (channel, first, second) axes; the channel flip is a no-op
        choice = torch.floor(uniform(generator, batch, max_flips) * 3).to(torch.int64) - 1
    parity = torch.zeros(batch, ndim, dtype=torch.int64, device=generator.device)
    for axis in range(ndim):
        parity[:, axis] = ((choice == axis) & done).sum(dim=1) % 2
    return parity.bool()


def apply_flips(x: torch.Tensor, parity: torch.Tensor) -> torch.Tensor:
    """Flip sample ``b`` of ``x`` along spatial axis ``a`` where ``parity[b, a]`` (returns a new tensor)."""
    out = x.clone()
    for axis in range(parity.shape[1]):
        rows = torch.nonzero(parity[:, axis]).flatten()
        if rows.numel() == 0:
            continue
        rows = rows.to(x.device)
        out[rows] = out[rows].flip(axis + 2)
    return out


def flip_where(x: torch.Tensor, parity: torch.Tensor) -> torch.Tensor:
    """:func:`apply_flips` with ``parity`` on ``x``'s device: each axis flips the whole batch and keeps
    the flipped rows with ``torch.where`` (no host synchronisation; the device path). A new tensor."""
    out = x
    view = (x.shape[0],) + (1,) * (x.dim() - 1)
    for axis in range(parity.shape[1]):
        out = torch.where(parity[:, axis].view(view), out.flip(axis + 2), out)
    return out.clone() if out is x else out


@sample_or_batch("flip", paired=("target",))
def flip(
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    prob: float = 0.4,
    max_flips: int = 3,
    axes: FlipAxes = "spatial",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flip each sample (and its target identically) along random spatial axes.

    Args:
        x: ``(B, C, X, Y, Z)`` float batch (2D and single samples: ``spatial_dims``), any device. Not modified.
        target: optional tensor with the same batch and spatial shape, flipped identically.
        generator: CPU generator (None: seeded from torch's global RNG).
        spatial_dims: 3 or 2: ``x`` may also be one sample ``(C, *spatial)`` (transformed as ``x[None]``,
            returned without the batch axis); needed for 2D batches. None: ``x`` must be a 5D batch.
        prob: probability of each further flip (reference 0.4).
        max_flips: at most this many flips (reference 3).
        axes: ``"spatial"`` (all spatial axes) or ``"official"`` (the reference's choice, see above).

    Returns:
        ``(flipped_x, flipped_target)`` (the second is None when no target was given).
    """
    spatial = check_batch(x, "flip")
    if target is not None and (target.shape[0] != x.shape[0] or tuple(target.shape[2:]) != spatial):
        raise DataError(f"flip: target shape {tuple(target.shape)} does not match input {tuple(x.shape)}")
    generator = resolve_generator(generator)
    parity = sample_flip_parity(generator, x.shape[0], len(spatial), prob, max_flips, axes)
    return apply_flips(x, parity), (apply_flips(target, parity) if target is not None else None)
