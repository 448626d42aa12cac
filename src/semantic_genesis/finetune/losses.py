"""Which loss fine-tunes which target task (the losses themselves are in :mod:`semantic_genesis.losses`).

* ``bce``: binary cross-entropy with logits, optional ``pos_weight`` for class imbalance (NCC; one per label for
  multi-label DXC, each label's own loss);
* ``dice``: the official Models Genesis soft Dice loss (computed by MONAI ``DiceLoss``);
* ``dice_bce``: ``dice + bce`` (the default for segmentation).

All take **logits**, so they are safe under mixed precision.
"""

from __future__ import annotations

from typing import Callable

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.losses import bce_loss, dice_bce_loss, soft_dice_loss

LOSSES = ("bce", "dice", "dice_bce")


def build_loss(name: str, kind: str, pos_weight: float | list[float] | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``fn(logits, target) -> scalar`` named ``name`` (``"auto"``: BCE / Dice+BCE by task kind).

    Raises:
        ConfigError: unknown name, or a segmentation loss for a classification task.
    """
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
    return dice_bce_loss
