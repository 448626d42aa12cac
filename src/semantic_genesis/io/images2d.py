"""2D images (radiographs): the :class:`Image2D` type, PNG/JPEG (Pillow) and DICOM (pydicom) IO.

* Arrays are float32 ``(H, W)`` (rows, columns), in the file's values: 0..255 / 0..65535 for PNG and
  JPEG, and for DICOM the stored values after the modality LUT (RescaleSlope / RescaleIntercept) and,
  where the file has one, the VOI LUT or window (``apply_voi=True``), so they look as a viewer shows
  them. ``MONOCHROME1`` images (bright = low value) are inverted so that bright is always high.
* ``spacing`` is ``(row, col)`` mm: DICOM ``PixelSpacing`` (else ``ImagerPixelSpacing``), PNG ``pHYs``
  (dpi); ``metadata["spacing_known"]`` is ``False`` when the file has none and (1, 1) is assumed.
* Colour PNG/JPEG files are converted to luminance (Pillow's ``"L"`` mode, ITU-R 601-2).

Errors are :class:`~semantic_genesis.errors.ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from semantic_genesis.errors import DataError, ImageReadError

IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
_MM_PER_INCH = 25.4


@dataclass(eq=False)
class Image2D:
    """A 2D image with its pixel spacing.

    Attributes:
        array: float32 ``(H, W)`` values (see module docstring for their range).
        spacing: ``(row, col)`` pixel size in mm.
        metadata: free dict; readers set ``"path"``, ``"format"``, ``"dtype"`` (native), ``"modality"``
            (``"xray"`` for CR/DX/DR DICOM) and ``"spacing_known"``.
    """

    array: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 2:
            raise DataError(f"Image2D array must be 2D (H, W), got shape {array.shape}")
        self.array = np.ascontiguousarray(array, dtype=np.float32)
        spacing = tuple(float(s) for s in np.asarray(self.spacing, dtype=np.float64).ravel())
        if len(spacing) != 2 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise DataError(f"Image2D spacing must be two positive numbers (row, col) mm, got {self.spacing!r}")
        self.spacing = spacing  # type: ignore[assignment]
        self.metadata = dict(self.metadata)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def modality(self) -> str | None:
        value = self.metadata.get("modality")
        return str(value) if value else None


def image2d_suffix(path: str | Path) -> str:
    return Path(path).suffix.lower()


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` has the DICOM Part-10 preamble marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_image2d(path: str | Path, apply_voi: bool = True, check_finite: bool = True) -> Image2D:
    """Read a PNG (8/16-bit), JPEG or single-frame grayscale DICOM (CR/DX/DR...) image.

    Args:
        path: the image file.
        apply_voi: for DICOM, apply the VOI LUT / window when the file has one.
        check_finite: raise on NaN/inf values (only possible with float DICOM rescales).

    Returns:
        :class:`Image2D` with float32 ``(H, W)`` values.

    Raises:
        ImageReadError: missing file, unsupported suffix, unreadable/corrupt file, not a 2D grayscale
            image, non-finite values.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder; expected a 2D image file (.png, .jpg, .dcm)")
    suffix = image2d_suffix(path)
    if suffix in (".dcm", ".dicom") or (suffix == "" and is_dicom_file(path)):
        image = _read_dicom2d(path, apply_voi)
    elif suffix in (".png", ".jpg", ".jpeg"):
        image = _read_pillow(path)
    else:
        raise ImageReadError(
            path, f"unsupported 2D image format {suffix or '(no suffix)'!r}; expected one of {', '.join(IMAGE2D_SUFFIXES)}"
        )
    if check_finite and not np.all(np.isfinite(image.array)):
        bad = int(image.array.size - np.count_nonzero(np.isfinite(image.array)))
        raise ImageReadError(path, f"{bad} pixel(s) are NaN or infinite; expected finite values")
    return image


