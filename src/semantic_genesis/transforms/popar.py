"""The POPAR branch of PEAC: patch order prediction and appearance recovery on one view.

PEAC (Zhou et al., BMVC 2023) trains, next to its consistency losses, the POPAR pretext task (Pang et
al., "POPAR: Patch Order Prediction and Appearance Recovery", MICCAI DART 2022) on its first view.
Per sample (official ``utils/build_loader_global_local.py``), with probability 1/2 each:

* **appearance**: the view is corrupted by the Models Genesis transforms (local pixel shuffling always,
  a non-linear intensity curve with p 0.9, out-painting (p 0.8) or in-painting with p 0.9; Zhou et al.,
  MedIA 2021), its patches stay in order (``perm = arange(k * k)``);
* **order**: the view is cut into its ``k x k`` grid cells and they are permuted by a random
  ``perm``: position ``j`` receives the original patch ``perm[j]`` (:func:`shuffle_patches`).

The network predicts ``perm[j]`` at every token ``j`` (a ``k * k``-way classification) and restores the
clean, un-permuted view. Only the un-shuffled samples take part in PEAC's local consistency loss (the
tokens of a shuffled view have moved).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semantic_genesis.errors import DataError


def _check_grid(x: torch.Tensor, cell: int) -> int:
    if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % cell:
        raise DataError(f"POPAR: expected square views (B, C, k * {cell}, k * {cell}), got {tuple(x.shape)}")
    return x.shape[-1] // cell


def to_patches(x: torch.Tensor, cell: int) -> torch.Tensor:
    """``(B, C, k * g, k * g)`` -> ``(B, k * k, C, g, g)``, patches in row-major grid order."""
    k = _check_grid(x, cell)
    b, c = x.shape[:2]
    return x.reshape(b, c, k, cell, k, cell).permute(0, 2, 4, 1, 3, 5).reshape(b, k * k, c, cell, cell)


def from_patches(patches: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_patches`: ``(B, k * k, C, g, g)`` -> ``(B, C, k * g, k * g)``."""
    b, n, c, g, _ = patches.shape
    k = int(round(n ** 0.5))
    if k * k != n:
        raise DataError(f"POPAR: {n} patches do not form a square grid")
    return patches.reshape(b, k, k, c, g, g).permute(0, 3, 1, 4, 2, 5).reshape(b, c, k * g, k * g)


def shuffle_patches(x: torch.Tensor, perm: torch.Tensor, cell: int) -> torch.Tensor:
    """Permute the grid cells of each view: position ``j`` of sample ``i`` receives patch ``perm[i, j]``.

    Args:
        x: ``(B, C, k * g, k * g)``.
        perm: int64 ``(B, k * k)``, a permutation of ``0 .. k * k - 1`` per row (any device).
        cell: ``g``.

    Returns:
        A new tensor shaped like ``x``; ``shuffle_patches(y, argsort(perm), g)`` undoes it.
    """
    patches = to_patches(x, cell)
    if perm.shape != patches.shape[:2]:
        raise DataError(f"POPAR: perm must be (B, k * k) = {tuple(patches.shape[:2])}, got {tuple(perm.shape)}")
    index = perm.to(x.device)[:, :, None, None, None].expand_as(patches)
    return from_patches(torch.gather(patches, 1, index))


@dataclass
class PoparBatch:
    """The POPAR input of a batch of first views.

    Attributes:
        input: ``(B, C, H, W)`` what the student sees (corrupted or shuffled view 1).
        target: ``(B, C, H, W)`` the clean, un-permuted view 1 (restoration target).
        perm: int64 ``(B, k * k)`` order targets: the original patch at each position (identity for
            appearance samples), on the views' device.
        shuffled: bool ``(B,)``, ``True`` for order samples, on the views' device.
    """

    input: torch.Tensor
    target: torch.Tensor
    perm: torch.Tensor
    shuffled: torch.Tensor


def popar_corrupt(view: torch.Tensor, cell: int, appearance, generator: torch.Generator,
                  shuffle_prob: float = 0.5) -> PoparBatch:
    """Apply PEAC's per-sample POPAR corruption to a batch of first views.

    Args:
        view: ``(B, C, k * g, k * g)`` clean views in [0, 1].
        cell: ``g``.
        appearance: a transform preset ``preset(x, generator) -> (input, target)`` for the appearance
            samples (PEAC: the Models Genesis transforms without flips, local shuffling always).
        generator: CPU generator for every draw.
        shuffle_prob: probability that a sample is an order sample (official 0.5).
    """
    k = _check_grid(view, cell)
    b, n = view.shape[0], k * k
    shuffled = torch.rand(b, generator=generator) < shuffle_prob
    perm = torch.arange(n).repeat(b, 1)
    for i in torch.nonzero(shuffled).flatten().tolist():
        perm[i] = torch.randperm(n, generator=generator)
    out = view.clone()
    plain = torch.nonzero(~shuffled).flatten()
    if len(plain):
        corrupted, _ = appearance(view[plain.to(view.device)], generator=generator)
        out[plain.to(view.device)] = corrupted.to(view.dtype)
    moved = torch.nonzero(shuffled).flatten().to(view.device)
    if len(moved):
        out[moved] = shuffle_patches(view[moved], perm[shuffled], cell)
    return PoparBatch(out, view, perm.to(view.device), shuffled.to(view.device))
