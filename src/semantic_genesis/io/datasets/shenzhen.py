"""Reader for the Shenzhen tuberculosis chest X-ray set (Jaeger et al., Quant. Imaging Med. Surg. 2014).

Expected layout (as released by the U.S. National Library of Medicine)::

    ROOT/CXR_png/CHNCXR_0001_0.png          (or ROOT/ChinaSet_AllFiles/CXR_png/, or PNGs in ROOT)
    ROOT/ClinicalReadings/CHNCXR_0001_0.txt  optional: first line e.g. "male 45yrs", then the reading

The label is in the file name: ``CHNCXR_<4 digits>_<0|1>.png``, 1 = tuberculosis. The task is binary
with one column, ``Tuberculosis`` (Ark calls its head ``TB``). Each number is one patient. Sex and
age come from the first line of the clinical reading when one is present and readable (``male`` /
``female``, a number followed by ``y``/``yr``/``yrs``); otherwise they are unknown. The release has no
official split (``split="all"``); ``LabelledImages.split_patients`` makes patient-disjoint ones.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._tables import require_dir
from semantic_genesis.io.datasets.labelled import LabelledImages

FILE_PATTERN = re.compile(r"^CHNCXR_(\d{4})_([01])\.png$", re.IGNORECASE)
_AGE = re.compile(r"(\d+)\s*(?:y|yr|yrs|years?)\b", re.IGNORECASE)


def find_shenzhen_images(root: Path) -> Path:
    """The folder holding the ``CHNCXR_*.png`` files.

    Raises:
        DatasetLayoutError: none of ``CXR_png``, ``ChinaSet_AllFiles/CXR_png`` or ``root`` holds one.
    """
    for folder in (root / "CXR_png", root / "ChinaSet_AllFiles" / "CXR_png", root):
        if folder.is_dir() and any(folder.glob("CHNCXR_*.png")):
            return folder
    raise DatasetLayoutError(
        f"{describe_path(root)}: no Shenzhen images CHNCXR_<number>_<0|1>.png found (looked in CXR_png/, "
        "ChinaSet_AllFiles/CXR_png/ and the folder itself)"
    )


def parse_clinical_reading(text: str) -> tuple[str | None, float]:
    """``(sex, age)`` from the first line of a clinical reading (``None`` / NaN when not stated)."""
    first = text.strip().splitlines()[0].lower() if text.strip() else ""
    sex = "F" if re.search(r"\bfemale", first) else "M" if re.search(r"\bmale", first) else None
    match = _AGE.search(first)
    return sex, float(match.group(1)) if match else np.nan


def read_shenzhen(root: str | Path, split: str = "all", strict: bool = True) -> LabelledImages:
    """Read the Shenzhen set as :class:`LabelledImages` (binary, ``Tuberculosis``).

    Args:
        root: the dataset folder.
        split: ``"all"`` (the release has no official split).
        strict: a PNG whose name does not follow ``CHNCXR_<4 digits>_<0|1>.png`` raises (default);
            ``False`` skips it with a warning.

    Raises:
        DatasetLayoutError: no images; DataError: a badly named file (strict), two files for one number.
    """
    root = require_dir(Path(root).expanduser(), "Shenzhen root")
    if split != "all":
        raise DataError(f"the Shenzhen set has no official split; use split='all', got {split!r}")
    folder = find_shenzhen_images(root)
    readings = folder.parent / "ClinicalReadings"
    paths, labels, pids, sexes, ages = [], [], [], [], []
    seen: dict[str, Path] = {}
    skipped = 0
    for path in sorted(folder.glob("*.png"), key=lambda p: p.name.lower()):
        match = FILE_PATTERN.match(path.name)
        if match is None:
            if strict:
                raise DataError(
                    f"{describe_path(path)}: file name {path.name!r} does not follow CHNCXR_<4 digits>_<0|1>.png "
                    "(the label is the last digit)"
                )
            skipped += 1
            continue
        number, label = match.groups()
        if number in seen:
            raise DataError(f"{describe_path(path)}: patient {number} also has {seen[number].name}")
        seen[number] = path
        sex, age = None, np.nan
        note = readings / f"{path.stem}.txt"
        if note.is_file():
            sex, age = parse_clinical_reading(note.read_text(encoding="utf-8", errors="replace"))
        paths.append(path)
        labels.append([float(label)])
        pids.append(number)
        sexes.append(sex)
        ages.append(age)
    if skipped:
        warnings.warn(f"{describe_path(folder)}: skipped {skipped} PNG files with other names", stacklevel=2)
    if not paths:
        raise DatasetLayoutError(f"{describe_path(folder)}: no Shenzhen images")
    return LabelledImages(
        dataset="shenzhen",
        split="all",
        paths=tuple(paths),
        labels=np.array(labels, dtype=np.float32),
        label_names=("Tuberculosis",),
        task="binary",
        patient_ids=tuple(pids),
        image_ids=tuple(p.stem for p in paths),
        sex=tuple(sexes),
        age=np.array(ages, dtype=np.float32),
        notes={"label_source": "file name"},
    )
