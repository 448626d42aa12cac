"""The discovery cohort: patients, their train/validation split and their scans in [0, 1].

Self-discovery works at the *patient* level (Semantic Genesis §2): every patient is one scan. Patients
are split once, deterministically from the seed, into ``train`` patients (references and their top-K
neighbours; the training patterns) and ``validation`` patients (the validation patterns, taken from
the validation patients nearest to each reference), as the official generator does with its separate
``train/`` and ``validation/`` folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from semantic_genesis.errors import DataError
from semantic_genesis.utils.seeding import derive_seed

TRAIN = "train"
VALIDATION = "validation"


@dataclass(frozen=True)
class Patient:
    """One patient of the discovery cohort.

    Attributes:
        patient_id: unique identifier (from the dataset reader).
        path: the scan file or DICOM folder.
        split: ``"train"`` or ``"validation"``.
    """

    patient_id: str
    path: str
    split: str


def split_patients(refs: Sequence, val_fraction: float, seed: int) -> list[Patient]:
    """Split scans into train and validation patients, reproducibly.

    Args:
        refs: scan references with ``patient_id`` and ``path`` (``io.datasets.list_scans``).
        val_fraction: fraction of patients held out for validation patterns, in [0, 1).
        seed: the config seed; the same seed and cohort give the same split.

    Returns:
        Patients sorted by id. ``round(val_fraction * N)`` of them (at least one when the fraction
        is positive and N >= 2) are validation patients.

    Raises:
        DataError: no scans, or duplicate patient ids.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"discovery.val_fraction must be in [0, 1), got {val_fraction}")
    items = sorted(((str(r.patient_id), str(r.path)) for r in refs), key=lambda t: t[0])
    if not items:
        raise DataError("no scans found for self-discovery")
    ids = [pid for pid, _ in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"duplicate patient ids in the cohort: {', '.join(dup[:5])}")
    n = len(items)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, n - 1)
    order = np.random.default_rng(derive_seed(seed, "discovery-split")).permutation(n)
    val = set(order[:n_val].tolist())
    return [Patient(pid, path, VALIDATION if i in val else TRAIN) for i, (pid, path) in enumerate(items)]


def load_unit_scan(path: str | Path, intensity) -> np.ndarray:
    """Read a scan and map it to float32 in [0, 1], shape ``(X, Y, Z)``.

    Args:
        path: a volume file or DICOM series folder (``io.volumes.read_volume``).
        intensity: the ``IntensityConfig`` (HU window / robust percentiles; optional resampling).

    Raises:
        ImageReadError / DataError: unreadable or non-3D scan.
    """
    from semantic_genesis.io.volumes import read_volume
    from semantic_genesis.preprocess import resample, to_unit

    volume = read_volume(path)
    if intensity.spacing is not None:
        volume = resample(volume, tuple(intensity.spacing), False)
    unit = to_unit(volume, intensity)
    array = np.ascontiguousarray(np.asarray(unit.array, dtype=np.float32))
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 3D scan, got an array of shape {array.shape}")
    return array
