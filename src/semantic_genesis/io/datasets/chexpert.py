"""Reader for CheXpert (Irvin et al., AAAI 2019): 14 observations labelled 1 / 0 / -1 / blank.

Expected layout (as released, the "small" or full version)::

    ROOT/train.csv   ROOT/valid.csv                 (ROOT is e.g. CheXpert-v1.0-small/)
    ROOT/train/patient00001/study1/view1_frontal.jpg
    ROOT/valid/patient64541/study1/view1_frontal.jpg

CSV columns: ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and the 14 observations of
:data:`CHEXPERT_LABELS`. ``Path`` starts with the release folder name
(``CheXpert-v1.0-small/train/...``); it is resolved against ROOT's parent, or ROOT itself with or
without that first folder, so a renamed ROOT works. The patient id is the ``patientNNNNN`` folder
of the path.

**Label codes** (the CheXpert labeler's): ``1`` positive, ``0`` negative, ``-1`` uncertain, blank
not mentioned in the report. They are mapped to the label matrix by two rules:

* ``uncertain`` -- the policy for ``-1`` (Irvin et al. 2019; Pham et al., Neurocomputing 2021):
  ``"ones"`` (U-Ones: 1), ``"zeros"`` (U-Zeros: 0), ``"lsr_ones"`` (LSR-Ones: a value drawn
  uniformly from [0.55, 0.85]), ``"lsr_zeros"`` (LSR-Zeros: uniform in [0, 0.3]) or ``"ignore"``
  (U-Ignore: NaN, unknown). The label-smoothing draws are made once, at read time, from ``seed``
  (per image and column, so they do not depend on row order). Ark (Ma et al., MICCAI 2023) uses
  LSR-Ones for CheXpert, the default here.
* ``blank`` -- ``"zeros"`` (default, as the CheXpert paper and Ark treat unmentioned observations:
  negative) or ``"ignore"`` (NaN).

``valid.csv`` (radiologist consensus) has only 0 and 1. The competition evaluates 5 observations,
:data:`CHEXPERT_COMPETITION_LABELS`; ``LabelledImages.restrict_labels`` selects them.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import CsvTable, require_dir
from semantic_genesis.io.datasets.labelled import LabelledImages, missing_image_error, normalise_sex
from semantic_genesis.utils.seeding import derive_seed

#: The 14 observations, in the column order of ``train.csv`` / ``valid.csv`` (and of Ark's head).
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: The 5 observations of the CheXpert competition (evaluation subset).
CHEXPERT_COMPETITION_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
CHEXPERT_META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
SPLIT_FILES = {"train": "train.csv", "valid": "valid.csv"}

UNCERTAIN_POLICIES = ("ones", "zeros", "lsr_ones", "lsr_zeros", "ignore")
BLANK_POLICIES = ("zeros", "ignore")
#: Ranges of the label-smoothing draws for uncertain labels (Pham et al., Neurocomputing 2021).
LSR_RANGES = {"lsr_ones": (0.55, 0.85), "lsr_zeros": (0.0, 0.3)}
VIEW_FILTERS = ("all", "frontal", "lateral")

#: Code of a blank (unmentioned) entry in the integer code matrix.
BLANK = -2
_CODES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1, "": BLANK}
_PATIENT = re.compile(r"^patient\d+$")


def parse_code(text: str, where: str) -> int:
    """The labeler code of one CSV cell: 1, 0, -1 or :data:`BLANK`.

    Raises:
        DataError: any other value (named, with ``where``).
    """
    try:
        return _CODES[text.strip()]
    except KeyError:
        raise DataError(f"{where}: label value {text!r} is not one of 1, 0, -1 or blank") from None


def apply_label_policy(
    codes: np.ndarray, uncertain: str = "lsr_ones", blank: str = "zeros", seed: int = 0, keys: list[str] | None = None
) -> np.ndarray:
    """Map labeler codes ``(N, C)`` (1, 0, -1, :data:`BLANK`) to float32 labels in [0, 1] / NaN.

    Args:
        codes: int ``(N, C)``.
        uncertain: policy for -1 (see the module docstring).
        blank: policy for blank entries.
        seed: seed of the label-smoothing draws.
        keys: one stable key per row (e.g. the image path); the smoothing value of a cell depends only
            on ``(seed, key, column)``. Default: the row index.

    Raises:
        DataError: an unknown policy.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise DataError(f"unknown uncertain-label policy {uncertain!r}; expected one of {', '.join(UNCERTAIN_POLICIES)}")
    if blank not in BLANK_POLICIES:
        raise DataError(f"unknown blank-label policy {blank!r}; expected one of {', '.join(BLANK_POLICIES)}")
    codes = np.asarray(codes)
    labels = np.where(codes == 1, 1.0, 0.0).astype(np.float32)
    if blank == "ignore":
        labels[codes == BLANK] = np.nan
    unsure = codes == -1
    if uncertain == "ones":
        labels[unsure] = 1.0
    elif uncertain == "ignore":
        labels[unsure] = np.nan
    elif uncertain in LSR_RANGES:
        lo, hi = LSR_RANGES[uncertain]
        for row, col in zip(*np.nonzero(unsure)):
            key = keys[row] if keys is not None else int(row)
            u = np.random.default_rng(derive_seed("lsr", int(seed), key, int(col))).random()
            labels[row, col] = lo + (hi - lo) * u
    return labels


