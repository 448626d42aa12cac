"""``train.transforms_on``: ``auto`` picks the loader workers on a CUDA device (for methods with a
``prepare_batch`` and loader workers to run it), the device otherwise; the resolved choice is what
config.yaml and metrics.jsonl record, a CPU run under ``auto`` is the ``device`` run, and a run may be
resumed with the other choice (the same generators draw the same transforms)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.training.logging import read_metrics
from semantic_genesis.training.trainer import resolve_transforms_on, train

from .helpers import NoiseRestore, make_cube_store, tiny_config
from .test_hooks import Recorder


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_cube_store(tmp_path_factory.mktemp("cubes") / "set")


def _method(cls, store, tmp_path):
    return cls(tiny_config(store, tmp_path / "unused", "method.name=test_noise_restore"))


def _run(store, out, *overrides):
    cfg = tiny_config(store, out, "method.name=test_noise_restore", *overrides)
    return train(cfg, Recorder(cfg))


def test_auto_picks_workers_only_on_cuda_with_prepare_batch_and_workers(store, tmp_path):
    preparing, in_step = _method(Recorder, store, tmp_path), _method(NoiseRestore, store, tmp_path)
    assert type(preparing).can_prepare_in_workers() and not type(in_step).can_prepare_in_workers()
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")  # a device object needs no GPU
    assert resolve_transforms_on("auto", cuda, preparing, 8) == "workers"
    assert resolve_transforms_on("auto", "cuda", preparing, 1) == "workers"
    assert resolve_transforms_on("auto", cuda, preparing, 0) == "device"  # no workers to run it in
    assert resolve_transforms_on("auto", cuda, in_step, 8) == "device"  # transforms inside its step
    assert resolve_transforms_on("auto", cpu, preparing, 8) == "device"  # CPU runs stay as they were
    assert resolve_transforms_on("auto", "cpu", in_step, 0) == "device"
    # an explicit choice is kept
    for device in (cuda, cpu):
        assert resolve_transforms_on("device", device, preparing, 8) == "device"
        assert resolve_transforms_on("workers", device, preparing, 0) == "workers"
    with pytest.raises(ConfigError, match="transforms_on=workers: method 'test_noise_restore' transforms inside its step"):
        resolve_transforms_on("workers", cuda, in_step, 8)
    with pytest.raises(ConfigError, match="must be one of auto, device, workers, got 'gpu'"):
        resolve_transforms_on("gpu", cuda, preparing, 8)


def test_config_default_is_auto_and_unknown_values_are_refused():
    assert load_config(None).train.transforms_on == "auto"
    assert load_config("models_genesis_3d").train.transforms_on == "auto"
    assert load_config(None, ["train.transforms_on=workers"]).train.transforms_on == "workers"
    with pytest.raises(ConfigError, match="train.transforms_on: 'gpu' is not one of 'auto', 'device', 'workers'"):
        load_config(None, ["train.transforms_on=gpu"])


def test_cpu_run_under_auto_is_the_device_run_and_records_it(store, tmp_path):
    auto = _run(store, tmp_path / "auto", "train.epochs=1", "train.num_workers=1")
    device = _run(store, tmp_path / "device", "train.epochs=1", "train.num_workers=1", "train.transforms_on=device")
    assert auto.step == device.step == 8
    losses = lambda run: [r["loss"] for r in read_metrics(run, "train")]  # noqa: E731
    assert losses(tmp_path / "auto") == losses(tmp_path / "device") and len(losses(tmp_path / "auto")) == 8
    for run in ("auto", "device"):
        saved = yaml.safe_load((tmp_path / run / "config.yaml").read_text())
        assert saved["train"]["transforms_on"] == "device", run
        (start,) = [r for r in read_metrics(tmp_path / run, "event") if r["event"] == "start"]
        assert start["transforms_on"] == "device", run
    for k, v in auto.model.state_dict().items():
        assert torch.equal(v, device.model.state_dict()[k]), k


def test_a_workers_run_resumes_under_auto_on_the_cpu_with_the_same_losses(store, tmp_path):
    def run(out, *overrides):
        return _run(store, out, "train.epochs=2", "train.checkpoint_every=0", *overrides)

    whole = run(tmp_path / "whole", "train.transforms_on=device")
    cut = run(tmp_path / "cut", "train.transforms_on=workers", "train.num_workers=1", "train.max_steps=11")
    assert cut.step == 11
    resumed = run(tmp_path / "cut")  # auto on the CPU: device
    assert resumed.resumed_from == 11 and resumed.step == whole.step == 16
    assert yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["train"]["transforms_on"] == "device"
    events = [(r["event"], r.get("transforms_on")) for r in read_metrics(tmp_path / "cut", "event")]
    assert ("start", "workers") in events and ("resume", "device") in events
    losses = lambda out: {r["step"]: r["loss"] for r in read_metrics(out, "train")}  # noqa: E731
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
