"""The Rubik's cube pretext network (Zhuang et al., MICCAI 2019): a siamese encoder over 2x2x2 sub-cubes.

Zhuang, Li, Hu, Ma, Zheng, "Self-supervised feature learning for 3D medical images by playing a
Rubik's cube", MICCAI 2019. Each of the 8 sub-cubes of a scrambled cube goes through the **same**
backbone encoder (shared weights; here the Models Genesis 3D U-Net encoder ``down_tr64`` ...
``down_tr512``, as in the Semantic Genesis comparison); the globally pooled bottleneck features are
concatenated in grid order (8C), passed through a fully connected layer (ReLU) and two heads: the
permutation (P logits) and the 180-degree rotations (8 logits, one per grid position). Only the
encoder transfers; its keys are the U-Net's, so the weights load into the fine-tuning networks.

Sub-cubes are half the cube per axis, so cube sides must be multiples of 16 (the encoder divides each
sub-cube side by 8). The training recipe and loss are in :mod:`semantic_genesis.methods.rubiks_cube`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from semantic_genesis.models.backbone import BackboneWrapper
from semantic_genesis.models.norms import scaled_channels
from semantic_genesis.models.unet3d import UNet3D
from semantic_genesis.transforms.rubik import NUM_SUBCUBES, split_subcubes


class RubiksOutput(NamedTuple):
    """Output of :class:`RubiksCubeNet3D`: ``permutation`` ``(B, P)`` and ``rotation`` ``(B, 8)`` logits."""

    permutation: torch.Tensor
    rotation: torch.Tensor


class RubiksCubeNet3D(BackboneWrapper):
    """Siamese Models Genesis encoder over the 8 sub-cubes + permutation and rotation heads.

    Args:
        in_channels, width, norm: as :class:`~semantic_genesis.models.unet3d.UNet3D` (its encoder blocks).
        num_permutations: P, classes of the permutation head.
        hidden: units of the shared fully connected layer (0: ``1024 * width``).

    ``forward(x)``: ``x`` ``(B, C, X, Y, Z)`` (a scrambled cube, sides multiples of 16) ->
    :class:`RubiksOutput` (logits).
    """

    ARCH_NAME = "rubiks_cube3d"
    min_divisor = 16  # each half-size sub-cube must pass the U-Net encoder (divisor 8)

    def __init__(self, in_channels: int = 1, width: float = 1.0, norm: str = "batch_stats", num_permutations: int = 100,
                 hidden: int = 0):
        super().__init__(UNet3D(in_channels=in_channels, width=width, norm=norm))
        hidden = int(hidden) or scaled_channels(1024, width)
        self.fc = nn.Sequential(nn.Linear(NUM_SUBCUBES * self.bottleneck_channels, hidden), nn.ReLU(inplace=True))
        self.permutation_head = nn.Linear(hidden, int(num_permutations))
        self.rotation_head = nn.Linear(hidden, NUM_SUBCUBES)
        self.arch_args: dict[str, Any] = {
            "in_channels": self.in_channels,
            "width": float(width),
            "norm": self.backbone.arch_args["norm"],
            "num_permutations": int(num_permutations),
            "hidden": hidden,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated pooled encoder features of the 8 sub-cubes in grid order: ``(B, 8 * C)``."""
        self.check_input(x)
        blocks = split_subcubes(x)  # (B, 8, C, X/2, Y/2, Z/2)
        b = blocks.shape[0]
        bottleneck = self.encode(blocks.flatten(0, 1)).bottleneck
        return bottleneck.mean(dim=(2, 3, 4)).reshape(b, NUM_SUBCUBES * self.bottleneck_channels)

    def forward(self, x: torch.Tensor) -> RubiksOutput:
        h = self.fc(self.features(x))
        return RubiksOutput(self.permutation_head(h), self.rotation_head(h))
