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


# ------------------------------------------------------------------------------------------------
# 2D self-discovery (Semantic Genesis 2D)
# ------------------------------------------------------------------------------------------------
def spatial_dims(dcfg) -> int:
    """2 for 2D self-discovery (``discovery.pattern_size`` ``[H, W]``), 3 for cubes ``[X, Y, Z]``.

    In 2D every patient is one image ``(H, W)`` (a radiograph, or one axial slice of a CT/MRI volume,
    :func:`load_unit_image`) handled internally as a one-slice volume ``(H, W, 1)``, so frames,
    coordinates, content tests and crops are those of 3D with a single slice (as 2D patch sets are
    cut by ``cubes``); stored scans and patterns are ``(1, H, W)``.

    Raises:
        ConfigError: sizes of 2 or 3 positive ints that disagree, or an autoencoder network of the
            other dimensionality.
    """
    from semantic_genesis.errors import ConfigError

    pattern, ae_size = list(dcfg.pattern_size), list(dcfg.ae_input_size)
    for key, size in (("pattern_size", pattern), ("ae_input_size", ae_size)):
        if len(size) not in (2, 3) or any(int(v) != v or v <= 0 for v in size):
            raise ConfigError(f"discovery.{key} must be [X, Y, Z] (3D) or [H, W] (2D) of positive ints, got {size}")
    if len(pattern) != len(ae_size):
        raise ConfigError(
            f"discovery.pattern_size {pattern} and discovery.ae_input_size {ae_size} must both be 3D [X, Y, Z] "
            "or both 2D [H, W]"
        )
    dims = len(pattern)
    wanted = ("unet3d",) if dims == 3 else ("unet2d", "resunet2d")
    if dcfg.ae_model not in wanted:
        raise ConfigError(
            f"discovery.ae_model={dcfg.ae_model!r} does not fit {dims}D discovery (discovery.pattern_size {pattern}); "
            f"use {' or '.join(wanted)}"
        )
    if dims == 2 and dcfg.border_rule == "official":
        raise ConfigError("discovery.border_rule=official is the 3D LUNA16 rule (100/100/30 voxels); 2D discovery "
                          "needs border_rule=relative")
    if dims == 2 and not 0.0 <= dcfg.slice_position <= 1.0:
        raise ConfigError(f"discovery.slice_position must be in [0, 1], got {dcfg.slice_position}")
    return dims


def sampling_size(dcfg) -> tuple[int, int, int]:
    """The crop window in the internal one-slice-volume grid: ``pattern_size``, or ``(H, W, 1)`` in 2D."""
    size = tuple(int(s) for s in dcfg.pattern_size)
    return (size[0], size[1], 1) if len(size) == 2 else (size[0], size[1], size[2])


def is_image2d(path: str | Path, modality: str = "unknown") -> bool:
    """A radiograph (an X-ray ref, or a PNG / JPEG / single DICOM file) rather than a volume."""
    name = Path(path).name.lower()
    return modality == "xray" or (Path(path).is_file() and name.endswith((".png", ".jpg", ".jpeg", ".dcm", ".dicom")))


def load_unit_image(path: str | Path, intensity, modality: str = "unknown", slice_position: float = 0.5) -> np.ndarray:
    """One patient's 2D image in [0, 1] as a one-slice volume ``(H, W, 1)`` float32 (2D self-discovery).

    * a radiograph (PNG / JPEG / DICOM, X-ray refs) is read with
      :func:`~semantic_genesis.io.images2d.read_image2d` and mapped like the 2D patch sets (X-ray:
      percentiles; a 2D DICOM slice of a CT: the HU window), unless ``intensity.modality`` is set;
    * a CT / MRI volume gives its axial slice at ``slice_position`` of the body's extent along Z
      (0.5: the middle of the body box), after the same intensity mapping as in 3D.

    Raises:
        ImageReadError / DataError: unreadable file, a multi-frame file where a 2D image is expected,
            or an image whose pixels all have one value.
    """
    import dataclasses

    from semantic_genesis.preprocess import body_mask, check_contrast, to_unit

    if is_image2d(path, modality):
        from semantic_genesis.io.images2d import read_image2d

        image = read_image2d(path)
        try:
            check_contrast(image.array)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        mod = modality if modality in ("ct", "mri", "xray") else (image.modality or "xray")
        image = dataclasses.replace(image, metadata={**image.metadata, "modality": mod})
        unit = np.asarray(to_unit(image, intensity).array, dtype=np.float32)
        if unit.ndim != 2:
            raise DataError(f"{path}: expected a 2D image, got an array of shape {unit.shape}")
        return np.ascontiguousarray(unit[:, :, None])
    volume = load_unit_scan(path, intensity)
    rows = np.flatnonzero(body_mask(volume).any(axis=(0, 1)))
    lo, hi = (int(rows[0]), int(rows[-1])) if rows.size else (0, volume.shape[2] - 1)
    z = int(round(lo + slice_position * (hi - lo)))
    return np.ascontiguousarray(volume[:, :, z : z + 1])


def unit_loader(dcfg, intensity, modalities: dict[str, str] | None = None):
    """``path -> unit`` for the discovery's dimensionality: :func:`load_unit_scan` (3D) or
    :func:`load_unit_image` (2D; ``modalities`` maps a path to its ref's modality)."""
    if spatial_dims(dcfg) == 3:
        return lambda path: load_unit_scan(path, intensity)
    modalities = modalities or {}
    position = float(dcfg.slice_position)
    return lambda path: load_unit_image(path, intensity, modalities.get(str(path), "unknown"), position)
