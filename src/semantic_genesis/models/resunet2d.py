"""A U-Net with a ResNet-18 encoder for 2D images (the Models Genesis 2D release's architecture).

The Models Genesis 2D weights (Zhou et al., MedIA 2021; the official repository's issue #41) were
trained with a U-Net whose encoder is a ResNet-18 (He et al., "Deep residual learning for image
recognition", CVPR 2016). This module builds that layout:

* encoder (``encoder.*``): conv 7x7 stride 2 -> norm -> ReLU (skip 1, H/2), max pool 3x3 stride 2,
  then four stages of two basic residual blocks (64, 128, 256, 512 channels at width 1; skips 2-4 at
  H/4, H/8, H/16; bottleneck at H/32);
* decoder (``decoder.*``): five blocks of nearest 2x upsampling -> concatenation with the skip ->
  two conv 3x3 -> norm -> ReLU, with 256, 128, 64, 32, 16 channels, then a 3x3 output conv
  (``out_conv``) and the output activation.

The ResNet blocks are written here rather than taken from ``monai.networks.nets.resnet18``: MONAI
1.6.1 applies its ``norm`` argument only to the stem (the residual stages always get batch norm), so
the ``norm`` choice could not be honoured, and importing MONAI costs about 1.8 s.

Input ``(B, in_channels, H, W)`` with H and W multiples of 32 (:attr:`ResUNet2D.min_divisor`). The
network meets the backbone contract (:mod:`semantic_genesis.models.backbone`): ``feature_channels``
``(64, 64, 128, 256, 512)`` at width 1 and strides ``(2, 4, 8, 16, 32)``, encoder ``encoder.*``,
decoder ``decoder.*`` and the output layer ``out_conv.*``.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.models.backbone import EncoderFeatures, apply_activation, check_out_activation, check_spatial_input
from semantic_genesis.models.norms import make_norm, scaled_channels


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, + shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_channels, 2)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_channels, 2)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), make_norm(norm, out_channels, 2)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut, inplace=True)


class ResNet18Encoder(nn.Module):
    """ResNet-18 feature extractor returning the stem output and the four stage outputs."""

    def __init__(self, in_channels: int, width: float, norm: str):
        super().__init__()
        chans = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, chans[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, chans[0], 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        previous = chans[0]
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(previous, c, stride, norm), BasicBlock(c, c, 1, norm)))
            previous = c
        self.stage_channels = (chans[0], *chans)  # stem, layer1..layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = F.relu(self.bn1(self.conv1(x)), inplace=True)
        feats = [stem]
        out = self.maxpool(stem)
        for i in range(1, 5):
            out = getattr(self, f"layer{i}")(out)
            feats.append(out)
        return feats


class DecoderBlock(nn.Module):
    """Nearest 2x upsampling, optional concatenation with a skip, two conv3x3 -> norm -> ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_channels, 2)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_channels, 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat((x, skip), dim=1)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


class ResUNet2D(nn.Module):
    """ResNet-18-encoder U-Net: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``.

    Args:
        in_channels: input channels (1 for X-ray; 3 to mimic ImageNet-style inputs).
        out_channels: output channels.
        width: channel multiplier for encoder and decoder (1.0 = ResNet-18 widths).
        norm: ``"batch"`` (default), ``"batch_stats"``, ``"instance"`` or ``"group"``.
        out_activation: ``"sigmoid"``, ``"softmax"`` or ``"none"``.
        skip_connections: ``False`` drops the concatenations.
    """

    ARCH_NAME = "resunet2d"
    spatial_dims = 2
    min_divisor = 32
    feature_strides = (2, 4, 8, 16, 32)
    encoder_state_dict_prefixes = ("encoder",)
    decoder_state_dict_prefixes = ("decoder", "out_conv")
    output_state_dict_prefixes = ("out_conv",)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch",
        out_activation: str = "sigmoid",
        skip_connections: bool = True,
    ):
        super().__init__()
        check_out_activation(out_activation)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.out_activation = out_activation
        self.norm = norm
        self.skip_connections = bool(skip_connections)
        self.arch_args = {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "width": float(width),
            "norm": norm,
            "out_activation": out_activation,
            "skip_connections": self.skip_connections,
        }
        self.encoder = ResNet18Encoder(in_channels, width, norm)
        stem, l1, l2, l3, l4 = self.encoder.stage_channels
        dec = [scaled_channels(c, width) for c in (256, 128, 64, 32, 16)]
        skips = [l3, l2, l1, stem, 0] if self.skip_connections else [0] * 5
        blocks = []
        previous = l4
        for out, skip in zip(dec, skips):
            blocks.append(DecoderBlock(previous, skip, out, norm))
            previous = out
        self.decoder = nn.ModuleList(blocks)
        self.out_conv = nn.Conv2d(previous, out_channels, 3, padding=1)
        self.feature_channels = (stem, l1, l2, l3, l4)
        self.bottleneck_channels = l4

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~semantic_genesis.errors.DataError` unless ``x`` is ``(B, in_channels, H, W)``, H and W multiples of 32."""
        check_spatial_input(x, 2, self.in_channels, self.min_divisor, type(self).__name__)

    def encoder_modules(self) -> list[nn.Module]:
        """``[encoder]`` (the ResNet-18)."""
        return [self.encoder]

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the ResNet-18 encoder."""
        return self.encoder.parameters()

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        """``(B, C, H, W)`` -> bottleneck ``(B, 512w, H/32, W/32)`` and skips (H/2, H/4, H/8, H/16), shallow->deep."""
        self.check_input(x)
        feats = self.encoder(x)
        return EncoderFeatures(feats[-1], tuple(feats[:-1]))

    def decode_logits(self, features: EncoderFeatures) -> torch.Tensor:
        """Decoder output before the activation, ``(B, out_channels, H, W)``."""
        skips = list(reversed(features.skips)) + [None] if self.skip_connections else [None] * 5
        out = features.bottleneck
        for block, skip in zip(self.decoder, skips):
            out = block(out, skip)
        return self.out_conv(out)

    def decode(self, features: EncoderFeatures) -> torch.Tensor:
        return apply_activation(self.decode_logits(features), self.out_activation)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
