"""The one load path: non-finite tensors refused (and flagged by ``weights inspect``), one-line errors
for folders, link loops, broken links and PyTorch checkpoints where safetensors are needed, files
written before the generic networks, and ``weights import`` into a folder."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.errors import CheckpointError
from semantic_genesis.models import (
    EncoderClassifier3D,
    UNet3D,
    YNet3D,
    build_model_from_weights,
    create,
    load_pretrained,
    load_weights,
    save_weights,
)
from semantic_genesis.models.importers import import_checkpoint, import_state_dict
from semantic_genesis.models.loading import describe_weights, read_pretrained
from semantic_genesis.models.weights import read_metadata
from tests.models.test_importers import randomise, save_official


def _diverged(tmp_path, name="diverged.safetensors"):
    """A 3D U-Net whose first batch-norm running variance is inf and one conv bias NaN."""
    net = randomise(UNet3D(width=0.125))
    with torch.no_grad():
        net.down_tr64.ops[0].bn1.running_var.fill_(math.inf)
        net.up_tr64.ops[1].conv1.bias[0] = math.nan
    return net, save_weights(net, tmp_path / name, {"method": "models_genesis"})


def test_non_finite_tensors_are_refused_by_every_loader(tmp_path):
    from semantic_genesis.config import load_config
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.models import InitSpec, build_model

    net, path = _diverged(tmp_path)
    expected = r"2 tensor\(s\) hold non-finite values: down_tr64.ops.0.bn1.running_var \(inf\), up_tr64.ops.1.conv1.bias \(nan\)"
    with pytest.raises(CheckpointError, match=expected):
        load_weights(path)
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained(UNet3D(width=0.125), path)
    with pytest.raises(CheckpointError, match=expected):
        build_model_from_weights(path)
    with pytest.raises(CheckpointError, match=expected):
        build_model(tasks.get("ncc"), load_config(None, ["model.width=0.125"]), 1, InitSpec("x", path))
    save_official(net, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match=r"diverged.pt: 2 tensor\(s\) hold non-finite values"):
        import_state_dict(tmp_path / "diverged.pt", fmt="models_genesis")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_pretrained(UNet3D(width=0.125), tmp_path / "diverged.pt")
    state, _ = load_weights(path, allow_nonfinite=True)  # inspection still reads them
    assert torch.isinf(state["down_tr64.ops.0.bn1.running_var"]).all()


def test_weights_inspect_flags_non_finite_tensors(tmp_path, capsys):
    _, path = _diverged(tmp_path)
    info = describe_weights(path)
    assert info["non_finite"] == [["down_tr64.ops.0.bn1.running_var", "inf"], ["up_tr64.ops.1.conv1.bias", "nan"]]
    assert main(["weights", "inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "WARNING: 2 tensor(s) hold non-finite values: down_tr64.ops.0.bn1.running_var (inf)" in out
    assert main(["weights", "inspect", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["non_finite"][1] == ["up_tr64.ops.1.conv1.bias", "nan"]
    good = save_weights(UNet3D(width=0.125), tmp_path / "good.safetensors")
    assert main(["weights", "inspect", str(good)]) == 0 and "WARNING" not in capsys.readouterr().out
    assert describe_weights(good)["non_finite"] == []


def test_paths_that_are_not_weights_files_get_one_line(tmp_path, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    loop = tmp_path / "loop.safetensors"
    os.symlink(loop, loop)
    broken = tmp_path / "broken.safetensors"
    os.symlink(tmp_path / "gone.safetensors", broken)
    for reader in (load_weights, read_metadata, read_pretrained, describe_weights,
                   lambda p: load_pretrained(UNet3D(width=0.125), p), lambda p: import_state_dict(p)):
        with pytest.raises(CheckpointError, match="weights: is a folder, not a"):
            reader(folder)
        with pytest.raises(CheckpointError, match="loop.safetensors: symbolic link loop"):
            reader(loop)
        with pytest.raises(CheckpointError, match="broken.safetensors: broken symbolic link to .*gone.safetensors"):
            reader(broken)
        with pytest.raises(CheckpointError, match="nothing.safetensors: .* not found"):
            reader(tmp_path / "nothing.safetensors")
    assert main(["weights", "inspect", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a folder" in err and len(err.strip().splitlines()) == 1


def test_a_pytorch_checkpoint_where_safetensors_are_needed_says_how_to_convert(tmp_path):
    from semantic_genesis.config import load_config
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.models import InitSpec, build_model

    save_official(randomise(UNet3D(width=0.125)), tmp_path / "Genesis_Chest_CT.pt")
    for legacy in (False, True):
        save_official(UNet3D(width=0.125), tmp_path / "legacy.pt", legacy=legacy)
        with pytest.raises(CheckpointError, match="a PyTorch checkpoint .*convert it with `semantic-genesis weights import"):
            load_weights(tmp_path / "legacy.pt")
    with pytest.raises(CheckpointError, match=r"Genesis_Chest_CT.pt: a PyTorch checkpoint \(.pt\), not a safetensors "
                                              r"weights file; convert it with `semantic-genesis weights import"):
        build_model(tasks.get("ncc"), load_config(None, ["model.width=0.125"]), 1,
                    InitSpec("mg", tmp_path / "Genesis_Chest_CT.pt"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file"):
        load_weights(tmp_path / "junk.safetensors")


def test_weights_import_and_export_into_a_folder(tmp_path, capsys):
    unet = randomise(UNet3D(width=0.125))
    save_official(unet, tmp_path / "Genesis_Chest_CT.pt")
    out = tmp_path / "converted"
    out.mkdir()
    assert main(["weights", "import", "--format", "models_genesis", str(tmp_path / "Genesis_Chest_CT.pt"), str(out)]) == 0
    assert f"-> {out / 'Genesis_Chest_CT.safetensors'}" in capsys.readouterr().out
    state, _ = load_weights(out / "Genesis_Chest_CT.safetensors")
    assert torch.equal(state["down_tr64.ops.0.conv1.weight"], unet.state_dict()["down_tr64.ops.0.conv1.weight"])
    assert main(["weights", "export", "--format", "models_genesis", str(out / "Genesis_Chest_CT.safetensors"), str(out)]) == 0
    assert (out / "Genesis_Chest_CT.pt").is_file()


def test_files_written_before_the_generic_networks_still_load(tmp_path):
    """Weights files record ``ynet3d`` / ``encoder_classifier3d`` with flat arguments (the official
    network names): they rebuild, and fine-tuning finds their U-Net backbone."""
    torch.manual_seed(0)
    ynet = randomise(YNet3D(width=0.125, num_classes=3))
    save_weights(ynet, tmp_path / "sg.safetensors", {"method": "semantic_genesis"})
    assert read_metadata(tmp_path / "sg.safetensors")["architecture"] == "ynet3d"
    rebuilt = build_model_from_weights(tmp_path / "sg.safetensors")
    assert type(rebuilt) is YNet3D and all(torch.equal(rebuilt.state_dict()[k], v) for k, v in ynet.state_dict().items())
    pre = read_pretrained(tmp_path / "sg.safetensors")
    assert (pre.architecture, pre.backbone) == ("ynet3d", "unet3d") and pre.backbone_args["width"] == 0.125
    clf = randomise(EncoderClassifier3D(num_classes=4, width=0.125, head="genesis"))
    save_weights(clf, tmp_path / "sc.safetensors")
    pre = read_pretrained(tmp_path / "sc.safetensors")
    assert (pre.architecture, pre.backbone) == ("encoder_classifier3d", "unet3d")
    assert type(build_model_from_weights(tmp_path / "sc.safetensors")) is EncoderClassifier3D


def test_generic_network_files_rebuild_in_2d(tmp_path):
    from semantic_genesis.models import YNet

    ynet = randomise(YNet(create("unet2d", width=0.125, norm="instance"), num_classes=6))
    save_weights(ynet, tmp_path / "sg2d.safetensors")
    meta = read_metadata(tmp_path / "sg2d.safetensors")
    assert meta["architecture"] == "ynet" and meta["arch_args"]["backbone"] == "unet2d"
    rebuilt = build_model_from_weights(tmp_path / "sg2d.safetensors").eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, ynet.eval()(x).logits)
    pre = read_pretrained(tmp_path / "sg2d.safetensors")
    assert pre.backbone == "unet2d" and pre.backbone_args["norm"] == "instance"


def test_import_then_load_keeps_the_official_sg_keys(tmp_path):
    ynet = randomise(YNet3D(width=0.125, num_classes=5))
    save_official(ynet, tmp_path / "sg.pt")
    import_checkpoint(tmp_path / "sg.pt", tmp_path / "sg.safetensors", fmt="semantic_genesis")
    model = YNet3D(width=0.125, num_classes=5)
    assert load_pretrained(model, tmp_path / "sg.safetensors").complete
