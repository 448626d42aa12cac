"""Reader for MIMIC-CXR-JPG (Johnson et al., PhysioNet 2019): CheXpert-labeler labels per study.

Expected layout (the PhysioNet release; tables may be plain ``.csv`` or ``.csv.gz``)::

    ROOT/mimic-cxr-2.0.0-chexpert.csv.gz    subject_id, study_id, 14 labels (1.0 / 0.0 / -1.0 / blank)
    ROOT/mimic-cxr-2.0.0-metadata.csv.gz    dicom_id, subject_id, study_id, ..., ViewPosition, ...
    ROOT/mimic-cxr-2.0.0-split.csv.gz       dicom_id, study_id, subject_id, split (train/validate/test)
    ROOT/files/p10/p10000032/s50414267/<dicom_id>.jpg

The image of ``dicom_id`` lives in ``files/p<first two digits of subject_id>/p<subject_id>/
s<study_id>/``. Labels belong to a study and are shared by all its images. The 14 label columns of
``-chexpert.csv`` are in alphabetical order (not in CheXpert's order); the label names are read from
its header, so column ``i`` is always named correctly (the official Ark code takes names from its
config instead, which mislabels MIMIC's columns in its logs).

Labels are the CheXpert labeler's codes and go through the same policies as CheXpert
(:func:`semantic_genesis.io.datasets.chexpert.apply_label_policy`); the default follows Ark: uncertain
-> 1 (U-Ones), blank -> 0.

**Sex and age** are not in the JPG release: they are in MIMIC-IV's ``hosp/patients.csv.gz``
(``subject_id, gender, anchor_age, anchor_year``), a separate credentialed download. Pass it as
``patients=`` to fill ``sex`` and ``age`` (age at the study = ``anchor_age + study year -
anchor_year``, both years on MIMIC's shifted timeline; ``anchor_age`` alone when the study date is
missing); without it they are ``None``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import CsvTable, require_dir
from semantic_genesis.io.datasets.chexpert import BLANK, CHEXPERT_LABELS, apply_label_policy, label_columns, parse_code
from semantic_genesis.io.datasets.labelled import LabelledImages, missing_image_error, normalise_sex

TABLES = ("chexpert", "metadata", "split")
SPLITS = ("train", "validate", "test", "all")
_SPLIT_ALIASES = {"valid": "validate", "val": "validate", "validation": "validate"}
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LATERAL", "LL")
MISSING_LABEL_POLICIES = ("skip", "unknown")


def find_table(root: Path, kind: str) -> Path:
    """``mimic-cxr-<version>-<kind>.csv[.gz]`` in ``root`` (the newest version when there are several).

    Raises:
        DatasetLayoutError: no such table.
    """
    found = sorted(root.glob(f"mimic-cxr-2.*-{kind}.csv")) + sorted(root.glob(f"mimic-cxr-2.*-{kind}.csv.gz"))
    if not found:
        raise DatasetLayoutError(
            f"{describe_path(root / f'mimic-cxr-2.0.0-{kind}.csv.gz')}: MIMIC-CXR-JPG {kind} table not found"
        )
    return sorted(found, key=lambda p: p.name)[-1]


def mimic_image_path(root: Path, subject_id: str, study_id: str, dicom_id: str) -> Path:
    """``root/files/p<2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``."""
    return root / "files" / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}" / f"{dicom_id}.jpg"


def _read_patients(path: Path) -> dict[str, tuple[str | None, float, float]]:
    table = CsvTable(path, ("subject_id", "gender", "anchor_age"), what="MIMIC-IV patients.csv")
    out = {}
    for _line, row in table.rows():
        year = row.get("anchor_year")
        out[row["subject_id"]] = (
            normalise_sex(row["gender"], f"{row.where()} column 'gender'"),
            row.float("anchor_age"),
            float(year) if year else np.nan,
        )
    return out


def read_mimic_cxr(
    root: str | Path,
    split: str = "train",
    uncertain: str = "ones",
    blank: str = "zeros",
    views: str | tuple[str, ...] = "all",
    missing_labels: str = "skip",
    patients: str | Path | None = None,
    seed: int = 0,
    strict: bool = True,
) -> LabelledImages:
    """Read one MIMIC-CXR-JPG split as :class:`LabelledImages` (multi-label, 14 labels).

    Args:
        root: the folder holding the three tables and ``files/``.
        split: ``"train"``, ``"validate"`` (``"valid"``/``"val"`` accepted), ``"test"`` or ``"all"``.
        uncertain: policy for -1 (see :mod:`~semantic_genesis.io.datasets.chexpert`); Ark: ``"ones"``.
        blank: policy for blank entries.
        views: ``"all"``, ``"frontal"`` (PA, AP), ``"lateral"`` (LATERAL, LL) or a tuple of
            ``ViewPosition`` values.
        missing_labels: an image whose study has no row in ``-chexpert.csv``: ``"skip"`` it or keep it
            with ``"unknown"`` (NaN) labels.
        patients: MIMIC-IV ``patients.csv[.gz]`` for sex and age (see the module docstring).
        seed: seed of the label-smoothing draws.
        strict: a missing image file raises (default); ``False`` skips it with a warning.

    Raises:
        DatasetLayoutError: a missing table or column; DataError: bad values, unknown label columns,
            a split row for an image absent from the metadata, a missing image (strict).
    """
    root = require_dir(Path(root).expanduser(), "MIMIC-CXR-JPG root")
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise DataError(f"MIMIC-CXR split must be one of {', '.join(SPLITS)}, got {split!r}")
    if missing_labels not in MISSING_LABEL_POLICIES:
        raise DataError(f"missing_labels must be one of {', '.join(MISSING_LABEL_POLICIES)}, got {missing_labels!r}")
    if isinstance(views, str):
        presets = {"all": None, "frontal": FRONTAL_VIEWS, "lateral": LATERAL_VIEWS}
        if views not in presets:
            raise DataError(f"MIMIC-CXR views must be 'all', 'frontal', 'lateral' or a tuple of ViewPosition values, got {views!r}")
        wanted = presets[views]
    else:
        wanted = tuple(v.upper() for v in views)

    label_table = CsvTable(find_table(root, "chexpert"), ("subject_id", "study_id"), what="MIMIC-CXR chexpert table")
    label_names = label_columns(label_table, ("subject_id", "study_id"), CHEXPERT_LABELS, "the MIMIC-CXR chexpert table")
    study_codes: dict[str, list[int]] = {}
    for _line, row in label_table.rows():
        study = row["study_id"]
        if study in study_codes:
            raise DataError(f"{row.where()}: study_id {study} has a second label row")
        study_codes[study] = [parse_code(row.get(c), f"{row.where()} column {c!r}") for c in label_names]

    split_table = CsvTable(find_table(root, "split"), ("dicom_id", "study_id", "subject_id", "split"), what="MIMIC-CXR split table")
    split_of: dict[str, str] = {}
    for _line, row in split_table.rows():
        value = row["split"]
        if value not in SPLITS[:3]:
            raise DataError(f"{row.where()}: split {value!r} is not one of train, validate, test")
        split_of[row["dicom_id"]] = value

    demographics = _read_patients(Path(patients).expanduser()) if patients is not None else None
    meta_table = CsvTable(
        find_table(root, "metadata"), ("dicom_id", "subject_id", "study_id", "ViewPosition"), what="MIMIC-CXR metadata table"
    )
    paths, codes, pids, ids, studies, view_pos, sexes, ages = [], [], [], [], [], [], [], []
    skipped_files = skipped_labels = 0
    for _line, row in meta_table.rows():
        dicom, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
        if dicom not in split_of:
            raise DataError(f"{row.where()}: dicom_id {dicom!r} is not in {split_table.path.name}")
        if split != "all" and split_of[dicom] != split:
            continue
        view = row["ViewPosition"].upper()
        if wanted is not None and view not in wanted:
            continue
        if study not in study_codes:
            if missing_labels == "skip":
                skipped_labels += 1
                continue
            row_codes = [None] * len(label_names)
        else:
            row_codes = study_codes[study]
        path = mimic_image_path(root, subject, study, dicom)
        if not path.is_file():
            if strict:
                raise missing_image_error(path, row.where(), dicom)
            skipped_files += 1
            continue
        paths.append(path)
        codes.append(row_codes)
        pids.append(subject)
        ids.append(dicom)
        studies.append(study)
        view_pos.append(view or None)
        if demographics is not None:
            sex, anchor_age, anchor_year = demographics.get(subject, (None, np.nan, np.nan))
            date = row.get("StudyDate")
            age = anchor_age + (int(date[:4]) - anchor_year) if date[:4].isdigit() and np.isfinite(anchor_year) else anchor_age
            sexes.append(sex)
            ages.append(age)
    if skipped_files:
        warnings.warn(f"{describe_path(root / 'files')}: skipped {skipped_files} images that are not on disk", stacklevel=2)
    if not paths:
        raise DatasetLayoutError(f"{describe_path(root)}: no MIMIC-CXR images in split {split!r} (views={views!r})")
    unknown_rows = np.array([c[0] is None for c in codes], dtype=bool)
    code_matrix = np.array([[BLANK] * len(label_names) if c[0] is None else c for c in codes], dtype=np.int64)
    labels = apply_label_policy(code_matrix, uncertain, blank, seed, keys=ids)
    labels[unknown_rows] = np.nan
    return LabelledImages(
        dataset="mimic_cxr",
        split=split,
        paths=tuple(paths),
        labels=labels,
        label_names=tuple(label_names),
        task="multi-label",
        patient_ids=tuple(pids),
        image_ids=tuple(ids),
        sex=tuple(sexes) if demographics is not None else None,
        age=np.array(ages, dtype=np.float32) if demographics is not None else None,
        views=tuple(view_pos),
        extras={"study_id": tuple(studies), "codes": code_matrix.astype(np.int8)},
        notes={
            "uncertain": uncertain,
            "blank": blank,
            "views": views if isinstance(views, str) else list(views),
            "missing_labels": missing_labels,
            "images_without_labels": int(skipped_labels if missing_labels == "skip" else unknown_rows.sum()),
        },
    )
