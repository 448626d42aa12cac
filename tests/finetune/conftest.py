"""Shared fixtures: tiny phantom cohorts in the LUNA16, native and LiTS layouts, and tiny configs."""

import numpy as np
import pytest
import torch

from semantic_genesis.config import load_config
from semantic_genesis.finetune.data import TaskData

PHANTOM_SHAPE = (64, 64, 48)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    """Export 6 small CT phantoms once per session in the layouts the tasks read."""
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("finetune_phantoms")
    for layout in ("luna16", "native", "lits"):
        export_ct_cohort(root / layout, 6, seed=0, layout=layout, shape=PHANTOM_SHAPE)
    return root


TASK_COHORT = {"patients": 24, "seed": 1000}


@pytest.fixture(scope="session")
def task_cohort(tmp_path_factory):
    """A target-task cohort at the default phantom grid (2.8 x 2.8 x 3.2 mm), as the demo makes it:
    24 patients in the LUNA16 layout (NCC) and the same patients in the native layout (NCS)."""
    from semantic_genesis.phantoms.export import export_ct_cohort

    root = tmp_path_factory.mktemp("finetune_task_cohort")
    for layout in ("luna16", "native"):
        export_ct_cohort(root / layout, TASK_COHORT["patients"], seed=TASK_COHORT["seed"], layout=layout)
    return root


def tiny_config(*overrides):
    return load_config(None, [
        "model.width=0.125", "finetune.crop_size=[16,16,8]", "train.batch_size=8", "train.epochs=3",
        "train.patience=5", "train.device=cpu", "optim.scheduler=none", "finetune.max_negatives=8",
        "finetune.samples_per_volume=4", "finetune.sw_batch_size=8", *overrides,
    ])


def blob_task(kind="classification", n=64, size=(16, 16, 8), seed=0, patients=8):
    """Noisy cubes; positives carry a bright ball (and its mask). Class 1 every third sample."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.3, 0.08, (n, 1) + size).astype(np.float32)
    masks = np.zeros((n, 1) + size, np.uint8)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij")).astype(np.float32)
    labels = (np.arange(n) % 3 == 0).astype(np.int64) if kind == "classification" else np.ones(n, np.int64)
    for i in range(n):
        if labels[i]:
            c = np.array([rng.uniform(5, s - 5) if s > 10 else s / 2 for s in size])[:, None, None, None]
            r = rng.uniform(2.0, 3.5)
            ball = ((grid - c) ** 2).sum(0) < r * r
            images[i, 0][ball] += 0.45
            masks[i, 0] = ball
    ids = [f"p{i % patients}" for i in range(n)]
    if kind == "classification":
        return TaskData("ncc", "classification", ids, images, labels, source="blobs")
    return TaskData("ncs", "segmentation", ids, images, masks, source="blobs")
