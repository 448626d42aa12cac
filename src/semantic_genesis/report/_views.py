"""How report figures draw slices: the same view as ``semantic-genesis inspect --png``.

Volumes are ``(X, Y, Z)`` arrays in voxel order (no reorientation). Slices are drawn as ``inspect``
draws them, which for the usual LPS-oriented scans is the radiological view:

* axial (a Z slice): X to the right, Y downwards, so the patient's left is on the viewer's right and
  anterior is at the top (the spine at the bottom);
* coronal (a Y slice) and sagittal (an X slice): Z upwards (head at the top).

Pixels get their physical aspect ratio from the voxel spacing (mm), and intensities in [0, 1] are
labelled with what they mean (for CT: the window -1000..1000 HU).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

VIEW_NOTE = "radiological view as in 'inspect': patient's left on the right, anterior up"


def _field(intensity: Any | None, key: str, default: Any) -> Any:
    if intensity is None:
        return default
    if isinstance(intensity, dict):
        return intensity.get(key, default)
    return getattr(intensity, key, default)


def unit_label(intensity: Any | None = None) -> str:
    """Colour-bar label of unit-range images, e.g. ``"intensity (0 = -1000 HU, 1 = 1000 HU)"``.

    Args:
        intensity: an ``IntensityConfig`` (or a mapping of its fields); ``None`` = the CT default.
    """
    if _field(intensity, "modality", "ct") in ("ct", "auto"):
        return f"intensity (0 = {_field(intensity, 'hu_min', -1000.0):g} HU, 1 = {_field(intensity, 'hu_max', 1000.0):g} HU)"
    lo, hi = _field(intensity, "lower_percentile", 0.5), _field(intensity, "upper_percentile", 99.5)
    return f"intensity (0 = {lo:g}th, 1 = {hi:g}th percentile of the scan)"


def slice_image(volume: Any, view: str = "axial", index: int | None = None) -> Any:
    """The 2D array to ``imshow`` for a slice of ``volume`` ``(X, Y, Z)``; a 2D image ``(H, W)`` is taken whole."""
    import numpy as np

    arr = np.asarray(volume)
    if arr.ndim == 2:
        return arr
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[view]
    i = arr.shape[axis] // 2 if index is None else int(index)
    return np.take(arr, i, axis=axis).T


def aspect(view: str, spacing: Sequence[float] | None) -> float:
    """``imshow`` aspect (pixel height / width) of a view for voxel ``spacing`` (X, Y, Z) in mm."""
    if spacing is None:
        return 1.0
    if len(spacing) == 2:  # a 2D image (H, W): row spacing over column spacing
        return float(spacing[0]) / float(spacing[1])
    sx, sy = float(spacing[0]), float(spacing[1])
    sz = float(spacing[2]) if len(spacing) > 2 else 1.0
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def show_slice(ax: Any, volume: Any, view: str = "axial", index: int | None = None,
               spacing: Sequence[float] | None = None, vmin: float = 0.0, vmax: float = 1.0) -> Any:
    """Draw a slice on ``ax`` in the ``inspect`` orientation; returns the ``AxesImage`` (for a colour bar)."""
    import numpy as np

    origin = "upper" if view == "axial" or np.ndim(volume) == 2 else "lower"
    return ax.imshow(slice_image(volume, view, index), cmap="gray", vmin=vmin, vmax=vmax, origin=origin,
                     aspect=aspect(view, spacing), interpolation="nearest")


@lru_cache(maxsize=64)
def _spacing_of(path: str) -> tuple[float, float, float] | None:
    import numpy as np

    p = Path(path)
    name = p.name.lower()
    try:
        if p.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")):
            import nibabel as nib

            linear = np.asarray(nib.load(str(p)).affine, dtype=np.float64)[:3, :3]
            return tuple(float(s) for s in np.linalg.norm(linear, axis=0))
        if p.is_file() and p.suffix.lower() in (".mhd", ".mha", ".nrrd"):
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(p))
            reader.ReadImageInformation()  # the header only
            return tuple(float(s) for s in reader.GetSpacing()[:3])
        from semantic_genesis.io.volumes import read_volume

        return tuple(float(s) for s in read_volume(p).spacing[:3])
    except Exception:  # noqa: BLE001 - unknown spacing is drawn with square pixels, and said so
        return None


def scan_spacing(path: str | Path | None, intensity: Any | None = None,
                 relative_to: Sequence[str | Path] = ()) -> tuple[float, float, float] | None:
    """Voxel spacing (mm, X Y Z) of a scan as the pipeline saw it, or ``None`` when unknown.

    Args:
        path: the scan file or DICOM folder (a relative path is also tried below ``relative_to``).
        intensity: the ``IntensityConfig`` used; with ``spacing`` set, scans were resampled to it.
        relative_to: folders to resolve a relative ``path`` against.
    """
    resampled = getattr(intensity, "spacing", None) if intensity is not None else None
    if resampled:
        return tuple(float(s) for s in resampled)
    if not path:
        return None
    p = Path(path)
    candidates = [p] + ([Path(base) / p for base in relative_to] if not p.is_absolute() else [])
    for candidate in candidates:
        if candidate.exists():
            return _spacing_of(str(candidate.resolve()))
    return None


def cube_spacing(record: dict[str, Any], cube_size: Sequence[int], relative_to: Sequence[str | Path] = (),
                 intensity: Any | None = None) -> tuple[float, float, float] | None:
    """Spacing of a stored cube: its scan's spacing times ``crop / cube size`` (crops may be resized)."""
    spacing = scan_spacing(record.get("scan"), intensity, relative_to)
    if spacing is None:
        return None
    crop = record.get("crop") or list(cube_size)
    return tuple(s * c / n for s, c, n in zip(spacing, crop, cube_size))


def spacing_text(spacing: Sequence[float] | None) -> str:
    """``"2.8 x 2.8 x 3.2 mm voxels"`` or a note that the spacing is unknown."""
    if spacing is None:
        return "voxel spacing unknown: square pixels"
    return " x ".join(f"{s:.3g}" for s in spacing) + " mm voxels"