def _read_pillow(path: Path) -> Image2D:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            dpi = img.info.get("dpi")
            if mode in ("I;16", "I;16B", "I;16L", "I", "F", "L", "1"):
                data = np.array(img)
            else:  # RGB(A), palette, LA...: luminance
                data = np.array(img.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from exc
    if data.ndim != 2:
        raise ImageReadError(path, f"expected a 2D grayscale image, got array shape {data.shape} (mode {mode})")
    native = str(data.dtype) if data.dtype != np.bool_ else "bool"
    metadata: dict[str, Any] = {
        "path": str(path),
        "format": "png" if path.suffix.lower() == ".png" else "jpeg",
        "dtype": native,
        "mode": mode,
        "spacing_known": False,
    }
    spacing = (1.0, 1.0)
    if dpi and all(float(d) > 0 for d in dpi):
        spacing = (_MM_PER_INCH / float(dpi[1]), _MM_PER_INCH / float(dpi[0]))  # dpi is (x, y)
        metadata["spacing_known"] = True
    return Image2D(data.astype(np.float32), spacing, metadata)


def _read_dicom2d(path: Path, apply_voi: bool) -> Image2D:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises InvalidDicomError, AttributeError, ValueError...
        raise ImageReadError(path, f"unreadable or corrupt DICOM file ({type(exc).__name__}: {exc})") from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if stored.ndim != 2 or int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise ImageReadError(
            path,
            f"expected a single-frame grayscale 2D image, got pixel array {tuple(stored.shape)} ({photometric})",
        )
    values = apply_modality_lut(stored, ds)
    lo, hi = _output_range(ds)
    voi_applied = False
    if apply_voi and ("VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)):
        values = apply_voi_lut(values, ds)
        voi_applied = True
        if "VOILUTSequence" in ds:
            lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            lo, hi = 0.0, float(2**lut_bits - 1)
    if photometric == "MONOCHROME1":
        values = (lo + hi) - np.asarray(values, dtype=np.float64)  # bright = high, as MONOCHROME2
    spacing = (1.0, 1.0)
    spacing_known = False
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds and len(ds.get(keyword) or []) == 2:
            spacing = (float(ds.get(keyword)[0]), float(ds.get(keyword)[1]))
            spacing_known = True
            break
    from semantic_genesis.io.volumes import normalise_modality

    metadata: dict[str, Any] = {
        "path": str(path),
        "format": "dicom",
        "dtype": str(stored.dtype),
        "photometric": photometric,
        "voi_applied": voi_applied,
        "value_range": (float(lo), float(hi)),
        "spacing_known": spacing_known,
    }
    if getattr(ds, "Modality", ""):
        metadata["modality"] = normalise_modality(str(ds.Modality))
    for keyword in ("PatientID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "ViewPosition"):
        if getattr(ds, keyword, ""):
            metadata[keyword] = str(getattr(ds, keyword))
    return Image2D(np.asarray(values, dtype=np.float32), spacing, metadata)


def _output_range(ds: Any) -> tuple[float, float]:
    """Value range after the modality LUT, from BitsStored / PixelRepresentation / rescale (PS3.3 C.11)."""
    bits = int(getattr(ds, "BitsStored", getattr(ds, "BitsAllocated", 16)))
    if int(getattr(ds, "PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "ModalityLUTSequence" in ds:
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def _to_stored(image: Image2D, bits: int, value_range: tuple[float, float] | None, path: Path) -> np.ndarray:
    """Map float values to unsigned integers of ``bits`` bits (see :func:`write_image2d`)."""
    if bits not in (8, 16):
        raise DataError(f"{path}: bits must be 8 or 16, got {bits}")
    top = float(2**bits - 1)
    arr = image.array.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: image has NaN/inf values; cannot write")
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise DataError(f"{path}: value_range must be (low, high) with high > low, got {value_range}")
        scaled = np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * top
    elif arr.min() >= 0.0 and arr.max() <= 1.0:
        scaled = arr * top
    elif arr.min() >= 0.0 and arr.max() <= top and np.array_equal(arr, np.rint(arr)):
        scaled = arr
    else:
        raise DataError(
            f"{path}: values [{arr.min():g}, {arr.max():g}] are neither in [0, 1] nor integers in [0, {int(top)}]; "
            f"pass value_range=(low, high) to scale them to {bits} bits"
        )
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def write_image2d(
    image: Image2D,
    path: str | Path,
    bits: int = 8,
    value_range: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    window: tuple[float, float] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Path:
    """Write a grayscale image atomically as PNG, JPEG (8-bit, lossy) or DICOM (``.dcm``).

    Values become unsigned ``bits``-bit integers: ``value_range=(low, high)`` maps low -> 0 and
    high -> 2**bits - 1 (clipped); without it, an image in [0, 1] is scaled by 2**bits - 1 and an
    image of integers already in [0, 2**bits - 1] is stored as is (so such images round-trip exactly).

    Args:
        image: the image; ``spacing`` is written as DICOM ``PixelSpacing`` (and
            ``ImagerPixelSpacing``) or as PNG ``pHYs`` dpi.
        path: ``.png``, ``.jpg``/``.jpeg`` or ``.dcm``.
        bits: 8 or 16 (JPEG: 8 only).
        value_range: see above.
        photometric: DICOM only: ``"MONOCHROME2"`` (default) or ``"MONOCHROME1"``, which stores
            ``2**bits - 1 - value`` so that readers that honour it see the same image.
        modality: DICOM ``Modality`` (``"DX"``, ``"CR"``...).
        window: DICOM only: ``(WindowCenter, WindowWidth)`` to write a VOI window.
        attributes: DICOM only: extra data elements by keyword (e.g. ``SOPInstanceUID``,
            ``StudyInstanceUID``, ``PatientID``, ``ViewPosition``); they override the defaults.

    Returns:
        The written path.
    """
    path = Path(path).expanduser()
    suffix = image2d_suffix(path)
    stored = _to_stored(image, bits, value_range, path)
    if suffix == ".png":
        _write_png(stored, image.spacing, path)
    elif suffix in (".jpg", ".jpeg"):
        if bits != 8:
            raise DataError(f"{path}: JPEG supports 8-bit images only, got bits={bits}")
        _write_pillow(stored, image.spacing, path, "JPEG", quality=95)
    elif suffix in (".dcm", ".dicom"):
        _write_dicom2d(stored, bits, image, path, photometric, modality, window, attributes or {})
    else:
        raise DataError(f"{path}: cannot write 2D format {suffix!r}; expected .png, .jpg or .dcm")
    return path


def _write_png(stored: np.ndarray, spacing: tuple[float, float], path: Path) -> None:
    _write_pillow(stored, spacing, path, "PNG")


def _write_pillow(stored: np.ndarray, spacing: tuple[float, float], path: Path, fmt: str, **kwargs: Any) -> None:
    from PIL import Image

    from semantic_genesis.utils.atomic import atomic_open

    img = Image.fromarray(stored)  # uint8 -> "L", uint16 -> "I;16" (Pillow >= 10)
    dpi = (_MM_PER_INCH / spacing[1], _MM_PER_INCH / spacing[0])  # (x = columns, y = rows)
    with atomic_open(path, "wb") as handle:
        img.save(handle, format=fmt, dpi=dpi, **kwargs)


def _write_dicom2d(
    stored: np.ndarray,
    bits: int,
    image: Image2D,
    path: Path,
    photometric: str,
    modality: str,
    window: tuple[float, float] | None,
    attributes: Mapping[str, Any],
) -> None:
    from semantic_genesis.io import dicom as dcm

    photometric = photometric.upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path}: photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    top = 2**bits - 1
    if photometric == "MONOCHROME1":
        stored = (top - stored.astype(np.int64)).astype(stored.dtype)
    instance_uid = str(attributes.get("SOPInstanceUID") or dcm.make_uid("image", path.name, stored.shape, int(stored.sum())))
    sop_class = dcm.sop_class_for(modality)
    ds = dcm.new_dataset(sop_class, instance_uid)
    ds.Modality = modality.upper()
    ds.PatientID = "anonymous"
    ds.PatientName = "anonymous"
    ds.StudyInstanceUID = dcm.make_uid("study", instance_uid)
    ds.SeriesInstanceUID = dcm.make_uid("series", instance_uid)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelSpacing = dcm.ds_float_list(image.spacing)
    ds.ImagerPixelSpacing = dcm.ds_float_list(image.spacing)
    ds.PhotometricInterpretation = photometric
    if window is not None:
        ds.WindowCenter = dcm.ds_float_list((window[0],))[0]
        ds.WindowWidth = dcm.ds_float_list((window[1],))[0]
    dcm.set_pixels(ds, stored, 0, bits=bits)
    for keyword, value in attributes.items():
        try:
            setattr(ds, keyword, value)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}: invalid DICOM attribute {keyword}={value!r}: {exc}") from exc
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dcm.save_dataset(ds, path)
