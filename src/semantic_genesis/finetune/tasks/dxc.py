"""DXC: the 14 thoracic diseases of ChestX-ray14 (multi-label classification, mean and per-label AUC).

Semantic Genesis target task "DXC" (Haghighi et al., MICCAI 2020, Table 1: "chest diseases, X-ray,
ChestX-ray14, 14-disease classification, AUC"), with the 2D networks: every radiograph is read from the
NIH layout (:mod:`semantic_genesis.io.datasets.chestxray14`), scaled to [0, 1] by its bit depth and
resized to ``finetune.image_size`` (224 x 224 by default, a multiple of the backbone's
``min_divisor``). The network is the backbone's encoder with a 14-output head, trained with binary
cross-entropy with logits on each label (``finetune.pos_weight: auto`` weights each label's positives by
its negatives / positives in the training split).

Split (``finetune.split``): ``auto`` / ``official`` take the NIH lists, ``test_list.txt`` for testing and
``train_val_list.txt`` for training, whose patients are split once more so that ~10 %
(``finetune.options.val_fraction``) of them form the validation set (the DXC validation lists of the
papers are not released); no patient is in two sets. ``auto`` falls back to a random split by patient
when the lists are missing; ``random`` or ``[train, val, test]`` shares split every image on disk by
patient.

Scoring: the AUC of each label over the whole split and their mean (the primary metric, which selects
the best epoch). A label without positives (or without negatives) in the split has no AUC: it is
``n/a`` in the tables and left out of the mean, never counted as 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import ConfigError, DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task
from semantic_genesis.io.datasets.chestxray14 import CHESTXRAY14_LABELS, DEFAULT_VAL_FRACTION, SPLITS, person_of

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData


def read_unit_image(path: str | Path) -> np.ndarray:
    """float32 ``(H, W)`` in [0, 1] of one radiograph (PNG values / 255, or / 65535 for 16-bit files)."""
    from semantic_genesis.io.datasets._pixels import image2d_unit
    from semantic_genesis.io.images2d import read_image2d

    array = image2d_unit(read_image2d(path))
    if array.ndim != 2:
        raise DataError(f"{describe_path(path)}: expected a 2D grey image, got shape {array.shape}")
    return array


class DXC(Task):
    name = "dxc"
    kind = "classification"
    metric = "auc"
    metrics = ("auc",)
    description = "14 thoracic diseases on ChestX-ray14 radiographs (multi-label classification, mean AUC)"
    layout = ("the ChestX-ray14 layout: images/<8 digits>_<3 digits>.png (or images_*/images/), "
              "Data_Entry_2017.csv, train_val_list.txt and test_list.txt")
    num_outputs = len(CHESTXRAY14_LABELS)
    label_names = CHESTXRAY14_LABELS
    spatial_dims = 2

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import ResizedImages, TaskData
        from semantic_genesis.io.datasets.chestxray14 import read_chestxray14

        root = self.check_root(root)
        ft = cfg.finetune
        size = self.image_size_2d(cfg)
        val_fraction = float(ft.options.get("val_fraction", DEFAULT_VAL_FRACTION))
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"finetune.options.val_fraction must be in (0, 1), got {val_fraction}")
        val_seed = int(cfg.seed if ft.split_seed is None else ft.split_seed)
        lists = all((root / name).is_file() for name in SPLITS.values())
        official = ft.split == "official" or (ft.split == "auto" and lists)
        parts = (("train", "val", "test") if official else ("all",))
        read = {p: read_chestxray14(root, p, val_fraction=val_fraction, val_seed=val_seed) for p in parts}
        keep = None
        if ft.max_patients > 0:
            everyone = sorted({person_of(n) for part in read.values() for n in part.image_ids})
            keep = set(everyone[: ft.max_patients])
        paths, labels, patients, owner = [], [], [], []
        for part, images in read.items():
            # patients named as the 2D patch sets name them (8 digits of the file name), so that a
            # pretraining record and this task's test set speak of the same patients
            for i, pid in enumerate(person_of(n) for n in images.image_ids):
                if keep is None or pid in keep:
                    paths.append(images.paths[i])
                    labels.append(images.labels[i])
                    patients.append(pid)
                    owner.append(part)
        if not paths:
            raise DataError(f"{describe_path(root)}: no ChestX-ray14 images in the {'/'.join(parts)} split(s)")
        targets = np.stack(labels).astype(np.float32)
        fixed = None
        if official:
            where = np.asarray(owner)
            fixed = {p: np.flatnonzero(where == p).astype(np.int64) for p in ("train", "val", "test")}
            rule = (f"official: test_list.txt; train_val_list.txt split by patient, {val_fraction:.0%} of its "
                    f"patients for validation (seed {val_seed})")
        else:
            rule = "random by patient" + ("" if ft.split != "auto" else " (no train_val_list.txt / test_list.txt)")
        return TaskData(
            task=self.name,
            kind="classification",
            patients=patients,
            images=ResizedImages(paths, size, read_unit_image),
            targets=targets,
            fixed_split=fixed,
            source=f"ChestX-ray14 {describe_path(root)}",
            info={"images": len(paths), "image_size": list(size), "split_rule": rule,
                  "positives": {n: int(c) for n, c in zip(CHESTXRAY14_LABELS, targets.sum(axis=0))}},
        )
