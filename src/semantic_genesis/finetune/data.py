"""Target-task samples in memory, patient-level splits, and the datasets and batches of fine-tuning.

A task (see :mod:`semantic_genesis.finetune.tasks`) turns a dataset folder into a :class:`TaskData`:

* **crop tasks** (NCC, NCS): every sample is a fixed-size crop ``(C, X, Y, Z)`` float32 in [0, 1]
  stacked into one array ``images (N, C, X, Y, Z)``; targets are class labels ``(N,)`` (NCC) or binary
  masks ``(N, 1, X, Y, Z)`` uint8 (NCS);
* **volume tasks** (LCS, BMS): every sample is a whole scan ``(C, X, Y, Z)`` with its mask
  ``(1, X, Y, Z)``; training draws crops from the scans (:func:`draw_crop_centres`) and evaluation
  runs sliding-window inference on the whole scan (as the official LiTS/BraTS fine-tuning did).

The training engine reads them through torch datasets: :class:`TaskSamples` (whole samples: crop-task
training, and every validation / test set) and :class:`VolumeCrops` (training crops of whole scans),
in the order of :class:`FinetuneBatches`, which is a pure function of ``(seed, epoch)``: a shuffle of
the training samples, class-balanced draws (``finetune.balanced_sampling``) or
``finetune.samples_per_volume`` crops per scan, a share of them centred on the foreground.

Splits are **by patient** (:func:`split_by_patient`): no patient contributes samples to two of the
train / validation / test sets. The split is seeded once per task (``finetune.split_seed``) and shared
by every initialisation and every trial, so all trials are scored on the same test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.utils.seeding import derive_seed

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)  # random split of finetune.split=auto (no official split) / random


@dataclass
class TaskData:
    """All samples of one target task.

    Attributes:
        task: task name (``"ncc"``, ...).
        kind: ``"classification"`` or ``"segmentation"``.
        patients: patient id of every sample (length N).
        images: crop tasks: float32 ``(N, C, X, Y, Z)`` in [0, 1]; volume tasks: list of N float32
            ``(C, X_i, Y_i, Z_i)`` arrays; 2D image tasks: :class:`ResizedImages` (DXC) or the images of
            :class:`~semantic_genesis.finetune.tasks.pxs.SiimPairs` (PXS), read on access.
        targets: classification: int64 ``(N,)`` (0/1), multi-label: float32 ``(N, C)`` (0/1); crop segmentation: uint8 ``(N, 1, X, Y, Z)``;
            volume segmentation: list of N uint8 ``(1, X_i, Y_i, Z_i)``; 2D segmentation (PXS): a sequence of
            uint8 ``(1, H, W)`` read on access.
        whole_volume: True for volume tasks.
        fixed_split: a split shipped with the data (e.g. official NCS ``x_train``/``x_test`` arrays):
            ``{"train": idx, "val": idx, "test": idx}``; ``None`` = split by patient.
        source: description of where the data came from (folder, layout), for reports.
        split_task: the task whose patient split these samples share (a 2D slice-based task, e.g.
            ``ncc2d``, reads the data of its 3D task ``ncc`` and must split it the same way, so both are
            scored on the same test units); ``""`` = :attr:`task`.
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
    split_task: str = ""

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[0])

    def positive(self, index: int) -> bool:
        """Whether sample ``index`` is positive (class 1, or a non-empty mask).

        Lazily read targets (PXS masks) answer through their own ``positive(index)``, without reading
        the sample."""
        if hasattr(self.targets, "positive"):
            return bool(self.targets.positive(index))
        t = self.targets[index]
        return bool(np.any(np.asarray(t) > 0))


class ResizedImages:
    """2D images read from their files on access and resized to one size: a sequence of float32
    ``(1, H, W)`` arrays in [0, 1].

    A ChestX-ray14-sized dataset (112,120 radiographs) would take ~22 GB as float32 at 224 x 224, so
    the images stay on disk and each access reads and resizes one (bilinear with anti-aliasing, so a
    1024 x 1024 radiograph is averaged, not subsampled).

    Args:
        paths: image files.
        size: ``(H, W)`` of every returned image.
        read: ``read(path) -> float32 (H0, W0)`` in [0, 1] (a dataset reader's own scaling).
    """

    def __init__(self, paths: Sequence[Any], size: Sequence[int], read: Any):
        self.paths = list(paths)
        self.size = (int(size[0]), int(size[1]))
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        image = torch.from_numpy(np.ascontiguousarray(self.read(self.paths[int(index)]), dtype=np.float32))
        if tuple(image.shape) != self.size:
            image = torch.nn.functional.interpolate(image[None, None], size=self.size, mode="bilinear",
                                                    align_corners=False, antialias=True)[0, 0]
        return image.clamp_(0.0, 1.0)[None].numpy()


