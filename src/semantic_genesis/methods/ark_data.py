"""Ark's data: several labelled chest X-ray datasets, their cyclic batches and the two views.

Ark (Ma et al., MICCAI 2023; Ark+) trains on datasets whose label spaces differ. Each dataset is read
by its public-layout reader (:func:`semantic_genesis.io.datasets.cxr.read_labelled_images`) into
:class:`~semantic_genesis.io.datasets.labelled.LabelledImages`; :class:`ArkImages` concatenates them
for the engine. Its items carry the dataset index and the labels padded with NaN to the widest label
space, so a validation batch may mix datasets and still stack; a training batch never does
(:class:`CyclicBatches`).

**Cyclic order** (official ``engine.py``: ``for i, loader_i in enumerate(train_loaders)``): an epoch
serves every batch of dataset 0 (a fresh seeded permutation per epoch, the last batch may be smaller,
no ``drop_last``), then every batch of dataset 1, and so on in config order; every dataset is seen
exactly once per epoch.

**Views** (:func:`ark_views`): the student sees a random resized crop (area 0.08-1, aspect 3/4-4/3),
then with probability 0.5 a shift (±6.25 %) / scale (±10 %) / rotation (±10°), then with probability
0.3 a brightness-contrast (±0.2) or gamma (0.8-1.2) change, the official albumentations chain
``build_ts_transformations``. In the MICCAI variant (``views: ark``) the teacher sees the same geometry
(the official code passes the image as the albumentations ``mask``, nearest-neighbour resampled)
without the photometric change; in Ark+ (``views: ark_plus``) the teacher sees the whole resized
image, unaugmented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.io.datasets.labelled import TASKS, LabelledImages
from semantic_genesis.utils.seeding import derive_seed

VIEW_MODES = ("ark", "ark_plus")


@dataclass(frozen=True)
class ArkDatasetSpec:
    """One dataset of an Ark run (an entry of ``method.options.datasets``).

    Attributes:
        name: short name used in logs and tables (unique within the run), e.g. ``chestxray14``.
        layout: the reader (``chestxray14``, ``chexpert``, ``mimic_cxr``, ``vindr_cxr``,
            ``rsna_pneumonia``, ``shenzhen``).
        root: the dataset folder; relative paths are taken under the run's ``data=`` folder.
        split: the training split (``None``: the reader's default).
        val_split: a split of the reader used for validation; ``None``: ``val_fraction`` of the
            training split's patients are held out (patient-disjoint) instead.
        val_fraction: held-out fraction of patients when ``val_split`` is ``None`` (0: no validation).
        options: the reader's options (e.g. ``{uncertain: lsr_ones}`` for CheXpert, ``{variant:
            3class}`` for RSNA Pneumonia).
        labels: keep only these label columns for training and evaluation (``[]``: all).
        eval_labels: score only these columns in evaluation (CheXpert's competition five:
            Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion); ``[]``: all.
        task: the expected task type (``multi-label``, ``multi-class``, ``binary``); checked against the
            reader's. ``None``: the reader's.
        max_images: use at most this many training images (0: all), the first ones in file order.
    """

    name: str
    layout: str
    root: str
    split: str | None = None
    val_split: str | None = None
    val_fraction: float = 0.2
    options: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    eval_labels: tuple[str, ...] = ()
    task: str | None = None
    max_images: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("name: every dataset needs a name")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in [0, 1), got {self.val_fraction} (dataset {self.name})")
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} (dataset {self.name}) is not one of {', '.join(TASKS)}")


def resolve_root(spec: ArkDatasetSpec, data: str | None) -> Path:
    """The dataset folder: ``spec.root``, under ``data`` when relative and ``data`` is given."""
    root = Path(spec.root).expanduser()
    if not root.is_absolute() and data:
        root = Path(data).expanduser() / root
    return root


def read_spec(spec: ArkDatasetSpec, data: str | None, seed: int) -> tuple[LabelledImages, LabelledImages | None]:
    """``(train, validation)`` of one dataset (validation ``None`` when there is none).

    Raises:
        DataError: what the reader raises, a task that differs from ``spec.task``, or an empty split.
    """
    from semantic_genesis.io.datasets.cxr import read_labelled_images

    root = resolve_root(spec, data)
    options = dict(spec.options)
    train = read_labelled_images(spec.layout, root, spec.split, **options)
    val = read_labelled_images(spec.layout, root, spec.val_split, **options) if spec.val_split else None
    if spec.labels:
        train = train.restrict_labels(spec.labels)
        val = val.restrict_labels(spec.labels) if val is not None else None
    if spec.task is not None and train.task != spec.task:
        raise DataError(f"{root}: dataset {spec.name} is {train.task} for the {spec.layout} reader, the config says {spec.task}")
    if val is None and spec.val_fraction > 0:
        train, val = train.split_patients(spec.val_fraction, seed=derive_seed(seed, "ark-val", spec.name) % (2**31))
    if spec.max_images > 0:
        train = train.select(np.arange(min(spec.max_images, len(train))))
    if len(train) == 0:
        raise DataError(f"{root}: dataset {spec.name} has no training images")
    if spec.eval_labels:
        unknown = [n for n in spec.eval_labels if n not in train.label_names]
        if unknown:
            raise DataError(f"dataset {spec.name}: eval label {unknown[0]!r} is not one of {', '.join(train.label_names)}")
    return train, (val if val is not None and len(val) else None)


def load_image(images: LabelledImages, index: int, size: tuple[int, int]) -> torch.Tensor:
    """float32 ``(1, H, W)`` in [0, 1]: image ``index`` resized (bilinear, antialiased) to ``size``."""
    array = images.read_image(index)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return tensor[0].clamp_(0.0, 1.0)


class ArkImages(Dataset):
    """The images of several datasets, indexed ``0 .. N - 1`` dataset after dataset.

    Items: ``{"image": float32 (1, H, W) in [0, 1], "target": float32 (C_max,), "dataset": int,
    "index": int}``; ``target[:C_i]`` holds the labels of dataset ``i`` (NaN = unknown) and the rest
    is NaN. :attr:`offsets` gives where each dataset starts.

    Args:
        parts: one :class:`LabelledImages` per dataset (``None`` or empty for a dataset without this split).
        names: the datasets' names.
        size: ``(H, W)`` every image is resized to.
        data: what to record as the data source (provenance).
    """

    def __init__(self, parts: Sequence[LabelledImages | None], names: Sequence[str], size: tuple[int, int], data: str = ""):
        self.parts = [p if p is not None and len(p) else None for p in parts]
        self.names = tuple(names)
        self.size = (int(size[0]), int(size[1]))
        self.data = data
        self.lengths = [len(p) if p is not None else 0 for p in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.width = max((p.num_classes for p in self.parts if p is not None), default=1)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(dataset, index within it)`` of item ``index``."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} images")
        d = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return d, index - int(self.offsets[d])

    def __getitem__(self, index: int) -> dict[str, Any]:
        d, k = self.locate(index)
        part = self.parts[d]
        target = torch.full((self.width,), float("nan"), dtype=torch.float32)
        target[: part.num_classes] = torch.from_numpy(part.labels[k].copy())
        return {"image": load_image(part, k, self.size), "target": target, "dataset": d, "index": int(index)}

    def patients_seen(self):
        """The patients of every dataset (provenance of the weights)."""
        from semantic_genesis.provenance import PatientSource

        patients = [f"{name}:{p}" for name, part in zip(self.names, self.parts) if part is not None for p in part.patient_ids]
        return PatientSource(self.data, patients, "per dataset (split or held-out patients)")


class CyclicBatches:
    """The training batches of an Ark epoch: every batch of dataset 0, then of dataset 1, ...

    Follows the engine's :class:`~semantic_genesis.methods.base.EpochBatchSampler` protocol: the
    batches are a pure function of ``(seed, epoch, rank, world_size)`` (each dataset shuffled by its
    own generator seeded from ``(seed, "ark", epoch, dataset)``), and :meth:`set_start` resumes in the
    middle of an epoch. Under DistributedDataParallel each rank takes every ``world_size``-th item of
    each dataset's permutation (the same number on every rank), so all ranks train the same dataset
    at the same step.

    Args:
        lengths: items per dataset; offsets: where each dataset starts in :class:`ArkImages`.
        batch_size: items per batch (per rank); the last batch of a dataset may be smaller (one left-over
            item joins the batch before it, so that batch norm never sees a batch of one).
    """

    def __init__(self, lengths: Sequence[int], offsets: Sequence[int], batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {batch_size}")
        self.lengths = [int(n) for n in lengths]
        self.offsets = [int(o) for o in offsets]
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shares = [n // self.world_size for n in self.lengths]
        # no drop_last (official); a last batch of one item joins the batch before it (batch norm needs two)
        self.batches_per_dataset = [self._count(s) for s in self.shares]
        self.num_batches = sum(self.batches_per_dataset)
        self.epoch = 0
        self.start = 0

    def _count(self, share: int) -> int:
        n = math.ceil(share / self.batch_size)
        return n - 1 if n > 1 and share % self.batch_size == 1 else n

    def _split(self, order: np.ndarray) -> list[list[int]]:
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            last = batches.pop()
            batches[-1] += last
        return batches

    def dataset_of(self, batch: int) -> int:
        """The dataset whose pass batch ``batch`` of an epoch belongs to."""
        return int(np.searchsorted(np.cumsum(self.batches_per_dataset), batch, side="right"))

    def pass_ends(self) -> list[int]:
        """The batch index (within an epoch) after which each dataset's pass ends (-1: no batches)."""
        ends, total = [], 0
        for n in self.batches_per_dataset:
            total += n
            ends.append(total - 1 if n else -1)
        return ends

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, batch: int) -> None:
        self.start = int(batch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Every batch (item keys of :class:`ArkImages`) of ``epoch`` on this rank, in order."""
        batches: list[list[int]] = []
        for d, (n, share) in enumerate(zip(self.lengths, self.shares)):
            if share == 0:
                continue
            rng = np.random.default_rng(derive_seed(self.seed, "ark", epoch, d))
            order = rng.permutation(n)[self.rank::self.world_size][:share] + self.offsets[d]
            batches += self._split(order)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)[self.start:]

    def __len__(self) -> int:
        return self.num_batches - self.start


# --------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViewSettings:
    """The augmentation of the student view (the official albumentations defaults)."""

    mode: str = "ark"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    shift_scale_rotate_p: float = 0.5
    shift: float = 0.0625
    scale: float = 0.1
    rotate_degrees: float = 10.0
    photometric_p: float = 0.3
    brightness_contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        if self.mode not in VIEW_MODES:
            raise ConfigError(f"views must be one of {', '.join(VIEW_MODES)}, got {self.mode!r}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {list(self.crop_scale)}")


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_affine(n: int, settings: ViewSettings, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` float64 affine matrices (``affine_grid`` convention, output -> input coordinates in
    [-1, 1]): a random resized crop followed, with probability ``shift_scale_rotate_p``, by a
    shift / scale / rotation. Drawn on the CPU from ``generator`` only."""
    area = _uniform(n, *settings.crop_scale, generator)
    log_ratio = _uniform(n, math.log(settings.crop_ratio[0]), math.log(settings.crop_ratio[1]), generator)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the image side
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1.0 - width) * (2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0)
    cy = (1.0 - height) * (2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0)
    apply = torch.rand(n, generator=generator, dtype=torch.float64) < settings.shift_scale_rotate_p
    angle = torch.deg2rad(_uniform(n, -settings.rotate_degrees, settings.rotate_degrees, generator)) * apply
    zoom = torch.where(apply, 1.0 + _uniform(n, -settings.scale, settings.scale, generator), torch.ones(n, dtype=torch.float64))
    sx = _uniform(n, -settings.shift, settings.shift, generator) * 2.0 * apply
    sy = _uniform(n, -settings.shift, settings.shift, generator) * 2.0 * apply
    # crop: output u in [-1, 1] -> crop coordinate; then rotation/zoom/shift about the centre of the crop
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = width * cos
    theta[:, 0, 1] = -width * sin
    theta[:, 1, 0] = height * sin
    theta[:, 1, 1] = height * cos
    theta[:, 0, 2] = cx - width * sx
    theta[:, 1, 2] = cy - height * sy
    return theta


