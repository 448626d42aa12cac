"""NCS: lung nodule segmentation on crops around nodules (IoU, Dice).

Semantic Genesis target task "NCS" (Table 1, LIDC-IDRI): a binary nodule mask is predicted for a
64×64×32 crop (``finetune.crop_size``) centred on each nodule. Two layouts are read:

* the **native phantom layout** (``semantic-genesis phantom ct --layout native``: ``images/``,
  ``labels/``, ``meta/``): every connected component of the label ``finetune.options.label``
  (default ``"nodule"``, looked up in the patient's ``label_names``) is one nodule; the crop is centred
  on its centroid and the mask is that label inside the crop. CT is windowed to [0, 1] as for NCC.
  The LUNA16 layout has nodule centres but no masks, so it cannot serve NCS;
* **pre-cropped arrays** as used by the official Models Genesis NCS notebook (``keras/downstream_tasks``):
  ``x_train*.npy`` / ``m_train*.npy``, ``x_valid*.npy`` / ``m_valid*.npy``, ``x_test*.npy`` /
  ``m_test*.npy`` with shapes ``(N, X, Y, Z)``, ``(N, 1, X, Y, Z)`` or ``(N, X, Y, Z, 1)``. The split
  shipped in the file names is used as is (each crop counts as its own patient). Images whose maximum
  exceeds 1.5 are taken to be in HU and windowed; otherwise they are taken to be in [0, 1] already.
  Crops of another size are centre-cropped / zero-padded to ``finetune.crop_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.finetune.tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData

NPY_SPLITS = {"train": "train", "val": "valid", "test": "test"}


class NCS(Task):
    name = "ncs"
    kind = "segmentation"
    metric = "iou"
    metrics = ("iou", "dice")
    description = "lung nodule segmentation on crops around nodules (IoU / Dice)"
    layout = (
        "the native phantom layout (images/<id>.nii.gz, labels/<id>.nii.gz with a 'nodule' label, meta/<id>.json) "
        "or official NCS arrays x_train*.npy, m_train*.npy, x_valid*.npy, m_valid*.npy, x_test*.npy, m_test*.npy"
    )

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        root = self.check_root(root)
        if any(root.glob("x_train*.npy")):
            return self._load_npy(root, cfg)
        if (root / "images").is_dir() and (root / "labels").is_dir():
            return self._load_native(root, cfg)
        hint = ""
        if any(root.glob("subset*")):
            hint = " (this looks like LUNA16, which has nodule centres but no masks)"
        raise DatasetLayoutError(f"{describe_path(root)}: no NCS data found{hint}; expected {self.layout}")

    def _load_native(self, root: Path, cfg: "Config") -> "TaskData":
        from scipy import ndimage

        from semantic_genesis.finetune.data import TaskData, extract_crop
        from semantic_genesis.io.datasets.native import NativeCohort
        from semantic_genesis.preprocess import ct_to_unit

        label_name = str(cfg.finetune.options.get("label", "nodule"))
        cohort = NativeCohort(root)
        ids = cohort.patient_ids()
        if cfg.finetune.max_patients > 0:
            ids = ids[: cfg.finetune.max_patients]
        images, masks, patients = [], [], []
        for pid in ids:
            case = cohort.load(pid)
            if case.labels is None:
                raise DatasetLayoutError(f"{describe_path(root / 'labels')}: native patient {pid} has no label map")
            if label_name not in case.label_names:
                raise DataError(
                    f"{describe_path(root / 'meta' / (pid + '.json'))}: no label {label_name!r} in label_names "
                    f"{sorted(case.label_names)}; set finetune.options.label"
                )
            nodule = case.labels == int(case.label_names[label_name])
            components, count = ndimage.label(nodule)
            if count == 0:
                continue
            unit = ct_to_unit(np.asarray(case.image.array), cfg.intensity.hu_min, cfg.intensity.hu_max)
            unit = np.asarray(unit, dtype=np.float32)[None]
            centers = ndimage.center_of_mass(nodule, components, range(1, count + 1))
            for center in centers:
                images.append(extract_crop(unit, center, cfg.finetune.crop_size))
                masks.append(extract_crop(nodule[None].astype(np.uint8), center, cfg.finetune.crop_size))
                patients.append(pid)
        if not images:
            raise DataError(f"{describe_path(root / 'labels')}: no {label_name!r} voxels in any label map")
        return TaskData(self.name, "segmentation", patients, np.stack(images), np.stack(masks),
                        source=f"native phantom {describe_path(root)}",
                        info={"patients": len(set(patients)), "nodules": len(images)})

    def _load_npy(self, root: Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import TaskData, extract_crop
        from semantic_genesis.preprocess import ct_to_unit

        size = tuple(cfg.finetune.crop_size)
        images, masks, patients, split = [], [], [], {}
        for split_name, file_tag in NPY_SPLITS.items():
            x_path = _one(root, f"x_{file_tag}*.npy")
            m_path = _one(root, f"m_{file_tag}*.npy")
            x = _as_nxyz(np.load(x_path, mmap_mode="r"), x_path)
            m = _as_nxyz(np.load(m_path, mmap_mode="r"), m_path)
            if x.shape != m.shape:
                raise DataError(f"{describe_path(m_path)}: masks of shape {m.shape} do not match images {x.shape} in {x_path.name}")
            x = np.asarray(x, dtype=np.float32)
            if x.size and float(x.max()) > 1.5:
                x = np.asarray(ct_to_unit(x, cfg.intensity.hu_min, cfg.intensity.hu_max), dtype=np.float32)
            start = len(images)
            for i in range(x.shape[0]):
                images.append(extract_crop(x[i][None], _even_center(x.shape[1:]), size))
                masks.append(extract_crop((np.asarray(m[i]) > 0.5).astype(np.uint8)[None], _even_center(x.shape[1:]), size))
                patients.append(f"{file_tag}:{i}")
            split[split_name] = np.arange(start, len(images), dtype=np.int64)
        if not images:
            raise DataError(f"{describe_path(root)}: the NCS arrays hold no crops")
        return TaskData(self.name, "segmentation", patients, np.stack(images), np.stack(masks), fixed_split=split,
                        source=f"NCS arrays {describe_path(root)}",
                        info={"crops": len(images), "anonymous": True})  # crops of LIDC-IDRI scans, no patient ids


def _one(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        raise DatasetLayoutError(f"{describe_path(root)}: {pattern} not found (NCS arrays need train, valid and test files)")
    if len(found) > 1:
        raise DatasetLayoutError(f"{describe_path(root)}: several files match {pattern}: {', '.join(p.name for p in found)}")
    return found[0]


def _as_nxyz(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 5 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 5 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim == 4:
        return array
    raise DataError(f"{describe_path(path)}: expected (N, X, Y, Z) crops (or with a channel of 1), got shape {array.shape}")


def _even_center(shape) -> list[float]:
    """Centre for :func:`extract_crop` that keeps an equal-size crop unchanged (start index 0)."""
    return [s // 2 for s in shape]
