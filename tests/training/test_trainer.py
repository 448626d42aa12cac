"""The training engine: loss falls, checkpoints, resume after SIGKILL, NaN guard, frozen parameters."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from semantic_genesis.errors import CheckpointError, ConfigError, TrainingError
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

from .helpers import make_cube_store, tiny_config

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_cube_store(tmp_path_factory.mktemp("cubes") / "set")


def _train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run, "train")}


def test_loss_falls_and_run_folder_is_complete(store, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(store, run, "train.epochs=5"))
    assert result.step == 5 * 8 and result.epoch == 5 and result.stop_reason == "epochs"
    losses = _train_losses(run)
    assert sorted(losses) == list(range(1, 41))
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(36, 41)) / 5
    assert last < 0.5 * first, (first, last)
    val = read_metrics(run, "validation")
    assert [r["epoch"] for r in val] == [0, 1, 2, 3, 4]
    assert val[-1]["loss"] < val[0]["loss"]
    assert all(0 <= r["data_wait"] <= 1 and r["cubes_per_s"] > 0 for r in read_metrics(run, "train"))
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "weights/best.safetensors", "weights/final.safetensors"):
        assert (run / name).is_file(), name
    from semantic_genesis.models.weights import load_weights

    state, meta = load_weights(run / "weights" / "final.safetensors")
    assert meta["method"] == "test_noise_restore" and meta["step"] == 40
    for k, v in result.model.state_dict().items():
        assert torch.equal(state[k], v.cpu()), k


def test_validation_set_is_fixed_across_epochs(store, tmp_path):
    # lr=0-like: with a vanishing lr the weights barely move, so validation losses must be identical
    run = tmp_path / "run"
    train(tiny_config(store, run, "train.epochs=3", "optim.name=sgd", "optim.lr=1e-12", "optim.momentum=0"))
    val = [r["loss"] for r in read_metrics(run, "validation")]
    assert len(val) == 3 and max(val) - min(val) < 1e-6


def test_rerun_resumes_and_extends(store, tmp_path):
    run = tmp_path / "run"
    full = tmp_path / "full"
    train(tiny_config(store, full, "train.epochs=2"))
    train(tiny_config(store, run, "train.epochs=1"))
    result = train(tiny_config(store, run, "train.epochs=2"))
    assert result.resumed_from == 8 and result.step == 16
    assert _train_losses(run) == _train_losses(full)


def test_resume_refuses_changed_config(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, run, "train.epochs=1"))
    with pytest.raises(ConfigError, match="train.batch_size"):
        train(tiny_config(store, run, "train.epochs=2", "train.batch_size=2"))
    with pytest.raises(ConfigError, match="already holds"):
        train(tiny_config(store, run, "train.resume=false"))


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    threads = str(torch.get_num_threads())
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONPATH=str(TESTS_DIR) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


_SCRIPT = """
import sys, torch
torch.set_num_threads({threads})
import training.helpers as h
from semantic_genesis.training.trainer import train
train(h.tiny_config({data!r}, {out!r}, *{overrides!r}))
"""


def test_sigkill_then_resume_gives_the_same_losses(store, tmp_path):
    overrides = ["train.epochs=4", "train.checkpoint_every=3"]
    reference = tmp_path / "reference"
    train(tiny_config(store, reference, *overrides))

    run = tmp_path / "killed"
    script = _SCRIPT.format(threads=torch.get_num_threads(), data=str(store), out=str(run), overrides=overrides)
    proc = subprocess.Popen([sys.executable, "-c", script], env=_subprocess_env(), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (run / "checkpoints" / "last.pt").is_file() and len(read_metrics(run, "train")) >= 7:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (run / "weights" / "final.safetensors").exists()
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"]
    assert 3 <= saved < 32

    result = train(tiny_config(store, run, *overrides))
    assert result.resumed_from == saved and result.step == 32
    assert _train_losses(run) == _train_losses(reference)
    ref_val = [r["loss"] for r in read_metrics(reference, "validation")]
    assert [r["loss"] for r in read_metrics(run, "validation")] == ref_val
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, load_checkpoint(reference / "checkpoints" / "last.pt")["model"][k]), k


def test_nan_guard_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"became nan at step 7 .*last good checkpoint .*step 5"):
        train(tiny_config(store, run, "method.options.nan_at_step=7"))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert max(r["step"] for r in read_metrics(run, "train")) == 7
    assert read_metrics(run, "event")[-1]["event"] == "nonfinite"


def test_frozen_parameters_get_no_update(store, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(store, run, "train.epochs=2", "method.options.freeze_decoder_epochs=1", "optim.weight_decay=0.1",
                      "train.checkpoint_every=8")
    from semantic_genesis import methods
    from semantic_genesis.utils.seeding import derive_seed, seed_everything

    seed_everything(derive_seed(cfg.seed, "init"))
    initial = methods.build(cfg).build_model().state_dict()
    train(tiny_config(store, run, "train.epochs=1", "method.options.freeze_decoder_epochs=1", "optim.weight_decay=0.1",
                      "train.checkpoint_every=8"))
    after_epoch0 = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    changed = {k for k, v in after_epoch0.items() if v.is_floating_point() and not torch.equal(v, initial[k])}
    assert any(k.startswith("down_tr") and k.endswith("weight") for k in changed)
    decoder_params = [k for k in initial if k.startswith(("up_tr", "out_tr")) and ("conv" in k and k.endswith(("weight", "bias")))]
    assert decoder_params and not (changed & set(decoder_params))
    result = train(cfg)  # epoch 1: everything trains
    assert any(not torch.equal(result.model.state_dict()[k].cpu(), initial[k]) for k in decoder_params)


def test_corrupt_checkpoint_is_a_clear_error(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, run, "train.epochs=1"))
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt"):
        train(tiny_config(store, run, "train.epochs=2"))


def test_unknown_method_and_missing_out(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'nope'.*test_noise_restore"):
        train(tiny_config(store, tmp_path / "r", "method.name=nope"))
    with pytest.raises(ConfigError, match="out=RUN_DIR"):
        train(tiny_config(store, tmp_path / "r", "out=null"))


def test_early_stopping_and_bf16_autocast(store, tmp_path):
    run = tmp_path / "run"
    # a vanishing lr never improves validation by min_delta: stops after `patience` epochs
    result = train(tiny_config(store, run, "train.epochs=10", "train.patience=2", "optim.lr=1e-9", "train.amp=bf16",
                               "train.steps_per_epoch=2", "method.options.freeze_bottleneck=true"))
    assert result.stop_reason == "early_stop" and result.epoch == 3
    events = [r["event"] for r in read_metrics(run, "event")]
    assert events[-2:] == ["early_stop", "done"]
    assert all(math.isfinite(r["loss"]) for r in read_metrics(run, "train"))
    again = train(tiny_config(store, run, "train.epochs=10", "train.patience=2", "optim.lr=1e-9", "train.amp=bf16",
                              "train.steps_per_epoch=2", "method.options.freeze_bottleneck=true"))
    assert again.stop_reason == "early_stop" and again.step == result.step  # a stopped run stays stopped
