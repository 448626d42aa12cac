"""Models Genesis method: restoration loss on phantom cubes, float32 loss, fixed validation, CLI + figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.base import StepContext
from semantic_genesis.methods.models_genesis import ModelsGenesis
from semantic_genesis.training.data import collate
from semantic_genesis.training.logging import read_metrics

TINY = [
    "model.width=0.125",
    "cubes.cube_size=[16,16,8]",
    "cubes.cubes_per_scan=16",
    "cubes.content_test=body",
    "cubes.body_min_fraction=0.9",
    "cubes.split=[0.6,0.4,0.0]",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.progress=false",
    "train.tensorboard=false",
    "train.log_every=10",
    "train.val_batches=2",
    "train.channels_last=true",
    "optim.name=adam",
    "optim.lr=0.002",
    "optim.scheduler=none",
]


@pytest.fixture(scope="module")
def phantom_cubes(tmp_path_factory) -> Path:
    from semantic_genesis.cubes import generate_cubes
    from semantic_genesis.io.volumes import write_volume
    from semantic_genesis.phantoms import make_ct_patient

    root = tmp_path_factory.mktemp("mg")
    for i in range(3):
        patient = make_ct_patient(i, seed=0, shape=(64, 64, 48))
        write_volume(patient.volume, root / "ct" / f"patient_{i}.nii.gz", dtype="int16")
    generate_cubes(load_config(None, TINY), root / "ct", root / "cubes", progress=False)
    return root / "cubes"


def _cfg(data, out=None, *extra):
    return load_config(None, TINY + [f"data={data}"] + ([f"out={out}"] if out else []) + list(extra))


def test_registered():
    assert "models_genesis" in methods.available()
    assert methods.get("models_genesis") is ModelsGenesis


def test_step_restores_preset_inputs_deterministically(phantom_cubes):
    method = methods.build(_cfg(phantom_cubes))
    model = method.build_model()
    train, val = method.build_datasets()
    assert val is not None and len(train) > len(val) > 0
    batch = collate([val[i] for i in range(4)])
    assert batch["image"].shape == (4, 1, 16, 16, 8)

    def run(seed):
        ctx = StepContext(0, 0, 0, torch.device("cpu"), torch.Generator().manual_seed(seed), training=False)
        torch.manual_seed(0)
        with torch.no_grad():
            return method.example_batch(model, batch, ctx)

    a, b, c = run(1), run(1), run(2)
    for key in ("input", "output", "target"):
        assert torch.equal(a[key], b[key])
    # the target is the original cube up to flips: the same voxel values per cube
    assert torch.equal(a["target"].flatten(1).sort(1).values, batch["image"].flatten(1).sort(1).values)
    assert not torch.equal(a["input"], c["input"])
    assert (a["input"] != a["target"]).float().mean() > 0.05  # the inputs really are transformed
    assert 0 <= a["output"].min() and a["output"].max() <= 1


def test_bad_settings_are_clear(phantom_cubes, tmp_path):
    with pytest.raises(ConfigError, match="out_channels"):
        methods.build(_cfg(phantom_cubes, None, "model.out_channels=2")).build_model()
    with pytest.raises(ConfigError, match="data=CUBES_DIR"):
        methods.build(load_config(None, TINY)).build_datasets()


def test_restoration_loss_falls_over_100_steps_and_figure(phantom_cubes, tmp_path):
    run = tmp_path / "run"
    args = ["pretrain", *TINY, f"data={phantom_cubes}", f"out={run}", "train.max_steps=100", "train.steps_per_epoch=50",
            "train.epochs=100"]
    assert main(args) == 0
    losses = [r["loss"] for r in read_metrics(run, "train")]
    assert len(losses) == 10
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    val = read_metrics(run, "validation")
    assert len(val) == 2 and val[-1]["loss"] < val[-1]["input_mse"]  # better than leaving the input as is
    assert main(["report", "restorations", str(run), "--out", str(tmp_path / "fig"), "--count", "3"]) == 0
    assert (tmp_path / "fig" / "restorations.png").stat().st_size > 5000
    scores = json.loads((tmp_path / "fig" / "restorations.json").read_text())["cubes"]
    assert len(scores) == 3 and all(set(s) == {"input_mse", "output_mse"} for s in scores)
    assert np.mean([s["output_mse"] for s in scores]) < np.mean([s["input_mse"] for s in scores])
