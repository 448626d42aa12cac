"""2D images (radiographs): the :class:`Image2D` type, PNG/JPEG (Pillow) and DICOM (pydicom) IO.

* Arrays are float32 ``(H, W)`` (rows, columns), in the file's values: 0..255 / 0..65535 for PNG and
  JPEG. For DICOM they are the stored values after the modality LUT (RescaleSlope / RescaleIntercept:
  Hounsfield units for CT), and, for projection radiography only (CR, DX, MG, RF, XA, IO, PX), after the
  VOI LUT or window the file carries, which is how those images are meant to be presented. A window in
  a CT or MR slice is a display hint and is not applied: values stay in HU, as pydicom's
  ``apply_modality_lut`` and SimpleITK give them. ``metadata["values"]`` says which (``"modality"`` or
  ``"voi"``). ``MONOCHROME1`` images (bright = low value) are inverted so that bright is always high.
* ``spacing`` is ``(row, col)`` mm: DICOM ``PixelSpacing``, else ``ImagerPixelSpacing`` (when
  PixelSpacing is missing, zero or malformed, as on some CR radiographs), PNG ``pHYs`` (dpi);
  ``metadata["spacing_known"]`` is ``False`` when the file has no usable spacing and (1, 1) is assumed
  (a DICOM whose spacing tags are all invalid also gets a warning); ``metadata["spacing_source"]``
  names the tag used. A readable image is never refused for its spacing.
* Colour PNG/JPEG files are converted to luminance (Pillow's ``"L"`` mode, ITU-R 601-2).

Errors are :class:`~semantic_genesis.errors.ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from semantic_genesis.errors import DataError, ImageReadError
from semantic_genesis.io.dicom import is_dicom_file
from semantic_genesis.io.paths import require_nonempty_file, require_path

IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
#: DICOM modalities of projection radiography, whose VOI LUT / window is the intended presentation.
PROJECTION_MODALITIES = ("CR", "DX", "DR", "MG", "RF", "XA", "IO", "PX", "RG")
_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr", ".npy")
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
        if array.size == 0:
            raise DataError(f"Image2D array is empty, shape {array.shape}")
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


def read_image2d(path: str | Path, apply_voi: bool | None = None, check_finite: bool = True) -> Image2D:
    """Read a PNG (8/16-bit), JPEG or single-frame grayscale DICOM (CR/DX/DR...) image.

    Args:
        path: the image file.
        apply_voi: for DICOM: ``None`` (default) applies the VOI LUT / window only to projection
            radiographs (:data:`PROJECTION_MODALITIES`) and keeps modality values (HU) otherwise;
            ``True`` applies it whenever the file has one; ``False`` never.
        check_finite: raise on NaN/inf values (only possible with float DICOM rescales).

    Returns:
        :class:`Image2D` with float32 ``(H, W)`` values.

    Raises:
        ImageReadError: missing file (broken symlink and symlink loop said so), empty file, a folder
            or a volume format, unsupported suffix, unreadable/corrupt file, not a single-frame 2D
            grayscale image, non-finite values.
    """
    path = require_path(Path(path).expanduser())
    if path.is_dir():
        raise ImageReadError(path, "is a folder; expected a 2D image file (.png, .jpg, .dcm)")
    require_nonempty_file(path, "a 2D image")
    suffix = image2d_suffix(path)
    if path.name.lower().endswith(_VOLUME_SUFFIXES):
        raise ImageReadError(path, "is a 3D volume format; expected a 2D image file (.png, .jpg, .dcm)")
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


def _read_dicom2d(path: Path, apply_voi: bool | None) -> Image2D:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises InvalidDicomError, AttributeError, ValueError...
        raise ImageReadError(path, f"unreadable or corrupt DICOM file ({type(exc).__name__}: {exc})") from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(path, "DICOM file has no pixel data (a report, structured set or DICOMDIR?)")
    if frames > 1:
        raise ImageReadError(
            path, f"multi-frame DICOM ({frames} frames); expected a single 2D image (read it as a volume)"
        )
    if samples != 1:
        raise ImageReadError(
            path, f"colour DICOM ({samples} samples per pixel, {photometric}); expected a grayscale 2D image"
        )
    try:
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - truncated pixel data, missing decoder...
        raise ImageReadError(path, f"unreadable DICOM pixel data ({type(exc).__name__}: {exc})") from exc
    if stored.ndim != 2:
        raise ImageReadError(path, f"expected a single-frame grayscale 2D image, got pixel array {tuple(stored.shape)}")
    dicom_modality = str(getattr(ds, "Modality", "") or "").strip().upper()
    values = apply_modality_lut(stored, ds)
    lo, hi = _output_range(ds)
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    if apply_voi is None:
        apply_voi = dicom_modality in PROJECTION_MODALITIES
    voi_applied = False
    if apply_voi and has_voi:
        values = apply_voi_lut(values, ds)
        voi_applied = True
        if "VOILUTSequence" in ds:
            lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            lo, hi = 0.0, float(2**lut_bits - 1)
    if photometric == "MONOCHROME1":
        values = (lo + hi) - np.asarray(values, dtype=np.float64)  # bright = high, as MONOCHROME2
    spacing, source, problems = _dicom_spacing(ds)
    if source is None and problems:
        warnings.warn(
            f"{path}: {'; '.join(problems)}; pixel spacing unknown, (1, 1) mm assumed", stacklevel=3
        )
    from semantic_genesis.io.volumes import normalise_modality

    metadata: dict[str, Any] = {
        "path": str(path),
        "format": "dicom",
        "dtype": str(stored.dtype),
        "photometric": photometric,
        "values": "voi" if voi_applied else "modality",
        "voi_applied": voi_applied,
        "value_range": (float(lo), float(hi)),
        "spacing_known": source is not None,
        "spacing_source": source,
    }
    if dicom_modality == "CT" and not voi_applied:
        metadata["units"] = "HU"
    if getattr(ds, "Modality", ""):
        metadata["modality"] = normalise_modality(str(ds.Modality))
    for keyword in ("PatientID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "ViewPosition"):
        if getattr(ds, keyword, ""):
            metadata[keyword] = str(getattr(ds, keyword))
    return Image2D(np.asarray(values, dtype=np.float32), spacing, metadata)


def _dicom_spacing(ds: Any) -> tuple[tuple[float, float], str | None, list[str]]:
    """``(spacing, tag used or None, problems)``: PixelSpacing, else ImagerPixelSpacing, else (1, 1).

    A tag that is present but zero, negative, non-numeric or not two values is skipped and described in
    ``problems`` (a CR radiograph with ``PixelSpacing = 0.000\\0.000`` falls back to
    ImagerPixelSpacing).
    """
    problems = []
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword not in ds:
            continue
        try:
            raw = ds.get(keyword)
        except Exception:  # noqa: BLE001 - pydicom may refuse a malformed DS value on access
            problems.append(f"{keyword} is malformed")
            continue
        values = [] if raw in (None, "") else [raw] if isinstance(raw, (str, bytes, float, int)) else list(raw)
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) == 2 and all(np.isfinite(v) and v > 0 for v in numbers):
            return (numbers[0], numbers[1]), keyword, problems
        text = "\\".join(str(v) for v in values) if values else "empty"
        problems.append(f"{keyword} {text} is not two positive numbers")
    return (1.0, 1.0), None, problems


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
