"""Reader for the RSNA Pneumonia Detection Challenge (Kaggle 2018): boxes -> image labels.

Expected layout (the stage-2 release)::

    ROOT/stage_2_train_labels.csv            patientId, x, y, width, height, Target
    ROOT/stage_2_detailed_class_info.csv     patientId, class       (optional, for variant="3class")
    ROOT/stage_2_train_images/<patientId>.dcm

``stage_2_train_labels.csv`` has one row per lung-opacity box (``Target`` 1, box in pixels) or one
row with an empty box for an image without opacity (``Target`` 0); the rows of an image are
collected into one image label and its boxes are kept in ``extras["boxes"]``. Two label spaces:

* ``variant="binary"``: one column ``Pneumonia`` = ``Target`` (evidence of pneumonia);
* ``variant="3class"``: multi-class one-hot over :data:`RSNA_CLASSES` (``Normal``, ``No Lung
  Opacity/Not Normal``, ``Lung Opacity``, in the order of Ark's head) from
  ``stage_2_detailed_class_info.csv``, as Ark+ uses (cross-entropy).

The rows of an image must agree (same ``Target``, same class, ``Lung Opacity`` exactly when
``Target`` is 1); disagreements are errors naming the row. Only the training images are labelled in
the release (``split="train"``); the challenge's ``patientId`` identifies one image of one patient.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import CsvTable, require_dir
from semantic_genesis.io.datasets.labelled import LabelledImages, dicom_demographics, find_image, missing_image_error

#: The 3 classes of the detailed class table, in Ark's head order.
RSNA_CLASSES = ("Normal", "No Lung Opacity/Not Normal", "Lung Opacity")
VARIANTS = ("binary", "3class")
LABELS_CSV = "stage_2_train_labels.csv"
CLASSES_CSV = "stage_2_detailed_class_info.csv"
IMAGE_DIR = "stage_2_train_images"
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")


def normalise_rsna_class(text: str, where: str) -> str:
    """The :data:`RSNA_CLASSES` spelling of a class name (``"No Lung Opacity / Not Normal"`` included).

    Raises:
        DataError: an unknown class.
    """
    squeezed = re.sub(r"\s*/\s*", "/", text.strip())
    if squeezed not in RSNA_CLASSES:
        raise DataError(f"{where}: unknown class {text!r}; expected one of {', '.join(RSNA_CLASSES)}")
    return squeezed


def read_rsna_pneumonia(
    root: str | Path, variant: str = "binary", split: str = "train", strict: bool = True, dicom_header_demographics: bool = False
) -> LabelledImages:
    """Read the RSNA Pneumonia training images as :class:`LabelledImages`.

    Args:
        root: the dataset folder.
        variant: ``"binary"`` (``Pneumonia``, from ``Target``) or ``"3class"`` (multi-class over
            :data:`RSNA_CLASSES`).
        split: ``"train"`` (the only labelled split of the release).
        strict: a missing image raises (default); ``False`` skips it with a warning.
        dicom_header_demographics: read ``PatientSex`` / ``PatientAge`` from every DICOM header (the
            tables have none), else ``sex`` and ``age`` are ``None``.

    Raises:
        DatasetLayoutError: a missing folder, table or column; DataError: bad numbers, rows of one image
            that disagree, a box on a ``Target`` 0 row, an unknown class, a missing image (strict).
    """
    root = require_dir(Path(root).expanduser(), "RSNA Pneumonia root")
    if variant not in VARIANTS:
        raise DataError(f"RSNA Pneumonia variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if split != "train":
        raise DataError(f"RSNA Pneumonia has labels for split 'train' only, got {split!r}")
    table = CsvTable(root / LABELS_CSV, ("patientId", "x", "y", "width", "height", "Target"), what=f"RSNA {LABELS_CSV}")
    target: dict[str, int] = {}
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    where_of: dict[str, str] = {}
    for _line, row in table.rows():
        pid = row["patientId"]
        value = row.int("Target")
        if value not in (0, 1):
            raise DataError(f"{row.where()}: Target is {value}; expected 0 or 1")
        if pid in target and target[pid] != value:
            raise DataError(f"{row.where()}: Target {value} disagrees with an earlier row of patientId {pid!r}")
        target[pid] = value
        where_of.setdefault(pid, row.where())
        has_box = any(row.get(c) for c in ("x", "y", "width", "height"))
        if value == 1:
            box = tuple(row.float(c) for c in ("x", "y", "width", "height"))
            if box[2] <= 0 or box[3] <= 0:
                raise DataError(f"{row.where()}: box width and height must be positive, got {box[2]} x {box[3]}")
            boxes.setdefault(pid, []).append(box)  # type: ignore[arg-type]
        elif has_box:
            raise DataError(f"{row.where()}: a Target 0 row has a box; expected empty x, y, width, height")

    classes: dict[str, str] = {}
    if variant == "3class":
        class_table = CsvTable(root / CLASSES_CSV, ("patientId", "class"), what=f"RSNA {CLASSES_CSV}")
        for _line, row in class_table.rows():
            pid = row["patientId"]
            name = normalise_rsna_class(row["class"], row.where())
            if pid in classes and classes[pid] != name:
                raise DataError(f"{row.where()}: class {name!r} disagrees with an earlier row of patientId {pid!r}")
            if pid not in target:
                raise DataError(f"{row.where()}: patientId {pid!r} is not in {LABELS_CSV}")
            if (name == "Lung Opacity") != (target[pid] == 1):
                raise DataError(f"{row.where()}: class {name!r} contradicts Target {target[pid]} of patientId {pid!r}")
            classes[pid] = name
        absent = [p for p in target if p not in classes]
        if absent:
            raise DataError(f"{describe_path(class_table.path)}: no class for patientId {absent[0]!r} ({len(absent)} in all)")

    folder = root / IMAGE_DIR
    if not folder.is_dir():
        raise DatasetLayoutError(f"{describe_path(folder)}: RSNA Pneumonia image folder not found")
    paths, rows, ids, kept_boxes = [], [], [], []
    skipped = 0
    for pid, value in target.items():
        path = find_image(folder, pid, IMAGE_SUFFIXES)
        if path is None:
            if strict:
                raise missing_image_error(folder / f"{pid}.dcm", where_of[pid], pid)
            skipped += 1
            continue
        paths.append(path)
        ids.append(pid)
        kept_boxes.append(tuple(boxes.get(pid, [])))
        if variant == "binary":
            rows.append([float(value)])
        else:
            one_hot = [0.0] * len(RSNA_CLASSES)
            one_hot[RSNA_CLASSES.index(classes[pid])] = 1.0
            rows.append(one_hot)
    if skipped:
        warnings.warn(f"{describe_path(folder)}: skipped {skipped} images that are not on disk", stacklevel=2)
    if not paths:
        raise DatasetLayoutError(f"{describe_path(table.path)}: no images")
    demographics = [dicom_demographics(p) for p in paths] if dicom_header_demographics else None
    return LabelledImages(
        dataset="rsna_pneumonia",
        split=split,
        paths=tuple(paths),
        labels=np.array(rows, dtype=np.float32),
        label_names=("Pneumonia",) if variant == "binary" else RSNA_CLASSES,
        task="binary" if variant == "binary" else "multi-class",
        patient_ids=tuple(ids),
        image_ids=tuple(ids),
        sex=tuple(d[0] for d in demographics) if demographics is not None else None,
        age=np.array([d[1] for d in demographics], dtype=np.float32) if demographics is not None else None,
        extras={"boxes": tuple(kept_boxes)},
        notes={"variant": variant, "boxes": int(sum(len(b) for b in kept_boxes))},
    )
