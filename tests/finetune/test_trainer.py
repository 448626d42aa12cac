import json
import math

import numpy as np
import pytest
import torch

from semantic_genesis.errors import TrainingError
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import split_by_patient
from semantic_genesis.finetune.models import InitSpec, build_model
from semantic_genesis.finetune.trainer import evaluate, run_finetune
from semantic_genesis.utils.seeding import seed_everything

from .conftest import blob_task, tiny_config


def _untrained(task, data, split, cfg, seed):
    seed_everything(seed)
    model, _ = build_model(task, cfg, 1, InitSpec("scratch"))
    return evaluate(task, data, split["test"], model, cfg, torch.device("cpu"))


@pytest.mark.parametrize("kind,overrides,metric,floor", [
    ("classification", ["train.epochs=4", "optim.lr=0.003"], "auc", 0.9),
    ("segmentation", ["train.epochs=12", "optim.lr=0.003"], "iou", 0.15),
])
def test_finetuning_improves_over_untrained(tmp_path, kind, overrides, metric, floor):
    data = blob_task(kind, n=48)
    task = tasks.get(data.task)
    cfg = tiny_config(*overrides)
    split = split_by_patient(data, seed=0)
    before = _untrained(task, data, split, cfg, seed=5)[metric]
    result = run_finetune(task, data, split, cfg, InitSpec("scratch"), tmp_path / "run", seed=5)
    assert result.status == "ok" and result.test[metric] >= floor
    assert result.test[metric] > before + 0.1
    assert (tmp_path / "run" / "weights" / "best.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(result.epochs))


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    data = blob_task("classification", n=48)
    task = tasks.get("ncc")
    cfg = tiny_config("train.epochs=3", "optim.scheduler=plateau", "optim.plateau_patience=1")
    split = split_by_patient(data, seed=0)
    whole = run_finetune(task, data, split, cfg, InitSpec("scratch"), tmp_path / "whole", seed=2, save_weights=False)

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(task, data, split, cfg, InitSpec("scratch"), tmp_path / "cut", seed=2, save_weights=False, on_epoch=stop)
    assert not (tmp_path / "cut" / "result.json").exists() and (tmp_path / "cut" / "checkpoints" / "last.pt").exists()
    seen = []
    resumed = run_finetune(task, data, split, cfg, InitSpec("scratch"), tmp_path / "cut", seed=2, save_weights=False,
                           on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [2]  # only the epoch that had not finished
    assert resumed.test == whole.test and resumed.best_epoch == whole.best_epoch
    a = [json.loads(x)["train_loss"] for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x)["train_loss"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert a == b


def test_divergence_raises_training_error(tmp_path):
    data = blob_task("classification", n=32)
    cfg = tiny_config("optim.lr=1e30", "train.epochs=3")
    with pytest.raises(TrainingError, match="diverged"):
        run_finetune(tasks.get("ncc"), data, split_by_patient(data, seed=0), cfg, InitSpec("scratch"), tmp_path, seed=0)


def test_whole_volume_task_runs_with_sliding_windows(phantom_root, tmp_path):
    cfg = tiny_config("train.epochs=1", "finetune.sw_overlap=0", "finetune.sw_batch_size=64", "finetune.max_patients=4")
    task = tasks.get("lcs")
    data = task.load(phantom_root / "lits", cfg)
    result = run_finetune(task, data, split_by_patient(data, seed=0), cfg, InitSpec("scratch"), tmp_path, seed=0,
                          save_weights=False)
    assert 0.0 <= result.test["iou"] <= result.test["dice"] <= 1.0
    assert math.isfinite(result.best_val)
