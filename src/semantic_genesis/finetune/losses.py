"""Fine-tuning losses (they take **logits**, so they are safe under mixed precision).

* ``bce``: binary cross-entropy with logits, optional ``pos_weight`` for class imbalance (NCC). The
  official Keras fine-tuning used ``binary_crossentropy`` on sigmoid outputs (reference §4.3).
* ``dice``: the official soft Dice loss ``1 - (2·Σ(y·p) + 1) / (Σy + Σp + 1)`` over the whole flattened
  batch (smoothing 1; reference §4.3), ``p = sigmoid(logits)``. Equal to MONAI
  ``DiceLoss(sigmoid=True, batch=True, smooth_nr=1, smooth_dr=1)`` for one channel.
* ``dice_bce``: ``dice + bce`` (the default for segmentation: the BCE term gives useful gradients
  while the Dice term is still flat at the start).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from semantic_genesis.errors import ConfigError

LOSSES = ("bce", "dice", "dice_bce")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Official Models Genesis Dice loss on ``(B, 1, ...)`` logits and a binary target of the same shape."""
    p = torch.sigmoid(logits.float()).reshape(-1)
    y = target.float().reshape(-1)
    return 1.0 - (2.0 * (p * y).sum() + smooth) / (y.sum() + p.sum() + smooth)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` vs ``target`` (same shape), positives weighted by ``pos_weight``."""
    weight = None
    if pos_weight is not None:
        weight = torch.as_tensor(float(pos_weight), dtype=torch.float32, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weight)


def build_loss(name: str, kind: str, pos_weight: float | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``fn(logits, target) -> scalar`` named ``name`` (``"auto"``: BCE / Dice+BCE by task kind)."""
    if name == "auto":
        name = "bce" if kind == "classification" else "dice_bce"
    if name not in LOSSES:
        raise ConfigError(f"finetune.loss: {name!r} is not one of auto, {', '.join(LOSSES)}")
    if kind == "classification" and name != "bce":
        raise ConfigError(f"finetune.loss: {name!r} is a segmentation loss; classification tasks use bce")
    if name == "bce":
        return lambda logits, target: bce_loss(logits, target, pos_weight)
    if name == "dice":
        return soft_dice_loss
    return lambda logits, target: soft_dice_loss(logits, target) + bce_loss(logits, target)
