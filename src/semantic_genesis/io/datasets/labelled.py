"""The uniform description every chest X-ray classification reader returns: :class:`LabelledImages`.

Public chest X-ray datasets label their images in different ways (ChestX-ray14 finding strings,
CheXpert's 1 / 0 / -1 / blank codes, VinDr-CXR's several radiologists per image, RSNA's bounding
boxes, Shenzhen's file names). Each reader in :mod:`semantic_genesis.io.datasets` turns its layout
into one :class:`LabelledImages`, so a 2D classification dataset, DXC fine-tuning and Ark's
multi-dataset training (Ma et al., MICCAI 2023) consume them all the same way:

* ``paths``: one image file per sample (PNG, JPEG or DICOM; :meth:`LabelledImages.read_image` gives
  float32 ``(H, W)`` in [0, 1]);
* ``labels``: float32 ``(N, C)`` in [0, 1] over ``label_names``; **NaN marks "unknown"** (the dataset
  gives no label for that sample and class, e.g. CheXpert's uncertain label under the ``ignore``
  policy). Soft values (label smoothing of uncertain labels) are allowed;
* ``task``: ``"multi-label"`` (independent sigmoids, BCE), ``"multi-class"`` (one-hot rows, one
  softmax, CE) or ``"binary"`` (one column);
* ``patient_ids`` (for patient-disjoint splits), ``image_ids``, ``split`` and, where the dataset
  records them, ``sex`` (``"M"`` / ``"F"`` / ``None``), ``age`` (years, NaN when unknown) and the
  view (``"PA"``, ``"AP"``, ``"LATERAL"``, ...);
* ``extras``: per-sample columns a reader keeps (study ids, boxes), ``notes``: how the labels were
  made (uncertainty policy, radiologist merge rule), so a run can record it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from semantic_genesis.errors import DataError, describe_path
from semantic_genesis.utils.seeding import derive_seed

TASKS = ("multi-label", "multi-class", "binary")


def normalise_sex(text: str | None, where: str = "sex") -> str | None:
    """``"M"``, ``"F"`` or ``None`` (unknown) from the spellings datasets use.

    Accepts ``M`` / ``Male`` / ``F`` / ``Female`` in any case; empty, ``Unknown``, ``U``, ``O`` and
    ``Other`` mean unknown.

    Raises:
        DataError: any other value (named, with ``where``).
    """
    value = (text or "").strip().lower()
    if value in ("m", "male"):
        return "M"
    if value in ("f", "female"):
        return "F"
    if value in ("", "unknown", "u", "o", "other", "nan"):
        return None
    raise DataError(f"{where}: unknown sex {text!r}; expected M/Male, F/Female or Unknown")


def patient_disjoint_split(patient_ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Choose about ``fraction`` of the patients (at least one when ``fraction > 0`` and there are two or
    more patients, never all of them) and return a bool ``(N,)`` mask of their samples.

    The choice depends only on the set of patient ids and ``seed`` (not on sample order), so it is the
    same however the samples are listed.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"held-out patient fraction must be in [0, 1), got {fraction}")
    ids = np.asarray([str(p) for p in patient_ids])
    unique = np.unique(ids)
    if fraction == 0.0 or len(unique) < 2:
        return np.zeros(len(ids), dtype=bool)
    n_out = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    rng = np.random.default_rng(derive_seed("patient-split", int(seed), len(unique)))
    chosen = set(unique[rng.permutation(len(unique))[:n_out]].tolist())
    return np.array([p in chosen for p in ids], dtype=bool)


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """Images of one split of one dataset with their labels (see the module docstring).

    Attributes:
        dataset: the layout name (``"chestxray14"``, ``"chexpert"``, ``"mimic_cxr"``, ``"vindr_cxr"``,
            ``"rsna_pneumonia"``, ``"shenzhen"``).
        split: the split it holds (``"train"``, ``"valid"``, ``"test"``, ``"all"``, ...).
        paths: ``N`` image files.
        labels: float32 ``(N, C)``, values in [0, 1] or NaN (unknown); read-only.
        label_names: ``C`` class names, in column order (the order of the model head's outputs).
        task: one of :data:`TASKS`.
        patient_ids: ``N`` patient ids (strings).
        image_ids: ``N`` image ids (file stem, DICOM id...), unique within the split.
        sex: ``N`` of ``"M"`` / ``"F"`` / ``None``, or ``None`` when the dataset records no sex.
        age: float32 ``(N,)`` years (NaN unknown), or ``None`` when the dataset records no age.
        views: ``N`` view positions (``"PA"``, ``"AP"``, ``"LATERAL"``, ``"LL"``...) or ``None``.
        extras: name -> ``N`` per-sample values, a tuple or an array whose first axis is ``N`` (e.g.
            ``"study_id"``, ``"boxes"``, CheXpert's raw ``"codes"``).
        notes: how the labels were made, JSON-serialisable (policy, merge rule, counts).
    """

    dataset: str
    split: str
    paths: tuple[Path, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]
    task: str
    patient_ids: tuple[str, ...]
    image_ids: tuple[str, ...]
    sex: tuple[str | None, ...] | None = None
    age: np.ndarray | None = None
    views: tuple[str | None, ...] | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = np.array(self.labels, dtype=np.float32, copy=True)
        n = len(self.paths)
        what = f"{self.dataset} {self.split}"
        if labels.ndim != 2 or labels.shape != (n, len(self.label_names)):
            raise DataError(f"{what}: labels must be (N, C) = ({n}, {len(self.label_names)}), got {labels.shape}")
        if self.task not in TASKS:
            raise DataError(f"{what}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task == "binary" and labels.shape[1] != 1:
            raise DataError(f"{what}: a binary task has one label column, got {labels.shape[1]}")
        known = labels[~np.isnan(labels)]
        if known.size and (known.min() < 0.0 or known.max() > 1.0):
            raise DataError(f"{what}: labels must be in [0, 1] or NaN, got [{known.min()}, {known.max()}]")
        if self.task == "multi-class" and n:
            rows = ~np.isnan(labels).any(axis=1)
            if not np.all(np.isin(labels[rows], (0.0, 1.0))) or not np.all(labels[rows].sum(axis=1) == 1.0):
                raise DataError(f"{what}: multi-class labels must be one-hot rows (or all NaN)")
        for name, values in (("patient_ids", self.patient_ids), ("image_ids", self.image_ids)):
            if len(values) != n:
                raise DataError(f"{what}: {name} has {len(values)} entries for {n} images")
        if len(set(self.image_ids)) != n:
            raise DataError(f"{what}: image ids are not unique")
        for name, values in (("sex", self.sex), ("views", self.views), *self.extras.items()):
            if values is not None and len(values) != n:
                raise DataError(f"{what}: {name} has {len(values)} entries for {n} images")
        if self.sex is not None and not set(self.sex) <= {"M", "F", None}:
            raise DataError(f"{what}: sex must be 'M', 'F' or None, got {sorted(set(map(str, self.sex)))}")
        labels.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "patient_ids", tuple(str(p) for p in self.patient_ids))
        object.__setattr__(self, "image_ids", tuple(str(i) for i in self.image_ids))
        if self.sex is not None:
            object.__setattr__(self, "sex", tuple(self.sex))
        if self.views is not None:
            object.__setattr__(self, "views", tuple(self.views))
        if self.age is not None:
            age = np.array(self.age, dtype=np.float32, copy=True).reshape(-1)
            if len(age) != n:
                raise DataError(f"{what}: age has {len(age)} entries for {n} images")
            age.setflags(write=False)
            object.__setattr__(self, "age", age)
        object.__setattr__(
            self, "extras", {k: v.copy() if isinstance(v, np.ndarray) else tuple(v) for k, v in self.extras.items()}
        )
        object.__setattr__(self, "notes", dict(self.notes))

    # -- shape and label views --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        """``C``, the width of the label matrix (and of the classification head)."""
        return len(self.label_names)

    @property
    def known(self) -> np.ndarray:
        """bool ``(N, C)``: True where a label is given (not NaN)."""
        return ~np.isnan(self.labels)

    def filled(self, value: float = 0.0) -> np.ndarray:
        """float32 ``(N, C)`` copy of the labels with unknown (NaN) entries set to ``value``."""
        return np.where(np.isnan(self.labels), np.float32(value), self.labels).astype(np.float32)

    def class_indices(self) -> np.ndarray:
        """int64 ``(N,)`` class index of each sample of a multi-class set (-1 where unknown).

        Raises:
            DataError: the set is not multi-class.
        """
        if self.task != "multi-class":
            raise DataError(f"{self.dataset} {self.split}: class indices need a multi-class set, this is {self.task}")
        out = np.full(len(self), -1, dtype=np.int64)
        rows = ~np.isnan(self.labels).any(axis=1)
        out[rows] = np.argmax(self.labels[rows], axis=1)
        return out

    def positives(self) -> dict[str, int]:
        """Number of samples with label >= 0.5 per class (unknown entries not counted)."""
        hits = np.nan_to_num(self.labels, nan=0.0) >= 0.5
        return {name: int(c) for name, c in zip(self.label_names, hits.sum(axis=0))}

    # -- subsets ------------------------------------------------------------------------------------

    def select(self, indices: Iterable[int] | np.ndarray, split: str | None = None) -> "LabelledImages":
        """The samples at ``indices`` (ints, or a bool mask of length ``N``), in that order."""
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"{self.dataset}: selection mask has shape {idx.shape}, expected ({len(self)},)")
            idx = np.nonzero(idx)[0]
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"{self.dataset}: selection index out of range for {len(self)} images")

        def pick(values):
            if values is None:
                return None
            return values[idx] if isinstance(values, np.ndarray) else tuple(values[i] for i in idx)

        return replace(
            self,
            split=self.split if split is None else split,
            paths=pick(self.paths),
            labels=self.labels[idx],
            patient_ids=pick(self.patient_ids),
            image_ids=pick(self.image_ids),
            sex=pick(self.sex),
            age=None if self.age is None else self.age[idx],
            views=pick(self.views),
            extras={k: pick(v) for k, v in self.extras.items()},
        )

    def restrict_labels(self, names: Sequence[str]) -> "LabelledImages":
        """Keep only the label columns ``names`` (in that order), e.g. CheXpert's 5 competition labels.

        Raises:
            DataError: an unknown name, or a multi-class set (its classes cannot be dropped).
        """
        if self.task == "multi-class":
            raise DataError(f"{self.dataset}: the classes of a multi-class set cannot be restricted")
        missing = [n for n in names if n not in self.label_names]
        if missing:
            raise DataError(
                f"{self.dataset}: unknown label {missing[0]!r}; labels are {', '.join(self.label_names)}"
            )
        cols = [self.label_names.index(n) for n in names]
        task = "binary" if len(cols) == 1 and self.task == "binary" else self.task
        notes = dict(self.notes, restricted_to=list(names))
        return replace(self, labels=self.labels[:, cols], label_names=tuple(names), task=task, notes=notes)

    def split_patients(self, fraction: float, seed: int = 0, names: tuple[str, str] = ("train", "val")) -> tuple["LabelledImages", "LabelledImages"]:
        """Split into ``(rest, held_out)`` with about ``fraction`` of the patients held out (no patient in
        both); see :func:`patient_disjoint_split`."""
        held = patient_disjoint_split(self.patient_ids, fraction, seed)
        return self.select(~held, split=names[0]), self.select(held, split=names[1])

    # -- files --------------------------------------------------------------------------------------

    def read_image(self, index: int) -> np.ndarray:
        """float32 ``(H, W)`` in [0, 1] of sample ``index`` (PNG/JPEG scaled by their bit depth, DICOM
        from its LUT's output range, MONOCHROME1 inverted).

        Raises:
            ImageReadError: the file is missing or unreadable; DataError: it is not a 2D grey image.
        """
        from semantic_genesis.io.datasets._pixels import image2d_unit
        from semantic_genesis.io.images2d import read_image2d

        path = self.paths[index]
        array = image2d_unit(read_image2d(path))
        if array.ndim != 2:
            raise DataError(f"{describe_path(path)}: expected a 2D grey image, got shape {array.shape}")
        return array

    def missing_files(self) -> list[Path]:
        """The image files that do not exist."""
        return [p for p in self.paths if not p.is_file()]

    def summary(self) -> str:
        """A few lines for logs: size, patients, task and positives per class."""
        lines = [
            f"{self.dataset} {self.split}: {len(self)} images, {len(set(self.patient_ids))} patients, "
            f"{self.task}, {self.num_classes} classes"
        ]
        unknown = (~self.known).sum(axis=0)
        for name, count in self.positives().items():
            extra = f", {int(unknown[self.label_names.index(name)])} unknown" if unknown.any() else ""
            lines.append(f"  {name}: {count} positive{extra}")
        return "\n".join(lines)


_DICOM_AGE_UNITS = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}


def dicom_demographics(path: Path) -> tuple[str | None, float]:
    """``(sex, age in years)`` from a DICOM header's ``PatientSex`` / ``PatientAge`` (``"045Y"``,
    ``"018M"``...); ``None`` / NaN when absent or unreadable. Pixels are not read."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - a header we cannot read gives unknown demographics, not an error
        return None, float("nan")
    text = str(getattr(ds, "PatientSex", "") or "").strip().upper()
    sex = text if text in ("M", "F") else None
    age_text = str(getattr(ds, "PatientAge", "") or "").strip().upper()
    age = float("nan")
    if len(age_text) >= 2 and age_text[:-1].isdigit() and age_text[-1] in _DICOM_AGE_UNITS:
        age = int(age_text[:-1]) / _DICOM_AGE_UNITS[age_text[-1]]
    elif age_text.isdigit():
        age = float(age_text)
    return sex, age


def find_image(folder: Path, stem: str, suffixes: Sequence[str]) -> Path | None:
    """``folder/<stem><suffix>`` for the first suffix that exists, else ``None``."""
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def missing_image_error(path: Path, where: str, value: str) -> DataError:
    """The error for a table row whose image file is absent (names the row, the value and the file)."""
    return DataError(f"{where}: image {value!r} not found at {describe_path(path)}")
