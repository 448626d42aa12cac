"""Reader for VinDr-CXR (Nguyen et al., Scientific Data 2022): 28 image labels, several radiologists.

Expected layout (the PhysioNet release; the CSVs may also sit directly in ROOT)::

    ROOT/annotations/image_labels_train.csv   image_id, rad_id, 28 labels (0 / 1), one row per radiologist
    ROOT/annotations/image_labels_test.csv    image_id, 28 labels: the consensus of five radiologists
    ROOT/train/<image_id>.dicom               (or .dcm / .png / .jpg / .jpeg; also train_jpeg/, train_png/)
    ROOT/test/<image_id>.dicom

The 28 labels (:data:`VINDR_LABELS`) are 22 local findings followed by 6 global diagnoses; the test
table spells ``Other diseases`` as ``Other disease`` (accepted). The radiologist column is
``rad_id`` (also accepted: ``rad_ID``).

**Merging the radiologists of a training image** (three independent readers per image in the
release) is configurable, ``merge=``:

* ``"majority"`` (default): positive when more than half of the image's radiologists marked it;
* ``"any"``: positive when at least one did (the union, as many VinDr pipelines do); ``No finding``
  is then cleared on images where another label is positive (an abnormal reading wins);
* ``"all"``: positive only when every radiologist did;
* ``"mean"``: the fraction of radiologists (a soft label in [0, 1]).

The official Ark code reads pre-made lists of 6 labels (``PE, Lung tumor, Pneumonia, Tuberculosis,
Other diseases, No finding``) whose merge rule it does not state; ``labels="ark"`` selects those
columns (:data:`VINDR_ARK_LABELS`, reading Ark's ``PE`` as ``Pleural effusion``). The test labels are
already a consensus and are used as they are. Sex and age are only in the DICOM headers
(``dicom_header_demographics=True`` reads them).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import CsvTable, require_dir
from semantic_genesis.io.datasets.labelled import LabelledImages, dicom_demographics, find_image, missing_image_error

VINDR_LOCAL_LABELS = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
)
VINDR_GLOBAL_LABELS = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
#: The 28 labels in the column order of ``image_labels_train.csv``.
VINDR_LABELS = VINDR_LOCAL_LABELS + VINDR_GLOBAL_LABELS
#: Ark's 6 VinDr-CXR classes (its ``PE`` read as ``Pleural effusion``), in Ark's head order.
VINDR_ARK_LABELS = ("Pleural effusion", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
MERGE_RULES = ("majority", "any", "all", "mean")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".dicom", ".dcm", ".png", ".jpg", ".jpeg")
_ALIASES = {"Other disease": "Other diseases"}


def merge_readings(votes: np.ndarray, rule: str = "majority", no_finding: int | None = None) -> np.ndarray:
    """Merge ``(R, C)`` 0/1 readings of one image by ``R`` radiologists into float32 ``(C,)`` labels.

    Args:
        votes: 0/1 array, one row per radiologist.
        rule: one of :data:`MERGE_RULES` (see the module docstring).
        no_finding: column index of ``No finding``; with ``rule="any"`` it is cleared when another
            column is positive.
    """
    if rule not in MERGE_RULES:
        raise DataError(f"unknown radiologist merge rule {rule!r}; expected one of {', '.join(MERGE_RULES)}")
    votes = np.asarray(votes, dtype=np.float32)
    count = votes.sum(axis=0)
    readers = votes.shape[0]
    if rule == "mean":
        return (count / readers).astype(np.float32)
    if rule == "majority":
        merged = count > readers / 2
    elif rule == "any":
        merged = count >= 1
    else:
        merged = count == readers
    merged = merged.astype(np.float32)
    if rule == "any" and no_finding is not None and np.delete(merged, no_finding).any():
        merged[no_finding] = 0.0
    return merged


def _table_path(root: Path, split: str) -> Path:
    name = f"image_labels_{split}.csv"
    for candidate in (root / "annotations" / name, root / name):
        if candidate.is_file():
            return candidate
    return root / "annotations" / name


def _image_folder(root: Path, split: str) -> Path:
    for name in (split, f"{split}_jpeg", f"{split}_png"):
        if (root / name).is_dir():
            return root / name
    raise DatasetLayoutError(f"{describe_path(root / split)}: VinDr-CXR {split} image folder not found")


def read_vindr_cxr(
    root: str | Path,
    split: str = "train",
    merge: str = "majority",
    labels: str | Sequence[str] = "all",
    strict: bool = True,
    dicom_header_demographics: bool = False,
) -> LabelledImages:
    """Read one VinDr-CXR split as :class:`LabelledImages` (multi-label).

    Args:
        root: the dataset folder.
        split: ``"train"`` (radiologists merged by ``merge``) or ``"test"`` (consensus labels).
        merge: ``"majority"``, ``"any"``, ``"all"`` or ``"mean"``.
        labels: ``"all"`` (the 28 labels), ``"ark"`` (:data:`VINDR_ARK_LABELS`) or a list of names.
        strict: a missing image raises (default); ``False`` skips it with a warning.
        dicom_header_demographics: read ``PatientSex`` / ``PatientAge`` from every DICOM header (not
            in the tables; slow on the full set), else ``sex`` and ``age`` are ``None``.

    Raises:
        DatasetLayoutError: missing folder, table or column; DataError: an unknown label column, a
            value other than 0/1, a radiologist listed twice for an image, a missing image (strict).
    """
    root = require_dir(Path(root).expanduser(), "VinDr-CXR root")
    if split not in SPLITS:
        raise DataError(f"VinDr-CXR split must be one of {', '.join(SPLITS)}, got {split!r}")
    if merge not in MERGE_RULES:
        raise DataError(f"unknown radiologist merge rule {merge!r}; expected one of {', '.join(MERGE_RULES)}")
    table = CsvTable(_table_path(root, split), ("image_id",), what=f"VinDr-CXR image_labels_{split}.csv")
    rad_column = next((c for c in table.header if c.lower() == "rad_id"), None)
    meta = {"image_id", rad_column}
    columns = {}
    for name in table.header:
        if not name or name in meta:
            continue
        canonical = _ALIASES.get(name, name)
        if canonical not in VINDR_LABELS:
            raise DataError(
                f"{describe_path(table.path)}: unknown label column {name!r}; expected the VinDr-CXR labels "
                f"{', '.join(VINDR_LABELS)}"
            )
        columns[canonical] = name
    missing = [n for n in VINDR_LABELS if n not in columns]
    if missing:
        raise DataError(f"{describe_path(table.path)}: no label column {missing[0]!r}")
    folder = _image_folder(root, split)

    readings: dict[str, dict[str, list[float]]] = {}
    where_of: dict[str, str] = {}
    for _line, row in table.rows():
        image_id = row["image_id"]
        reader = row[rad_column] if rad_column else "consensus"
        votes = []
        for name in VINDR_LABELS:
            text = row.get(columns[name])
            if text not in ("0", "1", "0.0", "1.0"):
                raise DataError(f"{row.where()} column {columns[name]!r}: label value {text!r} is not 0 or 1")
            votes.append(float(text))
        per_image = readings.setdefault(image_id, {})
        if reader in per_image:
            raise DataError(f"{row.where()}: image {image_id!r} has a second row for radiologist {reader!r}")
        per_image[reader] = votes
        where_of.setdefault(image_id, row.where())

    no_finding = VINDR_LABELS.index("No finding")
    paths, merged, ids, n_readers = [], [], [], []
    skipped = 0
    for image_id, per_image in readings.items():
        path = find_image(folder, image_id, IMAGE_SUFFIXES)
        if path is None:
            if strict:
                raise missing_image_error(folder / f"{image_id}.dicom", where_of[image_id], image_id)
            skipped += 1
            continue
        votes = np.array(list(per_image.values()), dtype=np.float32)
        merged.append(merge_readings(votes, merge, no_finding))
        paths.append(path)
        ids.append(image_id)
        n_readers.append(len(per_image))
    if skipped:
        warnings.warn(f"{describe_path(folder)}: skipped {skipped} images that are not on disk", stacklevel=2)
    if not paths:
        raise DatasetLayoutError(f"{describe_path(table.path)}: no images")
    demographics = [dicom_demographics(p) for p in paths] if dicom_header_demographics else None
    result = LabelledImages(
        dataset="vindr_cxr",
        split=split,
        paths=tuple(paths),
        labels=np.array(merged, dtype=np.float32),
        label_names=VINDR_LABELS,
        task="multi-label",
        patient_ids=tuple(ids),  # the release has one image per (de-identified) patient id
        image_ids=tuple(ids),
        sex=tuple(d[0] for d in demographics) if demographics is not None else None,
        age=np.array([d[1] for d in demographics], dtype=np.float32) if demographics is not None else None,
        extras={"radiologists": tuple(n_readers)},
        notes={"merge": merge if rad_column else "consensus", "radiologists_per_image": sorted(set(n_readers))},
    )
    if labels == "all":
        return result
    return result.restrict_labels(VINDR_ARK_LABELS if labels == "ark" else tuple(labels))
