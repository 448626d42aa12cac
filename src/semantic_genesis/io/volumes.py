"""3D medical volumes: the :class:`Volume` type and readers/writers for the common formats.

Supported (by suffix; a folder is a DICOM series):

========================  ===========================  =======================================
format                    read                         write
========================  ===========================  =======================================
``.nii`` / ``.nii.gz``    nibabel (RAS -> LPS)         nibabel (qform and sform, scanner code)
``.mhd`` (+``.raw``),     SimpleITK                    SimpleITK (``.mhd`` + ``.raw``)
``.mha``, ``.nrrd``,
``.nhdr``
``.npy`` (+``.json``)     numpy + JSON sidecar         numpy + JSON sidecar
DICOM series folder       SimpleITK ImageSeriesReader  pydicom, one slice per file
                          (GDCM, sorted by position)   (:func:`write_dicom_series`)
========================  ===========================  =======================================

Conventions (see ``docs/internals.md``):

* ``Volume.array`` is float32 with spatial order **(X, Y, Z)** (Z = slice axis last). SimpleITK arrays
  are (Z, Y, X); they are transposed exactly once, here, at the IO boundary.
* Geometry is in the ITK / DICOM **LPS** physical frame, in mm. ``direction`` is a row-major 3x3 whose
  *columns* are the world directions of the X, Y and Z voxel axes, so (LUNA16 convention)
  ``world = origin + direction @ (spacing * ijk)``.
* NIfTI stores RAS world coordinates; the readers/writers flip the first two world axes.
* The native on-disk dtype is kept in ``metadata["dtype"]`` while the array is float32; writers take
  ``dtype=`` (e.g. ``"int16"`` for CT in HU, ``"uint8"`` for label maps).

Every failure to read is an :class:`~semantic_genesis.errors.ImageReadError` naming the file and
the problem: missing file, broken symlink or symlink loop, empty file, unsupported suffix or voxel
type (complex, RGB, unknown NIfTI codes), a MetaImage data file that is missing or shorter than its
header says (named, with both byte counts), corrupt/truncated data, not 3D or no slices, several DICOM
series, values beyond float32 (overflow) and non-finite voxels. A DICOM series read with missing or
unreadable slices is read, with a warning naming the gap or the file (ITK's own warning is silenced).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semantic_genesis.errors import DataError, ImageReadError
from semantic_genesis.io.paths import require_nonempty_file, require_path

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr", ".npy")
_2D_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_SITK_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nhdr")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_POSITIVE_LETTERS = "LPS"  # LPS frame: +x points to the patient's Left, +y Posterior, +z Superior
_NEGATIVE_LETTERS = "RAI"
_DESCRIP_PREFIX = "semantic-genesis modality="


def volume_suffix(path: str | Path) -> str:
    """The format suffix of ``path`` (``".nii.gz"`` counts as one), lower case; ``""`` if none."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


