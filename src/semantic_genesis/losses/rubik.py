"""The loss of the Rubik's cube heads (Zhuang et al., MICCAI 2019).

Zhuang, Li, Hu, Ma, Zheng, "Self-supervised feature learning for 3D medical images by playing a
Rubik's cube", MICCAI 2019: the network predicts which of P permutations scrambled the 2x2x2
sub-cubes (P-way classification) and, per grid position, whether the sub-cube was rotated by 180
degrees (8 binary flags). Loss = ``CE(permutation logits, index) + rotation_weight * BCE(rotation
logits, flags)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class RubikLoss(NamedTuple):
    """``total`` (to minimise) and its two terms ``ce`` (permutation) and ``bce`` (rotations)."""

    total: torch.Tensor
    ce: torch.Tensor
    bce: torch.Tensor


def rubik_loss(
    permutation_logits: torch.Tensor,
    rotation_logits: torch.Tensor,
    permutation: torch.Tensor,
    rotations: torch.Tensor,
    rotation_weight: float = 1.0,
) -> RubikLoss:
    """The Rubik's cube loss in float32.

    Args:
        permutation_logits: ``(B, P)`` logits.
        rotation_logits: ``(B, 8)`` logits, one per grid position.
        permutation: ``(B,)`` int64 permutation indices in ``[0, P)``.
        rotations: ``(B, 8)`` float flags in {0, 1} (1 = rotated).
        rotation_weight: weight of the rotation term (>= 0).

    Returns:
        :class:`RubikLoss` of scalar float32 tensors.
    """
    with torch.autocast(device_type=permutation_logits.device.type, enabled=False):
        ce = F.cross_entropy(permutation_logits.float(), permutation)
        bce = F.binary_cross_entropy_with_logits(rotation_logits.float(), rotations)
        return RubikLoss(ce + float(rotation_weight) * bce, ce, bce)
