"""Preprocessing: intensities to [0, 1], resampling and resizing, body masks, borders and content tests.

Intensity (DESIGN.md conventions):

* CT: clip to [hu_min, hu_max] = [-1000, 1000] HU and scale to [0, 1] (Models Genesis; Zhou et al.,
  MICCAI 2019 / MedIA 2021; Haghighi et al., MICCAI 2020 for Semantic Genesis).
* MRI and X-ray: robust per-image scaling between the 0.5th and 99.5th percentiles, clipped.

Content tests decide whether a candidate window holds useful anatomy. The "lung" statistic reproduces
the official cube and pattern generators (``infinite_generator_3D.py``, ``pattern_generator_3D.py``):
for each voxel ``(i, j, d)`` of an ``sx x sy x sz`` window, ``k`` is the first slice offset in
``{0, ..., look_ahead - 2}`` (``{0, 1}`` for the official ``look_ahead = 3``) with
``value[i, j, d + k] >= threshold`` (0.425 = -150 HU), else ``k = look_ahead - 1``;
``d = 1 - k / (look_ahead - 1)`` (1, 0.5 or 0); the window is accepted when
``sum(d) <= lung_max * sx * sy * sz`` (lung_max 0.15), i.e. its mean tissue score is at most 0.15:
mostly air/lung. The official code runs a pure-Python quadruple loop per trial; here the integer
``(look_ahead - 1) * d`` volume is computed once per scan and put in a 3D summed-area table, so any
number of candidate windows are scored in O(1) each with results identical to the loop.

**Air outside the body is not lung.** The official test only looks at darkness, so the air around the
patient passes it; the official generators rely on fixed borders (100 voxels in-plane, 30 slices,
sized for 512x512 LUNA16 scans) to stay inside the body. With :func:`lung_table` ``body=`` (a body mask,
:func:`body_mask`) voxels outside the body score as tissue, so an accepted window is mostly air
*inside* the body (the lungs and airways): at most ``lung_max`` of it lies outside the body.
:func:`border_margins` implements both border rules (relative to the volume, or the official
absolute voxels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from semantic_genesis.errors import DataError

HU_MIN = -1000.0
HU_MAX = 1000.0
LUNG_THRESHOLD = (-150.0 - HU_MIN) / (HU_MAX - HU_MIN)  # 0.425
LUNG_MAX = 0.15
LOOK_AHEAD = 3
BODY_THRESHOLD = 0.25  # [0, 1] value of -500 HU: soft tissue and bone above it, air and lung below


# --------------------------------------------------------------------------------------------------
# Intensities
# --------------------------------------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def ct_to_unit(hu: Any, hu_min: float = HU_MIN, hu_max: float = HU_MAX) -> Any:
    """Clip CT values to ``[hu_min, hu_max]`` HU and scale linearly to [0, 1].

    Args:
        hu: numpy array or torch tensor of any shape (HU), on any device.
        hu_min, hu_max: the window (Models Genesis: -1000, 1000).

    Returns:
        float32 array/tensor of the same shape with values in [0, 1]
        (``(clip(hu) - hu_min) / (hu_max - hu_min)``).
    """
    if not hu_max > hu_min:
        raise DataError(f"CT window must have hu_max > hu_min, got [{hu_min}, {hu_max}]")
    scale = 1.0 / (float(hu_max) - float(hu_min))
    if _is_tensor(hu):
        import torch

        x = hu.to(torch.float32) if not torch.is_floating_point(hu) else hu.float()
        return ((x.clamp(hu_min, hu_max) - hu_min) * scale).clamp_(0.0, 1.0)
    x = np.asarray(hu, dtype=np.float32)
    out = (np.clip(x, hu_min, hu_max) - np.float32(hu_min)) * np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


def check_contrast(array: Any) -> None:
    """Raise :class:`DataError` when every voxel of a scan has the same value (an empty or broken scan).

    Such a scan has no anatomy: a CT of constant -1000 HU would pass the darkness-only lung test
    everywhere, and a constant MRI scales to all zeros. ``cubes`` and ``discover`` skip it with this
    reason.
    """
    x = np.asarray(array)
    if x.size == 0:
        raise DataError("the scan has no voxels")
    lo, hi = np.nanmin(x), np.nanmax(x)
    if not hi > lo:
        raise DataError(f"every voxel has the value {float(lo):g} (an empty or broken scan)")


def percentile_to_unit(
    array: np.ndarray, lower: float = 0.5, upper: float = 99.5, mask: np.ndarray | None = None
) -> np.ndarray:
    """Scale robustly to [0, 1]: the ``lower``/``upper`` percentiles map to 0/1, values are clipped.

    Args:
        array: any-shape numeric array (an MRI volume, a radiograph).
        lower, upper: percentiles in [0, 100], ``lower < upper``.
        mask: optional boolean array of the same shape; percentiles are computed over it only
            (e.g. the non-zero brain of a skull-stripped MRI). Values outside the mask are scaled too.

    Returns:
        float32 array of the same shape in [0, 1]; all zeros if the image is constant over the mask.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise DataError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    x = np.asarray(array, dtype=np.float32)
    values = x
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise DataError(f"mask shape {mask.shape} differs from the array shape {x.shape}")
        values = x[mask]
        if values.size == 0:
            raise DataError("percentile_to_unit: the mask selects no voxel")
    lo, hi = np.percentile(values, [lower, upper]).astype(np.float64)
    if not hi > lo:
        return np.zeros_like(x)
    out = (x - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def _modality_of(image: Any, intensity_cfg: Any) -> str:
    wanted = getattr(intensity_cfg, "modality", "auto") if intensity_cfg is not None else "auto"
    if wanted != "auto":
        return str(wanted)
    known = (getattr(image, "metadata", None) or {}).get("modality")
    return known if known in ("ct", "mri", "xray") else "ct"


def to_unit(image: Any, intensity_cfg: Any = None) -> Any:
    """Convert a :class:`~semantic_genesis.io.volumes.Volume` (or ``Image2D``) to float32 [0, 1].

    The modality comes from ``intensity_cfg.modality``; ``"auto"`` uses ``metadata["modality"]``
    when it is ``"ct"``, ``"mri"`` or ``"xray"``, else CT. CT uses the HU window; MRI uses
    percentiles over the non-zero voxels (the background of skull-stripped scans is exactly 0) when
    at least 1% are non-zero; X-ray uses percentiles over the whole image. If
    ``intensity_cfg.spacing`` is set, a volume is first resampled to it (linear).

    Args:
        image: a ``Volume`` (HU for CT) or an ``Image2D``.
        intensity_cfg: :class:`~semantic_genesis.config.IntensityConfig` or ``None`` (defaults).

    Returns:
        A new object of the same type with float32 values in [0, 1] and
        ``metadata["intensity"]`` describing the mapping (``metadata["modality"]`` is set).
    """
    from semantic_genesis.config import IntensityConfig

    cfg = intensity_cfg if intensity_cfg is not None else IntensityConfig()
    modality = _modality_of(image, cfg)
    target_spacing = getattr(cfg, "spacing", None)
    if target_spacing is not None and np.ndim(image.array) == 3:
        image = resample(image, target_spacing)
    if modality == "ct":
        unit = ct_to_unit(image.array, cfg.hu_min, cfg.hu_max)
        info: dict[str, Any] = {"kind": "ct_window", "hu_min": cfg.hu_min, "hu_max": cfg.hu_max}
    elif modality in ("mri", "xray"):
        mask = None
        if modality == "mri":
            nonzero = image.array != 0
            if nonzero.mean() >= 0.01:
                mask = nonzero
        unit = percentile_to_unit(image.array, cfg.lower_percentile, cfg.upper_percentile, mask)
        info = {"kind": "percentile", "lower": cfg.lower_percentile, "upper": cfg.upper_percentile,
                "masked": mask is not None}
    else:
        raise DataError(f"unknown intensity modality {modality!r}; expected 'ct', 'mri', 'xray' or 'auto'")
    metadata = {**image.metadata, "modality": modality, "intensity": info}
    return dataclasses.replace(image, array=unit, metadata=metadata)


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
def resample(volume: Any, spacing: Sequence[float], is_label: bool = False) -> Any:
    """Resample a volume to a new voxel spacing, keeping origin, direction and world extent.

    Output voxel ``j`` (per axis) sits at input continuous index ``j * new / old``, so voxel 0 keeps
    its world position (the origin) and the new size is ``round(size * old / new)`` (at least 1),
    which keeps the world extent to within one output voxel. Images use linear interpolation,
    labels nearest neighbour (values are preserved exactly). Beyond the last input voxel the edge
    value is repeated.

    Args:
        volume: a :class:`~semantic_genesis.io.volumes.Volume`.
        spacing: target spacing in mm (X, Y, Z).
        is_label: nearest-neighbour interpolation for label maps.

    Returns:
        A new ``Volume`` (float32 array) with ``spacing`` and the same origin and direction.
    """
    from scipy import ndimage

    new = np.asarray(spacing, dtype=np.float64).ravel()
    old = np.asarray(volume.spacing, dtype=np.float64)
    if new.size != 3 or not np.all(new > 0):
        raise DataError(f"resample: spacing must be 3 positive numbers (mm), got {spacing!r}")
    ratio = new / old
    shape = np.maximum(1, np.rint(np.asarray(volume.shape) / ratio)).astype(int)
    if np.array_equal(shape, volume.shape) and np.allclose(ratio, 1.0):
        out = volume.array.copy()
    else:
        out = ndimage.affine_transform(
            volume.array,
            ratio,  # diagonal matrix: input index = ratio * output index
            offset=0.0,
            output_shape=tuple(int(s) for s in shape),
            order=0 if is_label else 1,
            mode="nearest",
            prefilter=False,
        )
    return dataclasses.replace(volume, array=out, spacing=tuple(float(s) for s in new), metadata=dict(volume.metadata))


def resize(array: Any, shape: Sequence[int], order: int = 1, anti_aliasing: bool = False) -> Any:
    """Resize to ``shape`` with torch ``F.interpolate`` (``align_corners=False``).

    ``order=1`` is trilinear (3D) / bilinear (2D) and ``order=0`` nearest (``"nearest-exact"``); the
    sampling grid is pixel-centre aligned, like ``skimage.transform.resize(order=1)`` used by the
    official Semantic Genesis code (the two agree away from the border, where torch repeats the edge).
    This one function is used for every resize in the package so that cubes, patterns and whole-scan
    inputs are resampled the same way.

    ``anti_aliasing=True`` first smooths every axis that shrinks by a factor ``f = in / out > 1``
    with a Gaussian of ``sigma = (f - 1) / 2`` voxels (truncated at 4 sigma, mirrored at the edges):
    scikit-image's rule, which ``skimage.transform.resize`` applies by default when downsampling
    (its ``anti_aliasing=None``). Without it a 4x linear downsampling reads one voxel in 64 and
    aliases noise and thin structures.

    Args:
        array: numpy array or torch tensor, spatial ``(X, Y, Z)`` or ``(H, W)``, or a tensor with
            leading batch/channel dims ``(B, C, *spatial)``.
        shape: the new spatial shape (2 or 3 ints).
        order: 1 (linear) or 0 (nearest; no smoothing is ever applied to it).
        anti_aliasing: Gaussian pre-filter on downsampled axes (linear order only).

    Returns:
        The same type (numpy in -> numpy float32 out; a tensor stays on its device) with the new
        spatial shape.
    """
    import torch
    import torch.nn.functional as F

    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise DataError(f"resize: shape must be 2 or 3 positive ints, got {shape}")
    if order not in (0, 1):
        raise DataError(f"resize: order must be 0 (nearest) or 1 (linear), got {order}")
    is_numpy = not _is_tensor(array)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) if is_numpy else array
    nd = len(shape)
    if x.dim() == nd:
        batched = x[None, None]
    elif x.dim() == nd + 2:
        batched = x
    else:
        raise DataError(f"resize: array with shape {tuple(x.shape)} does not match a {nd}D target shape {shape}")
    if not torch.is_floating_point(batched):
        batched = batched.float()
    if tuple(batched.shape[2:]) == shape:
        out = batched.clone()
    elif order == 1:
        if anti_aliasing:
            sigmas = [max(0.0, (i / o - 1.0) / 2.0) for i, o in zip(batched.shape[2:], shape)]
            batched = gaussian_blur(batched, sigmas)
        out = F.interpolate(batched, size=shape, mode="trilinear" if nd == 3 else "bilinear", align_corners=False)
    else:
        out = F.interpolate(batched, size=shape, mode="nearest-exact")
    if x.dim() == nd:
        out = out[0, 0]
    return out.numpy() if is_numpy else out


