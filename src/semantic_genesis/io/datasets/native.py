"""Reader for the native phantom layout written by ``semantic-genesis phantom ... --layout native``.

Layout::

    ROOT/cohort.json                 cohort description ("modality": "ct" | "mri" | "xray", seed, ...)
    ROOT/images/<id>.nii.gz          CT in HU (or <id>.png for radiographs)
    ROOT/images/<id>_<seq>.nii.gz    MRI, one file per sequence (flair, t1, t1ce, t2)
    ROOT/labels/<id>.nii.gz          label map on the image grid (or <id>.png mask for radiographs)
    ROOT/meta/<id>.json              per-patient ground truth (label names, nodules, findings, ...)

Patients are the stems of ``meta/*.json`` (or, without ``meta/``, of the image files). Label maps
are uint8 ``(X, Y, Z)`` for volumes and ``(H, W)`` for radiographs; ``label_names`` maps a structure
name to its value (from the patient's meta, else from ``cohort.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import require_dir

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".nrrd", ".npy")
IMAGE2D_SUFFIXES = (".png", ".dcm", ".jpg", ".jpeg")
MRI_SEQUENCES = ("flair", "t1", "t1ce", "t2")


def _strip_suffix(name: str) -> tuple[str, str] | None:
    for suffix in (*VOLUME_SUFFIXES, *IMAGE2D_SUFFIXES):
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


@dataclass
class NativeCase:
    """One phantom patient in the native layout.

    Attributes:
        patient_id: file stem.
        images: ``{name: image}``; name ``"ct"`` (``Volume``, HU), the MRI sequences (``Volume``s), or
            ``"xray"`` (``Image2D``, ``(H, W)`` in [0, 1]).
        labels: uint8 label map on the image grid, or ``None`` when the patient has none.
        label_names: structure name -> label value.
        meta: the patient's ``meta/<id>.json`` (empty dict when absent).
    """

    patient_id: str
    images: dict
    labels: np.ndarray | None
    label_names: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def image(self):
        """The primary image: ``ct``, ``flair``, ``xray`` or the only one."""
        for name in ("ct", "flair", "xray"):
            if name in self.images:
                return self.images[name]
        return next(iter(self.images.values()))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Pixel/voxel spacing of the primary image in mm."""
        return tuple(float(s) for s in self.image.spacing)


