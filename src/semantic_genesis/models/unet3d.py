"""The Models Genesis U-Net (official PyTorch architecture, layer for layer), 3D and 2D.

Architecture (Zhou et al., "Models Genesis", MICCAI 2019 / MedIA 2021; the official PyTorch
``unet3d.py``), with ``c = round(32 * width)`` (32 at ``width=1``):

=========== ======================================================== ============================
block        layers                                                   output (input B x 1 x 64x64x32)
=========== ======================================================== ============================
down_tr64    LUConv in->c, c->2c; MaxPool 2                           skip 2c@64x64x32, 2c@32x32x16
down_tr128   LUConv 2c->2c, 2c->4c; MaxPool 2                         skip 4c@32x32x16, 4c@16x16x8
down_tr256   LUConv 4c->4c, 4c->8c; MaxPool 2                         skip 8c@16x16x8, 8c@8x8x4
down_tr512   LUConv 8c->8c, 8c->16c (no pool)                         bottleneck 16c@8x8x4
up_tr256     ConvTranspose 16c->16c (k2 s2); cat skip; 24c->8c, 8c->8c 8c@16x16x8
up_tr128     ConvTranspose 8c->8c; cat skip; 12c->4c, 4c->4c           4c@32x32x16
up_tr64      ConvTranspose 4c->4c; cat skip; 6c->2c, 2c->2c            2c@64x64x32
out_tr       Conv 1x1x1 2c->out_channels, then the output activation   out@64x64x32
=========== ======================================================== ============================

``LUConv`` = Conv (k3, p1, bias) -> norm -> ReLU. The upsampled tensor comes first in the
concatenation, then the skip, as in the official code. At ``width=1`` with ``norm="batch_stats"`` or
``"batch"`` the state dict has exactly the 106 official keys (``down_tr64.ops.0.conv1.weight`` ...
``out_tr.final_conv.bias``) and 19,073,665 parameters, so the released ``Genesis_Chest_CT.pt`` loads
after stripping ``module.`` (see :mod:`semantic_genesis.models.importers`).

``skip_connections=False`` builds the same network without the concatenations (a plain convolutional
autoencoder; the decoder convolutions then take only the up-convolution channels), which is the
skip-less autoencoder of the Semantic Genesis self-discovery (Haghighi et al., MICCAI 2020: the
autoencoder's bottleneck must carry the whole scan).

The U-Net meets the backbone contract (:mod:`semantic_genesis.models.backbone`): ``feature_channels``
``(2c, 4c, 8c, 16c)`` at strides ``(1, 2, 4, 8)``, ``encoder_state_dict_prefixes`` ``down_tr64`` ...
``down_tr512``, ``decoder_state_dict_prefixes`` ``up_tr256`` ... ``out_tr`` (output layer ``out_tr``).
Unlike the official module, ``forward`` stores no attributes: :meth:`GenesisUNet.encode` returns the
bottleneck and the skips as an :class:`~semantic_genesis.models.backbone.EncoderFeatures` tuple.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.backbone import (
    EncoderFeatures,
    apply_activation,
    check_out_activation,
    check_spatial_input,
    modules_named,
    parameters_named,
)
from semantic_genesis.models.norms import make_norm, scaled_channels

#: The U-Net's encoder blocks (the official key prefixes), shallow to deep.
ENCODER_PREFIXES = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")
#: The decoder blocks, the output layer ``out_tr`` last.
DECODER_PREFIXES = ("up_tr256", "up_tr128", "up_tr64", "out_tr")
OUTPUT_PREFIXES = ("out_tr",)


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


class LUConv(nn.Module):
    """Conv (k3, p1) -> norm -> ReLU; submodule names ``conv1``/``bn1`` as in the official code."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, spatial_dims: int):
        super().__init__()
        self.conv1 = _conv(spatial_dims)(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = make_norm(norm, out_channels, spatial_dims)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.bn1(self.conv1(x)))