def _mirror_indices(n: int, radius: int, device: Any) -> Any:
    """Indices ``-radius .. n - 1 + radius`` folded into ``[0, n)`` by mirroring about the edge voxels
    (``scipy.ndimage`` mode ``"mirror"``: ``d c b | a b c d | c b a``), for any ``radius``."""
    import torch

    idx = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def gaussian_blur(batched: Any, sigmas: Sequence[float], truncate: float = 4.0) -> Any:
    """Separable Gaussian smoothing of a ``(B, C, *spatial)`` float tensor, on its device.

    Equals ``scipy.ndimage.gaussian_filter(mode="mirror", truncate=truncate)`` per spatial axis
    (the kernel ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, radius ``int(truncate * sigma + 0.5)``);
    axes with ``sigma <= 0`` are left alone. CPU tensors go through scipy itself, other devices through
    separable ``conv1d`` with mirrored indices.

    Args:
        batched: ``(B, C, *spatial)`` float tensor.
        sigmas: one standard deviation (voxels) per spatial axis.
        truncate: kernel radius in standard deviations.

    Returns:
        A new tensor of the same shape and dtype.
    """
    import torch
    import torch.nn.functional as F

    if batched.device.type == "cpu" and batched.dtype in (torch.float32, torch.float64):
        # scipy's separable C filter: ~5x faster than conv1d on one CPU core, same numbers
        from scipy import ndimage

        src = batched.detach().contiguous().numpy()
        result = np.empty_like(src)
        for index in np.ndindex(*src.shape[:2]):
            ndimage.gaussian_filter(src[index], [max(float(v), 0.0) for v in sigmas], mode="mirror",
                                    truncate=truncate, output=result[index])
        return torch.from_numpy(result)
    return _gaussian_blur_conv(batched, sigmas, truncate)


