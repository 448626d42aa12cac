"""PEAC through the engine: the tiny preset end to end on the CLI, the teacher resumed exactly after an
interruption, the exported Swin loaded by the one weight loader, and the paper preset (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.methods.peac import PEAC
from semantic_genesis.models.loading import build_model_from_weights
from semantic_genesis.models.weights import load_weights, read_metadata
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

QUIET = ["train.progress=false", "train.tensorboard=false"]


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory) -> Path:
    """16 phantom radiographs written by `semantic-genesis phantom xray` (native layout, 104 px)."""
    root = tmp_path_factory.mktemp("peac_cli") / "xray"
    assert main(["phantom", "xray", "-n", "16", "--shape", "64", "64", "48", "--size", "104", "104",
                 "--out", str(root), "-q"]) == 0
    return root


def test_tiny_preset_pretrains_end_to_end_on_the_cli(radiographs, tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", "--config", "peac_2d_tiny", f"data={radiographs}", f"out={out}", *QUIET, "-q"]) == 0
    rows = read_metrics(out, "train")
    assert rows[-1]["step"] == 30 and {"order", "restoration", "global", "local", "order_accuracy", "global_spread",
                                          "token_spread"} <= set(rows[-1])
    assert read_metrics(out, "validation")
    meta = read_metadata(out / "weights" / "final.safetensors")
    assert meta["architecture"] == "swin2d" and meta["method"] == "peac" and meta["network"] == "student"
    assert meta["input_size"] == [64, 64] and meta["grid_cell"] == 8
    backbone = build_model_from_weights(out / "weights" / "final.safetensors")
    assert backbone.feature_strides[-1] == 8
    tokens = backbone.encode(torch.rand(1, 1, 64, 64)).tokens()
    assert tokens.shape == (1, 64, backbone.feature_channels[-1])
    weights, _ = load_weights(out / "weights" / "final.safetensors")
    assert all(k.startswith("swinViT.") for k in weights)
    student = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    for k, v in weights.items():
        assert torch.equal(v, student[f"backbone.{k}"]), k


def test_teacher_resumes_exactly_after_an_interruption(radiographs, tmp_path, monkeypatch):
    cfg = lambda out, *extra: load_config("peac_2d_tiny", [f"data={radiographs}", f"out={out}", *QUIET, "train.max_steps=20", *extra])  # noqa: E731
    reference = train(cfg(tmp_path / "reference"))
    assert reference.step == 20

    original = PEAC.after_step

    def interrupted(self, model, ctx):
        original(self, model, ctx)
        if ctx.step == 13:
            raise KeyboardInterrupt

    monkeypatch.setattr(PEAC, "after_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path / "run"))
    monkeypatch.setattr(PEAC, "after_step", original)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["step"]
    assert 10 <= saved < 20
    result = train(cfg(tmp_path / "run"))
    assert result.resumed_from == saved and result.step == 20
    losses = lambda run: [(r["step"], r["loss"], r["global"], r["local"]) for r in read_metrics(run, "train")]  # noqa: E731
    assert losses(tmp_path / "run") == losses(tmp_path / "reference")
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    assert b["method"]["teacher"].keys() == a["method"]["teacher"].keys()
    for k, v in b["method"]["teacher"].items():
        assert torch.equal(a["method"]["teacher"][k], v), k
    # the teacher is not the student: it lags behind it
    assert any(not torch.equal(v, b["model"][k]) for k, v in b["method"]["teacher"].items() if v.is_floating_point())


def test_teacher_export_option(radiographs, tmp_path):
    out = tmp_path / "teacher"
    train(load_config("peac_2d_tiny", [f"data={radiographs}", f"out={out}", *QUIET, "train.max_steps=5",
                                       "method.options.export=teacher"]))
    weights, meta = load_weights(out / "weights" / "final.safetensors")
    teacher = load_checkpoint(out / "checkpoints" / "last.pt")["method"]["teacher"]
    assert meta["network"] == "teacher"
    for k, v in weights.items():
        assert torch.equal(v, teacher[f"backbone.{k}"]), k


@pytest.mark.slow
def test_paper_preset_runs_a_few_steps(tmp_path):
    """peac_2d as shipped (Swin-B, 608-px images, 448-px views, 8192-d projectors), two steps of batch 2."""
    import numpy as np

    from semantic_genesis.io.images2d import Image2D, write_image2d

    data = tmp_path / "xray"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image2d(Image2D(rng.random((640, 620), dtype=np.float32)), data / "images" / f"p{i}.png", value_range=(0.0, 1.0))
    out = tmp_path / "run"
    result = train(load_config("peac_2d", [f"data={data}", f"out={out}", *QUIET, "train.batch_size=2",
                                           "train.max_steps=2", "train.num_workers=0", "method.options.val_fraction=0.0",
                                           "optim.warmup_steps=0"]))
    assert result.step == 2
    meta = read_metadata(out / "weights" / "final.safetensors")
    assert meta["arch_args"]["size"] == "swin_b" and meta["input_size"] == [448, 448]
    rows = read_metrics(out, "train")
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_chestxray14_folder_never_reads_the_test_list(tmp_path):
    """On the ChestX-ray14 layout the official test_list.txt patients are left out of pretraining."""
    from semantic_genesis.io.datasets.chestxray14 import person_of
    from semantic_genesis.io.radiograph_folder import radiograph_splits

    root = tmp_path / "cxr14"
    assert main(["phantom", "xray", "-n", "10", "--shape", "48", "48", "32", "--size", "64", "64", "--layout",
                 "chestxray14", "--out", str(root), "-q"]) == 0
    paths, patients, rule = radiograph_splits(root)
    test = {person_of(n) for n in (root / "test_list.txt").read_text().split()}
    seen = set(patients["train"]) | set(patients["validation"])
    assert test and seen and not (test & seen) and "test_list.txt left out" in rule
    assert len(paths["train"]) + len(paths["validation"]) + len(test) == 10
