import pytest
import torch

from semantic_genesis.errors import CheckpointError, ConfigError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.models import InitSpec, build_model, parse_init, parse_inits
from semantic_genesis.models.unet2d import UNet2D
from semantic_genesis.models.unet3d import UNet3D
from semantic_genesis.models.weights import save_weights

from .conftest import tiny_config

ENC = ("down_tr64.", "down_tr128.", "down_tr256.", "down_tr512.")


def _pretrained(tmp_path, **kwargs):
    torch.manual_seed(123)
    net = UNet3D(width=0.125, **kwargs)
    with torch.no_grad():  # make every tensor distinctive (also the BN statistics)
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.add_(torch.rand_like(p))
    path = save_weights(net, tmp_path / "pre.safetensors", {"method": "models_genesis"})
    return net, path


def test_scratch_shapes():
    cfg = tiny_config()
    cls, rep = build_model(tasks.get("ncc"), cfg, 1, InitSpec("scratch"))
    seg, _ = build_model(tasks.get("ncs"), cfg, 1, InitSpec("scratch"))
    x = torch.rand(2, 1, 16, 16, 8)
    assert cls(x).shape == (2, 1) and seg(x).shape == (2, 1, 16, 16, 8)
    assert rep.loaded == [] and len(rep.random) == len(cls.state_dict())


def test_checkpoint_weights_reach_finetune_models_by_value(tmp_path):
    net, path = _pretrained(tmp_path)
    ref = net.state_dict()
    cfg = tiny_config()
    cls, rep = build_model(tasks.get("ncc"), cfg, 1, InitSpec("mg", path))
    own = cls.state_dict()
    enc_keys = [k for k in ref if k.startswith(ENC)]
    assert sorted(rep.loaded) == sorted(enc_keys)
    for k in enc_keys:
        assert torch.equal(own[k], ref[k]), k
    assert all(k.startswith("head.") for k in rep.random)
    assert "out_tr.final_conv.weight" in rep.unused and "up_tr64.up_conv.weight" in rep.unused

    seg, rep = build_model(tasks.get("ncs"), cfg, 1, InitSpec("mg", path))
    own = seg.state_dict()
    for k in ref:
        if k.startswith("out_tr."):
            assert not torch.equal(own[k], ref[k])  # a new output layer
        else:
            assert torch.equal(own[k], ref[k]), k
    assert sorted(rep.random) == ["out_tr.final_conv.bias", "out_tr.final_conv.weight"]


def test_imported_official_checkpoint_encoder_reaches_model(tmp_path):
    from semantic_genesis.models.importers import import_checkpoint

    net, _ = _pretrained(tmp_path)
    official = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    torch.save(official, tmp_path / "Genesis_Chest_CT.pt")
    imported = tmp_path / "genesis.safetensors"
    import_checkpoint(tmp_path / "Genesis_Chest_CT.pt", imported, fmt="models_genesis")
    cls, rep = build_model(tasks.get("ncc"), tiny_config(), 1, InitSpec("mg", imported))
    for k, v in net.state_dict().items():
        if k.startswith(ENC):
            assert torch.equal(cls.state_dict()[k], v), k
    assert len(rep.loaded) == len([k for k in net.state_dict() if k.startswith(ENC)])


def test_architecture_that_does_not_fit(tmp_path):
    cfg = tiny_config()
    path2d = save_weights(UNet2D(width=0.125), tmp_path / "net2d.safetensors")
    with pytest.raises(CheckpointError, match="2D network"):
        build_model(tasks.get("ncc"), cfg, 1, InitSpec("x", path2d))
    _, two = _pretrained(tmp_path, in_channels=2)
    with pytest.raises(CheckpointError, match="2 input channel"):
        build_model(tasks.get("ncs"), cfg, 1, InitSpec("x", two))
    net, _ = _pretrained(tmp_path)
    partial = {k: v for k, v in net.state_dict().items() if not k.startswith("down_tr512.")}
    path = save_weights(partial, tmp_path / "partial.safetensors", architecture="unet3d", arch_args={})
    with pytest.raises(CheckpointError, match="lacks .* encoder tensor"):
        build_model(tasks.get("ncc"), cfg, 1, InitSpec("x", path))
    with pytest.raises(CheckpointError, match="not found"):
        build_model(tasks.get("ncc"), cfg, 1, InitSpec("x", tmp_path / "nope.safetensors"))


def test_parse_inits():
    assert parse_init("scratch") == InitSpec("scratch")
    assert parse_init("mg=a/b.safetensors").path.name == "b.safetensors"
    assert parse_init("w/sg_best.safetensors").name == "sg_best"
    assert [s.name for s in parse_inits("scratch, mg=x.safetensors,sg=y")] == ["scratch", "mg", "sg"]
    with pytest.raises(ConfigError, match="repeated: mg"):
        parse_inits("mg=a,mg=b")
