"""The model registry: every registered model builds tiny, runs forward and backward on CPU."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis.config import ModelConfig
from semantic_genesis.errors import ConfigError
from semantic_genesis.models import available, create, create_from_config

TINY_INPUTS = {
    "unet3d": (2, 1, 16, 16, 8),
    "ynet3d": (2, 1, 16, 16, 8),
    "encoder_classifier3d": (2, 1, 16, 16, 8),
    "unet2d": (2, 1, 32, 32),
    "resunet2d": (2, 1, 64, 64),
    "swin2d": (2, 1, 64, 64),  # a backbone without a decoder: forward gives its tokens
    "swin_unetr2d": (2, 1, 64, 64),
    "rubiks_cube3d": (2, 1, 32, 32, 16),  # pretext network: logits only, no decoder
    "ynet": (2, 1, 32, 32),  # generic networks on a backbone, here 2D ones
    "encoder_classifier": (2, 1, 64, 64),
    "multi_head": (2, 1, 32, 32),  # Ark: projector + one head per dataset; forward(x) lists every head
}
TINY_ARGS = {
    "swin2d": {"size": "tiny"},
    "swin_unetr2d": {"size": "tiny"},
    "ynet": {"backbone": "unet2d", "backbone_args": {"width": 0.125}},
    "encoder_classifier": {"backbone": "resunet2d", "backbone_args": {"width": 0.125}},
    "multi_head": {"backbone": "unet2d", "backbone_args": {"width": 0.125}, "num_classes": [3, 2, 1], "proj_dim": 8},
}


def test_registry_names():
    assert {"unet3d", "ynet3d", "unet2d", "resunet2d"} <= set(available())
    assert set(available()) == set(TINY_INPUTS)


@pytest.mark.parametrize("name", available())
def test_forward_backward_tiny(name):
    torch.manual_seed(0)
    model = create(name, **TINY_ARGS.get(name, {"width": 0.125}))
    x = torch.rand(*TINY_INPUTS[name])
    out = model(x)
    tensors = list(out) if isinstance(out, (tuple, list)) else [out]
    loss = sum(t.float().mean() for t in tensors)
    loss.backward()
    params = list(model.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    if hasattr(model, "decode"):
        assert tensors[0].shape == (x.shape[0], 1, *x.shape[2:])
        assert float(tensors[0].detach().min()) >= 0 and float(tensors[0].detach().max()) <= 1
    if hasattr(model, "encode"):  # encoder features exist and are deeper than the input
        feats = model.encode(x)
        assert feats.bottleneck.shape[1] == model.bottleneck_channels
        assert all(s.shape[0] == x.shape[0] for s in feats.skips)
    with pytest.raises(ValueError, match="divisible"):
        model(torch.rand(*x.shape[:-1], x.shape[-1] + 1))


def test_unknown_name_and_argument():
    with pytest.raises(ConfigError, match="available: .*unet3d"):
        create("vnet9")
    with pytest.raises(ConfigError, match="valid arguments: .*width"):
        create("unet3d", depth=5)


def test_create_from_config():
    model = create_from_config(ModelConfig(name="ynet3d", width=0.125, num_classes=7))
    assert model.num_classes == 7 and model.arch_args["width"] == 0.125
    ae = create_from_config(ModelConfig(name="unet3d", width=0.125, skip_connections=False, num_classes=3))
    assert ae.skip_connections is False


def test_2d_unets_shapes():
    torch.manual_seed(0)
    res = create("resunet2d", width=0.125)
    feats = res.encode(torch.rand(1, 1, 64, 64))
    assert [s.shape[-1] for s in feats.skips] == [32, 16, 8, 4] and feats.bottleneck.shape[-1] == 2
    unet = create("unet2d", width=0.125)
    assert [s.shape[-1] for s in unet.encode(torch.rand(1, 1, 32, 32)).skips] == [32, 16, 8]
    with pytest.raises(ValueError, match="4D input"):
        unet(torch.rand(1, 1, 32, 32, 8))


def test_create_from_config_passes_model_args():
    swin = create_from_config(ModelConfig(name="swin2d", args={"size": "tiny", "embed_dim": 12}))
    assert swin.arch_args["size"] == "tiny" and swin.feature_channels == (12, 24, 48)
    with pytest.raises(ConfigError, match="model.args.depth: model 'swin2d' has no such argument; valid arguments: .*depths"):
        create_from_config(ModelConfig(name="swin2d", args={"depth": 3}))
