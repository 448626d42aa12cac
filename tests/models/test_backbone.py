"""The backbone contract: every registered backbone meets it, and the generic networks on a backbone
(YNet, EncoderClassifier) work in 2D and 3D, on the U-Nets, the ResNet-18 U-Net and a non-U-Net
(token) backbone, keeping the backbone's own state-dict keys."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models import EncoderClassifier, YNet, YNet3D, create
from semantic_genesis.models.backbone import (
    Backbone,
    DenseBackbone,
    EncoderFeatures,
    backbone_of,
    backbones,
    check_backbone,
)
from tests.models.conftest import official_unet3d_keys

# a tiny valid input per backbone: (B, C, *spatial), every size a multiple of min_divisor
TINY_INPUTS = {"unet3d": (2, 1, 16, 16, 8), "unet2d": (2, 1, 32, 32), "resunet2d": (2, 1, 64, 64), "swin2d": (2, 1, 64, 64)}
TINY_ARGS = {"swin2d": {"size": "tiny"}}  # the others: {"width": 0.125}
ENCODER_ONLY = {"swin2d"}  # backbones without a decoder (not dense)


def tiny(name):
    return create(name, **TINY_ARGS.get(name, {"width": 0.125}))


def test_the_registered_backbones():
    assert backbones() == sorted(TINY_INPUTS)


@pytest.mark.parametrize("name", backbones())
def test_backbone_meets_the_contract(name):
    torch.manual_seed(0)
    model = tiny(name)
    dense = name not in ENCODER_ONLY
    check_backbone(model, dense=dense)
    assert isinstance(model, Backbone) and isinstance(model, DenseBackbone) == dense
    x = torch.rand(*TINY_INPUTS[name])
    assert model.spatial_dims == x.dim() - 2 and model.in_channels == x.shape[1]
    features = model.encode(x)
    assert isinstance(features, EncoderFeatures)
    levels = features.levels
    assert len(levels) == len(model.feature_channels) == len(model.feature_strides)
    for level, channels, stride in zip(levels, model.feature_channels, model.feature_strides):
        assert level.shape == (x.shape[0], channels, *(s // stride for s in x.shape[2:]))
    assert features.bottleneck is levels[-1] and features.pooled().shape == (x.shape[0], model.feature_channels[-1])
    tokens = features.tokens()
    assert tokens.shape == (x.shape[0], levels[-1][0, 0].numel(), model.feature_channels[-1])
    # the prefixes partition the state dict: encoder + decoder (output layer included) = everything
    top = {k.split(".")[0] for k in model.state_dict()}
    assert top == set(model.encoder_state_dict_prefixes) | set(getattr(model, "decoder_state_dict_prefixes", ()))
    encoder = {id(p) for p in model.encoder_parameters()}
    assert encoder == {id(p) for n, p in model.named_parameters() if n.split(".")[0] in model.encoder_state_dict_prefixes}
    if dense:
        assert set(model.output_state_dict_prefixes) <= set(model.decoder_state_dict_prefixes)
        out = model.decode_logits(features)
        assert out.shape == (x.shape[0], model.out_channels, *x.shape[2:])
    bad = torch.rand(*x.shape[:-1], x.shape[-1] + 1)
    with pytest.raises(DataError, match=f"divisible by {model.min_divisor}"):
        model.encode(bad)


@pytest.mark.parametrize("name", backbones())
def test_ynet_and_encoder_classifier_on_every_backbone(name):
    torch.manual_seed(0)
    backbone = tiny(name)
    x = torch.rand(*TINY_INPUTS[name])
    clf = EncoderClassifier(backbone, num_classes=3, head="mlp")
    assert getattr(clf, backbone.encoder_state_dict_prefixes[0]) is getattr(backbone, backbone.encoder_state_dict_prefixes[0])
    assert {k.split(".")[0] for k in clf.state_dict()} == {*backbone.encoder_state_dict_prefixes, "head"}
    assert clf(x).shape == (x.shape[0], 3) and backbone_of(clf) is backbone
    if name in ENCODER_ONLY:
        with pytest.raises(ConfigError, match="not a dense backbone"):
            YNet(backbone, num_classes=5)
        return
    ynet = YNet(backbone, num_classes=5)
    out = ynet(x)
    assert out.restoration.shape == (x.shape[0], 1, *x.shape[2:]) and out.logits.shape == (x.shape[0], 5)
    assert 0 <= float(out.restoration.detach().min()) and float(out.restoration.detach().max()) <= 1
    # the backbone's own keys, no 'backbone.' prefix, plus the head
    assert list(ynet.state_dict())[: len(backbone.state_dict())] == list(backbone.state_dict())
    assert {k.split(".")[0] for k in ynet.state_dict()} - {k.split(".")[0] for k in backbone.state_dict()} == {"clc_out"}
    assert [n for n, _ in ynet.named_parameters()] == [k for k in ynet.state_dict() if k in dict(ynet.named_parameters())]
    (out.restoration.mean() + out.logits.logsumexp(1).mean()).backward()
    assert all(p.grad is not None for p in ynet.parameters())
    assert backbone_of(ynet) is backbone and backbone_of(backbone) is backbone


def test_generic_ynet_on_the_3d_unet_has_the_official_keys_and_counts():
    unet_keys = official_unet3d_keys()
    ynet = YNet(create("unet3d"), num_classes=44)
    keys = list(ynet.state_dict())
    assert sorted(keys[:106]) == sorted(unet_keys) and all(k.startswith("clc_out.") for k in keys[106:])
    assert keys == list(YNet3D(num_classes=44).state_dict())
    assert sum(p.numel() for p in ynet.parameters()) == 33_277_613  # the official YNet3D


def test_networks_are_rebuilt_from_their_record():
    torch.manual_seed(0)
    for model in (YNet(create("unet2d", width=0.125), 4), EncoderClassifier(create("resunet2d", width=0.125), 2, "genesis"),
                  YNet3D(width=0.125, num_classes=3)):
        from semantic_genesis.models.registry import architecture_of

        name, args = architecture_of(model)
        rebuilt = create(name, **args)
        assert type(rebuilt) is type(model)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert architecture_of(YNet(create("unet2d", width=0.125), 4))[1]["backbone"] == "unet2d"


def test_wrapper_moves_trains_and_copies_with_its_backbone():
    torch.manual_seed(0)
    ynet = YNet(create("unet2d", width=0.125), num_classes=2)
    ynet.eval()
    assert not ynet.backbone.training and not ynet.down_tr64.training
    ynet.to(torch.float64)
    assert ynet.backbone.down_tr64.ops[0].conv1.weight.dtype == torch.float64  # the same modules
    clone = copy.deepcopy(ynet)
    assert clone.down_tr64 is clone.backbone.down_tr64 and clone.down_tr64 is not ynet.down_tr64
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(clone(x).logits, ynet(x).logits)


class TokenBackbone(nn.Module):
    """A non-U-Net backbone: a patch embedding and two token-mixing stages (a miniature of a vision
    transformer / Swin), giving its stages as maps, as the contract asks."""

    spatial_dims = 2
    min_divisor = 8
    feature_strides = (4, 8)
    encoder_state_dict_prefixes = ("patch_embed", "stage1", "merge", "stage2")

    def __init__(self, in_channels: int = 1, dim: int = 8):
        super().__init__()
        self.in_channels = in_channels
        self.feature_channels = (dim, 2 * dim)
        self.patch_embed = nn.Conv2d(in_channels, dim, 4, stride=4)
        self.stage1 = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.merge = nn.Conv2d(dim, 2 * dim, 2, stride=2)
        self.stage2 = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, 2 * dim), nn.GELU())

    @staticmethod
    def _mix(stage: nn.Module, maps: torch.Tensor) -> torch.Tensor:
        b, c, h, w = maps.shape
        tokens = maps.flatten(2).transpose(1, 2)  # (B, N, C)
        return (tokens + stage(tokens)).transpose(1, 2).reshape(b, c, h, w)

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        s1 = self._mix(self.stage1, self.patch_embed(x))
        s2 = self._mix(self.stage2, self.merge(s1))
        return EncoderFeatures(s2, (s1,))


def test_a_non_unet_backbone_plugs_into_the_classifier():
    torch.manual_seed(0)
    backbone = TokenBackbone()
    check_backbone(backbone)
    with pytest.raises(ConfigError, match="not a dense backbone.*decode"):
        YNet(backbone, num_classes=2)
    clf = EncoderClassifier(backbone, num_classes=3, head="linear")
    x = torch.rand(2, 1, 32, 32)
    assert clf(x).shape == (2, 3)
    assert clf.encode(x).tokens().shape == (2, 16, 16)  # 4x4 tokens of 16 channels
    assert {k.split(".")[0] for k in clf.state_dict()} == {*TokenBackbone.encoder_state_dict_prefixes, "head"}


def test_check_backbone_names_what_is_missing():
    with pytest.raises(ConfigError, match="lacks spatial_dims, in_channels, feature_channels"):
        check_backbone(nn.Linear(2, 2))

    class Holder(TokenBackbone):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

    with pytest.raises(ConfigError, match="tensor 'scale' is not inside a submodule"):
        check_backbone(Holder())

    class Renamed(TokenBackbone):
        encoder_state_dict_prefixes = ("patch_embed", "nope")

    with pytest.raises(ConfigError, match="prefix 'nope' is not one of its submodules"):
        EncoderClassifier(Renamed(), num_classes=1)
