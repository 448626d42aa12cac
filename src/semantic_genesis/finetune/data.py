"""Target-task samples in memory, patient-level splits, crops and batches.

A task (see :mod:`semantic_genesis.finetune.tasks`) turns a dataset folder into a :class:`TaskData`:

* **crop tasks** (NCC, NCS): every sample is a fixed-size crop ``(C, X, Y, Z)`` float32 in [0, 1]
  stacked into one array ``images (N, C, X, Y, Z)``; targets are class labels ``(N,)`` (NCC) or binary
  masks ``(N, 1, X, Y, Z)`` uint8 (NCS);
* **volume tasks** (LCS, BMS): every sample is a whole scan ``(C, X, Y, Z)`` with its mask
  ``(1, X, Y, Z)``; training draws crops from the scans (:func:`sample_volume_crops`) and evaluation
  runs sliding-window inference on the whole scan (as the official LiTS/BraTS fine-tuning did).

Splits are **by patient** (:func:`split_by_patient`): no patient contributes samples to two of the
train / validation / test sets. The split is seeded once per task (``finetune.split_seed``) and shared
by every initialisation and every trial, so all trials are scored on the same test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.utils.seeding import derive_seed

SPLITS = ("train", "val", "test")


@dataclass
class TaskData:
    """All samples of one target task.

    Attributes:
        task: task name (``"ncc"``, ...).
        kind: ``"classification"`` or ``"segmentation"``.
        patients: patient id of every sample (length N).
        images: crop tasks: float32 ``(N, C, X, Y, Z)`` in [0, 1]; volume tasks: list of N float32
            ``(C, X_i, Y_i, Z_i)`` arrays.
        targets: classification: int64 ``(N,)`` (0/1); crop segmentation: uint8 ``(N, 1, X, Y, Z)``;
            volume segmentation: list of N uint8 ``(1, X_i, Y_i, Z_i)``.
        whole_volume: True for volume tasks.
        fixed_split: a split shipped with the data (e.g. official NCS ``x_train``/``x_test`` arrays):
            ``{"train": idx, "val": idx, "test": idx}``; ``None`` = split by patient.
        source: description of where the data came from (folder, layout), for reports.
    """

    task: str
    kind: Literal["classification", "segmentation"]
    patients: list[str]
    images: np.ndarray | list[np.ndarray]
    targets: np.ndarray | list[np.ndarray]
    whole_volume: bool = False
    fixed_split: dict[str, np.ndarray] | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[0])

    def positive(self, index: int) -> bool:
        """Whether sample ``index`` is positive (class 1, or a non-empty mask)."""
        t = self.targets[index]
        return bool(np.any(np.asarray(t) > 0))


def split_by_patient(
    data: TaskData,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    label_fraction: float = 1.0,
) -> dict[str, np.ndarray]:
    """Split sample indices into train / val / test so that no patient is in two sets.

    Patients are stratified by whether they have any positive sample, so that every set gets
    positives when there are enough patients (AUC needs both classes). Each set gets at least one
    patient when there are at least three patients. ``label_fraction < 1`` then keeps only that
    fraction of the *training* patients (at least one), for few-label experiments; validation and
    test sets are unchanged.

    Args:
        data: the task samples.
        fractions: (train, val, test) shares of patients, summing to 1.
        seed: split seed; the same seed gives the same split.
        label_fraction: share of training patients kept, in (0, 1].

    Returns:
        ``{"train": idx, "val": idx, "test": idx}`` int64 sample indices, sorted.

    Raises:
        ConfigError: bad fractions; DataError: fewer than 3 patients.
    """
    if data.fixed_split is not None:
        split = {k: np.asarray(v, dtype=np.int64) for k, v in data.fixed_split.items()}
        return _apply_label_fraction(data, split, seed, label_fraction)
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] == 0:
        raise ConfigError(f"finetune.split must be 3 non-negative shares summing to 1 with train > 0, got {fractions}")
    patients = sorted(set(data.patients))
    if len(patients) < 3:
        raise DataError(
            f"task {data.task}: {len(patients)} patient(s) in {data.source or 'the data'}; "
            "at least 3 are needed for a train / validation / test split by patient"
        )
    has_pos: dict[str, bool] = {p: False for p in patients}
    for i, p in enumerate(data.patients):
        if not has_pos[p] and data.positive(i):
            has_pos[p] = True
    rng = np.random.default_rng(derive_seed(seed, data.task, "split"))
    assignment: dict[str, str] = {}
    for group in ([p for p in patients if has_pos[p]], [p for p in patients if not has_pos[p]]):
        order = [group[i] for i in rng.permutation(len(group))]
        counts = _allocate(len(order), fractions)
        start = 0
        for name, count in zip(SPLITS, counts):
            for p in order[start : start + count]:
                assignment[p] = name
            start += count
    _ensure_nonempty(assignment, fractions, rng)
    index = {name: [] for name in SPLITS}
    for i, p in enumerate(data.patients):
        index[assignment[p]].append(i)
    split = {name: np.asarray(idx, dtype=np.int64) for name, idx in index.items()}
    return _apply_label_fraction(data, split, seed, label_fraction)


def _allocate(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder allocation of ``n`` items to shares (val and test first get their rounding)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    remainders = sorted(range(3), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in remainders[: n - sum(counts)]:
        counts[k] += 1
    if n >= sum(1 for f in fractions if f > 0):  # every set with a share gets one of the group
        for k in range(3):
            if fractions[k] > 0 and counts[k] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[k] += 1
    return counts


def _ensure_nonempty(assignment: dict[str, str], fractions, rng: np.random.Generator) -> None:
    """Move patients from the largest set into empty sets whose share is positive."""
    for name, share in zip(SPLITS, fractions):
        members = [p for p, s in assignment.items() if s == name]
        if members or share == 0:
            continue
        sizes = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
        donor = max(SPLITS, key=lambda s: sizes[s])
        candidates = sorted(p for p, s in assignment.items() if s == donor)
        assignment[candidates[int(rng.integers(len(candidates)))]] = name


def _apply_label_fraction(data: TaskData, split: dict[str, np.ndarray], seed: int, fraction: float) -> dict:
    """Keep ``fraction`` of the training patients: nested subsets, stratified by having a positive.

    One seeded order of the training patients (independent of ``fraction``) is drawn per stratum
    (patients with / without a positive sample) and each stratum keeps its first
    ``round(n * fraction)`` patients, so a smaller fraction's patients are a subset of a larger
    one's (label-efficiency curves compare nested training sets) and the share of patients with
    positives stays that of the full training set.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"finetune.label_fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return split
    train = split["train"]
    patients = sorted({data.patients[i] for i in train})
    positive = {data.patients[i] for i in train if data.positive(i)}
    rng = np.random.default_rng(derive_seed(seed, data.task, "label_fraction"))
    keep: set[str] = set()
    for stratum in ([p for p in patients if p in positive], [p for p in patients if p not in positive]):
        order = [stratum[i] for i in rng.permutation(len(stratum))]
        keep.update(order[: int(round(len(stratum) * float(fraction)))])
    if not keep:  # at least one patient, preferably one with a positive
        keep = {sorted(positive)[0] if positive else patients[0]}
    split = dict(split)
    split["train"] = np.asarray([i for i in train if data.patients[i] in keep], dtype=np.int64)
    return split


