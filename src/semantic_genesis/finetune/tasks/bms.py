"""BMS: brain tumour segmentation on BraTS FLAIR, whole tumour (IoU, Dice).

Semantic Genesis target task "BMS" (Table 1, BraTS 2018, MRI FLAIR): the whole tumour (BraTS labels
1, 2 and 4) is segmented from the FLAIR volume alone. FLAIR is scaled per patient to [0, 1] by robust
percentiles (``intensity.lower_percentile`` / ``upper_percentile``) over the brain (non-zero voxels),
the per-image normalisation advised for MRI (Models Genesis issue #36). Training on sampled crops
and whole-volume sliding-window evaluation are as in :mod:`~semantic_genesis.finetune.tasks.lcs`.

Official protocol (``finetune.split=official``, set by the paper preset): the three official BraTS 2018
folds of the Models Genesis BMS fine-tuning (``bms_config``): folds 1 + 2 shuffled with
``random.Random(4)``, the first 1/8 (23 patients) validation, the other 167 training, fold 3 (95) test
(:func:`semantic_genesis.io.datasets.brats.official_lists`). Not reproduced: the official BMS inputs
were crops of 100×100×50 voxels around the tumour (``crop_rows/cols/deps``, ``deltr = 30``) made by an
unreleased preprocessing script; here training crops are sampled from the whole volume as for LCS.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task, official_split_indices

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData


class BMS(Task):
    name = "bms"
    kind = "segmentation"
    metric = "iou"
    metrics = ("iou", "dice")
    description = "brain tumour (whole tumour) segmentation on BraTS FLAIR (sliding-window inference, IoU / Dice)"
    layout = "the BraTS layout: **/<id>/<id>_flair.nii[.gz] with <id>_seg.nii[.gz] (and t1, t1ce, t2) beside it"

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import TaskData
        from semantic_genesis.io.datasets.brats import BratsDataset
        from semantic_genesis.preprocess import percentile_to_unit

        root = self.check_root(root)
        dataset = BratsDataset(root, require_seg=True)
        ids = dataset.patient_ids()
        if cfg.finetune.max_patients > 0:
            ids = ids[: cfg.finetune.max_patients]
        images, masks = [], []
        for pid in ids:
            case = dataset.load(pid)
            flair = np.asarray(case.modalities["flair"].array, dtype=np.float32)
            unit = percentile_to_unit(
                flair, cfg.intensity.lower_percentile, cfg.intensity.upper_percentile, mask=flair > 0
            )
            images.append(np.asarray(unit, dtype=np.float32)[None])
            masks.append(case.regions()["whole_tumor"].astype(np.uint8)[None])
        if not any(m.any() for m in masks):
            raise DataError(f"{describe_path(root)}: no BraTS segmentation contains tumour voxels")
        fixed, split_rule = official_split_indices(cfg, "brats", [(p, dataset.files(p)["flair"]) for p in ids], list(ids))
        return TaskData(self.name, "segmentation", list(ids), images, masks, whole_volume=True, fixed_split=fixed,
                        source=f"BraTS {describe_path(root)}", info={"volumes": len(images), "split_rule": split_rule})
