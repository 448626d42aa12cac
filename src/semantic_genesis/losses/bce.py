"""Binary cross-entropy on logits, with an optional weight for the positives (class imbalance).

Fine-tuning a classification target (e.g. lung nodule false-positive reduction, where negatives
outnumber positives) weights the positives by ``pos_weight`` (negatives / positives of the training
split). The official Keras fine-tuning used ``binary_crossentropy`` on sigmoid outputs; on logits it
is the same loss, stable under mixed precision.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | Sequence[float] | None = None) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` vs ``target`` (same shape), positives weighted by ``pos_weight``
    (one number, or one per output channel for multi-label ``(B, C)`` logits)."""
    weight = None
    if pos_weight is not None:
        weight = torch.as_tensor(pos_weight if isinstance(pos_weight, (list, tuple)) else float(pos_weight), dtype=torch.float32, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weight)