@dataclass(eq=False)
class Volume:
    """A 3D scan with its physical geometry.

    Attributes:
        array: float32 ``(X, Y, Z)`` voxel values (HU for CT as read; [0, 1] after ``to_unit``).
        spacing: voxel size in mm along X, Y, Z.
        origin: world position (mm, LPS) of voxel (0, 0, 0)'s centre.
        direction: row-major 3x3 direction cosines; column ``c`` is the world direction of axis ``c``.
        metadata: free dict; readers set ``"path"``, ``"format"``, ``"dtype"`` (native dtype) and
            ``"modality"`` (``"ct"``, ``"mri"``, ...) when the file says so.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise DataError(f"Volume array must be 3D (X, Y, Z), got shape {array.shape}")
        if array.size == 0:
            raise DataError(f"Volume array is empty: {empty_volume_problem(array.shape)}")
        self.array = np.ascontiguousarray(array, dtype=np.float32)
        self.spacing = _float_tuple(self.spacing, 3, "spacing")
        self.origin = _float_tuple(self.origin, 3, "origin")
        self.direction = _float_tuple(self.direction, 9, "direction")
        if any(s <= 0 for s in self.spacing):
            raise DataError(f"Volume spacing must be positive, got {self.spacing}")
        if abs(np.linalg.det(self.direction_matrix)) < 1e-6:
            raise DataError(f"Volume direction must be an invertible 3x3 matrix, got {self.direction}")
        self.metadata = dict(self.metadata)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` voxel counts."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def direction_matrix(self) -> np.ndarray:
        """``direction`` as a float64 3x3 array (columns = axis directions)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-world (LPS, mm) matrix: ``[direction @ diag(spacing) | origin]``."""
        out = np.eye(4)
        out[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        out[:3, 3] = self.origin
        return out

    @property
    def orientation_code(self) -> str:
        """Three letters naming where each voxel axis points, e.g. ``"LPS"`` for the identity direction.

        The letter of axis ``c`` is the dominant world component of column ``c`` of ``direction``:
        ``L``/``R`` (world x), ``P``/``A`` (world y), ``S``/``I`` (world z), the first letter of each
        pair when the component is positive. This matches SimpleITK's ``DICOMOrientImageFilter``.
        """
        return orientation_code(self.direction)

    @property
    def modality(self) -> str | None:
        """``metadata["modality"]`` if known (``"ct"``, ``"mri"``, ...), else ``None``."""
        value = self.metadata.get("modality")
        return str(value) if value else None

    def voxel_to_world(self, ijk: Sequence[float] | np.ndarray) -> np.ndarray:
        """Voxel indices (continuous) to world mm: ``origin + direction @ (spacing * ijk)``.

        Args:
            ijk: ``(3,)`` or ``(N, 3)`` voxel coordinates in (X, Y, Z) order.

        Returns:
            float64 array of the same shape, LPS world coordinates in mm.
        """
        ijk = np.asarray(ijk, dtype=np.float64)
        pts = np.atleast_2d(ijk)
        if pts.shape[-1] != 3:
            raise DataError(f"voxel_to_world expects (3,) or (N, 3) coordinates, got shape {ijk.shape}")
        world = pts * np.asarray(self.spacing) @ self.direction_matrix.T + np.asarray(self.origin)
        return world.reshape(ijk.shape)

    def world_to_voxel(self, xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """World mm (LPS) to continuous voxel indices; the exact inverse of :meth:`voxel_to_world`.

        Args:
            xyz: ``(3,)`` or ``(N, 3)`` world coordinates.

        Returns:
            float64 array of the same shape, (X, Y, Z) voxel coordinates (not rounded).
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        pts = np.atleast_2d(xyz)
        if pts.shape[-1] != 3:
            raise DataError(f"world_to_voxel expects (3,) or (N, 3) coordinates, got shape {xyz.shape}")
        rel = (pts - np.asarray(self.origin)).T
        ijk = np.linalg.solve(self.direction_matrix, rel).T / np.asarray(self.spacing)
        return ijk.reshape(xyz.shape)

    def with_array(self, array: np.ndarray, **metadata: Any) -> "Volume":
        """A copy with a new array of the same shape and geometry (metadata updated with ``metadata``)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise DataError(f"with_array: shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction, {**self.metadata, **metadata})


def orientation_code(direction: Sequence[float] | np.ndarray) -> str:
    """Orientation letters (e.g. ``"LPS"``, ``"RAS"``) of a row-major 3x3 direction; see :class:`Volume`."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    letters = []
    for col in range(3):
        axis = int(np.argmax(np.abs(d[:, col])))
        letters.append(_POSITIVE_LETTERS[axis] if d[axis, col] > 0 else _NEGATIVE_LETTERS[axis])
    return "".join(letters)


def _float_tuple(values: Any, n: int, what: str) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise DataError(f"Volume {what} must be {n} finite numbers, got {values!r}")
    return tuple(float(v) for v in arr)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
def read_volume(path: str | Path, series_id: str | None = None, check_finite: bool = True) -> Volume:
    """Read a 3D volume (NIfTI, MHD/MHA, NRRD, NPY + sidecar, or a DICOM series folder).

    Args:
        path: a file, or a folder holding one DICOM series.
        series_id: the DICOM SeriesInstanceUID to read when a folder holds several series.
        check_finite: raise on NaN/inf voxels (default). Turn off only for data known to use NaN as
            a fill value.

    Returns:
        A :class:`Volume` with float32 ``(X, Y, Z)`` values in the file's units (HU for CT, with the
        DICOM rescale slope/intercept or NIfTI scl_slope/scl_inter applied).

    Raises:
        ImageReadError: missing path (broken symlink and symlink loop said so), empty file,
            unsupported suffix or voxel type, a MetaImage data file missing or short, corrupt or
            truncated file, data that is not 3D or has no slices, an empty DICOM folder or one with
            several series (the message lists their ids), values that overflow float32, non-finite
            voxels.
    """
    path = require_path(Path(path).expanduser())
    if path.is_dir():
        volume = _read_dicom_series(path, series_id)
    else:
        suffix = volume_suffix(path)
        require_nonempty_file(path, f"a {suffix or 'volume'} file")
        if suffix in (".nii", ".nii.gz"):
            volume = _read_nifti(path)
        elif suffix in _SITK_SUFFIXES or suffix == ".dcm":
            volume = _read_sitk_file(path)
        elif suffix == ".npy":
            volume = _read_npy(path)
        elif suffix in _2D_IMAGE_SUFFIXES:
            raise ImageReadError(
                path, f"is a 2D image ({suffix}); expected a 3D volume ({', '.join(VOLUME_SUFFIXES)} or a DICOM series folder)"
            )
        else:
            raise ImageReadError(
                path,
                f"unsupported volume format {suffix or '(no suffix)'!r}; expected one of "
                f"{', '.join(VOLUME_SUFFIXES)} or a DICOM series folder",
            )
    if check_finite:
        bad = int(np.size(volume.array) - np.count_nonzero(np.isfinite(volume.array)))
        if bad:
            raise ImageReadError(path, f"{bad} voxel(s) are NaN or infinite; expected finite values")
    return volume


