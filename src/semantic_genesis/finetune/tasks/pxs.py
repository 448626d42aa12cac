"""PXS: pneumothorax segmentation on SIIM-ACR radiographs (IoU and Dice, pooled or per image).

Semantic Genesis target task "PXS" (Haghighi et al., MICCAI 2020, Table 1: "pneumothorax, X-ray,
SIIM-ACR, segmentation, IoU"), with the 2D networks. Every radiograph of the SIIM-ACR Pneumothorax
Segmentation layout (:mod:`semantic_genesis.io.datasets.siim_acr`: ``dicom-images-train/**.dcm`` and
``train-rle.csv``) is one sample, **including the images without pneumothorax** (mask ``-1``): most
radiographs of the release are negative, and a network that paints every lung must pay for it.

Images: the DICOM values scaled to [0, 1] by the reader, resized to ``finetune.image_size`` (224 x 224
by default) with anti-aliased bilinear interpolation. Masks: the image's RLE rows decoded on the
image grid and united, resized with the same anti-aliased bilinear interpolation and **thresholded
at 0.5** (a pixel of the small mask is foreground when at least half of its footprint is), which
keeps a thin rim pneumothorax better than nearest-neighbour subsampling of a 1024 x 1024 mask.
Both are read lazily, one DICOM read per sample.

Split (``finetune.split``): SIIM-ACR's public stage-1 training set has no official test list, so
``auto`` / ``random`` draw a random split by patient (60 / 20 / 20 % by default, or
``[train, val, test]`` shares), stratified by whether an image has a pneumothorax. The patient of an
image is its SOP instance UID (the reader's image id), as the 2D patch sets of SIIM-ACR name it, so
that the pretraining-overlap check compares like with like; the release has one image per
anonymised patient.

Scoring: ``iou`` and ``dice`` as ``finetune.iou`` defines them, by default ``pooled`` (every test
pixel counted together, the official IoU of the 3D target tasks); and always ``iou/per_image`` and
``dice/per_image``, the mean of each image's IoU / Dice, where an empty prediction on an empty mask
scores 1 (the Kaggle competition's per-image Dice) while it adds nothing to the pooled counts.
``finetune.metric=iou/per_image`` selects epochs and compares trials by it. Loss: Dice + BCE
(``finetune.loss``, as NCS).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from semantic_genesis.errors import ConfigError, DataError, describe_path
from semantic_genesis.finetune.tasks.base import Task

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData
    from semantic_genesis.io.datasets.siim_acr import SiimAcrDataset

#: Mask resizing: anti-aliased bilinear, then foreground where the result is >= this.
MASK_THRESHOLD = 0.5


def resize_pair(image: np.ndarray, mask: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a radiograph and its mask to ``size``.

    Args:
        image: float32 ``(H, W)`` in [0, 1].
        mask: bool ``(H, W)``.
        size: ``(h, w)``.

    Returns:
        ``(image float32 (1, h, w) in [0, 1], mask uint8 (1, h, w) in {0, 1})``: anti-aliased bilinear
        for both, the mask thresholded at :data:`MASK_THRESHOLD`.
    """
    import torch

    size = (int(size[0]), int(size[1]))
    both = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32), np.asarray(mask, dtype=np.float32)]))
    if tuple(both.shape[1:]) != size:
        both = torch.nn.functional.interpolate(both[None], size=size, mode="bilinear", align_corners=False,
                                               antialias=True)[0]
    out_image = both[0].clamp(0.0, 1.0)[None].numpy()
    out_mask = (both[1] >= MASK_THRESHOLD).to(torch.uint8)[None].numpy()
    return np.ascontiguousarray(out_image), np.ascontiguousarray(out_mask)


