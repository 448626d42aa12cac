import subprocess
import sys

import numpy as np
import pytest
import torch

from semantic_genesis.config import Config, from_dict
from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import available_presets, build_preset, preset_defaults
from semantic_genesis.transforms import presets as presets_module
from semantic_genesis.transforms._backend import kernels, use_backend

from .conftest import gen


def test_available_presets():
    assert set(available_presets()) == {
        "models_genesis", "semantic_genesis", "nonlinear", "local_shuffle", "inpaint", "outpaint", "identity",
    }


@pytest.mark.parametrize("name", ["models_genesis", "semantic_genesis", "nonlinear", "local_shuffle",
                                  "inpaint", "outpaint", "identity"])
@pytest.mark.parametrize("shape", [(3, 1, 32, 32, 16), (3, 2, 40, 30)])
def test_every_preset_2d_3d_deterministic_and_pure(name, shape, backend):
    x = torch.rand(shape, generator=gen(1))
    before = x.clone()
    options = {"shuffle_windows": 300} if "shuffle_windows" in preset_defaults(name) else {}
    preset = build_preset(name, spatial_dims=len(shape) - 2, **options)
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


def test_models_genesis_identity_rate_and_flipped_targets(backend):
    # P(input == target) = P(no shuffle) P(no nonlinear) P(no paint) = 0.5 * 0.1 * 0.1 = 0.5%
    # cubes of >= 10 voxels per axis so that shuffle windows can be larger than one voxel
    preset = build_preset("models_genesis", shuffle_windows=20)
    x = torch.rand(5000, 1, 20, 10, 10, generator=gen(3))
    inp, tgt = preset(x, gen(4))
    same = (inp == tgt).flatten(1).all(1).double().mean().item()
    assert 0.002 < same < 0.009
    # targets are the originals, flipped: same multiset of values per sample
    assert torch.equal(torch.sort(tgt.flatten(1), 1).values, torch.sort(x.flatten(1), 1).values)
    assert (tgt != x).flatten(1).any(1).double().mean() > 0.3  # about 40% are flipped


def test_semantic_genesis_one_transform_each_and_options(backend):
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


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
def test_models_genesis_fused_kernels_match_stage_by_stage(monkeypatch):
    """The fused in-place kernel path draws exactly what the stage-by-stage path draws. Only rows that
    are both shuffled and out-painted may differ (the fused shuffle skips the voxels the out-painting
    noise overwrites, so its permutation stream shifts), and only inside the kept boxes."""
    x = torch.rand(48, 1, 40, 40, 20, generator=gen(12))
    preset = build_preset("models_genesis", shuffle_windows=2000)
    fused_in, fused_tgt = preset(x, gen(13))
    monkeypatch.setattr(presets_module, "kernel_fits", lambda *args: False)
    staged_in, staged_tgt = preset(x, gen(13))
    assert torch.equal(fused_tgt, staged_tgt)
    differs = (fused_in != staged_in).flatten(1).double().mean(1)
    # P(shuffled and out-painted) = 0.5 * 0.9 * 0.8 = 0.36: about 17 of 48 rows may differ
    assert 24 <= (differs == 0).sum() <= 42
    assert differs.max() < 0.45  # out-painting keeps ~35% of a cube: the rest (noise) is identical
    assert (differs > 0).sum() >= 5  # the shuffled and out-painted rows (p 0.5 * 0.72)


def test_backend_selection_and_errors(monkeypatch):
    x = torch.rand(2, 1, 12, 12, 6, generator=gen(14))
    half = x.to(torch.float16)
    with use_backend("auto"):  # float16: torch path, no error
        out = build_preset("models_genesis", shuffle_windows=50)(half, gen(15))[0]
        assert out.dtype == torch.float16
    with use_backend("kernel"), pytest.raises(ConfigError, match="float16"):
        build_preset("nonlinear")(half, gen(15))
    with pytest.raises(ConfigError, match="one of auto, kernel, torch"):
        with use_backend("numba"):
            pass
    monkeypatch.setenv("SEMANTIC_GENESIS_TRANSFORMS_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="SEMANTIC_GENESIS_TRANSFORMS_BACKEND"):
        build_preset("nonlinear")(x, gen(15))
    monkeypatch.setenv("SEMANTIC_GENESIS_TRANSFORMS_BACKEND", "torch")
    with_env = build_preset("outpaint")(x, gen(16))[0]
    monkeypatch.delenv("SEMANTIC_GENESIS_TRANSFORMS_BACKEND")
    with use_backend("torch"):
        assert torch.equal(with_env, build_preset("outpaint")(x, gen(16))[0])


def test_package_import_does_not_import_numba():
    code = "import sys, semantic_genesis.transforms; assert 'numba' not in sys.modules, 'numba imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
def test_output_buffers_are_reused_only_when_free():
    """The kernel path's outputs come from a pool: a dropped batch's buffer is handed out again, one
    still referenced (by a tensor, a view or a numpy array) never is."""
    from semantic_genesis.transforms._backend import BufferPool

    pool = BufferPool(per_shape=3)
    first = pool.tensor((2, 3), np.float32)
    address = first.data_ptr()
    view = first[1:]
    del first
    second = pool.tensor((2, 3), np.float32)
    assert second.data_ptr() != address  # the view keeps the first buffer alive
    as_numpy = second.numpy()
    del view, second
    third = pool.tensor((2, 3), np.float32)
    assert third.data_ptr() == address  # free again: reused
    assert third.data_ptr() != as_numpy.__array_interface__["data"][0]  # the numpy view keeps its buffer
    # a preset's outputs: successive calls reuse the buffers of the previous call's dropped outputs
    x = torch.rand(4, 1, 16, 16, 8, generator=gen(20))
    preset = build_preset("models_genesis", shuffle_windows=50)
    inp, tgt = preset(x, gen(21))
    used = {inp.data_ptr(), tgt.data_ptr()}
    del inp, tgt
    inp, tgt = preset(x, gen(22))
    assert {inp.data_ptr(), tgt.data_ptr()} == used
