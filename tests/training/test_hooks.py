"""The method hooks of the engine: each is called when and as often as methods/base.py says, also
after a resume (mid-epoch too) and with train.transforms_on=workers; an EMA-teacher method resumes
bit-identically after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from semantic_genesis.methods.base import StepOutput
from semantic_genesis.models.weights import load_weights
from semantic_genesis.training.checkpoint import load_checkpoint
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import train

from .helpers import NoiseRestore, make_cube_store, tiny_config

TESTS_DIR = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL = 32, 10  # 8 steps per epoch at batch 4; validation batches of 3: 3 + 3 + 3 + 1


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_cube_store(tmp_path_factory.mktemp("cubes") / "set", n_train=N_TRAIN, n_val=N_VAL)


class GroupBatches:
    """An Ark-like batch sampler: items [0, 16) and [16, 32) are two "datasets"; every batch comes from
    one of them, in turn, in an order that is a function of (seed, epoch) only."""

    def __init__(self, seed: int, batch_size: int = 4):
        self.seed, self.batch_size, self.num_batches = seed, batch_size, 8
        self.epoch, self.start = 0, 0
        self.starts: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, batch: int) -> None:
        self.start = batch
        self.starts.append(batch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        groups = [torch.randperm(16, generator=g) + 16 * k for k in (0, 1)]
        for b in range(self.start, self.num_batches):
            part = groups[b % 2][(b // 2) * self.batch_size : (b // 2 + 1) * self.batch_size]
            yield part.tolist()


class Recorder(NoiseRestore):
    """Records every hook call; ``prepare_batch`` lets it run with transforms_on=workers; its own
    batch sampler, whole-set evaluation (``max`` mode) and an exported module."""

    name = "test_hook_recorder"
    monitor = "neg_mse"
    monitor_mode = "max"
    validation_batch_size = 3

    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls: list[tuple] = []
        self.batches: list[list[int]] = []
        self.sampler: GroupBatches | None = None
        self.last_weights: torch.Tensor | None = None

    @staticmethod
    def _weight(model) -> torch.Tensor:
        return next(model.parameters()).detach().clone()

    def prepare_batch(self, batch, generator):
        x = batch["image"]
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return {"input": (x + 0.1 * noise).clamp(0, 1), "target": x}

    def batch_sampler(self, dataset, seed, rank, world_size):
        self.calls.append(("batch_sampler", len(dataset), seed, rank, world_size))
        self.sampler = GroupBatches(seed)
        return self.sampler

    def on_epoch_start(self, model, epoch):
        self.calls.append(("on_epoch_start", epoch, model.training))

    def training_step(self, model, batch, ctx):
        self.batches.append(batch["index"].tolist())
        self.last_weights = self._weight(model)
        pair = self.prepared(batch, ctx)
        loss = torch.nn.functional.mse_loss(model(pair["input"]).float(), pair["target"])
        return StepOutput(loss)

    def after_step(self, model, ctx):
        changed = not torch.equal(self._weight(model), self.last_weights)
        self.calls.append(("after_step", ctx.step, ctx.epoch, ctx.batch_index, ctx.total_steps, ctx.steps_per_epoch,
                           changed, torch.is_grad_enabled()))

    def evaluate(self, model, loader, ctx):
        sizes, total = [], 0.0
        for batch in loader:
            sizes.append(int(batch["image"].shape[0]))
            total += float(torch.nn.functional.mse_loss(model(batch["image"]).float(), batch["image"], reduction="sum"))
        parts = ctx.gather((sizes, total))
        count = sum(sum(s) for s, _ in parts)
        self.calls.append(("evaluate", ctx.epoch, ctx.step, sizes, model.training, torch.is_grad_enabled(),
                           sorted(ctx.train_means)))
        return {"neg_mse": -sum(t for _, t in parts) / count}

    def state_dict(self):
        self.calls.append(("state_dict",))
        return {"marker": torch.tensor([len(self.batches)])}

    def load_state_dict(self, state):
        self.calls.append(("load_state_dict", int(state["marker"])))

    def export_module(self, model):
        self.calls.append(("export_module",))
        return model


def _run(store, out, *overrides, method_cls=Recorder):
    cfg = tiny_config(store, out, "method.name=test_noise_restore", *overrides)
    method = method_cls(cfg)
    return train(cfg, method), method


def _named(calls, name):
    return [c for c in calls if c[0] == name]


def test_hooks_are_called_when_and_as_often_as_documented(store, tmp_path):
    epochs, spe = 2, 8
    result, m = _run(store, tmp_path / "run", f"train.epochs={epochs}", "train.checkpoint_every=3")
    total = epochs * spe
    assert result.step == total
    assert _named(m.calls, "batch_sampler") == [("batch_sampler", N_TRAIN, 0, 0, 1)]
    assert _named(m.calls, "load_state_dict") == []
    assert _named(m.calls, "on_epoch_start") == [("on_epoch_start", e, True) for e in range(epochs)]
    after = _named(m.calls, "after_step")
    # once per step, in order, after the optimiser changed the weights, without autograd
    assert [(c[1], c[2], c[3]) for c in after] == [(s, s // spe, s % spe) for s in range(total)]
    assert all(c[4] == total and c[5] == spe and c[6] and not c[7] for c in after)
    evals = _named(m.calls, "evaluate")
    assert [(c[1], c[2]) for c in evals] == [(0, spe), (1, 2 * spe)]  # once per epoch, after its last step
    assert all(c[3] == [3, 3, 3, 1] and c[4] is False and c[5] is False and c[6] == ["loss"] for c in evals)
    # state_dict: every checkpoint (steps 3, 6, 9, 12, 15), each epoch end (2) and the end of the run
    assert len(_named(m.calls, "state_dict")) == 5 + 2 + 1
    assert int(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["method"]["marker"]) == total
    val = read_metrics(tmp_path / "run", "validation")
    improved = sum(r["improved"] for r in val)
    assert len(_named(m.calls, "export_module")) == improved + 1  # each new best, then final.safetensors
    assert all(r["neg_mse"] < 0 and "loss" not in r for r in val)  # evaluate's metrics replace the batch means
    assert result.best == max(r["neg_mse"] for r in val) and result.best_epoch == max(range(epochs), key=lambda e: val[e]["neg_mse"])
    # the method's batches: one group per batch, groups in turn
    assert all(len({i // 16 for i in b}) == 1 for b in m.batches)
    assert [b[0] // 16 for b in m.batches[:4]] == [0, 1, 0, 1]


@pytest.mark.parametrize("where", ["device", "workers"])
def test_hooks_after_a_mid_epoch_resume(store, tmp_path, where):
    extra = [f"train.transforms_on={where}", f"train.num_workers={1 if where == 'workers' else 0}",
             "train.epochs=2", "train.checkpoint_every=0"]
    whole, ref = _run(store, tmp_path / "whole", *extra)
    first, m1 = _run(store, tmp_path / "cut", *extra, "train.max_steps=11")  # stops in epoch 1, batch 3
    assert first.step == 11 and first.stop_reason == "max_steps"
    resumed, m2 = _run(store, tmp_path / "cut", *extra)
    assert resumed.resumed_from == 11 and resumed.step == whole.step == 16
    assert _named(m2.calls, "batch_sampler") == [("batch_sampler", N_TRAIN, 0, 0, 1)]
    # the state is restored once, before the (partial) epoch starts, from the checkpoint of step 11
    assert m2.calls[1:3] == [("load_state_dict", 11), ("on_epoch_start", 1, True)]
    assert m2.sampler.starts == [3]
    assert [(c[1], c[3]) for c in _named(m2.calls, "after_step")] == [(s, s - 8) for s in range(11, 16)]
    assert [c[1] for c in _named(m2.calls, "evaluate")] == [1]
    # the batches of the interrupted and the resumed run are those of the uninterrupted run
    assert m1.batches + m2.batches == ref.batches
    losses = lambda run: {r["step"]: r["loss"] for r in read_metrics(run, "train")}  # noqa: E731
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_workers_and_device_transforms_call_the_hooks_alike(store, tmp_path):
    _, on_device = _run(store, tmp_path / "device", "train.epochs=1")
    _, in_workers = _run(store, tmp_path / "workers", "train.epochs=1", "train.transforms_on=workers", "train.num_workers=1")
    assert on_device.calls == in_workers.calls
    assert on_device.batches == in_workers.batches
    losses = [r["loss"] for r in read_metrics(tmp_path / "device", "train")]
    assert len(losses) == 8 and losses == [r["loss"] for r in read_metrics(tmp_path / "workers", "train")]


def test_log_epochs_writes_one_record_per_epoch_and_on_epoch_sees_it(store, tmp_path):
    seen = []
    cfg = tiny_config(store, tmp_path / "run", "train.epochs=2")
    train(cfg, log="epochs", on_epoch=lambda r: seen.append((r["epoch"], (tmp_path / "run" / "checkpoints" / "last.pt").is_file())))
    records = read_metrics(tmp_path / "run")
    assert [(r["kind"], r["epoch"]) for r in records] == [("validation", 0), ("validation", 1)]
    assert all({"loss", "train_loss", "lr", "best", "improved"} <= set(r) for r in records)
    assert seen == [(0, True), (1, True)]  # after the epoch's checkpoint


# --------------------------------------------------------------------------------------------------
# An EMA teacher resumes bit-identically after SIGKILL
# --------------------------------------------------------------------------------------------------
_SCRIPT = """
import torch
torch.set_num_threads({threads})
import training.helpers as h
from semantic_genesis.training.trainer import train
train(h.tiny_config({data!r}, {out!r}, *{overrides!r}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    threads = str(torch.get_num_threads())
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONPATH=str(TESTS_DIR) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def test_ema_teacher_resumes_bit_identically_after_sigkill(store, tmp_path):
    overrides = ["method.name=test_ema_teacher", "train.epochs=3", "train.checkpoint_every=3"]
    reference = tmp_path / "reference"
    ref = train(tiny_config(store, reference, *overrides))
    assert ref.step == 24

    run = tmp_path / "killed"
    script = _SCRIPT.format(threads=torch.get_num_threads(), data=str(store), out=str(run), overrides=overrides)
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (run / "checkpoints" / "last.pt").is_file() and len(read_metrics(run, "train")) >= 11:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    saved = load_checkpoint(run / "checkpoints" / "last.pt")
    step = saved["progress"]["step"]
    assert 9 <= step < 24 and saved["method"]["updates"] == step  # the teacher of that very step

    result = train(tiny_config(store, run, *overrides))
    assert result.resumed_from == step and result.step == 24
    train_losses = lambda r: [(x["step"], x["loss"], x["teacher_mse"]) for x in read_metrics(r, "train")]  # noqa: E731
    assert train_losses(run) == train_losses(reference)
    assert [r["loss"] for r in read_metrics(run, "validation")] == [r["loss"] for r in read_metrics(reference, "validation")]
    a, b = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(reference / "checkpoints" / "last.pt")
    assert a["method"]["updates"] == b["method"]["updates"] == 24
    for k in b["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in b["method"]["teacher"]:
        assert torch.equal(a["method"]["teacher"][k], b["method"]["teacher"][k]), k
    # the weights files hold the teacher, not the student
    exported, _ = load_weights(run / "weights" / "final.safetensors")
    for k, v in b["method"]["teacher"].items():
        assert torch.equal(exported[k], v), k
    assert any(not torch.equal(exported[k], b["model"][k]) for k in exported if exported[k].is_floating_point())
