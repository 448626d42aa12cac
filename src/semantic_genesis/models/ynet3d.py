"""Semantic Genesis networks: the U-Net with a classification head, and encoder-only classifiers.

:class:`YNet3D` is the official Semantic Genesis ``YNet3D`` (genesis_reference §3.3): the Models
Genesis :class:`~semantic_genesis.models.unet3d.UNet3D` plus :class:`~semantic_genesis.models.heads.
ClassificationHead` (``clc_out``) on the bottleneck. Its state dict has the official keys (the 106
U-Net keys plus ``clc_out.conv1.*``, ``clc_out.bn1.*``, ``clc_out.fc1.*``); 33,277,613 parameters at
C=44 and width 1. ``forward`` returns :class:`YNetOutput` (restoration after the sigmoid, class
**logits**).

:class:`EncoderClassifier3D` is the encoder (``down_tr64`` ... ``down_tr512``, the same key names)
with a linear or MLP head, for target classification tasks: a full U-Net checkpoint loads into it
with ``load_pretrained(model, path, strict=False)`` (the decoder keys are reported as unexpected).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.heads import ClassificationHead, LinearHead, MLPHead
from semantic_genesis.models.norms import scaled_channels
from semantic_genesis.models.unet3d import (
    ENCODER_PREFIXES,
    EncoderFeatures,
    UNet3D,
    apply_activation,
    check_spatial_input,
    run_encoder,
)


class YNetOutput(NamedTuple):
    """Output of :class:`YNet3D`.

    Attributes:
        restoration: ``(B, out_channels, X, Y, Z)``; after the output activation in ``forward``
            (in [0, 1] for sigmoid), logits in ``forward_logits``.
        logits: ``(B, num_classes)`` classification logits (no softmax).
    """

    restoration: torch.Tensor
    logits: torch.Tensor


class YNet3D(UNet3D):
    """U-Net 3D + Semantic Genesis classification head on the bottleneck.

    Args:
        in_channels, out_channels, width, norm, out_activation, skip_connections: as :class:`UNet3D`.
        num_classes: C, the number of discovered anatomical patterns (44 in the paper).
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
        super().__init__(in_channels, out_channels, width, norm, out_activation, skip_connections)
        hidden = int(head_hidden) if head_hidden else scaled_channels(1024, width)
        self.clc_out = ClassificationHead(self.bottleneck_channels, num_classes, hidden, norm=norm)
        self.num_classes = int(num_classes)
        self.arch_args.update(num_classes=self.num_classes, head_hidden=hidden)

    def classify(self, features: EncoderFeatures) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` from encoder features."""
        return self.clc_out(features.bottleneck)

    def forward_logits(self, x: torch.Tensor) -> YNetOutput:  # type: ignore[override]
        """Both outputs before any activation (restoration logits, class logits)."""
        features = self.encode(x)
        return YNetOutput(self.decode_logits(features), self.classify(features))

    def forward(self, x: torch.Tensor) -> YNetOutput:  # type: ignore[override]
        """``(B, C, X, Y, Z)`` -> :class:`YNetOutput` (restoration after activation, class logits)."""
        features = self.encode(x)
        logits = self.decode_logits(features)
        return YNetOutput(apply_activation(logits, self.out_activation), self.classify(features))


class EncoderClassifier3D(nn.Module):
    """Models Genesis encoder + classification head: ``(B, C, X, Y, Z)`` -> ``(B, num_classes)`` logits.

    Args:
        encoder_source: a :class:`UNet3D` whose encoder blocks are reused (shared, not copied); ``None``
            builds a fresh encoder from ``in_channels``, ``width``, ``norm``.
        num_classes: output logits.
        head: ``"linear"`` (GAP -> Linear), ``"mlp"`` (GAP -> 1024 -> ReLU -> C, the MG README) or
            ``"genesis"`` (the Semantic Genesis conv head, ``ClassificationHead``).
    """

    ARCH_NAME = "encoder_classifier3d"
    min_divisor = 8
    encoder_state_dict_prefixes = ENCODER_PREFIXES

    def __init__(
        self,
        encoder_source: UNet3D | None = None,
        num_classes: int = 1,
        head: str = "linear",
        in_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch_stats",
    ):
        super().__init__()
        if encoder_source is None:
            encoder_source = UNet3D(in_channels=in_channels, width=width, norm=norm)
        if not isinstance(encoder_source, UNet3D):
            raise ConfigError(f"encoder_source must be a UNet3D, got {type(encoder_source).__name__}")
        for name in ENCODER_PREFIXES:
            setattr(self, name, getattr(encoder_source, name))
        self.in_channels = encoder_source.in_channels
        self.bottleneck_channels = encoder_source.bottleneck_channels
        c = self.bottleneck_channels
        if head == "linear":
            self.head: nn.Module = LinearHead(c, num_classes)
        elif head == "mlp":
            self.head = MLPHead(c, num_classes, hidden=2 * c)
        elif head == "genesis":
            self.head = ClassificationHead(c, num_classes, hidden=2 * c, norm=encoder_source.arch_args["norm"])
        else:
            raise ConfigError(f"head must be 'linear', 'mlp' or 'genesis', got {head!r}")
        self.num_classes = int(num_classes)
        args = encoder_source.arch_args
        self.arch_args = {
            "num_classes": self.num_classes,
            "head": head,
            "in_channels": args["in_channels"],
            "width": args["width"],
            "norm": args["norm"],
        }

    def encoder_modules(self) -> list[nn.Module]:
        return [getattr(self, name) for name in ENCODER_PREFIXES]

    def encoder_parameters(self):
        for module in self.encoder_modules():
            yield from module.parameters()

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        check_spatial_input(x, 3, self.in_channels, self.min_divisor, type(self).__name__)
        return run_encoder(self.encoder_modules(), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x).bottleneck)
