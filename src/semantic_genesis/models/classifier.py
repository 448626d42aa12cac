"""Encoder-only classifiers: a backbone's encoder + a classification head, for target classification.

As in Semantic Genesis (Haghighi et al., MICCAI 2020) and Models Genesis (Zhou et al., MedIA 2021),
classification targets fine-tune the pretrained **encoder** with a new head on its pooled bottleneck.
:class:`EncoderClassifier` works on any backbone (:class:`~semantic_genesis.models.backbone.Backbone`,
2D or 3D); only the encoder's submodules are registered, under the backbone's own names, so a full
U-Net weights file loads into it with ``load_pretrained(model, path, strict=False)`` (the decoder keys
are reported as unexpected). :class:`EncoderClassifier3D` is the same on the Models Genesis 3D U-Net
with flat constructor arguments (keys ``down_tr64.*`` ... ``down_tr512.*`` and ``head.*``).

Heads (``head=``): ``"linear"`` (GAP -> Linear), ``"mlp"`` (GAP -> Linear(C, 2C) -> ReLU -> Linear,
the Models Genesis README ``TargetNet`` at width 1) and ``"genesis"`` (the Semantic Genesis
convolutional head, :class:`~semantic_genesis.models.heads.ClassificationHead`).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.backbone import BackboneWrapper, build_backbone
from semantic_genesis.models.heads import ClassificationHead, LinearHead, MLPHead
from semantic_genesis.models.registry import architecture_of
from semantic_genesis.models.unet3d import UNet3D

HEADS = ("linear", "mlp", "genesis")


def make_head(kind: str, channels: int, num_classes: int, norm: str, spatial_dims: int) -> nn.Module:
    """The classification head ``kind`` (one of :data:`HEADS`) on a ``channels``-channel bottleneck."""
    if kind == "linear":
        return LinearHead(channels, num_classes)
    if kind == "mlp":
        return MLPHead(channels, num_classes, hidden=2 * channels)
    if kind == "genesis":
        return ClassificationHead(channels, num_classes, hidden=2 * channels, norm=norm, spatial_dims=spatial_dims)
    raise ConfigError(f"head must be one of {', '.join(map(repr, HEADS))}, got {kind!r}")


class EncoderClassifier(BackboneWrapper):
    """A backbone's encoder + a head: ``(B, in_channels, *spatial)`` -> ``(B, num_classes)`` logits.

    Args:
        backbone: a :class:`~semantic_genesis.models.backbone.Backbone` module whose encoder blocks are
            reused (shared, not copied), or the registry name of one (built with ``backbone_args``).
        num_classes: output logits.
        head: ``"linear"``, ``"mlp"`` or ``"genesis"`` (see the module docstring).
        backbone_args: constructor arguments when ``backbone`` is a name.
    """

    ARCH_NAME = "encoder_classifier"

    def __init__(
        self,
        backbone: nn.Module | str = "unet3d",
        num_classes: int = 1,
        head: str = "linear",
        backbone_args: Mapping[str, Any] | None = None,
    ):
        backbone = build_backbone(backbone, backbone_args)
        super().__init__(backbone)
        norm = getattr(backbone, "norm", "batch")
        self.head = make_head(head, self.bottleneck_channels, int(num_classes), norm, self.spatial_dims)
        self.head_kind = head
        self.num_classes = int(num_classes)

    @property
    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments for the registry: the backbone's registry name and arguments, and the head's."""
        return self._arch_args()

    def _arch_args(self) -> dict[str, Any]:
        name, args = architecture_of(self.backbone)
        return {"backbone": name, "backbone_args": args, "num_classes": self.num_classes, "head": self.head_kind}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> ``(B, num_classes)`` logits."""
        return self.head(self.encode(x).bottleneck)


class EncoderClassifier3D(EncoderClassifier):
    """:class:`EncoderClassifier` on the Models Genesis 3D U-Net (the Semantic Genesis
    ``ClassificationNet3D`` with ``head="genesis"``), with flat constructor arguments.

    Args:
        encoder_source: a :class:`~semantic_genesis.models.unet3d.UNet3D` whose encoder blocks are
            reused; ``None`` builds a fresh one from ``in_channels``, ``width``, ``norm``.
        num_classes, head: as :class:`EncoderClassifier`.
    """

    ARCH_NAME = "encoder_classifier3d"

    def __init__(
        self,
        encoder_source: nn.Module | None = None,
        num_classes: int = 1,
        head: str = "linear",
        in_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch_stats",
    ):
        if encoder_source is None:
            encoder_source = UNet3D(in_channels=in_channels, width=width, norm=norm)
        if not isinstance(encoder_source, UNet3D):
            raise ConfigError(f"encoder_source must be a UNet3D, got {type(encoder_source).__name__}")
        super().__init__(encoder_source, num_classes, head)

    def _arch_args(self) -> dict[str, Any]:
        args = self.backbone.arch_args
        return {"num_classes": self.num_classes, "head": self.head_kind, "in_channels": args["in_channels"],
                "width": args["width"], "norm": args["norm"]}