def photometric(images: torch.Tensor, settings: ViewSettings, generator: torch.Generator) -> torch.Tensor:
    """With probability ``photometric_p`` per image, a brightness-contrast or (equally likely) a gamma
    change; values stay in [0, 1]."""
    n = images.shape[0]
    apply = torch.rand(n, generator=generator) < settings.photometric_p
    use_gamma = torch.rand(n, generator=generator) < 0.5
    limit = settings.brightness_contrast
    alpha = 1.0 + (2 * torch.rand(n, generator=generator) - 1) * limit  # contrast
    beta = (2 * torch.rand(n, generator=generator) - 1) * limit  # brightness
    gamma = settings.gamma[0] + (settings.gamma[1] - settings.gamma[0]) * torch.rand(n, generator=generator)
    shape = (n,) + (1,) * (images.dim() - 1)
    dev = images.device
    bc = (images * alpha.to(dev).view(shape) + beta.to(dev).view(shape)).clamp(0.0, 1.0)
    ga = images.clamp(0.0, 1.0).pow(gamma.to(dev).view(shape))
    changed = torch.where(use_gamma.to(dev).view(shape), ga, bc)
    return torch.where(apply.to(dev).view(shape), changed, images)


def ark_views(images: torch.Tensor, settings: ViewSettings, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(student, teacher)`` views of ``images`` ``(B, C, H, W)`` in [0, 1] (see the module docstring).

    ``ark``: the same geometry for both (bilinear for the student, nearest for the teacher, as the
    official ``mask``), photometric change on the student only. ``ark_plus``: the teacher view is
    ``images`` itself (the resized original).
    """
    images = images.float()
    theta = random_affine(images.shape[0], settings, generator).to(images.device, torch.float32)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    student = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    student = photometric(student, settings, generator)
    if settings.mode == "ark_plus":
        teacher = images
    else:
        teacher = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return student, teacher


def multi_crops(images: torch.Tensor, crops: int) -> torch.Tensor:
    """``(crops, B, C, H, W)`` test views of ``(B, C, H, W)`` images: 1 = the image; 10 = TenCrop (the
    official test transform ``Resize(256) -> TenCrop(224)``: the image enlarged by 256/224, its four
    corners and centre at the original size, and their horizontal flips)."""
    if crops == 1:
        return images[None]
    if crops != 10:
        raise ConfigError(f"eval_crops must be 1 or 10, got {crops}")
    h, w = images.shape[-2:]
    big_h, big_w = round(h * 256 / 224), round(w * 256 / 224)
    big = F.interpolate(images.float(), size=(big_h, big_w), mode="bilinear", align_corners=False, antialias=True)
    corners = [(0, 0), (0, big_w - w), (big_h - h, 0), (big_h - h, big_w - w), ((big_h - h) // 2, (big_w - w) // 2)]
    five = [big[..., y:y + h, x:x + w] for y, x in corners]
    return torch.stack(five + [torch.flip(c, dims=(-1,)) for c in five])


def normalise(images: torch.Tensor, kind: str, channels: int) -> torch.Tensor:
    """Grey images ``(B, 1, H, W)`` in [0, 1] -> the network's input: repeated to ``channels`` and
    normalised (``none``; ``imagenet``: ImageNet mean / std per channel, their averages for one channel;
    ``chestx-ray``: mean 0.5056, std 0.252 as the official ``--normalization chestx-ray``)."""
    if channels != images.shape[1]:
        images = images.expand(-1, channels, *images.shape[2:])
    if kind == "none":
        return images
    if kind == "imagenet":
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        if channels != 3:
            mean, std = (sum(mean) / 3,) * channels, (sum(std) / 3,) * channels
    elif kind == "chestx-ray":
        mean, std = (0.5056,) * channels, (0.252,) * channels
    else:
        raise ConfigError(f"normalization must be none, imagenet or chestx-ray, got {kind!r}")
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s
