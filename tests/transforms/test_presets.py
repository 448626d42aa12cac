import pytest
import torch

from semantic_genesis.config import Config, from_dict
from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import available_presets, build_preset, preset_defaults

from .conftest import gen


def test_available_presets():
    assert set(available_presets()) == {
        "models_genesis", "semantic_genesis", "nonlinear", "local_shuffle", "inpaint", "outpaint", "identity",
    }


@pytest.mark.parametrize("name", ["models_genesis", "semantic_genesis", "nonlinear", "local_shuffle",
                                  "inpaint", "outpaint", "identity"])
@pytest.mark.parametrize("shape", [(3, 1, 32, 32, 16), (3, 2, 40, 30)])
def test_every_preset_2d_3d_deterministic_and_pure(name, shape):
    x = torch.rand(shape, generator=gen(1))
    before = x.clone()
    preset = build_preset(name, **({"shuffle_windows": 300} if "shuffle_windows" in preset_defaults(name) else {}))
    inp, tgt = preset(x, gen(2))
    inp2, tgt2 = preset(x, gen(2))
    assert torch.equal(x, before), "the input batch must never be modified"
    assert torch.equal(inp, inp2) and torch.equal(tgt, tgt2)
    assert inp.shape == x.shape and tgt.shape == x.shape and inp.device == x.device
    assert inp.data_ptr() != x.data_ptr() and tgt.data_ptr() != x.data_ptr()
    assert ((inp >= 0) & (inp <= 1)).all()
    if name == "identity":
        assert torch.equal(inp, x) and torch.equal(tgt, x)
    elif name != "models_genesis":
        assert torch.equal(tgt, x)  # only Models Genesis flips the target


def test_models_genesis_identity_rate_and_flipped_targets():
    # P(input == target) = P(no shuffle) P(no nonlinear) P(no paint) = 0.5 * 0.1 * 0.1 = 0.5%
    # cubes of >= 10 voxels per axis so that shuffle windows can be larger than one voxel
    preset = build_preset("models_genesis", shuffle_windows=20, curve_points=256, lut_size=64)
    x = torch.rand(5000, 1, 20, 10, 10, generator=gen(3))
    inp, tgt = preset(x, gen(4))
    same = (inp == tgt).flatten(1).all(1).double().mean().item()
    assert 0.002 < same < 0.009
    # targets are the originals, flipped: same multiset of values per sample
    assert torch.equal(torch.sort(tgt.flatten(1), 1).values, torch.sort(x.flatten(1), 1).values)
    assert (tgt != x).flatten(1).any(1).double().mean() > 0.3  # about 40% are flipped


def test_semantic_genesis_one_transform_each_and_options():
    x = torch.rand(400, 1, 24, 24, 12, generator=gen(5))
    preset = build_preset("semantic_genesis", elastic=False, strength="models_genesis")
    inp, tgt = preset(x, gen(6))
    assert torch.equal(tgt, x)
    assert preset.options["shuffle_windows"] == 10000
    # with no elastic warp, exactly one transform per sample; only local shuffle outputs nothing but
    # values of the input (non-linear maps them, painting adds noise), and it is chosen with p = 0.25
    only_moved = torch.tensor([bool(torch.isin(inp[b], x[b]).all()) for b in range(400)]).double().mean().item()
    assert 0.18 < only_moved < 0.32  # the local-shuffle quarter
    sg = build_preset("semantic_genesis")
    assert sg.options["shuffle_windows"] == 5 and sg.options["inpaint_max_windows"] == 1
    assert sg.options["outpaint_max_extra_windows"] == 0
    assert build_preset("semantic_genesis", shuffle_windows=50).options["shuffle_windows"] == 50
    warped, _ = sg(x[:4], gen(7))
    assert not torch.equal(warped, x[:4])


def test_overrides_validation_and_yaml():
    with pytest.raises(ConfigError, match="valid options: .*shuffle_windows"):
        build_preset("local_shuffle", windows=10)
    with pytest.raises(ConfigError, match="available: models_genesis"):
        build_preset("genesis")
    with pytest.raises(ConfigError, match="probability"):
        build_preset("models_genesis", paint_prob=1.5)
    with pytest.raises(ConfigError, match="non-negative integer"):
        build_preset("local_shuffle", shuffle_windows="many")
    with pytest.raises(ConfigError, match="one of"):
        build_preset("inpaint", fill="zeros")
    with pytest.raises(ConfigError, match="sum to 1"):
        build_preset("semantic_genesis", choice_probs=[0.5, 0.5, 0.5, 0.5])
    cfg = from_dict(Config, {"transforms": {"preset": "inpaint",
                                            "overrides": {"inpaint_size_fraction": [0.1, 0.2], "fill": "constant"}}})
    preset = build_preset(cfg.transforms.preset, **cfg.transforms.overrides)
    assert preset.options["inpaint_size_fraction"] == (0.1, 0.2) and preset.options["fill"] == "constant"


def test_default_generator_follows_global_seed():
    x = torch.rand(2, 1, 16, 16, 8, generator=gen(8))
    preset = build_preset("nonlinear")
    torch.manual_seed(123)
    a, _ = preset(x)
    torch.manual_seed(123)
    b, _ = preset(x)
    assert torch.equal(a, b)
