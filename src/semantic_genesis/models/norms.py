"""Normalisation layers for the Genesis networks, chosen by name.

``"batch_stats"`` reproduces the official Models Genesis ``ContBatchNorm3d`` (``unet3d.py``):
it **always normalises with the statistics of the current batch**, also in ``eval()`` mode, while still
updating the running mean/variance (momentum 0.1) on every forward pass and never incrementing
``num_batches_tracked``. Its buffers are those of a standard batch norm, so state dicts carry the same
keys as the official checkpoints (``bn1.running_mean``, ``bn1.running_var``, ``bn1.num_batches_tracked``).
A consequence: outputs depend on the batch composition and a batch of one volume is
normalised by its own statistics.

The standard alternatives:

* ``"batch"``: ``nn.BatchNorm{2,3}d`` (running statistics in eval mode); same state-dict keys.
* ``"instance"``: ``nn.InstanceNorm{2,3}d(affine=True)``; keys ``weight`` and ``bias`` only.
* ``"group"``: ``nn.GroupNorm`` with up to 8 groups (the largest divisor of the channel count that is
  at most 8); keys ``weight`` and ``bias`` only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from semantic_genesis.errors import ConfigError

NORMS = ("batch_stats", "batch", "instance", "group")


class ContBatchNorm(_BatchNorm):
    """Batch norm that always uses batch statistics (the official ``ContBatchNorm3d``), 2D or 3D.

    Args:
        num_features: channels C of the input ``(B, C, *spatial)``.
        spatial_dims: 2 or 3; the input must then have 4 or 5 dimensions.
        eps: added to the variance (official 1e-5).
        momentum: running-statistics momentum (official 0.1).
    """

    def __init__(self, num_features: int, spatial_dims: int = 3, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)
        self.spatial_dims = spatial_dims

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input (B, C, {'X, Y, Z' if self.spatial_dims == 3 else 'H, W'}),"
                f" got shape {tuple(input.shape)}"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        # training=True: normalise with batch statistics and update the running buffers, whatever
        # self.training says; num_batches_tracked is deliberately left alone, as in the official code.
        return F.batch_norm(
            input, self.running_mean, self.running_var, self.weight, self.bias, True, self.momentum, self.eps
        )


def _groups_for(channels: int, max_groups: int = 8) -> int:
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


def make_norm(kind: str, channels: int, spatial_dims: int = 3) -> nn.Module:
    """Build the normalisation layer ``kind`` (one of :data:`NORMS`) for ``channels`` channels.

    Raises:
        ConfigError: unknown ``kind`` or ``spatial_dims`` not 2 or 3.
    """
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if kind == "batch_stats":
        return ContBatchNorm(channels, spatial_dims=spatial_dims)
    if kind == "batch":
        return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d)(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(_groups_for(channels), channels)
    raise ConfigError(f"unknown norm {kind!r}; expected one of {', '.join(NORMS)}")


def scaled_channels(base: int, width: float) -> int:
    """``base`` channels scaled by ``width`` (at least 1), e.g. 32 x 0.25 = 8."""
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ConfigError(f"width must be a positive number, got {width!r}")
    return max(1, int(round(base * width)))
