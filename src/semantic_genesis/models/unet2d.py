"""The plain 2D U-Net: the Models Genesis U-Net with 2D layers (the paper's 2D backbone).

Same blocks, key names and API as :class:`~semantic_genesis.models.unet3d.UNet3D` (``encode``,
``decode``, ``decode_logits``, ``forward``), on ``(B, C, H, W)`` inputs with H and W multiples of 8.
The default normalisation is the standard ``"batch"`` norm; ``"batch_stats"`` is available too.
"""

from __future__ import annotations

from semantic_genesis.models.unet3d import GenesisUNet


class UNet2D(GenesisUNet):
    """2D U-Net: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``; 64 channels at full resolution."""

    ARCH_NAME = "unet2d"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: float = 1.0,
        norm: str = "batch",
        out_activation: str = "sigmoid",
        skip_connections: bool = True,
    ):
        super().__init__(in_channels, out_channels, width, norm, out_activation, skip_connections, spatial_dims=2)
