"""Small DICOM helpers shared by the volume and 2D-image readers and writers (pydicom).

Only what they need: recognising a Part-10 file, a dataset with valid file meta, deterministic UIDs,
and the choice of a stored integer type for values that go through
``value = stored * slope + intercept``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semantic_genesis.errors import DataError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"

_SOP_CLASS = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE, "CR": CR_IMAGE_STORAGE, "DX": DX_IMAGE_STORAGE}


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` has the DICOM Part-10 preamble marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def sop_class_for(modality: str) -> str:
    """The SOP class UID for a DICOM ``Modality`` value (secondary capture for unknown ones)."""
    return _SOP_CLASS.get(modality.upper(), SECONDARY_CAPTURE)


def make_uid(*parts: Any) -> str:
    """A valid DICOM UID derived deterministically from ``parts`` (same parts, same UID)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Any:
    """An empty ``pydicom.FileDataset``-ready dataset with file meta (explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    now = _dt.datetime(2000, 1, 1)  # fixed date: written files are deterministic
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    return ds


def stored_values(values: np.ndarray, slope: float, intercept: float, what: str) -> tuple[np.ndarray, int]:
    """Convert real values to stored integers: ``stored = round((value - intercept) / slope)``.

    Returns:
        ``(stored, pixel_representation)``: uint16 with representation 0 when every stored value is
        in [0, 65535], else int16 with representation 1.

    Raises:
        DataError: the values do not fit 16 bits with this slope and intercept.
    """
    if slope == 0:
        raise DataError(f"{what}: rescale slope must be non-zero")
    stored = np.rint((np.asarray(values, dtype=np.float64) - intercept) / slope)
    lo, hi = float(stored.min()), float(stored.max())
    if lo >= 0 and hi <= 65535:
        return stored.astype(np.uint16), 0
    if lo >= -32768 and hi <= 32767:
        return stored.astype(np.int16), 1
    raise DataError(
        f"{what}: values [{lo * slope + intercept:g}, {hi * slope + intercept:g}] do not fit 16-bit storage "
        f"with slope {slope:g} and intercept {intercept:g}; choose another rescale_intercept/slope"
    )


def set_pixels(ds: Any, stored: np.ndarray, pixel_representation: int, bits: int = 16) -> None:
    """Attach a (rows, cols) integer array as uncompressed grayscale pixel data."""
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = pixel_representation
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def ds_float_list(values: Sequence[float]) -> list[str]:
    """Format floats for DS (decimal string) elements: at most 16 characters each."""
    out = []
    for v in values:
        text = f"{float(v):.10g}"
        if len(text) > 16:
            text = f"{float(v):.8e}"
        out.append(text)
    return out


def save_dataset(ds: Any, path: Path) -> None:
    """Save ``ds`` atomically as a DICOM Part-10 file."""
    from semantic_genesis.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
