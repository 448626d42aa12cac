"""A 2D Swin transformer backbone (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV 2021), built on MONAI's ``SwinTransformer`` (the SwinUNETR encoder).

The network is MONAI's ``monai.networks.nets.swin_unetr.SwinTransformer`` with ``spatial_dims=2``,
kept under the attribute ``swinViT`` as in MONAI's ``SwinUNETR``, so the state-dict keys are exactly
``swinViT.*`` of a SwinUNETR encoder (``swinViT.patch_embed.proj.weight``,
``swinViT.layers1.0.blocks.0.attn.qkv.weight``, ...) and weights move between the two both ways.

Layout (``P`` = ``patch_size``, ``C`` = ``embed_dim``, ``n`` = ``len(depths)`` stages, 1 to 4):

* a patch embedding (a ``P x P`` convolution of stride ``P``): level 0, ``(B, C, H/P, W/P)``;
* stage ``i`` (1..n): ``depths[i-1]`` Swin blocks (window attention, the shifted windows alternating;
  ``num_heads[i-1]`` heads) on ``C * 2**(i-1)`` channels, then a **patch merging** (2 x 2 neighbours
  concatenated, normalised and projected to twice the channels): level ``i``,
  ``(B, C * 2**i, H / (P * 2**i), W / (P * 2**i))``.

MONAI merges after every stage, the last one included (``final_merge=True``, the SwinUNETR layout:
levels of strides ``P, 2P, 4P, 8P, 16P`` for four stages). The Swin of Liu et al. has no merging after
its last stage: with ``final_merge=False`` the last stage's blocks give the deepest level at the stride
of the stage before (strides ``P, 2P, 4P, 8P, 8P``; Swin-B: ``4, 8, 16, 32, 32`` with 128, 256, 512,
1024, 1024 channels). That network lacks the tensors ``swinViT.layers{n}.0.downsample.*``; otherwise its
keys are MONAI's.

**Total stride** (:attr:`Swin2D.total_stride`, the stride of the deepest level, the tokens of
:meth:`EncoderFeatures.tokens`): ``P * 2**n`` with ``final_merge``, else ``P * 2**(n-1)``. Swin-B
(patch 4, four stages, no final merging) has total stride 32: a 448-pixel input gives 14 x 14 tokens
(PEAC, Zhou et al., BMVC 2023), a 224-pixel one 7 x 7 (Ark, Ma et al., MICCAI 2023). PEAC's grid cell
must equal this stride, so that every output token covers exactly one cell. Every level divides the
input exactly when H and W are multiples of the total stride (:attr:`Swin2D.min_divisor`).

Named sizes (:data:`SWIN2D_SIZES`, argument ``size``; any architecture argument given overrides the
size's value):

=========  =========  ============  ==============  ======  =====  ===========  ==============
size       embed_dim  depths        num_heads       window  patch  final_merge  total stride
=========  =========  ============  ==============  ======  =====  ===========  ==============
``tiny``   8          (1, 1)        (1, 2)          4       2      True         8
``swin_t`` 96         (2, 2, 6, 2)  (3, 6, 12, 24)  7       4      False        32
``swin_s`` 96         (2, 2, 18, 2) (3, 6, 12, 24)  7       4      False        32
``swin_b`` 128        (2, 2, 18, 2) (4, 8, 16, 32)  7       4      False        32
``swin_l`` 192        (2, 2, 18, 2) (6, 12, 24, 48) 7       4      False        32
=========  =========  ============  ==============  ======  =====  ===========  ==============

``swin_t`` / ``swin_s`` / ``swin_b`` / ``swin_l`` are the four sizes of Liu et al.; ``tiny`` is a CPU
test size (7,091 parameters at one input channel; levels of strides 2, 4, 8 with 8, 16, 32 channels;
two merging steps) for 64-pixel crops (8 x 8 tokens). It keeps MONAI's layout (every key of a
two-stage SwinUNETR encoder).

MONAI's ``BasicLayer.forward`` needs the optional ``einops`` package; :meth:`Swin2D.encode` runs the
same computation (the same blocks, attention masks and merging) with plain tensor permutes instead, so
``einops`` is not required.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.models.backbone import EncoderFeatures, check_spatial_input

#: Named architectures: ``size`` -> the architecture arguments of :class:`Swin2D`.
SWIN2D_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 8, "depths": (1, 1), "num_heads": (1, 2), "window_size": 4, "patch_size": 2,
             "final_merge": True},
    "swin_t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "window_size": 7,
               "patch_size": 4, "final_merge": False},
    "swin_s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "window_size": 7,
               "patch_size": 4, "final_merge": False},
    "swin_b": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "window_size": 7,
               "patch_size": 4, "final_merge": False},
    "swin_l": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48), "window_size": 7,
               "patch_size": 4, "final_merge": False},
}
ARCHITECTURE_ARGS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "final_merge")


def resolve_swin_size(size: str, **given: Any) -> dict[str, Any]:
    """The architecture arguments of named size ``size``, with every argument of ``given`` that is not
    None taking precedence.

    Raises:
        ConfigError: unknown size (lists the sizes).
    """
    if size not in SWIN2D_SIZES:
        raise ConfigError(f"unknown Swin size {size!r}; sizes: {', '.join(SWIN2D_SIZES)}")
    resolved = dict(SWIN2D_SIZES[size])
    resolved.update({k: v for k, v in given.items() if v is not None})
    return resolved


def check_swin_arguments(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int], window_size: int,
                         patch_size: int) -> None:
    """Raise a one-line :class:`ConfigError` unless the architecture is one MONAI's ``SwinTransformer``
    builds and runs (1 to 4 stages, one head count per stage, channels divisible by the heads)."""
    if not 1 <= len(depths) <= 4:
        raise ConfigError(f"Swin depths {tuple(depths)}: MONAI's SwinTransformer has 1 to 4 stages, got {len(depths)}")
    if len(num_heads) != len(depths):
        raise ConfigError(f"Swin num_heads {tuple(num_heads)} must have one entry per stage of depths {tuple(depths)}")
    if embed_dim < 1 or window_size < 1 or patch_size < 1 or min(depths) < 1 or min(num_heads) < 1:
        raise ConfigError(f"Swin embed_dim, window_size, patch_size, depths and num_heads must be positive, got "
                          f"embed_dim={embed_dim}, window_size={window_size}, patch_size={patch_size}, "
                          f"depths={tuple(depths)}, num_heads={tuple(num_heads)}")
    for i, heads in enumerate(num_heads):
        dim = embed_dim * 2**i
        if dim % heads:
            raise ConfigError(f"Swin stage {i + 1} has {dim} channels (embed_dim {embed_dim} * 2**{i}), not divisible "
                              f"by its num_heads {heads}")


class Swin2D(nn.Module):
    """2D Swin transformer encoder: ``(B, in_channels, H, W)`` -> a pyramid of maps (see the module docstring).

    Args:
        in_channels: input channels (1 for radiographs; 3 for ImageNet-style inputs).
        size: named architecture of :data:`SWIN2D_SIZES` (default ``"swin_b"``, Swin-B).
        embed_dim: channels of the patch embedding (MONAI's ``feature_size``); None = the size's.
        depths: Swin blocks per stage (1 to 4 stages); None = the size's.
        num_heads: attention heads per stage; None = the size's.
        window_size: attention window (square, in tokens); None = the size's.
        patch_size: patch embedding size and stride in pixels; None = the size's.
        final_merge: merge patches after the last stage too (MONAI's SwinUNETR layout) or not (the Swin of
            Liu et al.); None = the size's.
        mlp_ratio: hidden width of the blocks' MLP relative to their channels.
        qkv_bias: learn a bias of the query/key/value projection.
        drop_rate: dropout after the patch embedding and in the MLPs.
        attn_drop_rate: dropout of the attention weights.
        drop_path_rate: stochastic depth, rising linearly to this rate over the blocks.
        patch_norm: layer norm after the patch embedding.
        use_checkpoint: activation checkpointing in every block (less memory, one more forward per block
            in the backward pass; for the paper sizes on a GPU).
        normalize: layer-normalise (no affine parameters) every level returned by :meth:`encode`, as
            MONAI's SwinUNETR does with its encoder outputs.

    Attributes:
        feature_channels: channels of each level, shallow to deep (patch embedding first).
        feature_strides: stride of each level relative to the input.
        total_stride: ``feature_strides[-1]`` (one deepest-level token per ``total_stride`` pixels square).
        min_divisor: ``total_stride``: H and W must be multiples of it.
    """

    ARCH_NAME = "swin2d"
    spatial_dims = 2
    encoder_state_dict_prefixes = ("swinViT",)

    def __init__(
        self,
        in_channels: int = 1,
        size: str = "swin_b",
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
    ):
        super().__init__()
        arch = resolve_swin_size(size, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                                 window_size=window_size, patch_size=patch_size, final_merge=final_merge)
        embed_dim, window_size, patch_size = int(arch["embed_dim"]), int(arch["window_size"]), int(arch["patch_size"])
        depths, num_heads = tuple(int(d) for d in arch["depths"]), tuple(int(h) for h in arch["num_heads"])
        final_merge = bool(arch["final_merge"])
        check_swin_arguments(embed_dim, depths, num_heads, window_size, patch_size)
        for name, rate in (("drop_rate", drop_rate), ("attn_drop_rate", attn_drop_rate), ("drop_path_rate", drop_path_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"Swin {name} must be in [0, 1], got {rate}")
        from monai.networks.nets.swin_unetr import SwinTransformer  # MONAI costs ~1.8 s to import

        self.in_channels = int(in_channels)
        self.size = size
        self.embed_dim, self.depths, self.num_heads = embed_dim, depths, num_heads
        self.window_size, self.patch_size, self.final_merge = window_size, patch_size, final_merge
        self.normalize = bool(normalize)
        self.arch_args = {
            "in_channels": self.in_channels, "size": size, "embed_dim": embed_dim, "depths": list(depths),
            "num_heads": list(num_heads), "window_size": window_size, "patch_size": patch_size,
            "final_merge": final_merge, "mlp_ratio": float(mlp_ratio), "qkv_bias": bool(qkv_bias),
            "drop_rate": float(drop_rate), "attn_drop_rate": float(attn_drop_rate),
            "drop_path_rate": float(drop_path_rate), "patch_norm": bool(patch_norm),
            "use_checkpoint": bool(use_checkpoint), "normalize": self.normalize,
        }
        self.swinViT = SwinTransformer(
            in_chans=self.in_channels, embed_dim=embed_dim, window_size=(window_size, window_size),
            patch_size=(patch_size, patch_size), depths=depths, num_heads=num_heads, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            patch_norm=patch_norm, use_checkpoint=use_checkpoint, spatial_dims=2, downsample="merging",
        )
        n = len(depths)
        if not final_merge:
            self.stages[-1].downsample = None  # the Swin of Liu et al.: no merging after the last stage
        merged = [i + 1 if (i < n - 1 or final_merge) else i for i in range(n)]  # merges done after stage i
        self.feature_channels = (embed_dim, *(embed_dim * 2**m for m in merged))
        self.feature_strides = (patch_size, *(patch_size * 2**m for m in merged))
        self.total_stride = self.feature_strides[-1]
        self.bottleneck_channels = self.feature_channels[-1]

    @property
    def min_divisor(self) -> int:
        """:attr:`total_stride`: every level divides the input exactly when H and W are multiples of it."""
        return self.total_stride

    @property
    def stages(self) -> list[nn.Module]:
        """MONAI's stage modules (``swinViT.layers1.0`` ... ``swinViT.layers{n}.0``), shallow to deep."""
        return [getattr(self.swinViT, f"layers{i + 1}")[0] for i in range(len(self.depths))]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~semantic_genesis.errors.DataError` unless ``x`` is ``(B, in_channels, H, W)``
        with H and W multiples of :attr:`min_divisor`."""
        check_spatial_input(x, 2, self.in_channels, self.min_divisor, type(self).__name__)

    def encoder_modules(self) -> list[nn.Module]:
        """``[swinViT]``."""
        return [self.swinViT]

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the Swin transformer (all of them)."""
        return self.swinViT.parameters()

    def _level(self, x: torch.Tensor) -> torch.Tensor:
        """A level as returned: layer-normalised over channels (no affine) when :attr:`normalize`."""
        if not self.normalize:
            return x
        return F.layer_norm(x.permute(0, 2, 3, 1), [x.shape[1]]).permute(0, 3, 1, 2)

    @staticmethod
    def _run_stage(stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One MONAI ``BasicLayer`` on ``(B, C, h, w)``: its blocks (shifted-window masks from MONAI's
        ``compute_mask``), then its merging if it has one. The computation of ``BasicLayer.forward``."""
        from monai.networks.nets.swin_unetr import compute_mask, get_window_size

        b, _, h, w = x.shape
        window, shift = get_window_size((h, w), stage.window_size, stage.shift_size)
        x = x.permute(0, 2, 3, 1).contiguous()  # (B, h, w, C), the blocks' layout
        padded = [int(math.ceil(h / window[0])) * window[0], int(math.ceil(w / window[1])) * window[1]]
        mask = compute_mask(padded, window, shift, x.device)
        for block in stage.blocks:
            x = block(x, mask)
        x = x.view(b, h, w, -1)
        if stage.downsample is not None:
            x = stage.downsample(x)
        return x.permute(0, 3, 1, 2).contiguous()

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        """``(B, in_channels, H, W)`` -> every level ``(B, feature_channels[i], H / feature_strides[i],
        W / feature_strides[i])``: the patch embedding, then each stage; the deepest is the bottleneck.

        Raises:
            DataError: ``x`` is not ``(B, in_channels, H, W)`` with H and W multiples of :attr:`min_divisor`.
        """
        self.check_input(x)
        out = self.swinViT.pos_drop(self.swinViT.patch_embed(x))
        levels = [self._level(out)]
        for stage in self.stages:
            out = self._run_stage(stage, out)
            levels.append(self._level(out))
        return EncoderFeatures(levels[-1], tuple(levels[:-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest level's tokens ``(B, N, C)`` in row-major order (N = H/s * W/s, s = total stride)."""
        return self.encode(x).tokens()
