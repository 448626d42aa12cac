"""Scaling of 2D images as read from disk to float32 [0, 1]."""

from __future__ import annotations

import numpy as np

from semantic_genesis.errors import DataError


def image2d_unit(image) -> np.ndarray:
    """float32 ``(H, W)`` in [0, 1] from an :class:`~semantic_genesis.io.images2d.Image2D`.

    PNG/JPEG values are divided by the maximum of their stored integer type (255 or 65535); DICOM
    values are mapped from the output range of the file's modality/VOI LUT (``metadata["value_range"]``)
    so that the darkest possible value is 0 and the brightest 1.
    """
    array = np.asarray(image.array, dtype=np.float32)
    meta = getattr(image, "metadata", {}) or {}
    if "value_range" in meta:
        lo, hi = (float(v) for v in meta["value_range"])
    else:
        dtype = str(meta.get("dtype", ""))
        if dtype in ("uint8", "bool"):
            lo, hi = 0.0, 255.0 if dtype == "uint8" else 1.0
        elif dtype in ("uint16", "int32"):
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = float(array.min()), float(array.max())
    if not hi > lo:
        raise DataError(f"{meta.get('path', 'image')}: cannot scale to [0, 1], value range [{lo}, {hi}] is empty")
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
