"""Reliability through the CLI: a run that was never validated has no "best" weights (the summary says
so, and `report restorations` says to use the final ones); `finetune --init` refuses a diverged
weights file in one line, before anything is written."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def train_only_cubes(ct_cohort, tmp_path_factory):
    """The cube set of the CT cohort with every patient in the training split (no validation data)."""
    from semantic_genesis.config import load_config
    from semantic_genesis.cubes import generate_cubes

    out = tmp_path_factory.mktemp("train_only") / "cubes"
    cfg = load_config("models_genesis_3d_tiny", ["cubes.cubes_per_scan=2", "cubes.split=[1, 0, 0]",
                                                  f"data={ct_cohort}", f"out={out}"])
    generate_cubes(cfg, progress=False)
    return out


def test_a_run_without_validation_has_no_best_weights(cli, train_only_cubes, tmp_path):
    run = tmp_path / "run"
    status, out, err = cli("pretrain", "--config", "models_genesis_3d_tiny", "--data", train_only_cubes, "--out", run,
                           "-q", "train.max_steps=2", "train.device=cpu", "train.num_workers=0")
    assert status == 0, err
    assert f"weights {run / 'weights' / 'final.safetensors'} (no validation data: best is not defined)" in out
    assert (run / "weights" / "final.safetensors").is_file()
    assert not (run / "weights" / "best.safetensors").exists()

    status, out, err = cli("report", "restorations", run, "--out", tmp_path / "fig", "--count", "2")
    assert status == 2
    assert err == (f"error: {run / 'weights' / 'best.safetensors'}: not found: the run was never validated, so no "
                   "network is its best (no validation data, or it stopped before its first epoch ended); "
                   "use --weights final\n")


def test_finetune_refuses_a_non_finite_init_before_writing_anything(cli, tmp_path):
    import torch

    from semantic_genesis.models import UNet3D, save_weights

    net = UNet3D(width=0.125)
    with torch.no_grad():
        net.down_tr64.ops[0].bn1.running_var.fill_(math.inf)
    weights = save_weights(net, tmp_path / "diverged.safetensors", {"method": "models_genesis"})
    run = tmp_path / "run"
    status, _, err = cli("finetune", "--task", "ncc", "--init", weights, "--data", tmp_path / "data", "--out", run,
                         "--config", "finetune_tiny")
    assert status == 2
    assert err.startswith(f"error: {weights}: 1 tensor(s) hold non-finite values: down_tr64.ops.0.bn1.running_var (inf)")
    assert not run.exists()
