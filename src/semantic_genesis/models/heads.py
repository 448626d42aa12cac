"""Classification heads on the U-Net bottleneck.

:class:`ClassificationHead` is the Semantic Genesis PyTorch head (the official ``YNet3D``'s ``clc_out``;
Haghighi et al., "Learning Semantics-enriched Representation via Self-discovery, Self-classification, and
Self-restoration", MICCAI 2020): Conv 512->1024 (k3, p1) -> batch norm -> ReLU -> global average
pooling -> Linear 1024->C. It returns **logits**; the official code applied a softmax and then
``log`` + ``CrossEntropyLoss``, which is unstable, so the softmax belongs in the loss here.
Submodule names ``conv1``, ``bn1``, ``fc1`` match the official ``clc_out.*`` keys.

:class:`LinearHead` and :class:`MLPHead` are the fine-tuning heads of the Models Genesis README
(GAP -> Linear(512, C), and GAP -> Linear(512, 1024) -> ReLU -> Linear(1024, C)).
"""

from __future__ import annotations

import torch
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.norms import make_norm


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` -> ``(B, C)`` mean over all spatial positions."""
    return x.flatten(2).mean(dim=2)


class ClassificationHead(nn.Module):
    """Semantic Genesis head: ``(B, in_channels, *spatial)`` bottleneck -> ``(B, num_classes)`` logits.

    Args:
        in_channels: bottleneck channels (512 at width 1).
        num_classes: C (44 in the paper).
        hidden: channels of the 3x3(x3) conv (1024 officially).
        norm: normalisation kind (``"batch_stats"`` = official ContBatchNorm3d).
        spatial_dims: 3 or 2.
    """

    def __init__(
        self, in_channels: int = 512, num_classes: int = 44, hidden: int = 1024, norm: str = "batch_stats",
        spatial_dims: int = 3,
    ):
        super().__init__()
        if int(num_classes) < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes!r}")
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.conv1 = conv(in_channels, hidden, kernel_size=3, padding=1)
        self.bn1 = make_norm(norm, hidden, spatial_dims)
        self.activation = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(hidden, num_classes)
        self.num_classes = int(num_classes)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.fc1(_global_pool(self.activation(self.bn1(self.conv1(bottleneck)))))


class LinearHead(nn.Module):
    """GAP -> Linear: ``(B, in_channels, *spatial)`` -> ``(B, num_classes)`` logits (key ``fc``)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(_global_pool(features))


class MLPHead(nn.Module):
    """GAP -> Linear(in, hidden) -> ReLU -> Linear(hidden, C) (Models Genesis README ``TargetNet``)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 1024):
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(_global_pool(features))))
