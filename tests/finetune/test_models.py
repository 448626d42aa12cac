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


class _Task2D(tasks.Task):
    """A 2D target task (the 2D tasks of the Semantic Genesis 2D paper have this shape)."""

    spatial_dims = 2

    def __init__(self, kind: str):
        self.kind = kind
        self.name = f"toy2d_{kind[:3]}"


@pytest.mark.parametrize("backbone", ["unet2d", "resunet2d"])
def test_2d_weights_build_2d_finetuning_networks(tmp_path, backbone):
    from semantic_genesis.models import YNet, create

    torch.manual_seed(0)
    pretrained = YNet(create(backbone, width=0.125), num_classes=6)  # e.g. Semantic Genesis 2D weights
    with torch.no_grad():
        for p in pretrained.state_dict().values():
            if p.is_floating_point():
                p.add_(torch.rand_like(p))
    path = save_weights(pretrained, tmp_path / "sg2d.safetensors", {"method": "semantic_genesis"})
    ref = pretrained.state_dict()
    size = 64 if backbone == "resunet2d" else 32
    x = torch.rand(2, 1, size, size)
    cls, rep = build_model(_Task2D("classification"), tiny_config(), 1, InitSpec("sg2d", path))
    encoder = [k for k in ref if k.split(".")[0] in pretrained.encoder_state_dict_prefixes]
    assert sorted(rep.loaded) == sorted(encoder) and all(torch.equal(cls.state_dict()[k], ref[k]) for k in encoder)
    assert all(k.startswith("head.") for k in rep.random) and any(k.startswith("clc_out.") for k in rep.unused)
    assert rep.backbone == backbone and type(cls.backbone) is type(pretrained.backbone)
    assert cls(x).shape == (2, 1) and cls.spatial_dims == 2

    seg, rep = build_model(_Task2D("segmentation"), tiny_config(), 1, InitSpec("sg2d", path))
    output = seg.output_state_dict_prefixes
    assert {k.split(".")[0] for k in rep.random} == set(output)  # only the output layer is new
    for k, v in seg.state_dict().items():
        if k.split(".")[0] not in output:
            assert torch.equal(v, ref[k]), k
    assert seg(x).shape == (2, 1, size, size)

    with pytest.raises(CheckpointError, match="holds a 2D network .* task ncc needs a 3D network"):
        build_model(tasks.get("ncc"), tiny_config(), 1, InitSpec("sg2d", path))
    _, path3d = _pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="holds a 3D network .* needs a 2D network"):
        build_model(_Task2D("classification"), tiny_config(), 1, InitSpec("mg", path3d))


def test_scratch_2d_network_from_the_config():
    model, rep = build_model(_Task2D("segmentation"), tiny_config("model.name=unet2d"), 1, InitSpec("scratch"))
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32) and rep.backbone == "unet2d"
    with pytest.raises(ConfigError, match="model.name='ynet3d' is not a backbone"):
        build_model(tasks.get("ncc"), tiny_config("model.name=ynet3d"), 1, InitSpec("scratch"))
    with pytest.raises(ConfigError, match="'unet2d' is a 2D network; task ncc needs 3D"):
        build_model(tasks.get("ncc"), tiny_config("model.name=unet2d"), 1, InitSpec("scratch"))


def test_a_folder_or_a_pytorch_checkpoint_as_init(tmp_path):
    from tests.models.test_importers import save_official

    with pytest.raises(CheckpointError, match="is a folder, not a weights file"):
        build_model(tasks.get("ncc"), tiny_config(), 1, InitSpec("x", tmp_path))
    save_official(UNet3D(width=0.125), tmp_path / "Genesis_Chest_CT.pt")
    with pytest.raises(CheckpointError, match="convert it with `semantic-genesis weights import"):
        build_model(tasks.get("ncc"), tiny_config(), 1, InitSpec("x", tmp_path / "Genesis_Chest_CT.pt"))


@pytest.mark.parametrize("task_name", ["ncc", "ncs"])
def test_fine_tuned_predictions_do_not_depend_on_the_batch(tmp_path, task_name):
    """Weights pretrained with the official ContBatchNorm3d (batch_stats) load into a running-statistics
    network (finetune.norm=batch, the default): in eval mode a sample's prediction is the same alone and in
    any batch. finetune.norm=batch_stats (the official code) predicts with each batch's own statistics."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from semantic_genesis.models.norms import ContBatchNorm

    net, path = _pretrained(tmp_path, norm="batch_stats")
    task = tasks.get(task_name)
    model, report = build_model(task, tiny_config(), 1, InitSpec("mg", path))
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(isinstance(m, ContBatchNorm) for m in norms)
    key = "down_tr64.ops.0.bn1.running_mean"  # the pretrained running statistics are loaded
    assert key in report.loaded and torch.equal(model.state_dict()[key], net.state_dict()[key])
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():  # a few training forwards move the running statistics, as fine-tuning does
        for _ in range(3):
            model(torch.rand(4, 1, 16, 16, 8))
    model.eval()
    x = torch.rand(6, 1, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        alone = model(x[:1])
        for batch, row in ((x[:2], 0), (x, 0), (torch.cat([x[3:], x[:1]]), 3), (x[:1].repeat(3, 1, 1, 1, 1), 1)):
            torch.testing.assert_close(model(batch)[row : row + 1], alone, rtol=1e-5, atol=1e-6)

    official, _ = build_model(task, tiny_config("finetune.norm=batch_stats"), 1, InitSpec("mg", path))
    assert all(isinstance(m, ContBatchNorm) for m in official.modules() if isinstance(m, _BatchNorm))
    official.eval()
    with torch.no_grad():
        assert not torch.allclose(official(x)[:1], official(x[:2])[:1], atol=1e-4)