def label_columns(table: CsvTable, meta: tuple[str, ...], known: tuple[str, ...], what: str) -> list[str]:
    """The label columns of a CheXpert-style table: every column that is not metadata.

    Raises:
        DataError: a column that is neither metadata nor a known label, or a missing known label.
    """
    columns = [c for c in table.header if c and c not in meta]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise DataError(
            f"{describe_path(table.path)}: unknown label column {unknown[0]!r} in {what}; "
            f"expected the labels {', '.join(known)}"
        )
    missing = [c for c in known if c not in columns]
    if missing:
        raise DataError(f"{describe_path(table.path)}: {what} has no label column {missing[0]!r}")
    return columns


def _resolve(root: Path, text: str) -> Path:
    rel = Path(text.replace("\\", "/"))
    candidates = [root.parent / rel, root / rel]
    if len(rel.parts) > 1:
        candidates.append(root / Path(*rel.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0] if rel.parts and rel.parts[0] == root.name else candidates[-1]


def _patient_id(text: str, where: str) -> str:
    for part in Path(text.replace("\\", "/")).parts:
        if _PATIENT.match(part):
            return part
    raise DataError(f"{where}: Path {text!r} has no patientNNNNN folder")


def read_chexpert(
    root: str | Path,
    split: str = "train",
    uncertain: str = "lsr_ones",
    blank: str = "zeros",
    views: str = "all",
    seed: int = 0,
    strict: bool = True,
) -> LabelledImages:
    """Read one CheXpert split as :class:`LabelledImages` (multi-label, the 14 observations).

    Args:
        root: the folder holding ``train.csv`` / ``valid.csv``.
        split: ``"train"`` or ``"valid"``.
        uncertain: policy for -1 (``ones``, ``zeros``, ``lsr_ones``, ``lsr_zeros``, ``ignore``).
        blank: policy for blank entries (``zeros``, ``ignore``).
        views: ``"all"``, ``"frontal"`` or ``"lateral"`` (the ``Frontal/Lateral`` column).
        seed: seed of the label-smoothing draws.
        strict: a row whose image is missing raises (default); ``False`` skips it with a warning.

    Raises:
        DatasetLayoutError: no such folder, CSV or column.
        DataError: an unknown label column, a bad label value, sex or path, a missing image (strict).
    """
    root = require_dir(Path(root).expanduser(), "CheXpert root")
    if split not in SPLIT_FILES:
        raise DataError(f"CheXpert split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    if views not in VIEW_FILTERS:
        raise DataError(f"CheXpert views must be one of {', '.join(VIEW_FILTERS)}, got {views!r}")
    table = CsvTable(root / SPLIT_FILES[split], CHEXPERT_META_COLUMNS, what=f"CheXpert {SPLIT_FILES[split]}")
    columns = label_columns(table, CHEXPERT_META_COLUMNS, CHEXPERT_LABELS, f"CheXpert {SPLIT_FILES[split]}")
    paths, codes, pids, ids, sexes, ages, view_pos = [], [], [], [], [], [], []
    skipped = 0
    for _line, row in table.rows():
        where = row.where()
        text = row["Path"]
        view = row.get("Frontal/Lateral").lower()
        if view not in ("frontal", "lateral"):
            raise DataError(f"{where}: Frontal/Lateral is {row.get('Frontal/Lateral')!r}; expected Frontal or Lateral")
        if views != "all" and view != views:
            continue
        path = _resolve(root, text)
        if not path.is_file():
            if strict:
                raise missing_image_error(path, where, text)
            skipped += 1
            continue
        row_codes = {c: parse_code(row.get(c), f"{where} column {c!r}") for c in columns}
        codes.append([row_codes[c] for c in CHEXPERT_LABELS])
        paths.append(path)
        pids.append(_patient_id(text, where))
        ids.append(text)
        sexes.append(normalise_sex(row.get("Sex"), f"{where} column 'Sex'"))
        age = row.get("Age")
        ages.append(float(row.float("Age")) if age else np.nan)
        view_pos.append(row.get("AP/PA").upper() if view == "frontal" and row.get("AP/PA") else "LATERAL" if view == "lateral" else None)
    if skipped:
        warnings.warn(f"{describe_path(table.path)}: skipped {skipped} rows whose image is not on disk", stacklevel=2)
    if not paths:
        raise DatasetLayoutError(f"{describe_path(table.path)}: no images (views={views!r})")
    code_matrix = np.array(codes, dtype=np.int64)
    labels = apply_label_policy(code_matrix, uncertain, blank, seed, keys=ids)
    notes = {
        "uncertain": uncertain,
        "blank": blank,
        "views": views,
        "uncertain_count": int((code_matrix == -1).sum()),
        "blank_count": int((code_matrix == BLANK).sum()),
    }
    if uncertain in LSR_RANGES:
        notes["lsr_range"] = list(LSR_RANGES[uncertain])
    return LabelledImages(
        dataset="chexpert",
        split=split,
        paths=tuple(paths),
        labels=labels,
        label_names=CHEXPERT_LABELS,
        task="multi-label",
        patient_ids=tuple(pids),
        image_ids=tuple(ids),
        sex=tuple(sexes),
        age=np.array(ages, dtype=np.float32),
        views=tuple(view_pos),
        extras={"codes": code_matrix.astype(np.int8)},
        notes=notes,
    )
