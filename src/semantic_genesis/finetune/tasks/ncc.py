"""NCC: lung nodule false-positive reduction on LUNA16 candidates (binary classification, AUC).

Models Genesis / Semantic Genesis target task "NCC" (Semantic Genesis, Table 1): every LUNA16
candidate (``candidates.csv``, class 1 = nodule, 0 = false positive) becomes a cube centred on the
candidate, 64×64×32 voxels by default (``finetune.crop_size``, the official fine-tuning input), CT
clipped to ``intensity.hu_min..hu_max`` and scaled to [0, 1]. Cubes are cut in the scan's native voxel
grid (LUNA16 in-plane spacing is ~0.5-0.9 mm, slices 0.6-2.5 mm), padded with 0 (air) at the border.

Candidates whose centre lies outside their scan are dropped by the LUNA16 reader with a warning (an
all-padding crop with a label would be noise); when none remain, loading fails with the reason.

LUNA16 lists ~750k candidates for ~1.2k nodules, so all positives are kept and at most
``finetune.max_negatives`` negatives per scan are drawn (seeded per scan). The remaining imbalance is
handled by the trainer (``finetune.pos_weight`` or ``finetune.balanced_sampling``).

Split (``finetune.split``): ``auto`` and ``official`` split by LUNA16 subset as the official code does
(train 0-4, validation 5-6, test 7-9), so a model pretrained on LUNA16 subsets 0-6 (the ``cubes`` and
``discover`` default) is never tested on a scan it was pretrained on; ``auto`` falls back to a random
split by patient when the subsets leave a split empty (small or partial copies).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task, official_split_indices
from semantic_genesis.utils.seeding import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData


class NCC(Task):
    name = "ncc"
    kind = "classification"
    metric = "auc"
    metrics = ("auc",)
    description = "lung nodule false-positive reduction on LUNA16 candidates (classification, AUC)"
    layout = "the LUNA16 layout: subset*/<seriesuid>.mhd (+.raw), annotations.csv and candidates.csv"

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import TaskData, extract_crop
        from semantic_genesis.io.datasets.luna16 import Luna16Dataset
        from semantic_genesis.preprocess import ct_to_unit

        root = self.check_root(root)
        ft = cfg.finetune
        dataset = Luna16Dataset(root, strict=bool(ft.options.get("strict", True)))
        uids = dataset.series_ids()
        if ft.max_patients > 0:
            uids = uids[: ft.max_patients]
        images, labels, patients = [], [], []
        listed = outside = 0
        for uid in uids:
            candidates = dataset.candidates_world(uid)
            if not candidates:
                continue
            scan = dataset.load(uid)  # drops (and warns about) candidates outside the scan
            listed += len(candidates)
            outside += scan.outside_candidates
            unit = ct_to_unit(np.asarray(scan.volume.array), cfg.intensity.hu_min, cfg.intensity.hu_max)
            unit = np.asarray(unit, dtype=np.float32)[None]
            pos = [c for c in scan.candidates if c.label == 1]
            neg = [c for c in scan.candidates if c.label != 1]
            if ft.max_negatives >= 0 and len(neg) > ft.max_negatives:
                rng = np.random.default_rng(derive_seed(cfg.seed if ft.split_seed is None else ft.split_seed, uid))
                keep = np.sort(rng.choice(len(neg), size=ft.max_negatives, replace=False))
                neg = [neg[i] for i in keep]
            for cand in pos + neg:
                images.append(extract_crop(unit, cand.center_vox, ft.crop_size))
                labels.append(1 if cand.label == 1 else 0)
                patients.append(uid)
        if not images and outside:
            raise DataError(
                f"{describe_path(dataset.candidates_path)}: all {outside} candidates of the scans under "
                f"{describe_path(root)} lie outside their scan; the coordinates must be world mm (LPS, the "
                "Offset / ElementSpacing of each .mhd), as in the LUNA16 CSV files"
            )
        if not images:
            raise DataError(f"{describe_path(dataset.candidates_path)}: no candidates for the scans found under {describe_path(root)}")
        labels_arr = np.asarray(labels, dtype=np.int64)
        if labels_arr.min() == labels_arr.max():
            raise DataError(
                f"{describe_path(dataset.candidates_path)}: all {len(labels)} candidates have class {labels[0]}; "
                "NCC needs nodules (class 1) and false positives (class 0)"
            )
        # finetune.split auto / official: by LUNA16 subset (0-4 / 5-6 / 7-9), as the official code
        used = sorted(set(patients))
        fixed, split_rule = official_split_indices(cfg, "luna16", [(u, dataset.path(u)) for u in used], patients)
        return TaskData(
            task=self.name,
            kind="classification",
            patients=patients,
            images=np.stack(images),
            targets=labels_arr,
            fixed_split=fixed,
            source=f"LUNA16 {describe_path(root)}",
            info={"scans": len(set(patients)), "positives": int(labels_arr.sum()), "negatives": int((labels_arr == 0).sum()),
                  "candidates_listed": listed, "candidates_outside": outside,
                  "split_rule": split_rule},
        )
