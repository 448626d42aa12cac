"""Fine-tuning learns the phantom target tasks with the tiny configs the demo uses.

The untrained network (the same seeded initialisation, before any step) is the baseline; the
fine-tuned network must beat it on the test split by a clear margin. Cohort: 24 phantom patients
(seed 1000, default grid), exported in the layouts the tasks read.
"""

import numpy as np
import pytest
import torch

from semantic_genesis.config import load_config
from semantic_genesis.finetune import tasks
from semantic_genesis.finetune.data import split_by_patient
from semantic_genesis.finetune.models import InitSpec, build_model
from semantic_genesis.finetune.trainer import evaluate, run_finetune
from semantic_genesis.utils.seeding import seed_everything

SEED = 3


def _before_and_after(config, task_name, root, tmp_path):
    cfg = load_config(config, ["train.device=cpu"])
    task = tasks.get(task_name)
    data = task.load(root, cfg)
    split = split_by_patient(data, cfg.finetune.split, cfg.seed)
    seed_everything(SEED)
    untrained, _ = build_model(task, cfg, data.in_channels, InitSpec("scratch"))
    before = evaluate(task, data, split["test"], untrained, cfg, torch.device("cpu"))
    after = run_finetune(task, data, split, cfg, InitSpec("scratch"), tmp_path, seed=SEED, save_weights=False)
    return data, split, before, after


def test_ncc_learns_phantom_nodules(task_cohort, tmp_path):
    data, split, before, after = _before_and_after("finetune_tiny", "ncc", task_cohort / "luna16", tmp_path)
    labels = np.asarray(data.targets)[split["test"]]
    assert 5 <= labels.sum() < len(labels)  # both classes in the test split
    assert data.images.shape[1:] == (1, 16, 16, 8)
    assert after.status == "ok" and after.epochs == 24
    assert after.test["auc"] >= 0.7, after.test
    assert after.test["auc"] >= before["auc"] + 0.2, (before, after.test)


def test_ncs_learns_phantom_nodule_masks(task_cohort, tmp_path):
    data, split, before, after = _before_and_after("finetune_tiny_ncs", "ncs", task_cohort / "native", tmp_path)
    assert len(split["test"]) >= 5 and data.images.shape[1:] == (1, 16, 16, 8)
    assert before["iou"] < 0.1  # an untrained output layer does not segment nodules
    assert after.status == "ok"
    assert after.test["iou"] >= 0.2 and after.test["dice"] >= 0.3, after.test
    assert after.test["iou"] >= before["iou"] + 0.15, (before, after.test)


@pytest.mark.slow  # ~1 min with the cohort export on 2 busy cores; the 2D CLI runs stay in the default suite
def test_ncc2d_learns_phantom_nodules_from_axial_slices(task_cohort, tmp_path):
    data, split, before, after = _before_and_after("finetune_ncc2d_tiny", "ncc2d", task_cohort / "luna16", tmp_path)
    assert data.images.shape[1:] == (1, 16, 16, 8) and data.split_task == "ncc"
    assert after.status == "ok" and after.epochs == 24
    assert after.test["auc"] >= 0.65, after.test  # measured 0.72 (3D finetune_tiny: 0.78)
    assert after.test["auc"] >= before["auc"] + 0.2, (before, after.test)


@pytest.mark.slow
def test_ncs2d_learns_phantom_nodule_masks_slice_by_slice(task_cohort, tmp_path):
    data, split, before, after = _before_and_after("finetune_ncs2d_tiny", "ncs2d", task_cohort / "native", tmp_path)
    assert data.images.shape[1:] == (1, 16, 16, 8) and data.split_task == "ncs"
    assert before["iou"] < 0.1 and after.status == "ok"
    assert after.test["iou"] >= 0.2 and after.test["dice"] >= 0.3, after.test  # measured IoU 0.43, Dice 0.60
    assert after.test["iou"] >= before["iou"] + 0.15, (before, after.test)
