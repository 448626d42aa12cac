"""The masked in-painting loss of the context encoder (Pathak et al., CVPR 2016), in 3D.

Pathak, Krahenbuhl, Donahue, Darrell, Efros, "Context encoders: feature learning by inpainting",
CVPR 2016: the reconstruction term weights the dropped region heavily and the context lightly, so
the network is scored on what it fills in. Here ``sum(w * (output - target)^2) / sum(w)`` with
``w = inside`` (0.99 by default in the in-painting method) on dropped voxels and ``outside`` (0.01)
elsewhere; ``outside=0`` scores the dropped region only, equal weights give the plain MSE.
"""

from __future__ import annotations

import torch


def masked_mse(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, inside: float, outside: float) -> torch.Tensor:
    """Weighted mean squared error ``sum(w * (output - target)^2) / sum(w)`` in float32.

    Args:
        output: ``(B, C, *spatial)`` in [0, 1] (after the sigmoid).
        target: same shape, in [0, 1].
        mask: bool ``(B, 1, *spatial)`` (broadcast over channels), True on dropped voxels.
        inside, outside: weights of dropped and kept voxels (>= 0, not both 0).

    Returns:
        Scalar float32 tensor.
    """
    with torch.autocast(device_type=output.device.type, enabled=False):
        err = (output.float() - target.float()) ** 2
        weight = torch.where(mask, inside, outside).to(err.dtype).expand_as(err)
        return (weight * err).sum() / weight.sum().clamp_min(1e-12)
