"""Reader for the BraTS (Brain Tumor Segmentation challenge, 2018 naming) layout.

Expected layout (the 2018 training data has ``HGG/`` and ``LGG/`` below the root; any depth works)::

    ROOT/**/<id>/<id>_flair.nii.gz
                 <id>_t1.nii.gz
                 <id>_t1ce.nii.gz
                 <id>_t2.nii.gz
                 <id>_seg.nii.gz      0 background, 1 necrotic/non-enhancing core, 2 oedema, 4 enhancing

A patient is found by its ``_flair`` file; the other modalities must sit beside it (``.nii`` or
``.nii.gz``) on the same grid. The segmentation is required unless ``require_seg=False`` (validation
data has none). Used by the BMS (brain tumour segmentation) target task of Semantic Genesis
(Haghighi et al., 2020; Zhou et al., 2019).

Official split (:func:`official_split`): the official BMS fine-tuning (``bms_config`` of Models
Genesis' ``keras/downstream_tasks/config.py``) reads three fixed folds of 95 BraTS 2018 training
patients (``data/bms/fold_{1,2,3}.csv``, kept here in :mod:`._brats18_folds`), shuffles folds 1 + 2 with
``random.Random(4)``, takes the first ``len // 8`` (23) as validation and the other 167 as training, and
tests on fold 3 (95).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import require_dir

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
BRATS_LABELS = {"background": 0, "necrotic_core": 1, "edema": 2, "enhancing": 4}


def official_lists() -> dict[str, list[str]]:
    """The official BMS patient lists ``{"train", "validation", "test"}`` (167 / 23 / 95 BraTS 2018 ids).

    Folds 1 + 2 in file order, shuffled by ``random.Random(4).shuffle`` (CPython's algorithm, stable
    across versions), first ``len // 8`` validation, the rest training; fold 3 is the test set.
    """
    from semantic_genesis.io.datasets._brats18_folds import FOLD_1, FOLD_2, FOLD_3

    pool = [*FOLD_1, *FOLD_2]
    random.Random(4).shuffle(pool)
    n_val = len(pool) // 8
    return {"train": pool[n_val:], "validation": pool[:n_val], "test": list(FOLD_3)}


def official_split(patient_ids: Iterable[str]) -> dict[str, str | None]:
    """The official BMS split of BraTS patient ids (:func:`official_lists`); ``None`` = not in any fold."""
    where = {pid: name for name, ids in official_lists().items() for pid in ids}
    return {str(pid): where.get(str(pid)) for pid in patient_ids}


@dataclass
class BratsCase:
    """One BraTS patient.

    Attributes:
        patient_id: the folder/file prefix (e.g. ``Brats18_2013_2_1``).
        modalities: ``{"flair", "t1", "t1ce", "t2"}`` -> ``Volume`` (float32 ``(X, Y, Z)``, raw MR units).
        seg: uint8 ``(X, Y, Z)`` with labels 0/1/2/4, or ``None`` when absent.
    """

    patient_id: str
    modalities: dict
    seg: np.ndarray | None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, ``(x, y, z)``."""
        return tuple(self.modalities["flair"].spacing)

    def image(self) -> np.ndarray:
        """float32 ``(4, X, Y, Z)``: the modalities stacked in :data:`BRATS_MODALITIES` order."""
        return np.stack([np.asarray(self.modalities[m].array, dtype=np.float32) for m in BRATS_MODALITIES])

    def regions(self) -> dict[str, np.ndarray]:
        """The challenge's evaluation regions as bool ``(X, Y, Z)`` masks.

        ``whole_tumor`` = labels {1, 2, 4}, ``tumor_core`` = {1, 4}, ``enhancing_tumor`` = {4}.
        """
        if self.seg is None:
            raise DataError(f"BraTS patient {self.patient_id} has no segmentation")
        return {
            "whole_tumor": self.seg > 0,
            "tumor_core": (self.seg == 1) | (self.seg == 4),
            "enhancing_tumor": self.seg == 4,
        }