def split_by_patient(
    data: TaskData,
    fractions: Sequence[float] | str = DEFAULT_FRACTIONS,
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
        fractions: (train, val, test) shares of patients, summing to 1; or ``finetune.split``'s
            ``"auto"`` / ``"random"`` (the default shares).
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
    if isinstance(fractions, str):  # finetune.split auto / random (official splits arrive as fixed_split)
        if fractions == "official":
            raise ConfigError(f"finetune.split=official: task {data.task} has no official split for {data.source or 'this data'}; "
                              "use finetune.split=random")
        fractions = DEFAULT_FRACTIONS
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
    rng = np.random.default_rng(derive_seed(seed, data.split_task or data.task, "split"))
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
    rng = np.random.default_rng(derive_seed(seed, data.split_task or data.task, "label_fraction"))
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

    Raises:
        DataError: the crop holds no voxel of ``array`` (the centre is far outside it): such an
            all-padding crop is never a meaningful sample.
    """
    size = tuple(int(s) for s in size)
    start = [int(np.floor(float(c) + 0.5)) - s // 2 for c, s in zip(center, size)]
    out = np.full((array.shape[0],) + size, fill, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for axis, (s0, s) in enumerate(zip(start, size)):
        dim = array.shape[axis + 1]
        lo, hi = max(s0, 0), min(s0 + s, dim)
        if hi <= lo:
            raise DataError(
                f"crop of {size} voxels centred at {tuple(round(float(c), 2) for c in center)} lies entirely "
                f"outside the array of shape {tuple(array.shape[1:])}"
            )
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = array[tuple(src)]
    return out


class ForegroundIndex:
    """The foreground voxels of a mask ``(1, X, Y, Z)`` in C order (``np.argwhere(mask[0] > 0)``),
    held as per-``x`` counts: :meth:`voxel` finds the ``k``-th without keeping every coordinate (a
    liver mask has millions of foreground voxels)."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.cumulative = np.cumsum((np.asarray(mask[0]) > 0).reshape(mask.shape[1], -1).sum(axis=1))
        self.count = int(self.cumulative[-1]) if len(self.cumulative) else 0

    def voxel(self, k: int) -> tuple[int, int, int]:
        """Coordinates ``(x, y, z)`` of the ``k``-th foreground voxel (0 <= k < count)."""
        x = int(np.searchsorted(self.cumulative, k, side="right"))
        within = k - (int(self.cumulative[x - 1]) if x else 0)
        flat = int(np.flatnonzero(np.asarray(self.mask[0, x]) > 0)[within])
        y, z = divmod(flat, self.mask.shape[3])
        return x, int(y), int(z)


def draw_crop_centres(
    shapes: Sequence[Sequence[int]],
    foreground: Sequence[ForegroundIndex],
    per_volume: int,
    foreground_fraction: float,
    rng: np.random.Generator,
) -> list[tuple[int, int, int, int]]:
    """Centres of ``per_volume`` training crops for each volume (LCS, BMS).

    Each crop is centred, with probability ``foreground_fraction``, on a uniformly chosen foreground
    voxel of the volume's mask, otherwise (or when the mask is empty) on a uniformly chosen voxel of
    the volume (crops may reach outside the volume: padded with 0).

    Args:
        shapes: spatial shape ``(X, Y, Z)`` of every volume.
        foreground: the :class:`ForegroundIndex` of every volume's mask.
        per_volume: crops per volume.
        foreground_fraction: share of crops centred on the foreground, in [0, 1].
        rng: the random stream (draws in volume order, crop by crop).

    Returns:
        ``(position, x, y, z)`` per crop, volume by volume (``position`` indexes ``shapes``).
    """
    centres = []
    for position, (shape, fg) in enumerate(zip(shapes, foreground)):
        for _ in range(per_volume):
            if rng.random() < foreground_fraction and fg.count:
                x, y, z = fg.voxel(int(rng.integers(fg.count)))
            else:
                x, y, z = (int(rng.integers(d)) for d in shape)
            centres.append((position, x, y, z))
    return centres


def sample_volume_crops(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    indices: Sequence[int],
    size: Sequence[int],
    per_volume: int,
    foreground_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw training crops from whole volumes (:func:`draw_crop_centres`) and cut them out.

    Returns:
        ``(images (M, C, *size) float32, masks (M, 1, *size) uint8)`` with ``M = len(indices) * per_volume``.
    """
    indices = [int(i) for i in indices]
    centres = draw_crop_centres([images[i].shape[1:] for i in indices], [ForegroundIndex(masks[i]) for i in indices],
                                per_volume, foreground_fraction, rng)
    crops = [extract_crop(images[indices[p]], c, size) for p, *c in centres]
    crop_masks = [extract_crop(masks[indices[p]], c, size) for p, *c in centres]
    return np.stack(crops).astype(np.float32, copy=False), np.stack(crop_masks)


def _tensor(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _patient_source(data: TaskData, indices: np.ndarray):
    from semantic_genesis.provenance import PatientSource

    if data.info.get("anonymous"):  # crops without patient ids: exposure unknown
        return None
    rule = data.info.get("split_rule")
    return PatientSource(data.source, sorted({str(data.patients[int(i)]) for i in indices}),
                         None if rule is None else str(rule))


class TaskSamples(Dataset):
    """The samples ``indices`` of a task, keyed by their position ``p`` in ``indices``.

    A sample is ``{"image": float32 (C, X, Y, Z), "target": label int (classification) or uint8 mask
    (1, X, Y, Z), "index": p}``. Crop tasks: crops; volume tasks: whole scans (validation and test,
    evaluated by sliding windows one scan per batch).
    """

    def __init__(self, data: TaskData, indices: Sequence[int]):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def patients_seen(self):
        """The patients of these samples (:class:`semantic_genesis.provenance.PatientSource`)."""
        return _patient_source(self.data, self.indices)

    def __getitem__(self, position: int) -> dict[str, Any]:
        i = int(self.indices[int(position)])
        target = self.data.targets[i]
        sample = {"image": _tensor(np.asarray(self.data.images[i], dtype=np.float32)), "index": int(position)}
        if self.data.kind == "classification" and np.ndim(target) == 0:
            sample["target"] = int(target)
        else:  # masks, and the (C,) 0/1 float vectors of multi-label classification
            sample["target"] = _tensor(target)
        return sample


class VolumeCrops(Dataset):
    """Training crops of the whole scans ``indices``, keyed ``(p, x, y, z)``: the ``crop_size`` crop of
    scan ``indices[p]`` and of its mask centred on voxel ``(x, y, z)`` (:func:`extract_crop`).

    A sample is ``{"image": float32 (C, *crop_size), "target": uint8 (1, *crop_size), "index": p}``;
    ``len`` is the number of scans.
    """

    def __init__(self, data: TaskData, indices: Sequence[int], crop_size: Sequence[int]):
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.crop_size = tuple(int(c) for c in crop_size)

    def __len__(self) -> int:
        return len(self.indices)

    def patients_seen(self):
        """The patients of these volumes (:class:`semantic_genesis.provenance.PatientSource`)."""
        return _patient_source(self.data, self.indices)

    def __getitem__(self, key: tuple[int, int, int, int]) -> dict[str, Any]:
        position, *centre = (int(k) for k in key)
        i = int(self.indices[position])
        image = extract_crop(self.data.images[i], centre, self.crop_size).astype(np.float32, copy=False)
        return {"image": _tensor(image), "target": _tensor(extract_crop(self.data.targets[i], centre, self.crop_size)),
                "index": position}


class AxialSlices(TaskSamples):
    """Training slices of the crops ``indices`` for a 2D network (the slice-based solutions of the 3D
    tasks), keyed ``(p, z)``: axial slice ``z`` (the last axis) of crop ``indices[p]``.

    A sample is ``{"image": float32 (C, X, Y), "target": the crop's label (classification: every slice
    carries its candidate's label) or the mask's slice uint8 (1, X, Y), "index": p}``; ``len`` is the
    number of crops.
    """

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        position, z = (int(k) for k in key)
        i = int(self.indices[position])
        image = np.asarray(self.data.images[i][..., z], dtype=np.float32)
        target = self.data.targets[i]
        sample = {"image": _tensor(image), "index": position}
        if self.data.kind == "classification":
            sample["target"] = int(target)
        else:
            sample["target"] = _tensor(np.asarray(target)[..., z])
        return sample


class FinetuneBatches:
    """The training batches of fine-tuning (the engine's ``batch_sampler`` for the task).

    The keys of epoch ``e`` are drawn from ``numpy.random.default_rng(derive_seed(seed,
    "finetune-epoch", e))``: crop tasks shuffle the training samples (or, with ``balanced``, draw as
    many with replacement, each class with probability 1/2); volume tasks draw ``per_volume`` crop
    centres per scan (:func:`draw_crop_centres`) and shuffle them. An epoch is ``len(keys) //
    (batch_size * world_size)`` batches (the last partial batch is dropped: batch-statistics norms), or
    one batch of every key when there are fewer; rank ``r`` gets rows ``r::world_size`` of each global
    batch. Resumable mid-epoch (:meth:`set_start`).

    Args:
        data: the task's samples.
        indices: the training samples.
        batch_size: items per batch per rank.
        seed: the run's seed.
        balanced: class-balanced sampling (classification crop tasks).
        per_volume, foreground_fraction: crops per scan and their foreground share (volume tasks).
        slices: slice-based tasks: the axial slices of every crop that are training items (keys
            ``(p, z)`` of :class:`AxialSlices`, shuffled together; with ``balanced`` each slice weighs
            its crop's class weight); ``None``: whole crops.
        rank, world_size: DDP position.

    Raises:
        DataError: fewer training items than ranks.
    """

    def __init__(self, data: TaskData, indices: Sequence[int], batch_size: int, seed: int, *, balanced: bool = False,
                 per_volume: int = 1, foreground_fraction: float = 0.5, slices: Sequence[int] | None = None,
                 rank: int = 0, world_size: int = 1):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.whole_volume = bool(data.whole_volume)
        self.seed, self.batch_size, self.rank, self.world_size = int(seed), int(batch_size), int(rank), int(world_size)
        self.per_volume, self.foreground_fraction = int(per_volume), float(foreground_fraction)
        self.weights = None
        self.slices = None if slices is None else [int(z) for z in slices]
        if self.slices is not None and (self.whole_volume or not self.slices):
            raise ConfigError(f"task {data.task}: slice-based training needs crops and at least one slice")
        if self.whole_volume:
            self.shapes = [data.images[i].shape[1:] for i in self.indices]
            self.foreground = [ForegroundIndex(data.targets[i]) for i in self.indices]
            items = len(self.indices) * self.per_volume
        else:
            items = len(self.indices)
            if balanced and data.kind == "classification" and np.ndim(data.targets[0]) > 0:
                raise ConfigError(f"finetune.balanced_sampling: task {data.task} is multi-label (a sample can be "
                                  "positive for several labels); use finetune.pos_weight")
            if balanced and data.kind == "classification":
                labels = np.asarray(data.targets)[self.indices]
                weights = np.where(labels == 1, 0.5 / max((labels == 1).sum(), 1), 0.5 / max((labels == 0).sum(), 1))
                self.weights = weights / weights.sum()
            if self.slices is not None:
                items *= len(self.slices)
                if self.weights is not None:
                    self.weights = np.repeat(self.weights, len(self.slices)) / len(self.slices)
        if items < self.world_size:
            raise DataError(f"task {data.task}: {items} training item(s) cannot be shared by {self.world_size} processes")
        group = self.batch_size * self.world_size
        self.num_batches = items // group if items >= group else 1
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, batch: int) -> None:
        self.start = int(batch)

    def epoch_keys(self, epoch: int) -> list[Any]:
        """Every key of ``epoch`` (all ranks), in order: positions in ``indices``, ``(p, z)`` slices or
        ``(p, x, y, z)`` crops."""
        rng = np.random.default_rng(derive_seed(self.seed, "finetune-epoch", epoch))
        if self.whole_volume:
            centres = draw_crop_centres(self.shapes, self.foreground, self.per_volume, self.foreground_fraction, rng)
            return [centres[k] for k in rng.permutation(len(centres))]
        n = len(self.indices) * (1 if self.slices is None else len(self.slices))
        if self.weights is not None:
            order = rng.choice(n, size=n, replace=True, p=self.weights).tolist()
        else:
            order = rng.permutation(n).tolist()
        if self.slices is None:
            return order
        per = len(self.slices)
        return [(item // per, self.slices[item % per]) for item in order]

    def __iter__(self) -> Iterator[list[Any]]:
        keys = self.epoch_keys(self.epoch)
        group = self.batch_size * self.world_size
        for batch in range(self.start, self.num_batches):
            yield keys[batch * group : (batch + 1) * group][self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.num_batches - self.start
