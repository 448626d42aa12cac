"""The Semantic Genesis self-classification loss: cross-entropy of pattern logits.

Haghighi et al., "Learning Semantics-enriched Representation via Self-discovery, Self-classification,
and Self-restoration", MICCAI 2020: the classification term ``L_cls`` over the C discovered pattern
classes. Computed on **logits** (``log_softmax`` inside), where the official code took the ``log`` of a
softmax output, which is unstable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in float32.

    Args:
        logits: ``(B, C)`` class logits (no softmax).
        labels: ``(B,)`` int64 class indices in ``[0, C)``.

    Returns:
        Scalar float32 tensor.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.cross_entropy(logits.float(), labels)
