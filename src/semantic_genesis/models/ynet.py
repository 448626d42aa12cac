"""The Semantic Genesis network: a dense backbone plus a classification head on its bottleneck.

Haghighi, Hosseinzadeh Taher, Zhou, Gotway, Liang, "Learning Semantics-enriched Representation via
Self-discovery, Self-classification, and Self-restoration", MICCAI 2020: the network restores the
transformed input through the decoder (self-restoration) and classifies the anatomical pattern from the
encoder's bottleneck (self-classification).

:class:`YNet` works on any dense backbone (:class:`~semantic_genesis.models.backbone.DenseBackbone`:
the 3D or 2D U-Net, the ResNet-18 U-Net): ``YNet(UNet2D(width=0.5), num_classes=44)``. The backbone's
own submodules keep their names, so :class:`YNet3D`, the official Semantic Genesis ``YNet3D`` (the
Models Genesis 3D U-Net + :class:`~semantic_genesis.models.heads.ClassificationHead` ``clc_out``),
has exactly the official keys: the 106 U-Net keys plus ``clc_out.conv1.*``, ``clc_out.bn1.*``,
``clc_out.fc1.*`` (33,277,613 parameters at C=44 and width 1).

``forward`` returns :class:`YNetOutput` (restoration after the output activation, class **logits**).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

from semantic_genesis.models.backbone import BackboneWrapper, EncoderFeatures, apply_activation, build_backbone
from semantic_genesis.models.heads import ClassificationHead
from semantic_genesis.models.norms import scaled_channels
from semantic_genesis.models.registry import architecture_of
from semantic_genesis.models.unet3d import UNet3D


class YNetOutput(NamedTuple):
    """Output of :class:`YNet`.

    Attributes:
        restoration: ``(B, out_channels, *spatial)``; after the output activation in ``forward``
            (in [0, 1] for sigmoid), logits in ``forward_logits``.
        logits: ``(B, num_classes)`` classification logits (no softmax).
    """

    restoration: torch.Tensor
    logits: torch.Tensor


class YNet(BackboneWrapper):
    """A dense backbone + the Semantic Genesis classification head ``clc_out`` on its bottleneck.

    Args:
        backbone: a :class:`~semantic_genesis.models.backbone.DenseBackbone` module, or the registry
            name of one (built with ``backbone_args``).
        num_classes: C, the number of discovered anatomical patterns (44 in the paper).
        head_hidden: channels of the head's convolution; default twice the bottleneck channels (1024
            on the official 512-channel bottleneck).
        backbone_args: constructor arguments when ``backbone`` is a name.

    ``forward(x)``: ``(B, in_channels, *spatial)`` -> :class:`YNetOutput`.
    """

    ARCH_NAME = "ynet"

    def __init__(
        self,
        backbone: nn.Module | str = "unet3d",
        num_classes: int = 44,
        head_hidden: int | None = None,
        backbone_args: Mapping[str, Any] | None = None,
    ):
        backbone = build_backbone(backbone, backbone_args)
        super().__init__(backbone, adopt=[name for name, _ in backbone.named_children()], dense=True)
        hidden = int(head_hidden) if head_hidden else 2 * self.bottleneck_channels
        norm = getattr(backbone, "norm", "batch")
        self.clc_out = ClassificationHead(self.bottleneck_channels, num_classes, hidden, norm=norm,
                                          spatial_dims=self.spatial_dims)
        self.num_classes = int(num_classes)
        self.head_hidden = hidden

    @property
    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments for the registry: the backbone's registry name and arguments, and the head's."""
        return self._arch_args()

    def _arch_args(self) -> dict[str, Any]:
        name, args = architecture_of(self.backbone)
        return {"backbone": name, "backbone_args": args, "num_classes": self.num_classes, "head_hidden": self.head_hidden}

    # -- the dense part of the contract, forwarded ---------------------------------------------------
    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    @property
    def out_activation(self) -> str:
        return self.backbone.out_activation

    @property
    def decoder_state_dict_prefixes(self) -> tuple[str, ...]:
        return tuple(self.backbone.decoder_state_dict_prefixes)

    @property
    def output_state_dict_prefixes(self) -> tuple[str, ...]:
        return tuple(self.backbone.output_state_dict_prefixes)

    def decode_logits(self, features: EncoderFeatures) -> torch.Tensor:
        """The backbone's decoder output before the activation, ``(B, out_channels, *spatial)``."""
        return self.backbone.decode_logits(features)

    def decode(self, features: EncoderFeatures) -> torch.Tensor:
        """The backbone's decoder output after the output activation."""
        return self.backbone.decode(features)

    # -- the head ------------------------------------------------------------------------------------
    def classify(self, features: EncoderFeatures) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` from encoder features."""
        return self.clc_out(features.bottleneck)

    def forward_logits(self, x: torch.Tensor) -> YNetOutput:
        """Both outputs before any activation (restoration logits, class logits)."""
        features = self.encode(x)
        return YNetOutput(self.decode_logits(features), self.classify(features))

    def forward(self, x: torch.Tensor) -> YNetOutput:
        """``(B, C, *spatial)`` -> :class:`YNetOutput` (restoration after activation, class logits)."""
        features = self.encode(x)
        logits = self.decode_logits(features)
        return YNetOutput(apply_activation(logits, self.out_activation), self.classify(features))


class YNet3D(YNet):
    """The official Semantic Genesis ``YNet3D``: :class:`YNet` on the Models Genesis
    :class:`~semantic_genesis.models.unet3d.UNet3D`, with the official constructor arguments.

    Args:
        in_channels, out_channels, width, norm, out_activation, skip_connections: as ``UNet3D``.
        num_classes: C (44 in the paper).
        head_hidden: channels of the head conv; default ``round(1024 * width)``.
    """

    ARCH_NAME = "ynet3d"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch_stats",
        out_activation: str = "sigmoid",
        skip_connections: bool = True,
        num_classes: int = 44,
        head_hidden: int | None = None,
    ):
        unet = UNet3D(in_channels, out_channels, width, norm, out_activation, skip_connections)
        super().__init__(unet, num_classes, int(head_hidden) if head_hidden else scaled_channels(1024, width))

    def _arch_args(self) -> dict[str, Any]:
        return {**self.backbone.arch_args, "num_classes": self.num_classes, "head_hidden": self.head_hidden}