def empty_volume_problem(shape: Sequence[int]) -> str:
    """Words for a shape with a zero-length axis: ``(128, 128, 0)`` -> "... it has 0 slices"."""
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 3 and shape[2] == 0 and all(shape[:2]):
        what = "0 slices"
    else:
        what = "no voxels along " + ", ".join("XYZT"[i] if i < 4 else f"axis {i}" for i, s in enumerate(shape) if s == 0)
    return f"empty volume of shape {shape}: it has {what}"


def _squeeze_to_3d(path: Path, array: np.ndarray, axes: str, shape: Sequence[int] | None = None) -> np.ndarray:
    """Drop trailing singleton dimensions beyond the third; reject anything that is not 3D or is empty.

    ``shape`` is the shape the file's header declares, when the library reports a flattened empty
    array (nibabel gives ``(0,)`` for a ``(128, 128, 0)`` image).
    """
    declared = tuple(int(s) for s in (array.shape if shape is None else shape))
    if 0 in declared:
        raise ImageReadError(path, empty_volume_problem(declared))
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ImageReadError(
            path, f"expected a 3D volume, got a {array.ndim}D image of shape {tuple(array.shape)} ({axes})"
        )
    return array


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_voxel_type(path: Path, dtype: np.dtype, what: str = "") -> None:
    """Refuse voxel types that have no faithful float32 value: complex, RGB/structured, text, objects."""
    dtype = np.dtype(dtype)
    what = what or str(dtype)
    if dtype.kind == "c":
        raise ImageReadError(
            path, f"complex-valued voxels ({what}); expected real values (save the magnitude or the real part)"
        )
    if dtype.names is not None or dtype.kind == "V":
        fields = "".join(dtype.names or ())
        colour = "RGB colour" if fields.upper() in ("RGB", "RGBA") else "multi-component"
        raise ImageReadError(path, f"{colour} voxels ({what}); expected a grayscale (one value per voxel) volume")
    if dtype.kind not in "biuf":
        raise ImageReadError(path, f"unsupported voxel type {what}; expected integer or floating-point values")


