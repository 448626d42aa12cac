"""Models Genesis 2D: presets, pretraining the ResNet-18 U-Net and the 2D U-Net on a phantom-radiograph
patch set (the loss falls), dimension checks, and fine-tuning networks built from the 2D weights."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.models import load_weights
from semantic_genesis.training.logging import read_metrics

TINY_2D = [
    "cubes.cube_size=[32,32]",
    "cubes.cubes_per_scan=16",
    "train.batch_size=8",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=5",
    "train.val_batches=2",
    "optim.scheduler=none",
    "optim.lr=0.002",
]


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    from semantic_genesis.cubes import generate_cubes
    from semantic_genesis.phantoms.cohort import write_native_xray_cohort

    root = tmp_path_factory.mktemp("mg2d")
    write_native_xray_cohort(root / "xr", 4, seed=0, ct_shape=(64, 64, 48), size=(96, 96), progress=False)
    generate_cubes(load_config("models_genesis_2d_tiny", TINY_2D), root / "xr", root / "patches", progress=False)
    return root / "patches"


def test_presets():
    paper = load_config("models_genesis_2d")
    assert paper.cubes.cube_size == (224, 224) and paper.model.name == "resunet2d" and paper.model.width == 1.0
    assert paper.method.name == "models_genesis" and paper.transforms.preset == "models_genesis"
    tiny = load_config("models_genesis_2d_tiny")
    assert tiny.cubes.cube_size == (64, 64) and tiny.model.name == "resunet2d" and tiny.model.width == 0.125
    assert tiny.train.max_steps == 200 and tiny.cubes.content_test == paper.cubes.content_test == "body"


@pytest.mark.parametrize("model_name", ["resunet2d", "unet2d"])
def test_2d_pretraining_reduces_the_restoration_loss(patches, tmp_path, model_name):
    run = tmp_path / "run"
    args = ["pretrain", "--config", "models_genesis_2d_tiny", *TINY_2D, f"model.name={model_name}",
            f"data={patches}", f"out={run}", "train.max_steps=60", "train.steps_per_epoch=30"]
    assert main(args) == 0
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.93 * np.mean(losses[:2]), losses
    val = read_metrics(run, "validation")
    assert val and val[-1]["loss"] < val[-1]["input_mse"]  # better than returning the transformed input
    state, meta = load_weights(run / "weights" / "final.safetensors")
    assert meta["architecture"] == model_name and meta["input_size"] == [32, 32]
    assert all(t.dim() in (1, 4) for k, t in state.items() if k.endswith("weight"))  # 2D kernels only
    if model_name == "resunet2d":
        assert main(["report", "restorations", str(run), "--out", str(tmp_path / "fig"), "--count", "2"]) == 0
        scores = json.loads((tmp_path / "fig" / "restorations.json").read_text())["cubes"]
        assert len(scores) == 2 and (tmp_path / "fig" / "restorations.png").stat().st_size > 5000


def test_dimensions_of_set_and_network_must_agree(patches):
    method = methods.build(load_config("models_genesis_2d_tiny", TINY_2D + [f"data={patches}", "model.name=unet3d",
                                                                           "model.norm=batch_stats"]))
    with pytest.raises(ConfigError, match=r"a 2D patch set \(items \(1, 32, 32\)\) cannot train model.name=unet3d \(3D\); "
                                          r"use model.name=resunet2d or unet2d"):
        method.build_datasets()


@pytest.mark.parametrize("kind", ["segmentation", "classification"])
def test_finetuning_networks_start_from_the_2d_weights(patches, tmp_path, kind):
    from semantic_genesis.finetune.models import InitSpec, build_model
    from semantic_genesis.models import create, save_weights

    g = torch.Generator().manual_seed(0)
    pretrained = create("resunet2d", width=0.125)
    with torch.no_grad():
        for p in pretrained.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    path = save_weights(pretrained, tmp_path / "mg2d.safetensors", metadata={"method": "models_genesis"})
    task = SimpleNamespace(name="toy2d", kind=kind, num_outputs=3, spatial_dims=2)
    model, report = build_model(task, load_config("models_genesis_2d_tiny"), 1, InitSpec("mg2d", Path(path)))
    state = model.state_dict()
    source = pretrained.state_dict()
    assert torch.equal(state["encoder.layer4.1.conv2.weight"], source["encoder.layer4.1.conv2.weight"])
    if kind == "segmentation":
        assert torch.equal(state["decoder.2.conv1.weight"], source["decoder.2.conv1.weight"])
        assert state["out_conv.weight"].shape[0] == 3 and "out_conv.weight" in report.random
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3, 64, 64)
    else:
        assert not any(k.startswith("decoder.") for k in state)
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3)