def extract_crop(array: np.ndarray, center: Sequence[float], size: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """Crop ``size`` voxels centred on ``center`` from a ``(C, X, Y, Z)`` array, padding outside with ``fill``.

    The crop starts at ``round(center) - size // 2`` on every axis, so an even-sized crop has the centre
    voxel at index ``size // 2``.

    Args:
        array: ``(C, X, Y, Z)``.
        center: voxel coordinates ``(x, y, z)`` (floats allowed).
        size: crop size ``(sx, sy, sz)``.
        fill: value of voxels outside the array (0 = air for CT in [0, 1]).

    Returns:
        ``(C, sx, sy, sz)`` array of ``array``'s dtype.
    """
    size = tuple(int(s) for s in size)
    start = [int(np.floor(float(c) + 0.5)) - s // 2 for c, s in zip(center, size)]
    out = np.full((array.shape[0],) + size, fill, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for axis, (s0, s) in enumerate(zip(start, size)):
        dim = array.shape[axis + 1]
        lo, hi = max(s0, 0), min(s0 + s, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = array[tuple(src)]
    return out


def sample_volume_crops(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    indices: Sequence[int],
    size: Sequence[int],
    per_volume: int,
    foreground_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw training crops from whole volumes (LCS, BMS).

    Each of ``per_volume`` crops per volume is centred, with probability ``foreground_fraction``, on a
    uniformly chosen foreground voxel of the mask, otherwise on a uniformly chosen voxel of the
    volume (crops may reach outside the volume: padded with 0).

    Returns:
        ``(images (M, C, *size) float32, masks (M, 1, *size) uint8)`` with ``M = len(indices) * per_volume``.
    """
    crops, crop_masks = [], []
    for i in indices:
        image, mask = images[i], masks[i]
        fg = None
        for _ in range(per_volume):
            if rng.random() < foreground_fraction:
                if fg is None:
                    fg = np.argwhere(mask[0] > 0)
                if len(fg):
                    center = fg[int(rng.integers(len(fg)))]
                else:
                    center = [int(rng.integers(d)) for d in image.shape[1:]]
            else:
                center = [int(rng.integers(d)) for d in image.shape[1:]]
            crops.append(extract_crop(image, center, size))
            crop_masks.append(extract_crop(mask, center, size))
    return np.stack(crops).astype(np.float32, copy=False), np.stack(crop_masks)
