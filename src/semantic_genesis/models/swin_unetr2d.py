"""A 2D Swin UNETR: the :class:`~semantic_genesis.models.swin2d.Swin2D` encoder with the SwinUNETR decoder
(Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of Brain Tumors in MRI
Images", BrainLes 2021), the dense backbone used to fine-tune a Swin on segmentation targets.

The decoder is MONAI's SwinUNETR decoder, built from MONAI's own blocks (``UnetrBasicBlock``,
``UnetrUpBlock``, ``UnetOutBlock``) and generalised to any :class:`Swin2D` layout (1 to 4 stages, with
or without the final merging, any patch size). With ``n`` stages, encoder levels ``L_0`` (the patch
embedding) ... ``L_n`` (the deepest), channels ``c_i``, strides ``s_i``:

* ``encoder1``: a residual conv block on the **input image** (``in_channels -> c_0``, full resolution);
* ``encoder{i+2}``: a residual conv block on level ``L_i`` for ``i < n - 1`` (level ``L_{n-1}`` is used
  as it is); ``encoder10``: a residual conv block on the deepest level ``L_n``;
* ``decoder{i+2}`` for ``i = n-1 ... 0``: a transposed convolution up to level ``i``'s resolution
  (factor ``s_{i+1} / s_i``: 2, or 1 between two levels of one stride) to ``c_i`` channels, concatenation
  with level ``i``'s skip, a residual conv block; ``decoder1``: up by ``s_0`` (the patch size) to the
  input resolution with ``encoder1``'s skip;
* ``out``: a 1x1 convolution to ``out_channels`` (the output layer).

With four stages, the final merging and patch size 2 (MONAI's SwinUNETR layout) the modules and every
state-dict key are those of ``monai.networks.nets.SwinUNETR(spatial_dims=2)``, so such weights load
whole. Because ``encoder1`` reads the input image, :meth:`SwinUNETR2D.encode` returns the image itself
as the shallowest level (``feature_strides[0] == 1``, ``feature_channels[0] == in_channels``); the other
levels are the Swin's. The Swin is the encoder (``encoder_state_dict_prefixes = ("swinViT",)``, the keys
of :class:`Swin2D`); everything else is the decoder.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.backbone import EncoderFeatures, apply_activation, check_out_activation
from semantic_genesis.models.swin2d import Swin2D

DECODER_NORMS = ("instance", "batch")


class SwinUNETR2D(Swin2D):
    """Swin encoder + SwinUNETR decoder: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``.

    Args:
        in_channels, size, embed_dim, depths, num_heads, window_size, patch_size, final_merge, mlp_ratio,
            qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, patch_norm, use_checkpoint, normalize:
            the Swin encoder (:class:`~semantic_genesis.models.swin2d.Swin2D`).
        out_channels: output channels.
        out_activation: ``"sigmoid"``, ``"softmax"`` or ``"none"`` (applied by :meth:`decode` / ``forward``).
        decoder_norm: normalisation of the decoder's conv blocks, ``"instance"`` (MONAI's default) or
            ``"batch"``.
    """

    ARCH_NAME = "swin_unetr2d"
    output_state_dict_prefixes = ("out",)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        size: str | None = "swin_b",
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        window_size: int | None = None,
        patch_size: int | None = None,
        final_merge: bool | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        patch_norm: bool = False,
        use_checkpoint: bool = False,
        normalize: bool = True,
        out_activation: str = "sigmoid",
        decoder_norm: str = "instance",
    ):
        super().__init__(in_channels=in_channels, size=size, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                         window_size=window_size, patch_size=patch_size, final_merge=final_merge, mlp_ratio=mlp_ratio,
                         qkv_bias=qkv_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                         drop_path_rate=drop_path_rate, patch_norm=patch_norm, use_checkpoint=use_checkpoint,
                         normalize=normalize)
        check_out_activation(out_activation)
        if decoder_norm not in DECODER_NORMS:
            raise ConfigError(f"swin_unetr2d decoder_norm must be one of {', '.join(DECODER_NORMS)}, got {decoder_norm!r}")
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock

        self.out_channels = int(out_channels)
        self.out_activation = out_activation
        self.arch_args.update(out_channels=self.out_channels, out_activation=out_activation, decoder_norm=decoder_norm)
        swin_channels, swin_strides = self.feature_channels, self.feature_strides
        n = len(swin_channels) - 1  # stages

        def basic(channels_in: int, channels_out: int) -> nn.Module:
            return UnetrBasicBlock(spatial_dims=2, in_channels=channels_in, out_channels=channels_out, kernel_size=3,
                                   stride=1, norm_name=decoder_norm, res_block=True)

        def up(channels_in: int, channels_out: int, factor: int) -> nn.Module:
            return UnetrUpBlock(spatial_dims=2, in_channels=channels_in, out_channels=channels_out, kernel_size=3,
                                upsample_kernel_size=factor, norm_name=decoder_norm, res_block=True)

        decoder = ["encoder1"]
        self.encoder1 = basic(self.in_channels, swin_channels[0])
        for i in range(n - 1):
            setattr(self, f"encoder{i + 2}", basic(swin_channels[i], swin_channels[i]))
            decoder.append(f"encoder{i + 2}")
        self.encoder10 = basic(swin_channels[n], swin_channels[n])
        decoder.append("encoder10")
        for i in reversed(range(n)):
            setattr(self, f"decoder{i + 2}", up(swin_channels[i + 1], swin_channels[i], swin_strides[i + 1] // swin_strides[i]))
            decoder.append(f"decoder{i + 2}")
        self.decoder1 = up(swin_channels[0], swin_channels[0], swin_strides[0])
        self.out = UnetOutBlock(spatial_dims=2, in_channels=swin_channels[0], out_channels=self.out_channels)
        self.decoder_state_dict_prefixes = (*decoder, "decoder1", "out")
        self.feature_channels = (self.in_channels, *swin_channels)
        self.feature_strides = (1, *swin_strides)

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        """The input image (the skip of ``encoder1``) and the Swin's levels (see :meth:`Swin2D.encode`)."""
        features = super().encode(x)
        return EncoderFeatures(features.bottleneck, (x, *features.skips))

    def decode_logits(self, features: EncoderFeatures) -> torch.Tensor:
        """The decoder's output before the activation, ``(B, out_channels, H, W)``."""
        image, *levels = features.levels
        n = len(levels) - 1
        skips = [getattr(self, f"encoder{i + 2}")(levels[i]) for i in range(n - 1)] + [levels[n - 1]]
        out = self.encoder10(levels[n])
        for i in reversed(range(n)):
            out = getattr(self, f"decoder{i + 2}")(out, skips[i])
        return self.out(self.decoder1(out, self.encoder1(image)))

    def decode(self, features: EncoderFeatures) -> torch.Tensor:
        return apply_activation(self.decode_logits(features), self.out_activation)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)`` after the output activation."""
        return self.decode(self.encode(x))