def _modality_file(folder: Path, patient_id: str, suffix: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        path = folder / f"{patient_id}_{suffix}{ext}"
        if path.is_file():
            return path
    return None


def find_brats_flair(root: Path) -> list[Path]:
    """All ``*_flair.nii[.gz]`` files under ``root``, sorted."""
    return sorted(p for p in root.rglob("*_flair.nii*") if p.is_file() and p.name.endswith((".nii", ".nii.gz")))


class BratsDataset:
    """BraTS on disk: patients found by their FLAIR file, with four modalities and the segmentation.

    Args:
        root: folder searched recursively for ``<id>_flair.nii.gz``.
        require_seg: require ``<id>_seg`` for every patient (default).

    Raises:
        DatasetLayoutError: no FLAIR file, or a patient missing one of the other files (named).
        DataError: (on :meth:`load`) modalities or segmentation on different grids, labels outside
            {0, 1, 2, 4}.
    """

    def __init__(self, root: str | Path, require_seg: bool = True):
        self.root = require_dir(Path(root), "BraTS root")
        self.require_seg = require_seg
        self._files: dict[str, dict[str, Path | None]] = {}
        flairs = find_brats_flair(self.root)
        if not flairs:
            raise DatasetLayoutError(f"{describe_path(self.root)}: no BraTS '<id>_flair.nii.gz' files found")
        for flair in flairs:
            patient_id = flair.name.split("_flair.nii")[0]
            files: dict[str, Path | None] = {}
            for suffix in (*BRATS_MODALITIES, "seg"):
                path = _modality_file(flair.parent, patient_id, suffix)
                if path is None and (suffix != "seg" or require_seg):
                    raise DatasetLayoutError(
                        f"{describe_path(flair.parent / f'{patient_id}_{suffix}.nii.gz')}: BraTS "
                        f"{suffix} file of patient {patient_id} not found"
                    )
                files[suffix] = path
            if patient_id in self._files:
                raise DatasetLayoutError(f"{describe_path(flair)}: BraTS patient {patient_id} appears twice")
            self._files[patient_id] = files

    def patient_ids(self) -> list[str]:
        """Patient ids, sorted."""
        return sorted(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[BratsCase]:
        for pid in self.patient_ids():
            yield self.load(pid)

    def files(self, patient_id: str) -> dict[str, Path | None]:
        """``{"flair", "t1", "t1ce", "t2", "seg"}`` -> path (``seg`` may be ``None``)."""
        try:
            return dict(self._files[patient_id])
        except KeyError:
            raise DataError(f"{describe_path(self.root)}: no BraTS patient {patient_id!r}") from None

    def load(self, patient_id: str) -> BratsCase:
        """Read the four modalities and the segmentation of one patient."""
        from semantic_genesis.io.volumes import read_volume

        files = self.files(patient_id)
        modalities = {}
        for name in BRATS_MODALITIES:
            volume = read_volume(files[name])
            volume.metadata.setdefault("modality", "mri")
            volume.metadata["sequence"] = name
            modalities[name] = volume
        shape = tuple(modalities["flair"].array.shape)
        for name in BRATS_MODALITIES[1:]:
            if tuple(modalities[name].array.shape) != shape:
                raise DataError(
                    f"BraTS {describe_path(files[name])} has shape {tuple(modalities[name].array.shape)} "
                    f"but {describe_path(files['flair'])} has shape {shape}; expected equal"
                )
        seg = None
        if files["seg"] is not None:
            seg_volume = read_volume(files["seg"])
            if tuple(seg_volume.array.shape) != shape:
                raise DataError(
                    f"BraTS segmentation {describe_path(files['seg'])} has shape "
                    f"{tuple(seg_volume.array.shape)} but {describe_path(files['flair'])} has shape {shape}; "
                    "expected equal"
                )
            seg_int = np.rint(seg_volume.array).astype(np.int16)
            bad = np.setdiff1d(np.unique(seg_int), list(BRATS_LABELS.values()))
            if bad.size:
                raise DataError(
                    f"{describe_path(files['seg'])}: BraTS labels must be 0, 1, 2, 4; found {bad.tolist()}"
                )
            seg = seg_int.astype(np.uint8)
        return BratsCase(patient_id, modalities, seg)
