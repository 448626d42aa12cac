"""Reliability of the engine: a non-finite network is never checkpointed or saved as weights; a
network that was never validated is not called "best"; SIGTERM / SIGINT write a checkpoint at the next
step boundary and the rerun resumes bit-identically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from semantic_genesis.errors import TrainingError
from semantic_genesis.models.state import find_nonfinite
from semantic_genesis.models.weights import load_weights
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

from .helpers import TINY_RUN, make_cube_store, tiny_config

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_cube_store(tmp_path_factory.mktemp("cubes") / "set", n_train=32, n_val=8)


@pytest.fixture(scope="module")
def train_only_store(tmp_path_factory) -> Path:
    return make_cube_store(tmp_path_factory.mktemp("cubes") / "train_only", n_train=16, n_val=0)


# --------------------------------------------------------------------------------------------------
# Non-finite parameters and buffers
# --------------------------------------------------------------------------------------------------
def test_a_nonfinite_buffer_stops_the_run_and_keeps_the_finite_checkpoint(store, tmp_path):
    run = tmp_path / "run"
    # running_var = inf after step 7 (the 8th): the loss stays finite (the norm uses batch statistics),
    # so only the state check can see it; the epoch ends at step 8 and would write best.safetensors
    cfg = tiny_config(store, run, "method.options.poison_at_step=7", "train.checkpoint_every=5")
    with pytest.raises(TrainingError) as info:
        train(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert "running_var (inf)" in message and "at step 8 (epoch 0)" in message, message
    assert f"the last good checkpoint {run / 'checkpoints' / 'last.pt'} (step 5) is kept" in message
    assert "no weights were written" in message
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["progress"]["step"] == 5
    assert find_nonfinite(saved["model"]) == []
    assert not (run / "weights").exists() or list((run / "weights").iterdir()) == []
    event = read_metrics(run, "event")[-1]
    assert event["event"] == "nonfinite_state" and event["step"] == 8
    assert any(t.endswith("running_var") for t in event["tensors"])


def test_nonfinite_parameters_without_the_loss_guard_are_not_saved(store, tmp_path):
    run = tmp_path / "run"
    # with the loss guard off, a NaN loss reaches the optimiser at step 3 and every parameter becomes NaN
    cfg = tiny_config(store, run, "method.options.nan_at_step=3", "train.nan_guard=false", "train.checkpoint_every=2")
    with pytest.raises(TrainingError, match=r"the network holds non-finite values at step 4 \(epoch 0\): .*\(nan\)"):
        train(cfg)
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["progress"]["step"] == 2 and find_nonfinite(saved["model"]) == []
    assert not (run / "weights").exists() or list((run / "weights").iterdir()) == []


def test_a_best_written_before_the_divergence_stays_finite(store, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(store, run, "method.options.poison_at_step=10", "train.epochs=3", "train.checkpoint_every=100")
    with pytest.raises(TrainingError, match=r"\(best.safetensors\) holds non-finite values at step 16|network holds"):
        train(cfg)
    best, _ = load_weights(run / "weights" / "best.safetensors")  # epoch 0's, loads (it is finite)
    assert find_nonfinite(best) == []
    assert not (run / "weights" / "final.safetensors").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 8


# --------------------------------------------------------------------------------------------------
# No validation, no "best"
# --------------------------------------------------------------------------------------------------
def test_without_validation_data_there_is_no_best(train_only_store, tmp_path):
    result = train(tiny_config(train_only_store, tmp_path / "run"))
    assert result.best is None and result.best_weights is None
    assert result.best_note == "no validation data: best is not defined"
    assert result.final_weights.is_file()
    assert not (tmp_path / "run" / "weights" / "best.safetensors").exists()


def test_validation_that_never_ran_gives_no_best(store, tmp_path):
    result = train(tiny_config(store, tmp_path / "run", "train.max_steps=3"))
    assert result.step == 3 and result.epoch == 0 and result.best_weights is None
    assert result.best_note.startswith("validation never ran")
    assert not (tmp_path / "run" / "weights" / "best.safetensors").exists()
    # extending the run past an epoch end gives it a best
    extended = train(tiny_config(store, tmp_path / "run", "train.max_steps=8", "train.resume=true"))
    assert extended.best_weights == tmp_path / "run" / "weights" / "best.safetensors"
    assert extended.best_weights.is_file() and extended.best_note == ""


def test_validated_run_has_best(store, tmp_path):
    result = train(tiny_config(store, tmp_path / "run", "train.epochs=1"))
    assert result.best is not None and result.best_weights.is_file() and result.best_note == ""


# --------------------------------------------------------------------------------------------------
# SIGTERM / SIGINT: a checkpoint at the next step boundary, exact resume
# --------------------------------------------------------------------------------------------------
SIGNAL_RUN = ["method.options.step_delay=0.05", "train.epochs=2", "train.checkpoint_every=1000"]
_SCRIPT = """
import sys, torch
torch.set_num_threads({threads})
import training.helpers  # registers the test methods
from semantic_genesis.cli import main
sys.exit(main(["-q", "pretrain", *{argv!r}]))
"""


def _argv(data: Path, out: Path) -> list[str]:
    return [f"data={data}", f"out={out}", *TINY_RUN, *SIGNAL_RUN]


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    result = train(tiny_config(store, out, *SIGNAL_RUN))
    assert result.step == 16
    return out


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_before_the_first_checkpoint_writes_one_and_the_rerun_resumes_exactly(
        store, reference, tmp_path, signum, status):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(TESTS_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = _SCRIPT.format(threads=torch.get_num_threads(), argv=_argv(store, run))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").is_file() and len(read_metrics(run, "train")) >= 3:
                proc.send_signal(signum)
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = err.decode()
    assert proc.returncode == status, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    name = signal.Signals(signum).name
    assert lines[0].startswith(f"interrupted: {name} at step ") and "rerun the same command to resume" in lines[0]
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    step = saved["progress"]["step"]
    assert 3 <= step < 16 and f"at step {step} " in lines[0]  # no periodic checkpoint before step 1000
    assert not (run / ".lock").exists()  # the run folder's lock was released
    assert read_metrics(run, "event")[-1]["event"] == "interrupted"

    result = train(tiny_config(store, run, *SIGNAL_RUN))
    assert result.resumed_from == step and result.step == 16
    losses = lambda r: [(x["step"], x["loss"]) for x in read_metrics(r, "train")]  # noqa: E731
    assert losses(run) == losses(reference)
    a, _ = load_weights(run / "weights" / "final.safetensors")
    b, _ = load_weights(reference / "weights" / "final.safetensors")
    assert a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key


def test_stop_signals_record_the_first_signal_and_let_a_second_one_through():
    from semantic_genesis.training.signals import StopSignals

    # Python's own SIGINT handler, whatever the test runner installed (an xdist worker may ignore SIGINT);
    # signal.raise_signal delivers to this thread, so the handler runs before the next line (os.kill
    # may be taken by another thread, and the handler then runs late: a flake under load)
    runner_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        with StopSignals() as signals:
            assert signals.active and signals.received is None
            signal.raise_signal(signal.SIGTERM)
            assert signals.received == signal.SIGTERM and signals.name == "SIGTERM"
            with pytest.raises(KeyboardInterrupt):  # the second one: what SIGINT does without us
                signal.raise_signal(signal.SIGINT)
            assert not signals.active
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    finally:
        signal.signal(signal.SIGINT, runner_sigint)
