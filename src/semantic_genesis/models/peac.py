"""The PEAC network: a backbone whose tokens are grid cells, with the POPAR and consistency heads.

PEAC (Zhou et al., "Learning Anatomically Consistent Embedding for Chest Radiography", BMVC 2023;
``PEC_Model`` in the official ``global_local_popar_swin.py``) puts four heads on the deepest tokens of
a backbone whose total stride equals the grid cell ``g`` (Swin-B at 448 px: 14 x 14 tokens of 1024
channels):

* **order head** ``Linear(C, k * k)`` on every token (zero-initialised bias): which original patch
  sits at this position (POPAR);
* **restoration decoder** ``Conv2d(C, g * g * channels, 1) + PixelShuffle(g)`` on the token map: the
  clean view, ``(B, channels, k * g, k * g)``;
* **global projector** on the mean of the tokens: ``Linear -> LayerNorm -> ReLU`` for each hidden width,
  then a final ``Linear`` without bias (paper: 1024-8192-8192-8192);
* **local projector**, the same builder applied to every token (paper: 1024-512-512-512).

The backbone is any network meeting :mod:`semantic_genesis.models.backbone` whose last level has
stride ``g``; its state-dict keys are kept under ``backbone.``, so :attr:`PEACModel.backbone` is what
transfer learning exports.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models.backbone import check_backbone


def projection_mlp(in_features: int, widths: Sequence[int]) -> nn.Sequential:
    """PEAC's projector: ``Linear -> LayerNorm -> ReLU`` per hidden width, then ``Linear(bias=False)``.

    ``widths`` are the hidden widths followed by the output width, e.g. ``(8192, 8192, 8192)`` for the
    global projector ``1024-8192-8192-8192`` of the official ``MLP`` config string.
    """
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ConfigError(f"PEAC projector widths must be positive integers, got {list(widths)}")
    layers: list[nn.Module] = []
    previous = int(in_features)
    for width in widths[:-1]:
        layers += [nn.Linear(previous, width), nn.LayerNorm(width), nn.ReLU(inplace=True)]
        previous = width
    layers.append(nn.Linear(previous, widths[-1], bias=False))
    return nn.Sequential(*layers)


class PEACOutput(NamedTuple):
    """What :class:`PEACModel` returns for a batch of ``B`` views of ``k x k`` cells.

    Attributes:
        order_logits: ``(B, k * k, k * k)``: per token, logits over the original patch positions.
        restoration: ``(B, channels, k * g, k * g)`` the restored view (unbounded; the target is in [0, 1]).
        global_embedding: ``(B, D_global)`` projector output of the token mean (not normalised).
        local_embedding: ``(B, k * k, D_local)`` projector output of every token (not normalised).
        tokens: ``(B, k * k, C)`` the backbone's deepest tokens, row-major.
    """

    order_logits: torch.Tensor
    restoration: torch.Tensor
    global_embedding: torch.Tensor
    local_embedding: torch.Tensor
    tokens: torch.Tensor


class PEACModel(nn.Module):
    """Backbone + order head + restoration decoder + global and local projectors (see module doc).

    Args:
        backbone: a backbone (:func:`~semantic_genesis.models.backbone.check_backbone`) whose last level
            has stride ``cell``.
        cell: grid cell ``g`` in pixels (paper 32).
        crop_cells: view size ``k`` in cells (paper 14): the order head has ``k * k`` outputs.
        global_widths: hidden widths + output width of the global projector (paper 8192, 8192, 8192).
        local_widths: the same for the local projector (paper 512, 512, 512).
    """

    def __init__(self, backbone: nn.Module, cell: int, crop_cells: int,
                 global_widths: Sequence[int] = (8192, 8192, 8192), local_widths: Sequence[int] = (512, 512, 512)):
        super().__init__()
        check_backbone(backbone, who="PEAC backbone")
        if getattr(backbone, "spatial_dims", 2) != 2:
            raise ConfigError(f"PEAC needs a 2D backbone, got {type(backbone).__name__} ({backbone.spatial_dims}D)")
        stride = int(backbone.feature_strides[-1])
        if stride != cell:
            raise ConfigError(
                f"PEAC: the backbone's total stride ({stride}) must equal the grid cell "
                f"method.options.cell ({cell}), so that each token covers exactly one cell")
        self.backbone = backbone
        self.cell = int(cell)
        self.crop_cells = int(crop_cells)
        self.channels = int(backbone.in_channels)
        width = int(backbone.feature_channels[-1])
        n = self.crop_cells ** 2
        self.order_head = nn.Linear(width, n)
        nn.init.zeros_(self.order_head.bias)
        self.decoder = nn.Sequential(nn.Conv2d(width, cell * cell * self.channels, kernel_size=1), nn.PixelShuffle(cell))
        self.global_projector = projection_mlp(width, global_widths)
        self.local_projector = projection_mlp(width, local_widths)

    def forward(self, x: torch.Tensor) -> PEACOutput:
        """Heads of a batch of views ``x (B, channels, k * g, k * g)``."""
        size = self.crop_cells * self.cell
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, size, size):
            raise DataError(f"PEAC: expected views (B, {self.channels}, {size}, {size}), got {tuple(x.shape)}")
        features = self.backbone.encode(x)
        tokens = features.tokens(-1)  # (B, k*k, C), row-major
        if tokens.shape[1] != self.crop_cells ** 2:
            raise DataError(f"PEAC: the backbone gave {tokens.shape[1]} tokens, expected {self.crop_cells ** 2}")
        return PEACOutput(
            order_logits=self.order_head(tokens),
            restoration=self.decoder(features.bottleneck),
            global_embedding=self.global_projector(tokens.mean(dim=1)),
            local_embedding=self.local_projector(tokens),
            tokens=tokens,
        )
