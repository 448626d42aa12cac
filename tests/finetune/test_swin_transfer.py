"""Transfer of a 2D Swin (swin2d, e.g. a PEAC or Ark backbone) through the usual ``finetune`` / ``evaluate``:
DXC (encoder + new head), PXS (the same encoder in a Swin UNETR, new decoder), the linear probe, scratch
networks shaped by ``model.args``, and the one load path reporting the tensors used and left out."""

from __future__ import annotations

import json

import pytest
import torch

from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.models import InitSpec, build_model

from .test_dxc import cxr_root  # noqa: F401  (module fixture: a phantom ChestX-ray14 export)
from .test_pxs import siim_root  # noqa: F401  (module fixture: a phantom SIIM-ACR export)

COMMON = ["train.epochs=1", "train.batch_size=4", "train.device=cpu", "train.num_workers=0", "finetune.trials=1"]


@pytest.fixture(scope="module")
def swin_weights(tmp_path_factory):
    """A tiny swin2d backbone saved as a pretraining run exports it (weights + metadata)."""
    from semantic_genesis.models import Swin2D, save_weights

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("swin") / "peac_tiny.safetensors"
    return save_weights(Swin2D(size="tiny"), path, {"method": "peac"})


def _swin_tensors(path):
    from semantic_genesis.models import load_weights

    return load_weights(path)[0]


def _run(command, config, root, out, *extra):
    from semantic_genesis.cli import main

    code = main([command, "--config", config, "--data", str(root), "--out", str(out), "-q", *COMMON, *extra])
    assert code == 0
    return out


def test_build_model_copies_the_swin_encoder_for_classification_and_segmentation(swin_weights):
    pretrained = _swin_tensors(swin_weights)
    for preset, kind, head in (("finetune_dxc_swin_tiny", "dxc", {"head"}), ("finetune_pxs_swin_tiny", "pxs", None)):
        cfg = load_config(preset)
        task = tasks.get(kind)
        torch.manual_seed(0)
        model, report = build_model(task, cfg, 1, InitSpec("peac", swin_weights))
        assert sorted(report.loaded) == sorted(pretrained) and report.unused == []
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in pretrained.items())
        random_parts = {k.split(".")[0] for k in report.random}
        if head is not None:  # EncoderClassifier: the Swin + a new linear head on the pooled tokens
            assert report.backbone == "swin2d" and random_parts == head
            assert model(torch.rand(2, 1, 64, 64)).shape == (2, task.num_outputs)
        else:  # a swin2d file on a segmentation task: the swin_unetr2d of the same encoder
            assert report.backbone == "swin_unetr2d" and report.backbone_args["size"] == "tiny"
            assert random_parts == set(model.decoder_state_dict_prefixes)
            assert model(torch.rand(2, 1, 64, 64)).shape == (2, task.num_outputs, 64, 64)


def test_a_network_containing_the_swin_transfers_its_backbone(tmp_path):
    """A weights file of a network built on the Swin (here an EncoderClassifier) gives its backbone;
    its head is reported unused."""
    from semantic_genesis.models import EncoderClassifier, Swin2D, save_weights

    torch.manual_seed(2)
    path = save_weights(EncoderClassifier(Swin2D(size="tiny"), num_classes=5, head="linear"), tmp_path / "clf.safetensors")
    tensors = _swin_tensors(path)
    model, report = build_model(tasks.get("pxs"), load_config("finetune_pxs_swin_tiny"), 1, InitSpec("clf", path))
    assert report.backbone == "swin_unetr2d"
    assert sorted(report.loaded) == sorted(k for k in tensors if k.startswith("swinViT."))
    assert sorted(report.unused) == sorted(k for k in tensors if k.startswith("head.")) != []


def test_scratch_swin_takes_model_args_and_refuses_unknown_ones():
    task = tasks.get("dxc")
    model, _ = build_model(task, load_config("finetune_dxc_swin_tiny", ["model.args.embed_dim=16"]), 1, InitSpec("scratch"))
    assert model.backbone.feature_channels == (16, 32, 64)
    with pytest.raises(ConfigError, match="model.args.depth: backbone 'swin2d' has no such argument; valid arguments: .*depths"):
        build_model(task, load_config("finetune_dxc_swin_tiny", ["model.args.depth=3"]), 1, InitSpec("scratch"))
    seg, report = build_model(tasks.get("pxs"), load_config("finetune_dxc_swin_tiny", ["finetune.task=pxs"]), 1,
                              InitSpec("scratch"))
    assert report.backbone == "swin_unetr2d"  # model.name=swin2d on a segmentation task


def test_finetune_dxc_from_a_swin_backbone_end_to_end(cxr_root, swin_weights, tmp_path):  # noqa: F811
    out = _run("finetune", "finetune_dxc_swin_tiny", cxr_root, tmp_path / "dxc", "--init", f"peac={swin_weights}",
               "finetune.options={val_fraction: 0.25}")
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "ok" and result["metric"] == "auc" and 0.0 <= result["test"]["auc"] <= 1.0
    assert result["init"]["loaded"] == len(_swin_tensors(swin_weights)) and result["init"]["method"] == "peac"
    assert result["init"]["random"] == 2 and result["init"]["unused"] == 0  # the linear head's weight and bias


def test_finetune_pxs_from_a_swin_backbone_end_to_end(siim_root, swin_weights, tmp_path):  # noqa: F811
    out = _run("finetune", "finetune_pxs_swin_tiny", siim_root, tmp_path / "pxs", "--init", f"peac={swin_weights}")
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "ok" and result["metric"] == "iou" and 0.0 <= result["test"]["iou"] <= 1.0
    assert result["init"]["loaded"] == len(_swin_tensors(swin_weights)) and result["init"]["unused"] == 0


def test_evaluate_linear_probe_of_a_swin_backbone_beside_scratch(cxr_root, swin_weights, tmp_path):  # noqa: F811
    import yaml

    out = _run("evaluate", "finetune_dxc_swin_tiny", cxr_root, tmp_path / "probe", "--inits",
               f"scratch,peac={swin_weights}", "--mode", "linear_probe", "finetune.options={val_fraction: 0.25}")
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "linear_probe" and summary["complete"] and set(summary["inits"]) == {"scratch", "peac"}
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "| scratch |" in text and "| peac |" in text and "linear probe" in text
    peac = json.loads((out / "trials" / "peac" / "trial_00" / "result.json").read_text(encoding="utf-8"))
    assert peac["status"] == "ok" and peac["init"]["loaded"] == len(_swin_tensors(swin_weights))
    # the probe: frozen encoder, linear head; scratch gets the architecture of the weights file
    scratch = yaml.safe_load((out / "trials" / "scratch" / "trial_00" / "config.yaml").read_text(encoding="utf-8"))
    assert scratch["finetune"]["freeze_encoder"] is True and scratch["finetune"]["head"] == "linear"
    file_args = _metadata(swin_weights)["arch_args"]
    assert scratch["model"]["name"] == "swin2d"
    assert scratch["model"]["args"] == {k: v for k, v in file_args.items() if k != "in_channels"}


def _metadata(path):
    from semantic_genesis.models import load_weights

    return load_weights(path)[1]