class SiimPairs:
    """The SIIM-ACR images and masks of a task, read lazily and resized together.

    ``pairs.images[i]`` is float32 ``(1, h, w)`` and ``pairs.masks[i]`` uint8 ``(1, h, w)``; reading
    one after the other reads the DICOM once (a one-sample cache). ``pairs.masks.positive(i)`` says
    whether image ``i`` has a pneumothorax from the CSV alone (no pixels read).

    Args:
        dataset: the SIIM-ACR reader.
        image_ids: the images, in sample order.
        size: ``(h, w)`` of every sample.
    """

    def __init__(self, dataset: "SiimAcrDataset", image_ids: Sequence[str], size: Sequence[int]):
        self.dataset = dataset
        self.image_ids = list(image_ids)
        self.size = (int(size[0]), int(size[1]))
        self.paths = [dataset.path(i) for i in self.image_ids]
        self._cached: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self.images = _View(self, 0)
        self.masks = _View(self, 1)
        everyone = dict(zip(dataset.image_ids(), dataset.has_pneumothorax().tolist()))
        self.has_pneumothorax = np.array([everyone[i] for i in self.image_ids], dtype=bool)

    def __len__(self) -> int:
        return len(self.image_ids)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (1, h, w) float32, mask (1, h, w) uint8)`` of sample ``index``."""
        index = int(index)
        if self._cached is None or self._cached[0] != index:
            sample = self.dataset.load(self.image_ids[index])
            self._cached = (index, resize_pair(sample.image, sample.mask, self.size))
        return self._cached[1]

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: start without a cached sample
        return {**self.__dict__, "_cached": None}


class _View:
    """One half (images or masks) of :class:`SiimPairs`, a sequence of arrays."""

    def __init__(self, pairs: SiimPairs, part: int):
        self.pairs, self.part = pairs, part

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.pairs.pair(index)[self.part]

    def positive(self, index: int) -> bool:
        """Whether sample ``index`` has a non-empty mask (from the CSV)."""
        return bool(self.pairs.has_pneumothorax[int(index)])


class PXS(Task):
    name = "pxs"
    kind = "segmentation"
    metric = "iou"
    metrics = ("iou", "dice", "iou/per_image", "dice/per_image")
    description = "pneumothorax segmentation on SIIM-ACR radiographs (2D, IoU / Dice, empty masks included)"
    layout = ("the SIIM-ACR layout: dicom-images-train/<study>/<series>/<SOP instance UID>.dcm and "
              "train-rle.csv (ImageId, EncodedPixels; -1 for no pneumothorax)")
    spatial_dims = 2

    def load(self, root: str | Path, cfg: "Config") -> "TaskData":
        from semantic_genesis.finetune.data import TaskData
        from semantic_genesis.io.datasets.siim_acr import SiimAcrDataset

        root = self.check_root(root)
        ft = cfg.finetune
        size = self.image_size_2d(cfg)
        if ft.split == "official":
            raise ConfigError("finetune.split=official: SIIM-ACR's public training set has no official test list; "
                              "use finetune.split=random (a random split by patient) or [train, val, test] shares")
        strict = bool(ft.options.get("strict", True))
        dataset = SiimAcrDataset(root, strict=strict)
        ids = sorted(dataset.image_ids())
        if ft.max_patients > 0:
            ids = ids[: ft.max_patients]
        if not ids:
            raise DataError(f"{describe_path(root)}: train-rle.csv lists no image")
        pairs = SiimPairs(dataset, ids, size)
        return TaskData(
            task=self.name,
            kind="segmentation",
            patients=list(ids),  # one image per patient: the SOP instance UID, as the 2D patch sets name it
            images=pairs.images,
            targets=pairs.masks,
            source=f"SIIM-ACR {describe_path(root)}",
            info={"images": len(ids), "image_size": list(size), "pneumothorax": int(pairs.has_pneumothorax.sum()),
                  "split_rule": "random by patient (SIIM-ACR has no official test list)",
                  "mask_resize": f"anti-aliased bilinear, >= {MASK_THRESHOLD}"},
        )
