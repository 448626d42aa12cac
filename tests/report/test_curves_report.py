"""``semantic-genesis report curves``: curves from metrics.jsonl of pretraining and fine-tuning runs."""

from __future__ import annotations

import json

import pytest

from semantic_genesis.cli import main
from semantic_genesis.report.curves import curves


@pytest.fixture
def cli(capsys):
    def run(*argv):
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def _write(run, records):
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


PRETRAIN = [
    {"kind": "event", "event": "start", "step": 0, "epoch": 0},
    {"kind": "train", "step": 2, "epoch": 0, "loss": 0.06, "lr": 1e-4, "cubes_per_s": 9.0, "time": 1.0},
    {"kind": "train", "step": 4, "epoch": 0, "loss": 0.05, "lr": 2e-4, "cubes_per_s": 9.0, "time": 2.0},
    {"kind": "validation", "step": 4, "epoch": 0, "loss": 0.07, "acc": 0.5, "best": 0.07, "improved": True,
     "bad_epochs": 0, "train_loss": 0.055, "train_acc": 0.6},
    {"kind": "train", "step": 6, "epoch": 1, "loss": float("nan"), "lr": 3e-4},
    {"kind": "event", "event": "done", "step": 6},
]
FINETUNE = [
    {"kind": "validation", "epoch": 0, "step": 3, "train_loss": 0.7, "val_auc": 0.6, "val_loss": 0.69, "lr": 1e-3},
    {"kind": "validation", "epoch": 1, "step": 6, "train_loss": 0.6, "val_auc": 0.8, "val_loss": 0.6, "lr": 1e-3},
]


def test_records_become_loss_lr_and_validation_metric_panels():
    panels = curves(PRETRAIN)
    assert set(panels) == {"loss", "lr", "acc"}
    assert panels["loss"]["train loss"] == ([2, 4], [0.06, 0.05])  # the NaN of step 6 is left out
    assert panels["loss"]["validation loss"] == ([4], [0.07])
    assert panels["loss"]["train loss (epoch mean)"] == ([4], [0.055])
    assert panels["lr"]["lr"] == ([2, 4, 6], [1e-4, 2e-4, 3e-4])
    assert panels["acc"]["validation acc"] == ([4], [0.5])
    assert panels["acc"]["train acc (epoch mean)"] == ([4], [0.6])
    fine = curves(FINETUNE, x="epoch")
    assert fine["auc"]["validation auc"] == ([0, 1], [0.6, 0.8])
    assert fine["loss"]["validation loss"] == ([0, 1], [0.69, 0.6])
    assert fine["loss"]["train loss (epoch mean)"] == ([0, 1], [0.7, 0.6])


def test_report_curves_overlays_runs(tmp_path, cli):
    a = _write(tmp_path / "pretrain_a", PRETRAIN)
    b = _write(tmp_path / "finetune_b", FINETUNE)
    status, printed, _ = cli("report", "curves", a)
    assert status == 0 and (a / "figures" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    status, _, err = cli("report", "curves", a, b)
    assert status == 2 and "needs --out" in err
    status, printed, _ = cli("report", "curves", a, b, "--out", tmp_path / "both", "--x", "epoch", "--log-loss")
    assert status == 0 and str((tmp_path / "both" / "curves.png").resolve()) in printed
    from PIL import Image

    with Image.open(tmp_path / "both" / "curves.png") as image:
        assert image.width > 1500  # loss, lr, acc, auc: three panels across


def test_report_curves_bad_runs(tmp_path, cli):
    status, _, err = cli("report", "curves", tmp_path / "nothing")
    assert status == 2 and "metrics.jsonl: not found" in err
    _write(tmp_path / "empty", [{"kind": "event", "event": "start", "step": 0}])
    status, _, err = cli("report", "curves", tmp_path / "empty")
    assert status == 2 and "no training or validation record yet" in err
