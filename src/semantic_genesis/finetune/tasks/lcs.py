"""LCS: liver segmentation on LiTS volumes (IoU, Dice).

Semantic Genesis target task "LCS" (Table 1): the liver (LiTS labels 1 and 2, i.e. liver including
lesions) is segmented in whole CT volumes. As in the official fine-tuning (reference §4.3), the network
is trained on crops of ``finetune.crop_size`` (64×64×32) sampled from the training volumes (a share
``finetune.foreground_fraction`` centred on liver voxels) and evaluated on every whole validation / test
volume by sliding-window inference (MONAI ``sliding_window_inference``), scoring IoU and Dice at
threshold 0.5 per volume. CT is clipped to ``intensity.hu_min..hu_max`` and scaled to [0, 1]; volumes
stay on their native voxel grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData


class LCS(Task):
    name = "lcs"
    kind = "segmentation"
    metric = "iou"
    metrics = ("iou", "dice")
    description = "liver segmentation on LiTS CT volumes (sliding-window inference, IoU / Dice)"
    layout = "the LiTS layout: **/volume-<i>.nii[.gz] with segmentation-<i>.nii[.gz] beside it"

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import TaskData
        from semantic_genesis.io.datasets.lits import LitsDataset
        from semantic_genesis.preprocess import ct_to_unit

        root = self.check_root(root)
        dataset = LitsDataset(root)
        ids = dataset.case_ids()
        if cfg.finetune.max_patients > 0:
            ids = ids[: cfg.finetune.max_patients]
        images, masks, patients = [], [], []
        for case_id in ids:
            case = dataset.load(case_id)
            unit = ct_to_unit(np.asarray(case.volume.array), cfg.intensity.hu_min, cfg.intensity.hu_max)
            images.append(np.asarray(unit, dtype=np.float32)[None])
            masks.append(case.liver_mask().astype(np.uint8)[None])
            patients.append(f"volume-{case_id}")
        if not any(m.any() for m in masks):
            raise DataError(f"{describe_path(root)}: no LiTS segmentation contains liver voxels (labels 1 or 2)")
        return TaskData(self.name, "segmentation", patients, images, masks, whole_volume=True,
                        source=f"LiTS {describe_path(root)}", info={"volumes": len(images)})
