"""A contract backbone of total stride 8 for the PEAC tests (tests only; PEAC itself trains a Swin)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from semantic_genesis.models.backbone import EncoderFeatures
from semantic_genesis.models.registry import MODELS

TEST_BACKBONE = "peac_test_conv"


class GridConv(nn.Module):
    """A patch embedding (kernel = stride = 8: each position sees exactly its own 8x8 cell) followed by
    two padded 3x3 convolutions that mix neighbouring cells (as attention does in a Swin)."""

    ARCH_NAME = TEST_BACKBONE
    spatial_dims = 2
    min_divisor = 8
    feature_strides = (8, 8)
    encoder_state_dict_prefixes = ("patch_embed", "mixer")

    def __init__(self, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        c = max(4, int(32 * width))
        self.in_channels = in_channels
        self.feature_channels = (c, c)
        self.arch_args = {"in_channels": in_channels, "width": width}
        self.patch_embed = nn.Conv2d(in_channels, c, 8, stride=8)
        self.mixer = nn.Sequential(nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1))

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        a = self.patch_embed(x)
        return EncoderFeatures(a + self.mixer(a), (a,))


@pytest.fixture
def grid_conv_registered(monkeypatch):
    """Register :class:`GridConv` as ``peac_test_conv`` for one test."""
    monkeypatch.setattr(MODELS, "_entries", {**MODELS._entries, TEST_BACKBONE: GridConv})
    monkeypatch.setattr(MODELS, "_order", [*MODELS._order, TEST_BACKBONE])
    yield TEST_BACKBONE
