"""Reader for the SIIM-ACR Pneumothorax Segmentation (Kaggle 2019) layout.

Expected layout (as downloaded from the competition; the phantom export writes the same)::

    ROOT/dicom-images-train/<study uid>/<series uid>/<SOP instance uid>.dcm
    ROOT/train-rle.csv        header "ImageId, EncodedPixels"

``ImageId`` is the SOP instance UID, i.e. the DICOM file's stem. ``EncodedPixels`` is the competition's
relative, column-major run-length encoding (:mod:`semantic_genesis.io.datasets.rle`), ``-1`` for an
image without pneumothorax; an image with several pneumothoraces has several rows, whose masks are
united. A sample's mask is bool ``(H, W)`` on the image grid. Used by the PXS (pneumothorax
segmentation) target task of Semantic Genesis (Haghighi et al., 2020).

Strictness: a CSV row whose image is not on disk is an error naming the row (``strict=True``, the
default); ``strict=False`` skips such rows with a warning (the released CSV lists a few images that
are not in the DICOM archive).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from semantic_genesis.errors import DataError, DatasetLayoutError, describe_path
from semantic_genesis.io.datasets._pixels import image2d_unit
from semantic_genesis.io.datasets._tables import CsvTable, require_dir
from semantic_genesis.io.datasets.rle import EMPTY_RLE, rle_decode

RLE_COLUMNS = ("ImageId", "EncodedPixels")


@dataclass
class SiimAcrSample:
    """One radiograph with its pneumothorax mask.

    Attributes:
        image_id: the SOP instance UID.
        image: float32 ``(H, W)`` in [0, 1]: the DICOM values after its modality/VOI LUT, scaled from
            the LUT's output range (MONOCHROME1 inverted, so bright is always high).
        spacing: ``(row, col)`` pixel spacing in mm from the DICOM header.
        mask: bool ``(H, W)``, True inside the pneumothorax.
        path: the DICOM file.
    """

    image_id: str
    image: np.ndarray
    spacing: tuple[float, float] | None
    mask: np.ndarray
    path: Path

    @property
    def has_pneumothorax(self) -> bool:
        """Whether the mask is non-empty (the classification label)."""
        return bool(self.mask.any())


class SiimAcrDataset:
    """SIIM-ACR on disk: DICOM index plus RLE masks.

    Args:
        root: dataset folder.
        images_dir: the DICOM folder below ``root`` (``dicom-images-train``; searched recursively).
        rle_csv: the mask table below ``root`` (``train-rle.csv``).
        strict: raise on CSV rows whose image is not on disk (default); ``False`` skips them.

    Raises:
        DatasetLayoutError: missing DICOM folder, CSV or column.
        DataError: a CSV row for a missing image (strict); (on load) an RLE that overruns the image.
    """

    def __init__(
        self,
        root: str | Path,
        images_dir: str = "dicom-images-train",
        rle_csv: str = "train-rle.csv",
        strict: bool = True,
    ):
        self.root = require_dir(Path(root), "SIIM-ACR root")
        image_root = require_dir(self.root / images_dir, "SIIM-ACR DICOM")
        self._paths = {p.stem: p for p in sorted(image_root.rglob("*.dcm"))}
        if not self._paths:
            raise DatasetLayoutError(f"{describe_path(image_root)}: no '.dcm' files found")
        table = CsvTable(self.root / rle_csv, RLE_COLUMNS, what=f"SIIM-ACR {rle_csv}")
        self._rles: dict[str, list[tuple[str, str]]] = {}
        skipped = 0
        for _line, row in table.rows():
            image_id = row["ImageId"]
            if image_id not in self._paths:
                if strict:
                    raise DataError(
                        f"{row.where()}: ImageId {image_id!r} has no DICOM file under "
                        f"{describe_path(image_root)} (use strict=False to skip such rows)"
                    )
                skipped += 1
                continue
            self._rles.setdefault(image_id, []).append((row["EncodedPixels"], row.where()))
        if skipped:
            warnings.warn(f"{describe_path(table.path)}: skipped {skipped} rows whose image is not on disk",
                          stacklevel=2)
        self._ids = list(self._rles)

    def __len__(self) -> int:
        return len(self._ids)

    def image_ids(self) -> list[str]:
        """Image ids in CSV order (first appearance)."""
        return list(self._ids)

    def has_pneumothorax(self) -> np.ndarray:
        """bool ``(N,)``: whether each image has a non-empty mask row (no pixels read)."""
        return np.array(
            [any(rle.strip() not in ("", EMPTY_RLE) for rle, _ in self._rles[i]) for i in self._ids], dtype=bool
        )

    def path(self, image_id: str) -> Path:
        """The DICOM file of an image."""
        try:
            return self._paths[image_id]
        except KeyError:
            raise DataError(f"{describe_path(self.root)}: no SIIM-ACR image {image_id!r}") from None

    def load(self, image_id: str) -> SiimAcrSample:
        """Read one DICOM and decode (and unite) its mask rows."""
        from semantic_genesis.io.images2d import read_image2d

        path = self.path(image_id)
        image2d = read_image2d(path)
        array = image2d_unit(image2d)
        if array.ndim != 2:
            raise DataError(f"{describe_path(path)}: expected a 2D grey image, got shape {array.shape}")
        height, width = array.shape
        mask = np.zeros((height, width), dtype=bool)
        for rle, where in self._rles.get(image_id, []):
            mask |= rle_decode(rle, height, width, where=where)
        spacing = tuple(float(s) for s in image2d.spacing) if image2d.metadata.get("spacing_known") else None
        return SiimAcrSample(image_id, array, spacing, mask, path)

    def __getitem__(self, index: int) -> SiimAcrSample:
        return self.load(self._ids[index])

    def __iter__(self) -> Iterator[SiimAcrSample]:
        for image_id in self._ids:
            yield self.load(image_id)