def _to_float32(path: Path, data: np.ndarray) -> np.ndarray:
    """``data`` as C-ordered float32 (the one copy every reader makes); finite values beyond float32 are an error.

    The cast itself detects overflow (numpy raises under ``errstate(over="raise")``), so data that
    fits costs nothing extra; the slow count runs only to word the error.
    """
    try:
        with np.errstate(over="raise"):
            return np.array(data, dtype=np.float32, order="C")
    except FloatingPointError:
        pass
    with np.errstate(invalid="ignore"):
        over = np.abs(data) > _FLOAT32_MAX  # NaN compares False
    over &= np.isfinite(data)
    peak = float(np.abs(data[over]).max())
    raise ImageReadError(
        path,
        f"{int(np.count_nonzero(over))} voxel value(s) overflow float32 (largest magnitude {peak:.6g}, float32 "
        f"holds up to {_FLOAT32_MAX:.6g}); rescale the data before saving",
    )


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    if volume_suffix(path) == ".nii.gz":
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head[:2] != b"\x1f\x8b":
            plain = head in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c")  # sizeof_hdr = 348, either byte order
            raise ImageReadError(
                path,
                "named .nii.gz but not gzip-compressed"
                + ("; it is a plain NIfTI file: rename it to .nii" if plain else " (corrupt or not a NIfTI file)"),
            )
    try:
        with _quiet_nibabel():
            img = nib.load(str(path))
        raw_dtype = img.get_data_dtype()
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types (EOFError, zlib.error, ...)
        raise ImageReadError(path, _nifti_header_problem(exc)) from exc
    type_name = _nifti_type_name(img)
    _check_voxel_type(path, raw_dtype, type_name)
    shape = tuple(int(s) for s in img.shape)
    if 0 in shape:
        raise ImageReadError(path, empty_volume_problem(shape))
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"corrupt or truncated NIfTI file ({type(exc).__name__}: {exc})") from exc
    _check_voxel_type(path, data.dtype)  # scaling may change the type
    data = _to_float32(path, _squeeze_to_3d(path, np.asarray(data), "X, Y, Z, ...", shape))
    affine_lps = _LPS_TO_RAS @ np.asarray(img.affine, dtype=np.float64)[:3, :]
    linear = affine_lps[:, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise ImageReadError(path, f"degenerate NIfTI affine (zero voxel size): {img.affine.tolist()}")
    direction = linear / spacing[None, :]
    metadata: dict[str, Any] = {"path": str(path), "format": "nifti", "dtype": str(np.dtype(raw_dtype))}
    descrip = bytes(img.header.get("descrip", b"")).split(b"\x00")[0].decode("latin-1", "replace")
    if descrip.startswith(_DESCRIP_PREFIX):
        metadata["modality"] = descrip[len(_DESCRIP_PREFIX) :].strip()
    return Volume(data, tuple(spacing), tuple(affine_lps[:, 3]), tuple(direction.ravel()), metadata)


@contextlib.contextmanager
def _quiet_nibabel() -> Any:
    """Stop nibabel from logging its own copy of a header error we report (level restored after)."""
    import nibabel as nib

    logger = nib.imageglobals.logger
    before = logger.level
    logger.setLevel(100)
    try:
        yield
    finally:
        logger.setLevel(before)


def _nifti_header_problem(exc: Exception) -> str:
    """Our words for nibabel's header errors: unsupported data types are not "corrupt" files."""
    import re

    text = str(exc)
    match = re.search(r"data code (\d+) not (supported|recognized)", text)
    if match:
        import nibabel as nib

        code = int(match.group(1))
        known = code in nib.nifti1.data_type_codes.code
        label = f" ({nib.nifti1.data_type_codes.label[code]})" if known else ""
        return (
            f"unsupported NIfTI data type {code}{label}; expected an integer or floating-point type "
            "(uint8/int16/int32/float32/float64...)"
            if known
            else f"unknown NIfTI data type code {code} in the header (corrupt header?)"
        )
    return f"corrupt or truncated NIfTI file ({type(exc).__name__}: {text})"


def _nifti_type_name(img) -> str:
    """The header's data type name (``"complex64"``, ``"RGB"``...) for messages."""
    try:
        import nibabel as nib

        code = int(img.header["datatype"])
        return f"NIfTI data type {nib.nifti1.data_type_codes.label[code]}"
    except Exception:  # noqa: BLE001 - only used for the message
        return str(img.get_data_dtype())


def _sitk_geometry(image: Any, path: Path) -> tuple[tuple, tuple, tuple]:
    dim = image.GetDimension()
    spacing = tuple(image.GetSpacing())[:3]
    origin = tuple(image.GetOrigin())[:3]
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    return spacing, origin, tuple(direction.ravel())


def _sitk_modality(image: Any) -> str | None:
    keys = set(image.GetMetaDataKeys())
    if "modality" in keys and image.GetMetaData("modality").strip():
        return image.GetMetaData("modality").strip().lower()
    for key in ("Modality", "0008|0060"):
        if key in keys:
            value = image.GetMetaData(key).strip()
            value = value.replace("MET_MOD_", "")
            if value and value.upper() != "UNKNOWN":
                return normalise_modality(value)
    return None


def normalise_modality(value: str) -> str:
    """Map DICOM / MetaImage modality strings to ours: ``CT``->``ct``, ``MR``->``mri``, ``CR``/``DX``/``DR``->``xray``."""
    value = value.strip().upper()
    return {"CT": "ct", "MR": "mri", "MRI": "mri", "CR": "xray", "DX": "xray", "DR": "xray", "XRAY": "xray"}.get(
        value, value.lower()
    )


def _array_from_sitk(image: Any, path: Path) -> np.ndarray:
    import SimpleITK as sitk

    pixel = image.GetPixelIDTypeAsString()
    if "complex" in pixel:
        raise ImageReadError(path, f"complex-valued voxels ({pixel}); expected real values (save the magnitude)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            path,
            f"expected a scalar 3D volume, got {image.GetNumberOfComponentsPerPixel()} components per voxel "
            f"({pixel}{', RGB colour?' if image.GetNumberOfComponentsPerPixel() in (3, 4) else ''})",
        )
    size = tuple(int(s) for s in image.GetSize())
    if 0 in size:
        raise ImageReadError(path, empty_volume_problem(size))
    arr = sitk.GetArrayViewFromImage(image)  # (Z, Y, X) or (T, Z, Y, X)
    arr = np.moveaxis(arr, range(arr.ndim), range(arr.ndim)[::-1])  # -> (X, Y, Z[, T])
    return _to_float32(path, _squeeze_to_3d(path, arr, "X, Y, Z, ..."))


@contextlib.contextmanager
def quiet_itk() -> Any:
    """Silence ITK's own warning text while we read (we warn in our own words where it matters)."""
    import SimpleITK as sitk

    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _read_sitk_file(path: Path) -> Volume:
    import SimpleITK as sitk

    from semantic_genesis.io.metaimage import check_metaimage

    if volume_suffix(path) in (".mhd", ".mha"):
        dims = check_metaimage(path)  # names a missing or short data file (ITK would name the .mhd)
        if dims and 0 in dims:
            raise ImageReadError(path, empty_volume_problem(dims))
    try:
        with quiet_itk():
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(path, f"corrupt or truncated file: {_sitk_reason(exc)}") from exc
    native = str(sitk.GetArrayViewFromImage(image).dtype)
    array = _array_from_sitk(image, path)
    spacing, origin, direction = _sitk_geometry(image, path)
    fmt = "dicom" if volume_suffix(path) == ".dcm" else volume_suffix(path).lstrip(".")
    metadata: dict[str, Any] = {"path": str(path), "format": fmt, "dtype": native}
    modality = _sitk_modality(image)
    if modality:
        metadata["modality"] = modality
    return Volume(array, spacing, origin, direction, metadata)


def _sitk_reason(exc: Exception) -> str:
    """The informative part of a SimpleITK/ITK exception (drops C++ source locations and object ids)."""
    import re

    text = re.sub(r"Exception thrown in SimpleITK \w+: \S+:\d+:\s*", "", str(exc))
    text = re.sub(r"(sitk::|ITK )ERROR:\s*", "", text)
    text = re.sub(r"\w+\(0x[0-9a-f]+\):\s*", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("/") and "itk::" not in ln]
    return " ".join(useful or lines)[:300]


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an ``.npy`` volume: ``scan.npy`` -> ``scan.json``."""
    path = Path(path)
    return path.with_suffix(".json")


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from an ``.npy`` header (``None`` if the header cannot be parsed)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as handle:
            version = fmt.read_magic(handle)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _fortran, dtype = read(handle)
    except Exception:  # noqa: BLE001 - np.load below reports the problem
        return None
    return tuple(shape), dtype


def _read_npy(path: Path) -> Volume:
    header = _npy_header(path)
    if header is not None:
        shape, dtype = header
        _check_voxel_type(path, dtype)
        if 0 in shape:
            raise ImageReadError(path, empty_volume_problem(shape))
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - ValueError, EOFError, OSError for truncated files
        raise ImageReadError(path, f"corrupt or truncated .npy file ({type(exc).__name__}: {exc})") from exc
    _check_voxel_type(path, data.dtype)
    native = str(data.dtype)
    data = _to_float32(path, _squeeze_to_3d(path, data, "X, Y, Z, ..."))
    metadata: dict[str, Any] = {"path": str(path), "format": "npy", "dtype": native}
    geometry: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.exists():
        try:
            geometry = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ImageReadError(side, f"unreadable JSON sidecar of {path.name}: {exc}") from exc
        if not isinstance(geometry, dict):
            raise ImageReadError(side, "JSON sidecar must be an object with spacing, origin, direction")
    else:
        metadata["sidecar"] = False  # plain .npy (official Models Genesis files): unit geometry
    for key, value in (geometry.get("metadata") or {}).items():
        metadata.setdefault(key, value)
    if geometry.get("modality"):
        metadata["modality"] = geometry["modality"]
    try:
        return Volume(
            data,
            geometry.get("spacing", (1.0, 1.0, 1.0)),
            geometry.get("origin", (0.0, 0.0, 0.0)),
            geometry.get("direction", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)),
            metadata,
        )
    except DataError as exc:
        raise ImageReadError(side, f"invalid geometry in sidecar: {exc}") from exc


def list_dicom_series(folder: str | Path) -> list[str]:
    """SeriesInstanceUIDs of the DICOM series found directly in ``folder`` (GDCM)."""
    import SimpleITK as sitk

    with quiet_itk():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _series_files(folder: Path, series_id: str) -> list[str]:
    import SimpleITK as sitk

    with quiet_itk():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id))


def _read_dicom_series(folder: Path, series_id: str | None) -> Volume:
    import SimpleITK as sitk

    ids = list_dicom_series(folder)
    if not ids:
        n_files = sum(1 for p in folder.iterdir() if p.is_file())
        if volume_suffix(folder) in VOLUME_SUFFIXES:
            raise ImageReadError(
                folder, f"is a folder, not a {volume_suffix(folder)} file, and holds no DICOM series ({n_files} file(s))"
            )
        raise ImageReadError(folder, f"no DICOM series found in this folder ({n_files} file(s)); expected DICOM slices")
    if series_id is None:
        if len(ids) > 1:
            raise ImageReadError(
                folder, f"holds {len(ids)} DICOM series; pass series_id= one of: {', '.join(sorted(ids))}"
            )
        series_id = ids[0]
    elif series_id not in ids:
        raise ImageReadError(folder, f"no DICOM series {series_id!r}; found: {', '.join(sorted(ids))}")
    # GDCM sorts the files by their position along the slice normal (ImagePositionPatient), not by name.
    files = _series_files(folder, series_id)
    _warn_unreadable_files(folder, [i for i in ids if i != series_id], files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with quiet_itk():  # ITK's "Non uniform sampling" warning: we say it in our words below
            image = reader.Execute()  # applies RescaleSlope / RescaleIntercept (-> HU for CT)
    except RuntimeError as exc:
        problem = _series_size_problem(files) or f"corrupt DICOM series {series_id}: {_sitk_reason(exc)}"
        raise ImageReadError(folder, problem) from exc
    native = str(sitk.GetArrayViewFromImage(image).dtype)
    array = _array_from_sitk(image, folder)
    spacing, origin, direction = _sitk_geometry(image, folder)

    def tag(key: str) -> str:
        return reader.GetMetaData(0, key).strip() if reader.HasMetaDataKey(0, key) else ""

    metadata: dict[str, Any] = {
        "path": str(folder),
        "format": "dicom",
        "dtype": native,
        "series_id": series_id,
        "num_files": len(files),
    }
    bits, signed = tag("0028|0100"), tag("0028|0103")
    if bits.isdigit() and signed in ("0", "1"):
        metadata["dtype"] = f"{'int' if signed == '1' else 'uint'}{bits}"  # stored type, before rescale
    for key, name in (("0028|1053", "rescale_slope"), ("0028|1052", "rescale_intercept")):
        try:
            metadata[name] = float(tag(key))
        except ValueError:
            pass
    positions = _slice_positions(reader, len(files), np.asarray(direction).reshape(3, 3)[:, 2])
    if positions is not None:
        _refuse_duplicate_positions(folder, files, positions)
        gaps = slice_gaps(positions)
        metadata["uniform_slice_spacing"] = not gaps  # False: missing slices or uneven spacing
        if gaps:
            metadata["slice_gaps"] = gaps
            label = f"DICOM series {series_id}" if len(ids) > 1 else "the DICOM series"
            warnings.warn(_gap_message(folder, label, gaps, spacing[2]), stacklevel=3)
    if tag("0008|0060"):
        metadata["modality"] = normalise_modality(tag("0008|0060"))
    if tag("0010|0020"):
        metadata["patient_id"] = tag("0010|0020")
    return Volume(array, spacing, origin, direction, metadata)


def _warn_unreadable_files(folder: Path, other_ids: list[str], used: list[str]) -> None:
    """Warn about DICOM-looking files of ``folder`` that GDCM left out of every series (unreadable).

    Args:
        folder: the series folder.
        other_ids: the folder's other series (their files are not left out).
        used: the files of the series being read.
    """
    from semantic_genesis.io.dicom import is_dicom_file

    in_series = {os.path.normpath(f) for f in used}
    for other in other_ids:
        in_series.update(os.path.normpath(f) for f in _series_files(folder, other))
    left_out = [
        p.name
        for p in sorted(folder.iterdir())
        if p.is_file()
        and os.path.normpath(str(p)) not in in_series
        and p.name.upper() != "DICOMDIR"
        and (p.suffix.lower() in (".dcm", ".dicom", ".ima") or is_dicom_file(p))
    ]
    if left_out:
        shown = ", ".join(left_out[:5]) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        warnings.warn(
            f"{folder}: {len(left_out)} DICOM file(s) could not be read and were left out of the series: {shown}",
            stacklevel=4,
        )


def _series_size_problem(files: list[str]) -> str | None:
    """Name slices whose size differs from the others' (ITK only says "IO region does not contain ...")."""
    import pydicom

    sizes: dict[tuple[int, int], list[str]] = {}
    for name in files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
            sizes.setdefault((int(ds.Rows), int(ds.Columns)), []).append(Path(name).name)
        except Exception:  # noqa: BLE001 - only a diagnosis; the caller reports ITK's reason otherwise
            return None
    if len(sizes) < 2:
        return None
    parts = [
        f"{rows}x{cols} in {len(names)} file(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        for (rows, cols), names in sorted(sizes.items(), key=lambda kv: -len(kv[1]))
    ]
    return f"the slices of one series have different sizes (rows x columns): {'; '.join(parts)}"


def _refuse_duplicate_positions(folder: Path, files: list[str], positions: np.ndarray) -> None:
    """Two files at one slice position make the slice order undefined: name them and refuse."""
    order = np.argsort(positions, kind="stable")
    steps = np.abs(np.diff(positions[order]))
    scale = float(np.median(steps)) if len(steps) else 0.0
    same = np.flatnonzero(steps <= max(1e-3, 1e-3 * scale))
    if len(same) == 0:
        return
    k = int(same[0])
    a, b = Path(files[order[k]]).name, Path(files[order[k + 1]]).name
    raise ImageReadError(
        folder,
        f"slice files {a} and {b} share the position {positions[order[k]]:.4g} mm"
        + (f" ({len(same)} such pairs)" if len(same) > 1 else "")
        + "; the folder mixes acquisitions or holds copies: keep one file per slice position",
    )


def _slice_positions(reader: Any, n: int, normal: np.ndarray) -> np.ndarray | None:
    """Slice positions (mm) along the slice normal, in the reader's order; ``None`` if a file lacks one."""
    positions = []
    for i in range(n):
        if not reader.HasMetaDataKey(i, "0020|0032"):
            return None
        try:
            positions.append([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")])
        except ValueError:
            return None
    return np.asarray(positions, dtype=np.float64).reshape(n, 3) @ normal


def slice_gaps(positions: Sequence[float], tolerance: float = 0.01) -> list[dict[str, float]]:
    """Steps between consecutive slice positions that differ from the usual step by more than 1%.

    Args:
        positions: ``(N,)`` slice positions along the normal in mm, in slice order.
        tolerance: relative tolerance on the step.

    Returns:
        One dict per irregular step: ``{"from_mm", "to_mm", "step_mm", "expected_mm", "missing"}``
        where ``expected_mm`` is the median step and ``missing`` the estimated number of missing slices
        (0 for a step shorter than expected). Empty for fewer than 3 slices or uniform spacing.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if len(pos) < 3:
        return []
    steps = np.abs(np.diff(pos))
    expected = float(np.median(steps))
    gaps = []
    for k in np.flatnonzero(np.abs(steps - expected) > tolerance * expected + 1e-4):
        step = float(steps[k])
        missing = max(int(round(step / expected)) - 1, 0) if expected > 0 else 0
        gaps.append({"from_mm": float(pos[k]), "to_mm": float(pos[k + 1]), "step_mm": step,
                     "expected_mm": expected, "missing": missing})
    return gaps


def _gap_message(folder: Path, label: str, gaps: list[dict[str, float]], spacing_z: float) -> str:
    parts = []
    for gap in gaps[:3]:
        text = f"{gap['from_mm']:.4g} -> {gap['to_mm']:.4g} mm is a step of {gap['step_mm']:.4g} mm"
        if gap["missing"]:
            text += f" (~{gap['missing']} slice(s) missing)"
        parts.append(text)
    more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    return (
        f"{folder}: {label} has uneven slice positions, expected a step of "
        f"{gaps[0]['expected_mm']:.4g} mm: {'; '.join(parts)}{more}; the volume uses the averaged slice "
        f"spacing {spacing_z:.4g} mm, so its geometry is approximate (missing or unreadable slice files?)"
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def _cast(volume: Volume, dtype: Any, path: Path) -> np.ndarray:
    """The array to store: float32, or rounded to an integer dtype (values must fit, no wrap-around)."""
    if dtype is None:
        return volume.array
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        rounded = np.rint(volume.array)
        info = np.iinfo(dt)
        lo, hi = float(rounded.min()), float(rounded.max())
        if lo < info.min or hi > info.max:
            raise DataError(f"{path}: values [{lo:g}, {hi:g}] do not fit dtype {dt} [{info.min}, {info.max}]")
        return rounded.astype(dt)
    if dt.kind == "f":
        return volume.array.astype(dt)
    raise DataError(f"{path}: unsupported dtype {dt}; expected an integer or float dtype")


def write_volume(volume: Volume, path: str | Path, dtype: Any = None, **dicom_options: Any) -> Path:
    """Write ``volume`` atomically; the format follows the suffix of ``path``.

    Args:
        volume: the volume (geometry is written where the format supports it; ``.npy`` gets a
            ``.json`` sidecar with spacing, origin, direction and modality).
        path: ``.nii``, ``.nii.gz``, ``.mhd`` (writes ``.raw`` beside it), ``.mha``, ``.nrrd``,
            ``.npy``; a path without a suffix (or an existing folder) is written as a DICOM series
            folder with :func:`write_dicom_series`.
        dtype: stored dtype, e.g. ``"int16"`` (CT, HU) or ``"uint8"`` (labels); default float32.
            Integer dtypes round to nearest; values out of range raise :class:`DataError`.
        **dicom_options: passed to :func:`write_dicom_series` for DICOM folders.

    Returns:
        The written path.
    """
    path = Path(path).expanduser()
    suffix = volume_suffix(path)
    if path.is_dir() or suffix == "":
        return write_dicom_series(volume, path, **dicom_options)
    if dicom_options:
        raise DataError(f"{path}: options {sorted(dicom_options)} apply to DICOM series folders only")
    if suffix not in VOLUME_SUFFIXES or suffix == ".nhdr":
        raise DataError(f"{path}: cannot write format {suffix!r}; expected one of .nii, .nii.gz, .mhd, .mha, .nrrd, .npy")
    data = _cast(volume, dtype, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".nii", ".nii.gz"):
        _write_nifti(volume, data, path)
    elif suffix == ".npy":
        _write_npy(volume, data, path)
    else:
        _write_sitk(volume, data, path)
    return path


def _write_nifti(volume: Volume, data: np.ndarray, path: Path) -> None:
    import nibabel as nib

    from semantic_genesis.utils.atomic import atomic_path

    affine_ras = _LPS_TO_RAS @ volume.affine[:3, :]
    affine = np.vstack([affine_ras, [0.0, 0.0, 0.0, 1.0]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if volume.modality:
        img.header["descrip"] = (_DESCRIP_PREFIX + volume.modality)[:79].encode("latin-1", "replace")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _write_npy(volume: Volume, data: np.ndarray, path: Path) -> None:
    from semantic_genesis.utils.atomic import atomic_open, write_json

    with atomic_open(path, "wb") as handle:
        np.save(handle, data, allow_pickle=False)
    meta = {k: v for k, v in volume.metadata.items() if k not in ("path", "format", "dtype", "sidecar")}
    sidecar = {
        "spacing": list(volume.spacing),
        "origin": list(volume.origin),
        "direction": list(volume.direction),
        "axes": "X, Y, Z (LPS mm; world = origin + direction @ (spacing * ijk))",
        "modality": volume.modality,
        "metadata": _jsonable(meta),
    }
    write_json(sidecar_path(path), sidecar)


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj, default=str)
    except (TypeError, ValueError):
        return {}
    return json.loads(json.dumps(obj, default=str))


def _write_sitk(volume: Volume, data: np.ndarray, path: Path) -> None:
    """Write with SimpleITK into a private temporary folder, then move the files into place.

    MetaImage headers name their data file, so the files are written under their final names and
    moved (data files first, the header last) so a reader never sees a header without its data.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    if volume.modality:
        image.SetMetaData("modality", volume.modality)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        sitk.WriteImage(image, str(tmp_dir / path.name), useCompression=False)
        produced = sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name)  # header last
        for item in produced:
            os.replace(item, path.parent / item.name)
    except RuntimeError as exc:
        raise DataError(f"{path}: SimpleITK could not write the volume: {_sitk_reason(exc)}") from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    modality: str | None = None,
    patient_id: str = "anonymous",
    series_description: str = "semantic-genesis",
    series_uid: str | None = None,
    file_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` as a DICOM series: one single-frame slice per file (pydicom).

    Each Z slice ``k`` becomes a file whose pixel rows run along Y and columns along X, with
    ``ImagePositionPatient = voxel_to_world((0, 0, k))``, ``ImageOrientationPatient`` = the X and Y
    columns of ``direction``, ``PixelSpacing = (spacing_y, spacing_x)``, ``SliceThickness`` and
    ``SpacingBetweenSlices = spacing_z``. Values are stored as ``round((value - intercept) / slope)``
    in uint16 (or int16 if some stored value is negative), so a CT volume in HU with the default
    intercept of -1024 is stored unsigned and reads back in HU.

    Args:
        volume: the volume (values in real units, e.g. HU).
        folder: output folder (created).
        rescale_intercept, rescale_slope: DICOM RescaleIntercept / RescaleSlope.
        modality: DICOM Modality (``"CT"``, ``"MR"``); default from ``volume.metadata`` else ``"CT"``.
        patient_id, series_description: written as PatientID / SeriesDescription.
        series_uid: SeriesInstanceUID; default derived deterministically from the folder name and data.
        file_names: one file name per slice (default ``slice_0000.dcm``...); lets tests write names in
            an order unrelated to position.
        overwrite: replace ``.dcm`` files already in ``folder`` (otherwise a non-empty folder is an error,
            since mixing series there would make it ambiguous to read).

    Returns:
        ``folder``.
    """
    from semantic_genesis.io import dicom as dcm

    folder = Path(folder).expanduser()
    nz = volume.shape[2]
    if file_names is None:
        file_names = [f"slice_{k:04d}.dcm" for k in range(nz)]
    if len(file_names) != nz or len(set(file_names)) != nz:
        raise DataError(f"{folder}: need {nz} distinct file names (one per slice), got {len(set(file_names))}")
    existing = sorted(p for p in folder.glob("*.dcm")) if folder.exists() else []
    if existing and not overwrite:
        raise DataError(f"{folder}: already holds {len(existing)} .dcm file(s); pass overwrite=True to replace them")
    folder.mkdir(parents=True, exist_ok=True)
    for old in existing:
        old.unlink()

    dicom_modality = (modality or {"ct": "CT", "mri": "MR"}.get(volume.modality or "ct", "CT")).upper()
    stored, representation = dcm.stored_values(volume.array, rescale_slope, rescale_intercept, str(folder))
    seed = (str(folder.resolve()), volume.shape, volume.spacing, volume.origin, float(volume.array.sum()))
    series_uid = series_uid or dcm.make_uid("series", *seed)
    study_uid = dcm.make_uid("study", series_uid)
    frame_uid = dcm.make_uid("frame", series_uid)
    d = volume.direction_matrix
    orientation = dcm.ds_float_list(list(d[:, 0]) + list(d[:, 1]))
    sop_class = dcm.sop_class_for(dicom_modality)
    for k in range(nz):
        ds = dcm.new_dataset(sop_class, dcm.make_uid("instance", series_uid, k))
        ds.Modality = dicom_modality
        ds.PatientID = patient_id
        ds.PatientName = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = dcm.ds_float_list(volume.voxel_to_world((0.0, 0.0, float(k))))
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = dcm.ds_float_list((volume.spacing[1], volume.spacing[0]))
        ds.SliceThickness = dcm.ds_float_list((volume.spacing[2],))[0]
        ds.SpacingBetweenSlices = dcm.ds_float_list((volume.spacing[2],))[0]
        ds.SliceLocation = dcm.ds_float_list((float(volume.voxel_to_world((0.0, 0.0, float(k)))[2]),))[0]
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept = dcm.ds_float_list((rescale_intercept,))[0]
        ds.RescaleSlope = dcm.ds_float_list((rescale_slope,))[0]
        ds.RescaleType = "HU" if dicom_modality == "CT" else "US"
        dcm.set_pixels(ds, stored[:, :, k].T, representation)  # (rows = Y, columns = X)
        dcm.save_dataset(ds, folder / file_names[k])
    return folder
