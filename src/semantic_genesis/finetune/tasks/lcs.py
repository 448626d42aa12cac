"""LCS: liver segmentation on LiTS volumes (IoU, Dice).

Semantic Genesis target task "LCS" (Table 1): the liver (LiTS labels 1 and 2, i.e. liver including
lesions) is segmented in whole CT volumes. As in the official fine-tuning (Models Genesis
``keras/downstream_tasks``, ``lcs_config``), the network is trained on crops of ``finetune.crop_size``
(64×64×32) sampled from the training volumes (a share ``finetune.foreground_fraction`` centred on liver
voxels) and evaluated on every whole validation / test volume by sliding-window inference (MONAI
``sliding_window_inference``), scoring IoU and Dice at threshold 0.5 (``finetune.iou``: pooled over all
test voxels by default, as the official evaluation). CT is clipped to ``intensity.hu_min..hu_max`` and
scaled to [0, 1].

Official protocol (the paper presets set both): ``finetune.split=official`` trains on LiTS cases 0-99,
validates on 100-114 and tests on 115-129; ``finetune.resize_inplane=256`` resizes every volume to
256×256 in-plane first (the official data are ``3D_LiTS_NPY_256x256xZ``; the slice axis is kept). How
the official arrays were resized is not published: here images are resized linearly with
scikit-image's anti-aliasing rule and masks by nearest neighbour. ``resize_inplane=0`` keeps the native
grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import ConfigError, DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task, official_split_indices

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
            image, mask = resize_inplane(np.asarray(unit, dtype=np.float32), case.liver_mask(), cfg.finetune.resize_inplane)
            images.append(image[None])
            masks.append(mask[None])
            patients.append(f"volume-{case_id}")
        if not any(m.any() for m in masks):
            raise DataError(f"{describe_path(root)}: no LiTS segmentation contains liver voxels (labels 1 or 2)")
        fixed, split_rule = official_split_indices(
            cfg, "lits", [(p, dataset.paths(int(p.split("-")[1]))[0]) for p in patients], patients)
        return TaskData(self.name, "segmentation", patients, images, masks, whole_volume=True, fixed_split=fixed,
                        source=f"LiTS {describe_path(root)}",
                        info={"volumes": len(images), "split_rule": split_rule,
                              "resize_inplane": int(cfg.finetune.resize_inplane)})


def resize_inplane(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a volume ``(X, Y, Z)`` and its mask to ``size x size`` in-plane (``size=0``: unchanged).

    The image is resized linearly with anti-aliasing when shrinking (scikit-image's rule), the mask by
    nearest neighbour; the slice axis is kept.

    Returns:
        ``(image float32 (size, size, Z), mask uint8 (size, size, Z))``.
    """
    from semantic_genesis.preprocess import resize

    if size < 0:
        raise ConfigError(f"finetune.resize_inplane must be >= 0 (0 = native grid), got {size}")
    if size == 0 or image.shape[:2] == (size, size):
        return image, np.asarray(mask, dtype=np.uint8)
    shape = (size, size, image.shape[2])
    out = np.clip(resize(image, shape, order=1, anti_aliasing=True), 0.0, 1.0)
    out_mask = resize(np.asarray(mask, dtype=np.float32), shape, order=0) > 0.5
    return out.astype(np.float32), out_mask.astype(np.uint8)
