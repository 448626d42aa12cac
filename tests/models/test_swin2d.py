"""The 2D Swin backbone: the contract, shapes and strides of the named sizes, row-major tokens, locality
of the patch embedding, gradients, MONAI SwinUNETR key compatibility and the same outputs as MONAI's own
forward, and one-line errors."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models import Swin2D, create
from semantic_genesis.models.backbone import Backbone, DenseBackbone, EncoderFeatures, check_backbone
from semantic_genesis.models.registry import architecture_of
from semantic_genesis.models.swin2d import SWIN2D_SIZES


def tiny(**kwargs) -> Swin2D:
    torch.manual_seed(0)
    return Swin2D(size="tiny", **kwargs)


def test_tiny_contract_shapes_strides_and_parameter_count():
    model = tiny()
    check_backbone(model)
    assert isinstance(model, Backbone) and not isinstance(model, DenseBackbone)
    assert model.feature_channels == (8, 16, 32) and model.feature_strides == (2, 4, 8)
    assert model.total_stride == model.min_divisor == 8
    assert model.encoder_state_dict_prefixes == ("swinViT",)
    assert {k.split(".")[0] for k in model.state_dict()} == {"swinViT"}
    assert sum(p.numel() for p in model.parameters()) == 7_091
    x = torch.rand(2, 1, 64, 64)
    features = model.encode(x)
    assert isinstance(features, EncoderFeatures)
    assert [tuple(level.shape) for level in features.levels] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]
    assert features.pooled().shape == (2, 32)
    assert model(x).shape == (2, 64, 32)  # 8 x 8 tokens of 32 channels
    # non-square inputs: each side divided by the stride
    assert [tuple(level.shape[2:]) for level in model.encode(torch.rand(1, 1, 32, 48)).levels] == [(16, 24), (8, 12), (4, 6)]


def test_tokens_are_the_maps_in_row_major_order():
    model = tiny()
    features = model.encode(torch.rand(2, 1, 64, 64))
    for level in range(3):
        maps = features.levels[level]
        tokens = features.tokens(level)
        assert torch.equal(tokens, maps.flatten(2).transpose(1, 2))
        w = maps.shape[-1]
        r, c = 3, 5  # token r * W + c is map position (r, c)
        assert torch.equal(tokens[:, r * w + c], maps[:, :, r, c])


def test_perturbing_one_cell_changes_only_its_patch_embedding_tokens():
    """One g x g cell (g = total stride) of the input changes only the patch-embedding tokens inside it;
    attention then mixes the cells, so deeper levels change elsewhere too."""
    model = tiny().eval()
    g, p = model.total_stride, model.patch_size
    x = torch.rand(1, 1, 64, 64)
    y = x.clone()
    r, c = 2, 5
    y[..., r * g:(r + 1) * g, c * g:(c + 1) * g] += torch.rand(g, g)
    with torch.no_grad():
        fx, fy = model.encode(x), model.encode(y)
    changed = (fx.levels[0] - fy.levels[0]).abs().amax(dim=(0, 1)) > 1e-6  # (32, 32) patch tokens
    inside = torch.zeros_like(changed)
    k = g // p  # patch tokens per cell side
    inside[r * k:(r + 1) * k, c * k:(c + 1) * k] = True
    assert torch.equal(changed, inside)
    deep = (fx.bottleneck - fy.bottleneck).abs().amax(dim=(0, 1)) > 1e-6
    assert deep[r, c] and int(deep.sum()) > 1


def test_gradient_reaches_every_parameter():
    model = tiny(drop_path_rate=0.1)
    features = model.encode(torch.rand(2, 1, 64, 64))
    (features.pooled().square().sum() + sum(level.mean() for level in features.skips)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    plain, checkpointed = tiny(), tiny(use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 64, 64)
    a, b = plain.encode(x).pooled(), checkpointed.encode(x).pooled()
    assert torch.allclose(a, b, atol=1e-6)
    a.sum().backward()
    b.sum().backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_bad_input_size_is_a_one_line_error_naming_the_size():
    model = tiny()
    with pytest.raises(DataError, match=r"input spatial size \(64, 60\).*not divisible by 8") as info:
        model.encode(torch.rand(1, 1, 64, 60))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="1 input channel"):
        model.encode(torch.rand(1, 3, 64, 64))


def test_bad_architectures_are_config_errors():
    with pytest.raises(ConfigError, match="unknown Swin size 'huge'; sizes: tiny, swin_t"):
        Swin2D(size="huge")
    with pytest.raises(ConfigError, match="1 to 4 stages, got 5"):
        Swin2D(size="tiny", depths=(1, 1, 1, 1, 1), num_heads=(1, 1, 1, 1, 1))
    with pytest.raises(ConfigError, match="one entry per stage"):
        Swin2D(size="tiny", num_heads=(1, 2, 4))
    with pytest.raises(ConfigError, match="stage 2 has 24 channels .* not divisible by its num_heads 5"):
        Swin2D(size="tiny", embed_dim=12, num_heads=(1, 5))
    with pytest.raises(ConfigError, match="drop_path_rate must be in"):
        Swin2D(size="tiny", drop_path_rate=1.5)


def test_swin_b_paper_size_shapes_and_parameter_count():
    """Swin-B (Liu et al.): patch 4, embed 128, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 7,
    no merging after the last stage: total stride 32 (448 px -> 14 x 14 tokens, 224 px -> 7 x 7)."""
    torch.manual_seed(0)
    model = create("swin2d", size="swin_b")
    assert model.feature_channels == (128, 256, 512, 1024, 1024)
    assert model.feature_strides == (4, 8, 16, 32, 32) and model.total_stride == 32
    assert sum(p.numel() for p in model.parameters()) == 86_736_824
    assert not any(".layers4.0.downsample." in k for k in model.state_dict())
    with torch.no_grad():
        features = model.encode(torch.rand(1, 1, 64, 64))  # a small input; the 448 / 224 sizes only scale it
    assert [tuple(level.shape) for level in features.levels] == [
        (1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 2, 2), (1, 1024, 2, 2)]
    assert model.min_divisor == 32 and 448 % 32 == 0 and 224 % 32 == 0


def test_named_sizes_record_their_architecture_and_rebuild():
    assert SWIN2D_SIZES["swin_b"]["embed_dim"] == 128
    model = tiny(drop_path_rate=0.2)
    name, args = architecture_of(model)
    assert name == "swin2d" and args["depths"] == [1, 1] and args["drop_path_rate"] == 0.2
    rebuilt = create(name, **args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    # an argument given overrides the size's value
    wider = Swin2D(size="tiny", embed_dim=12)
    assert wider.feature_channels == (12, 24, 48) and wider.arch_args["embed_dim"] == 12


def monai_swin_unetr(**kwargs):
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(1)
    return SwinUNETR(in_channels=1, out_channels=2, spatial_dims=2, **kwargs)


def test_keys_are_those_of_monai_swin_unetr_and_weights_load_both_ways():
    arch = {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8), "window_size": 4}
    unetr = monai_swin_unetr(**arch)
    encoder = {k: v for k, v in unetr.state_dict().items() if k.startswith("swinViT.")}
    ours = Swin2D(size="tiny", embed_dim=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), final_merge=True)
    assert list(ours.state_dict()) == list(encoder)
    ours.load_state_dict(encoder)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in encoder.items())
    # and back: our tensors into the SwinUNETR encoder
    result = unetr.load_state_dict(Swin2D(size="tiny", embed_dim=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                                          final_merge=True).state_dict(), strict=False)
    assert result.unexpected_keys == [] and not any(k.startswith("swinViT.") for k in result.missing_keys)


def test_encode_computes_what_monai_swin_transformer_forward_computes(monkeypatch):
    """MONAI's forward needs ``einops.rearrange``; with a stand-in for its four patterns it must give
    exactly our levels (same blocks, masks, merging, normalisation)."""
    import monai.networks.nets.swin_unetr as swin_unetr

    patterns = {"b c h w -> b h w c": (0, 2, 3, 1), "b h w c -> b c h w": (0, 3, 1, 2),
                "n c h w -> n h w c": (0, 2, 3, 1), "n h w c -> n c h w": (0, 3, 1, 2)}
    monkeypatch.setattr(swin_unetr, "rearrange", lambda x, pattern: x.permute(*patterns[pattern]))
    arch = {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8), "window_size": 4}
    unetr = monai_swin_unetr(**arch).eval()
    ours = Swin2D(size="tiny", embed_dim=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), final_merge=True).eval()
    ours.load_state_dict({k: v for k, v in unetr.state_dict().items() if k.startswith("swinViT.")})
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = unetr.swinViT(x, normalize=True)
        levels = ours.encode(x).levels
    assert len(levels) == len(expected) == 5
    for a, b in zip(levels, expected):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