class DownTransition(nn.Module):
    """Two LUConvs (``ops``), followed by a 2x max pool except at the deepest level."""

    def __init__(self, in_channels: int, mid: int, out: int, pool: bool, norm: str, spatial_dims: int):
        super().__init__()
        self.ops = nn.Sequential(LUConv(in_channels, mid, norm, spatial_dims), LUConv(mid, out, norm, spatial_dims))
        self.maxpool = (nn.MaxPool3d(2) if spatial_dims == 3 else nn.MaxPool2d(2)) if pool else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(output, skip)``: the pooled map (or the map itself at the bottom) and the pre-pool map."""
        skip = self.ops(x)
        return (self.maxpool(skip) if self.maxpool is not None else skip), skip


class UpTransition(nn.Module):
    """Transposed conv (k2, s2) ``up_conv``, optional concatenation with the skip, two LUConvs ``ops``."""

    def __init__(self, in_channels: int, skip_channels: int, out: int, norm: str, spatial_dims: int):
        super().__init__()
        transpose = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.up_conv = transpose(in_channels, in_channels, kernel_size=2, stride=2)
        self.ops = nn.Sequential(
            LUConv(in_channels + skip_channels, out, norm, spatial_dims), LUConv(out, out, norm, spatial_dims)
        )
        self.use_skip = skip_channels > 0

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        up = self.up_conv(x)
        if self.use_skip:
            up = torch.cat((up, skip), dim=1)
        return self.ops(up)


class OutputTransition(nn.Module):
    """The 1x1(x1) ``final_conv``; the activation is applied by the U-Net (so logits are reachable)."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int):
        super().__init__()
        self.final_conv = _conv(spatial_dims)(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(x)


class GenesisUNet(nn.Module):
    """The Models Genesis U-Net for ``spatial_dims`` 3 (:class:`UNet3D`) or 2 (:class:`UNet2D`).

    Args:
        in_channels: input channels (1 for CT/MRI/X-ray).
        out_channels: output channels of ``out_tr.final_conv``.
        width: channel multiplier (1.0 = official widths; e.g. 0.25 for tiny CPU configs).
        norm: ``"batch_stats"`` (official, batch statistics always), ``"batch"``, ``"instance"``, ``"group"``.
        out_activation: ``"sigmoid"`` (official; outputs in [0, 1]), ``"softmax"`` or ``"none"``.
        skip_connections: ``False`` drops the concatenations (plain conv autoencoder).
        spatial_dims: 3 or 2.

    Inputs are ``(B, in_channels, X, Y, Z)`` (3D) or ``(B, in_channels, H, W)`` (2D) with every spatial
    size a multiple of :attr:`min_divisor` (8).
    """

    ARCH_NAME = "genesis_unet"
    min_divisor = 8
    feature_strides = (1, 2, 4, 8)
    encoder_state_dict_prefixes = ENCODER_PREFIXES
    decoder_state_dict_prefixes = DECODER_PREFIXES
    output_state_dict_prefixes = OUTPUT_PREFIXES

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch_stats",
        out_activation: str = "sigmoid",
        skip_connections: bool = True,
        spatial_dims: int = 3,
    ):
        super().__init__()
        check_out_activation(out_activation)
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ConfigError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
        c = scaled_channels(32, width)
        self.spatial_dims = spatial_dims
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
        d = spatial_dims
        self.down_tr64 = DownTransition(in_channels, c, 2 * c, True, norm, d)
        self.down_tr128 = DownTransition(2 * c, 2 * c, 4 * c, True, norm, d)
        self.down_tr256 = DownTransition(4 * c, 4 * c, 8 * c, True, norm, d)
        self.down_tr512 = DownTransition(8 * c, 8 * c, 16 * c, False, norm, d)
        s = self.skip_connections
        self.up_tr256 = UpTransition(16 * c, 8 * c if s else 0, 8 * c, norm, d)
        self.up_tr128 = UpTransition(8 * c, 4 * c if s else 0, 4 * c, norm, d)
        self.up_tr64 = UpTransition(4 * c, 2 * c if s else 0, 2 * c, norm, d)
        self.out_tr = OutputTransition(2 * c, out_channels, d)
        self.feature_channels = (2 * c, 4 * c, 8 * c, 16 * c)
        self.bottleneck_channels = 16 * c

    # ---------------------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` unless ``x`` is ``(B, in_channels, *spatial)`` with sizes divisible by 8."""
        check_spatial_input(x, self.spatial_dims, self.in_channels, self.min_divisor, type(self).__name__)

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder blocks ``[down_tr64, down_tr128, down_tr256, down_tr512]``."""
        return modules_named(self, self.encoder_state_dict_prefixes)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the encoder blocks only (e.g. to freeze them or give them their own lr)."""
        return parameters_named(self, self.encoder_state_dict_prefixes)

    def decoder_modules(self) -> list[nn.Module]:
        """The decoder blocks ``[up_tr256, up_tr128, up_tr64, out_tr]``."""
        return modules_named(self, self.decoder_state_dict_prefixes)

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        """Run the encoder.

        Args:
            x: ``(B, in_channels, X, Y, Z)`` float (2D: ``(B, in_channels, H, W)``), sizes divisible by 8.

        Returns:
            :class:`EncoderFeatures` (bottleneck, skips shallow->deep).
        """
        self.check_input(x)
        return run_encoder(self.encoder_modules(), x)

    def decode_logits(self, features: EncoderFeatures) -> torch.Tensor:
        """Decoder output before the activation: ``(B, out_channels, X, Y, Z)`` (use for AMP-safe losses)."""
        s64, s128, s256 = features.skips if self.skip_connections else (None, None, None)
        out = self.up_tr256(features.bottleneck, s256)
        out = self.up_tr128(out, s128)
        out = self.up_tr64(out, s64)
        return self.out_tr(out)

    def decode(self, features: EncoderFeatures) -> torch.Tensor:
        """Decoder output after the output activation (in [0, 1] for ``"sigmoid"``)."""
        return apply_activation(self.decode_logits(features), self.out_activation)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``decode_logits(encode(x))``."""
        return self.decode_logits(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)`` after the output activation."""
        return self.decode(self.encode(x))


def run_encoder(blocks: list[nn.Module], x: torch.Tensor) -> EncoderFeatures:
    """Run the four down transitions; shared by the U-Nets and encoder-only classifiers."""
    skips = []
    out = x
    for block in blocks[:-1]:
        out, skip = block(out)
        skips.append(skip)
    bottleneck, _ = blocks[-1](out)
    return EncoderFeatures(bottleneck, tuple(skips))


class UNet3D(GenesisUNet):
    """The official Models Genesis 3D U-Net (see the module docstring); input ``(B, C, X, Y, Z)``."""

    ARCH_NAME = "unet3d"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch_stats",
        out_activation: str = "sigmoid",
        skip_connections: bool = True,
    ):
        super().__init__(in_channels, out_channels, width, norm, out_activation, skip_connections, spatial_dims=3)
