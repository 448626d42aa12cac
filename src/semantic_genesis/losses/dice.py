"""The soft Dice loss of Models Genesis fine-tuning, and Dice + BCE.

The official Models Genesis segmentation loss (the Keras ``dice_coef_loss`` of the official
repository): ``1 - (2 * sum(y * p) + 1) / (sum(y) + sum(p) + 1)`` over the whole flattened batch
(smoothing 1), with ``p = sigmoid(logits)``. Equal to MONAI ``DiceLoss(sigmoid=True, batch=True,
smooth_nr=1, smooth_dr=1)`` for one channel. :func:`dice_bce_loss` adds the binary cross-entropy,
whose gradients help while the Dice term is still flat at the start.
"""

from __future__ import annotations

import torch

from semantic_genesis.losses.bce import bce_loss


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Official Models Genesis Dice loss on ``(B, 1, *spatial)`` logits and a binary target of the same shape."""
    p = torch.sigmoid(logits.float()).reshape(-1)
    y = target.float().reshape(-1)
    return 1.0 - (2.0 * (p * y).sum() + smooth) / (y.sum() + p.sum() + smooth)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``soft_dice_loss + bce_loss`` (unweighted BCE), the default segmentation fine-tuning loss."""
    return soft_dice_loss(logits, target) + bce_loss(logits, target)
