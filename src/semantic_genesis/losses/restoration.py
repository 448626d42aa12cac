"""The self-restoration loss: mean squared error between the restored and the original image.

Models Genesis (Zhou et al., "Models Genesis", MedIA 2021; the official training script's
``nn.MSELoss`` on the sigmoid output) and Semantic Genesis (Haghighi et al., MICCAI 2020, the
restoration term ``L_rec``) train the decoder with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def restoration_loss(output: torch.Tensor, target: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Mean squared error of the restoration in float32.

    Args:
        output: network output ``(B, C, *spatial)``; probabilities in [0, 1] when the model ends with a
            sigmoid (``activation="sigmoid"``), logits when ``activation="none"`` (the sigmoid is then
            applied here, in float32).
        target: the untransformed images, same shape, in [0, 1].
        activation: ``"sigmoid"`` or ``"none"``, what the network already applied.

    Returns:
        Scalar float32 tensor.
    """
    with torch.autocast(device_type=output.device.type, enabled=False):
        out = output.float()
        if activation == "none":
            out = torch.sigmoid(out)
        return F.mse_loss(out, target.float())