class NativeCohort:
    """A native phantom cohort folder.

    Args:
        root: the folder holding ``images/`` (and ``labels/``, ``meta/``, ``cohort.json``).

    Raises:
        DatasetLayoutError: no ``images/`` folder or no image in it; a patient without image file.
    """

    def __init__(self, root: str | Path):
        self.root = require_dir(Path(root), "native cohort root")
        self.images_dir = require_dir(self.root / "images", "native cohort images/")
        cohort_file = self.root / "cohort.json"
        self.info: dict = json.loads(cohort_file.read_text(encoding="utf-8")) if cohort_file.is_file() else {}
        self._images: dict[str, dict[str, Path]] = {}
        image_files = {}
        for path in sorted(self.images_dir.iterdir()):
            parsed = _strip_suffix(path.name)
            if parsed is not None and not path.name.startswith("."):
                image_files[parsed[0]] = path
        if not image_files:
            raise DatasetLayoutError(f"{describe_path(self.images_dir)}: no image files in the native images/ folder")
        meta_dir = self.root / "meta"
        ids = sorted(p.stem for p in meta_dir.glob("*.json")) if meta_dir.is_dir() else []
        if not ids:
            ids = sorted({_patient_of(stem) for stem in image_files})
        for pid in ids:
            files = {}
            if pid in image_files:
                files[_default_name(image_files[pid], self.info)] = image_files[pid]
            for seq in MRI_SEQUENCES:
                if f"{pid}_{seq}" in image_files:
                    files[seq] = image_files[f"{pid}_{seq}"]
            if not files:
                raise DatasetLayoutError(
                    f"{describe_path(self.images_dir / (pid + '.nii.gz'))}: image of native patient {pid} not found"
                )
            self._images[pid] = files

    @property
    def modality(self) -> str:
        """``"ct"``, ``"mri"`` or ``"xray"`` (from ``cohort.json``, else from the files)."""
        if "modality" in self.info:
            return str(self.info["modality"])
        first = next(iter(self._images.values()))
        if "ct" in first:
            return "ct"
        return "xray" if "xray" in first else "mri"

    def patient_ids(self) -> list[str]:
        """Patient ids, sorted."""
        return sorted(self._images)

    def __len__(self) -> int:
        return len(self._images)

    def image_paths(self, patient_id: str) -> dict[str, Path]:
        """``{name: path}`` of a patient's image files."""
        try:
            return dict(self._images[patient_id])
        except KeyError:
            raise DataError(f"{describe_path(self.root)}: no native patient {patient_id!r}") from None

    def primary_path(self, patient_id: str) -> Path:
        """The file of the primary image (CT, FLAIR or radiograph)."""
        paths = self.image_paths(patient_id)
        for name in ("ct", "flair", "xray"):
            if name in paths:
                return paths[name]
        return next(iter(paths.values()))

    def label_path(self, patient_id: str) -> Path | None:
        """The label file of a patient, or ``None``."""
        labels_dir = self.root / "labels"
        for suffix in (*VOLUME_SUFFIXES, *IMAGE2D_SUFFIXES):
            path = labels_dir / f"{patient_id}{suffix}"
            if path.is_file():
                return path
        return None

    def meta(self, patient_id: str) -> dict:
        """The patient's ``meta/<id>.json`` (empty dict when absent)."""
        path = self.root / "meta" / f"{patient_id}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def load(self, patient_id: str) -> NativeCase:
        """Read a patient's images, label map and meta; the label map must match the image shape."""
        images = {name: _read_any(path, unit=True) for name, path in self.image_paths(patient_id).items()}
        for image in images.values():
            if hasattr(image, "metadata") and isinstance(image.metadata, dict):
                image.metadata.setdefault("modality", self.modality)
        meta = self.meta(patient_id)
        labels = None
        label_path = self.label_path(patient_id)
        primary = self.primary_path(patient_id)
        if label_path is not None:
            label_image = _read_any(label_path)
            raw = np.asarray(label_image.array)
            if label_path.suffix in IMAGE2D_SUFFIXES:
                # 2D masks are stored as 8-bit PNG (0 / 255).
                labels = (raw > 0).astype(np.uint8)
            else:
                labels = np.rint(raw).astype(np.uint8)
            shape = tuple(np.asarray(images[next(iter(images))].array).shape)
            if labels.shape != shape:
                raise DataError(
                    f"native label map {describe_path(label_path)} has shape {labels.shape} but its image "
                    f"{describe_path(primary)} has shape {shape}; expected equal"
                )
        label_names = dict(meta.get("label_names") or self.info.get("label_names") or {})
        return NativeCase(patient_id, images, labels, label_names, meta)

    def __iter__(self) -> Iterator[NativeCase]:
        for pid in self.patient_ids():
            yield self.load(pid)


def _patient_of(stem: str) -> str:
    for seq in MRI_SEQUENCES:
        if stem.endswith(f"_{seq}"):
            return stem[: -len(seq) - 1]
    return stem


def _default_name(path: Path, info: dict) -> str:
    if path.name.endswith(IMAGE2D_SUFFIXES):
        return "xray"
    return "ct" if info.get("modality", "ct") == "ct" else str(info.get("modality"))


def _read_any(path: Path, unit: bool = False):
    if path.name.endswith(IMAGE2D_SUFFIXES):
        from semantic_genesis.io.datasets._pixels import image2d_unit
        from semantic_genesis.io.images2d import Image2D, read_image2d

        image = read_image2d(path)
        return Image2D(image2d_unit(image), image.spacing, image.metadata) if unit else image
    from semantic_genesis.io.volumes import read_volume

    return read_volume(path)
