"""The discovery cohort: patients, their train/validation split and their scans in [0, 1].

Self-discovery works at the *patient* level (Semantic Genesis, Haghighi et al., MICCAI 2020, §2):
every patient is one scan. Patients are split once, deterministically, into ``train`` patients
(references and their top-K neighbours; the training patterns) and ``validation`` patients (the
validation patterns, taken from the validation patients nearest to each reference), as the official
generator does with its separate ``train/`` and ``validation/`` folders.

The split follows ``discovery.split`` (:mod:`semantic_genesis.io.datasets.splits`): on LUNA16 data
``auto`` uses the official subsets (train 0-4, validation 5-6) and leaves the test subsets 7-9 out of
discovery altogether, so the NCC test scans are never seen in pretraining; otherwise a seeded random
split with ``val_fraction``. The split is drawn over the scans that could be read (the pipeline
assigns it after its scan stage), so an unreadable scan never empties a split.
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


@dataclass(frozen=True)
class CohortPlan:
    """Which scans enter discovery and how their patients will be split.

    Attributes:
        candidates: the scan references that take part (sorted by patient id).
        official: patient -> ``"train"`` / ``"validation"`` for an official split, else ``None``
            (a random split is drawn over the readable candidates later).
        left_out: patients not used (official test subsets, scans outside the official lists).
        description: the split rule, for logs and the pattern-set manifest.
    """

    candidates: list
    official: dict[str, str] | None
    left_out: tuple[str, ...]
    description: str


def plan_cohort(refs: Sequence, dcfg, layout: str, seed: int, warn=None) -> CohortPlan:
    """Apply ``discovery.split`` to the scans found (before any is read).

    Raises:
        DataError: no scans, or duplicate patient ids.
        ConfigError: ``official`` on a layout without an official split.
    """
    from semantic_genesis.io.datasets.splits import choose_split

    items = sorted(refs, key=lambda r: str(r.patient_id))
    if not items:
        raise DataError("no scans found for self-discovery")
    ids = [str(r.patient_id) for r in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"duplicate patient ids in the cohort: {', '.join(dup[:5])}")
    choice = choose_split(dcfg.split, layout, [(str(r.patient_id), str(r.path)) for r in items],
                          needs=("train", "validation"), key="discovery.split", warn=warn)
    if choice.rule != "official":
        return CohortPlan(items, None, (), f"random by patient (val_fraction {dcfg.val_fraction:g}, seed {seed})")
    keep = {pid: split for pid, split in choice.assignment.items() if split in (TRAIN, VALIDATION)}
    left_out = tuple(sorted(set(ids) - set(keep)))
    description = f"{choice.description}; test patients left out of discovery"
    return CohortPlan([r for r in items if str(r.patient_id) in keep], keep, left_out, description)


def assign_splits(plan: CohortPlan, readable: Sequence[tuple[str, str]], val_fraction: float, seed: int) -> dict[str, str]:
    """patient -> ``"train"`` / ``"validation"`` for the readable ``(patient id, path)`` pairs."""
    if plan.official is not None:
        return {pid: plan.official[pid] for pid, _ in readable}
    refs = [_Ref(pid, path) for pid, path in readable]
    return {p.patient_id: p.split for p in split_patients(refs, val_fraction, seed)}


@dataclass(frozen=True)
class _Ref:
    patient_id: str
    path: str


def load_unit_scan(path: str | Path, intensity) -> np.ndarray:
    """Read a scan and map it to float32 in [0, 1], shape ``(X, Y, Z)``.

    Args:
        path: a volume file or DICOM series folder (``io.volumes.read_volume``).
        intensity: the ``IntensityConfig`` (HU window / robust percentiles; optional resampling).

    Raises:
        ImageReadError / DataError: unreadable or non-3D scan, or one whose voxels all have the same
            value (as ``cubes``, the discovery pipeline skips it with a warning).
    """
    from semantic_genesis.io.volumes import read_volume
    from semantic_genesis.preprocess import check_contrast, resample, to_unit

    volume = read_volume(path)
    if np.ndim(volume.array) != 3:
        raise DataError(f"{path}: expected a 3D scan, got an array of shape {np.shape(volume.array)}")
    try:
        check_contrast(volume.array)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    if intensity.spacing is not None:
        volume = resample(volume, tuple(intensity.spacing), False)
    unit = to_unit(volume, intensity)
    return np.ascontiguousarray(np.asarray(unit.array, dtype=np.float32))