def _gaussian_blur_conv(batched: Any, sigmas: Sequence[float], truncate: float = 4.0) -> Any:
    """:func:`gaussian_blur` with separable ``conv1d`` on any device (mirrored indices at the edges)."""
    import torch
    import torch.nn.functional as F

    out = batched
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
        dim = 2 + axis
        radius = int(truncate * float(sigma) + 0.5)
        k = torch.arange(-radius, radius + 1, dtype=torch.float64, device=out.device)
        kernel = torch.exp(-0.5 * (k / float(sigma)) ** 2)
        kernel = (kernel / kernel.sum()).to(out.dtype)
        n = out.shape[dim]
        padded = out.index_select(dim, _mirror_indices(n, radius, out.device))
        moved = padded.movedim(dim, -1)
        lead = moved.shape[:-1]
        flat = moved.reshape(-1, 1, moved.shape[-1])
        smoothed = F.conv1d(flat, kernel.flip(0).view(1, 1, -1))
        out = smoothed.reshape(*lead, n).movedim(-1, dim).contiguous()
    return out


def body_mask(unit_array: np.ndarray, threshold: float = BODY_THRESHOLD) -> np.ndarray:
    """The body: largest connected component above ``threshold``, with holes filled slice by slice.

    Lungs and airways (dark, inside the body) are holes in each axial slice, so they are filled and
    belong to the mask; outside air does not. For 2D input the holes of the image are filled.

    The per-slice filling is done for all slices at once: the background is labelled with in-plane
    4-connectivity, and background components that do not reach the border of their slice are holes
    (the same result as ``scipy.ndimage.binary_fill_holes`` on every axial slice, about 4x faster).

    Args:
        unit_array: ``(X, Y, Z)`` or ``(H, W)`` values in [0, 1] (e.g. CT after :func:`ct_to_unit`,
            where the default 0.25 is -500 HU).
        threshold: tissue is ``value > threshold``.

    Returns:
        bool array of the same shape (all False when nothing exceeds the threshold).
    """
    from scipy import ndimage

    x = np.asarray(unit_array)
    if x.ndim not in (2, 3):
        raise DataError(f"body_mask expects a 2D or 3D array, got shape {x.shape}")
    tissue = x > threshold
    labels, count = ndimage.label(tissue)
    if count == 0:
        return np.zeros(x.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    del labels
    if x.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    background, _ = ndimage.label(~mask, structure=in_plane)
    edge = np.concatenate([background[0].ravel(), background[-1].ravel(), background[:, 0].ravel(),
                           background[:, -1].ravel()])
    outside = np.zeros(int(background.max()) + 1, dtype=bool)
    outside[0] = True  # label 0 is the body itself
    outside[np.unique(edge)] = True
    mask |= ~outside[background]
    return mask


def border_margins(
    shape: Sequence[int],
    crop: Sequence[int],
    rule: str = "relative",
    fraction: Sequence[float] = (0.1, 0.1, 0.1),
    voxels: Sequence[int] = (100, 100, 30),
    look_ahead: int = LOOK_AHEAD,
) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive range of crop corners that keeps a crop away from the volume's borders.

    Two rules:

    * ``"relative"`` (this package's default): a margin of ``floor(fraction * size)`` voxels on both
      sides of each axis, shrunk when it would leave no room for the crop. It means the same anatomy
      on any grid (native, resampled, phantom).
    * ``"official"``: the absolute borders of the official generators (``infinite_generator_3D.py``,
      ``pattern_generator_3D.py``): corners ``x in [100, X - cx - 1 - 100]``, same for ``y``, and
      ``z in [30, Z - cz - look_ahead - 1 - 30]`` (``voxels = (100, 100, 30)``, sized for 512x512
      LUNA16 scans, i.e. about 0.195 of the width). Never shrunk.

    Args:
        shape: volume shape ``(X, Y, Z)``.
        crop: crop size ``(cx, cy, cz)``.
        rule: ``"relative"`` or ``"official"``.
        fraction: relative margins per axis.
        voxels: official margins per axis.
        look_ahead: the lung test's look-ahead (the official z range leaves room for it).

    Returns:
        ``(lo, hi)`` int64 ``(3,)`` inclusive corner bounds; an axis with ``lo > hi`` has no room.
    """
    size = np.asarray(shape, dtype=np.int64)
    c = np.asarray(crop, dtype=np.int64)
    if rule == "relative":
        margin = np.floor(np.asarray(fraction, dtype=np.float64) * size).astype(np.int64)
        margin = np.maximum(np.minimum(margin, (size - c) // 2), 0)
        return margin, size - c - margin
    if rule == "official":
        v = np.asarray(voxels, dtype=np.int64)
        extra = np.array([1, 1, int(look_ahead) + 1], dtype=np.int64)
        return v.copy(), size - c - extra - v
    raise DataError(f"unknown border rule {rule!r}; expected 'relative' or 'official'")


# --------------------------------------------------------------------------------------------------
# Content tests
# --------------------------------------------------------------------------------------------------
class BoxSums:
    """A 3D summed-area table: the sum of any axis-aligned box in O(1).

    Args:
        values: ``(X, Y, Z)`` integer or bool array (integers keep the sums exact).

    The table has shape ``(X+1, Y+1, Z+1)`` (int32 when the total fits, else int64), i.e. about the
    memory of a float32 copy of the volume.
    """

    def __init__(self, values: np.ndarray):
        values = np.asarray(values)
        if values.ndim != 3:
            raise DataError(f"BoxSums expects a 3D array, got shape {values.shape}")
        if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
            raise DataError(f"BoxSums expects integer values (exact sums), got dtype {values.dtype}")
        bound = values.size * (int(np.abs(values).max()) if values.size else 0)  # no int64 copy
        dtype = np.int32 if bound < 2**31 - 1 else np.int64
        self.shape = tuple(int(s) for s in values.shape)
        table = np.zeros((values.shape[0] + 1, values.shape[1] + 1, values.shape[2] + 1), dtype=dtype)
        inner = table[1:, 1:, 1:]
        np.cumsum(values, axis=2, dtype=dtype, out=inner)  # contiguous axis first, no extra copy
        np.cumsum(inner, axis=1, out=inner)
        np.cumsum(inner, axis=0, out=inner)
        self.table = table

    def box_sums(self, corners: np.ndarray, size: Sequence[int]) -> np.ndarray:
        """Sums over boxes ``[c, c + size)`` for each corner.

        Args:
            corners: ``(N, 3)`` integer lower corners (X, Y, Z).
            size: ``(sx, sy, sz)`` box size; every box must lie inside the volume.

        Returns:
            ``(N,)`` int64 sums.
        """
        corners = _check_corners(corners, size, self.shape)
        s = np.asarray(size, dtype=np.int64)
        t = self.table
        x0, y0, z0 = corners.T
        x1, y1, z1 = (corners + s).T
        total = (
            t[x1, y1, z1].astype(np.int64)
            - t[x0, y1, z1]
            - t[x1, y0, z1]
            - t[x1, y1, z0]
            + t[x0, y0, z1]
            + t[x0, y1, z0]
            + t[x1, y0, z0]
            - t[x0, y0, z0]
        )
        return total


def _check_corners(corners: Any, size: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    c = np.asarray(corners)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] != 3:
        raise DataError(f"corners must be (N, 3) integer voxel indices, got shape {np.shape(corners)}")
    if c.size and not np.all(np.asarray(c) == np.rint(c)):
        raise DataError("corners must be integer voxel indices")
    c = c.astype(np.int64)
    s = np.asarray(size, dtype=np.int64).ravel()
    if s.size != 3 or np.any(s < 1):
        raise DataError(f"window size must be 3 positive ints (sx, sy, sz), got {size!r}")
    bad = np.any(c < 0, axis=1) | np.any(c + s > np.asarray(shape), axis=1)
    if np.any(bad):
        first = c[int(np.argmax(bad))]
        raise DataError(
            f"{int(bad.sum())} window(s) of size {tuple(int(v) for v in s)} fall outside the volume of shape {tuple(shape)}, "
            f"e.g. corner {tuple(int(v) for v in first)}"
        )
    return c


def lung_darkness(unit_volume: np.ndarray, threshold: float = LUNG_THRESHOLD, look_ahead: int = LOOK_AHEAD) -> np.ndarray:
    """Per-voxel integer darkness ``(look_ahead - 1) * d = look_ahead - 1 - k`` of the lung test.

    ``k`` is the first offset in ``{0, ..., look_ahead - 2}`` along Z with value ``>= threshold``, else
    ``look_ahead - 1``. Slices past the end of the volume count as below the threshold.

    Args:
        unit_volume: ``(X, Y, Z)`` values in [0, 1].
        threshold: tissue level (0.425 = -150 HU in the [-1000, 1000] window).
        look_ahead: the official ``len_depth`` (3).

    Returns:
        uint8 ``(X, Y, Z)`` array with values in ``{0, ..., look_ahead - 1}``.
    """
    x = np.asarray(unit_volume)
    if x.ndim != 3:
        raise DataError(f"the lung test expects a 3D (X, Y, Z) volume, got shape {x.shape}")
    if look_ahead < 2:
        raise DataError(f"look_ahead must be >= 2, got {look_ahead}")
    tissue = x >= threshold
    dark = tissue.astype(np.uint8) * np.uint8(look_ahead - 1)  # offset 0: k = 0
    found = tissue.copy()
    nz = x.shape[2]
    for offset in range(1, look_ahead - 1):
        if offset >= nz:
            break
        first = tissue[:, :, offset:] & ~found[:, :, : nz - offset]  # first hit at this offset
        dark[:, :, : nz - offset] += first * np.uint8(look_ahead - 1 - offset)
        found[:, :, : nz - offset] |= first
    return dark


@dataclass
class LungTable:
    """Precomputed lung-test table of one scan; score any number of windows in O(1) each.

    Build it once per scan with :func:`lung_table` and pass it to :func:`lung_scores` /
    :func:`passes_lung_test` instead of the volume.
    """

    sums: BoxSums
    threshold: float
    look_ahead: int
    body_aware: bool = False


def lung_table(
    unit_volume: np.ndarray, threshold: float = LUNG_THRESHOLD, look_ahead: int = LOOK_AHEAD,
    body: np.ndarray | None = None,
) -> LungTable:
    """Build the :class:`LungTable` of a ``(X, Y, Z)`` [0, 1] volume.

    Args:
        unit_volume: the scan in [0, 1].
        threshold, look_ahead: the lung test's parameters (official 0.425 and 3).
        body: optional bool ``(X, Y, Z)`` body mask (:func:`body_mask`). Voxels outside it score as
            tissue (``d = 1``), so the air around the patient does not pass for lung. ``None`` gives
            the official, darkness-only statistic.
    """
    dark = lung_darkness(unit_volume, threshold, look_ahead)
    if body is not None:
        body = np.asarray(body, dtype=bool)
        if body.shape != dark.shape:
            raise DataError(f"body mask shape {body.shape} differs from the volume shape {dark.shape}")
        dark[~body] = np.uint8(look_ahead - 1)
    return LungTable(BoxSums(dark), float(threshold), int(look_ahead), body is not None)


def _as_lung_table(source: Any, threshold: float, look_ahead: int) -> LungTable:
    if isinstance(source, LungTable):
        if source.threshold != float(threshold) or source.look_ahead != int(look_ahead):
            raise DataError(
                f"LungTable was built with threshold={source.threshold}, look_ahead={source.look_ahead}; "
                f"called with threshold={threshold}, look_ahead={look_ahead}"
            )
        return source
    return lung_table(source, threshold, look_ahead)


def lung_darkness_sums(
    unit_volume: Any, corners: np.ndarray, size: Sequence[int], threshold: float = LUNG_THRESHOLD,
    look_ahead: int = LOOK_AHEAD,
) -> np.ndarray:
    """``(N,)`` int64: ``(look_ahead - 1) * sum(d)`` over each ``sx x sy x sz`` window (exact).

    With a :class:`LungTable` every window costs O(1). With a plain volume and few windows (their
    voxels fewer than a quarter of the volume's), each window is computed directly from its own
    crop, which is cheaper than building a table that would be used once.
    """
    if not isinstance(unit_volume, LungTable):
        x = np.asarray(unit_volume)
        if x.ndim != 3:
            raise DataError(f"the lung test expects a 3D (X, Y, Z) volume, got shape {x.shape}")
        c = _check_corners(corners, size, x.shape)
        sx, sy, sz = (int(v) for v in size)
        if len(c) * sx * sy * sz * 4 < x.size:
            end = lambda z0: min(x.shape[2], z0 + sz + look_ahead - 2)  # noqa: E731 - last slice reached
            return np.array(
                [
                    int(lung_darkness(x[x0 : x0 + sx, y0 : y0 + sy, z0 : end(z0)], threshold, look_ahead)[:, :, :sz]
                        .sum(dtype=np.int64))
                    for x0, y0, z0 in c
                ],
                dtype=np.int64,
            )
    table = _as_lung_table(unit_volume, threshold, look_ahead)
    return table.sums.box_sums(corners, size)


def lung_scores(
    unit_volume: Any, corners: np.ndarray, size: Sequence[int], threshold: float = LUNG_THRESHOLD,
    look_ahead: int = LOOK_AHEAD,
) -> np.ndarray:
    """Mean darkness score ``mean(d)`` of many candidate windows (the official lung test's statistic).

    Args:
        unit_volume: ``(X, Y, Z)`` array in [0, 1], or a :class:`LungTable` built from one (reuse it
            across calls on the same scan).
        corners: ``(N, 3)`` integer window corners (X, Y, Z); each ``sx x sy x sz`` window must lie
            inside the volume (the look-ahead beyond the last slice counts as no tissue).
        size: ``(sx, sy, sz)``, e.g. the paper's ``(64, 64, 32)``.
        threshold, look_ahead: 0.425 and 3 officially.

    Returns:
        ``(N,)`` float64 scores in [0, 1]; 1 = every voxel is tissue, 0 = no tissue within reach.
    """
    sums = lung_darkness_sums(unit_volume, corners, size, threshold, look_ahead)
    n = int(np.prod(np.asarray(size, dtype=np.int64)))
    return (sums / (look_ahead - 1)) / n


def passes_lung_test(
    unit_volume: Any, corners: np.ndarray, size: Sequence[int], threshold: float = LUNG_THRESHOLD,
    look_ahead: int = LOOK_AHEAD, lung_max: float = LUNG_MAX,
) -> np.ndarray:
    """Official acceptance ``sum(d) <= lung_max * sx * sy * sz`` for each window: ``(N,)`` bool."""
    sums = lung_darkness_sums(unit_volume, corners, size, threshold, look_ahead)
    n = int(np.prod(np.asarray(size, dtype=np.int64)))
    return (sums / (look_ahead - 1)) <= lung_max * n


def body_table(unit_volume: np.ndarray, threshold: float = BODY_THRESHOLD) -> BoxSums:
    """Summed-area table of :func:`body_mask` (for :func:`body_scores`)."""
    return BoxSums(body_mask(unit_volume, threshold))


def body_scores(
    unit_volume: Any, corners: np.ndarray, size: Sequence[int], threshold: float = BODY_THRESHOLD
) -> np.ndarray:
    """Fraction of body voxels in each window (content test for MRI and non-lung data).

    Args:
        unit_volume: ``(X, Y, Z)`` array in [0, 1] or a :class:`BoxSums` from :func:`body_table`.
        corners: ``(N, 3)`` integer corners; size: ``(sx, sy, sz)``.
        threshold: tissue level of :func:`body_mask`.

    Returns:
        ``(N,)`` float64 fractions in [0, 1].
    """
    table = unit_volume if isinstance(unit_volume, BoxSums) else body_table(unit_volume, threshold)
    n = int(np.prod(np.asarray(size, dtype=np.int64)))
    return table.box_sums(corners, size) / n
