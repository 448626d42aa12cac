"""Chest radiographs projected from the phantom CT patients, with optional findings and labels.

A radiograph is a physical projection of a :class:`~semantic_genesis.phantoms.ct.CTPatient`, so the
2D images share the 3D cohort's anatomy:

1. **Findings** modify a copy of the CT first: *cardiomegaly* enlarges the heart (x1.25-1.4 in-plane
   about its centre) into the surrounding lung and fat; *effusion* fills the base of one or both
   lungs with fluid (15 HU) up to a level that rises laterally (a meniscus); *pneumothorax*
   collapses one lung's frontal silhouette towards its medial base (x0.7-0.85), so the apical and
   lateral rim becomes air without lung markings (its projection is ``pneumothorax_mask``); *nodule* keeps the patient's
   nodules and, if none is >= 6 mm, inserts a solid 10-20 mm nodule.
2. **Attenuation** ``mu = 0.02/mm * (HU + 1000) / 1000``, raised for bone (HU > 100) to mimic its
   stronger photoelectric absorption, is integrated along the beam (the AP axis, Y) with a point
   source: ``PA`` (source 1800 mm behind the patient, detector at the chest) or ``AP`` (source
   1000 mm in front, detector at the back, so the heart is magnified more).
3. **Detector and display**: Beer-Lambert transmission ``exp(-P)`` with quantum noise, log
   transform, a sigmoid characteristic curve fitted to the body's attenuation range and mild
   unsharp masking, as a processed chest radiograph: air black, lungs dark, soft tissue grey,
   bones bright.

Images are ``(H, W)`` float32 in [0, 1]; row 0 is superior (head) and column 0 is the patient's
right (the usual display: the patient's right on the viewer's left).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.utils.seeding import derive_seed

#: Finding names (ChestX-ray14 spelling), the keys of :attr:`Radiograph.labels`.
FINDINGS: tuple[str, ...] = ("Nodule", "Cardiomegaly", "Effusion", "Pneumothorax")

MU_WATER_PER_MM = 0.02
_SOURCE_TO_DETECTOR_MM = {"PA": 1800.0, "AP": 1000.0}


@dataclass
class Radiograph:
    """One synthetic chest radiograph.

    Attributes:
        patient_id: ``"phantom_xray_<index:03d>"`` (index of the CT patient it projects).
        image: float32 ``(H, W)`` in [0, 1]; row 0 superior, column 0 the patient's right.
        spacing: pixel size in mm ``(row, col)`` at the detector.
        labels: finding -> bool for every name in :data:`FINDINGS`.
        pneumothorax_mask: bool ``(H, W)``, the projected pneumothorax (all False without one).
        view: ``"PA"`` or ``"AP"``.
        masks: bool ``(H, W)`` projections of ``"lung"`` and ``"heart"`` (for measurements/tests).
        measurements: ``heart_width_mm``, ``thorax_width_mm``, ``cardiothoracic_ratio``.
        params: what was applied (finding sides, sizes, factors).
    """

    patient_id: str
    image: np.ndarray
    spacing: tuple[float, float]
    labels: dict[str, bool]
    pneumothorax_mask: np.ndarray
    view: str = "PA"
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def xray_patient_id(index: int) -> str:
    """The id of the radiograph of CT patient ``index``: ``phantom_xray_000``, ..."""
    return f"phantom_xray_{index:03d}"


def normalise_findings(findings: Iterable[str]) -> tuple[str, ...]:
    """Canonical names (:data:`FINDINGS` spelling, any case accepted), in :data:`FINDINGS` order."""
    lookup = {f.lower(): f for f in FINDINGS}
    out = set()
    for name in findings:
        key = str(name).strip().lower()
        if key not in lookup:
            raise DataError(f"unknown radiograph finding {name!r}; expected some of {', '.join(FINDINGS)}")
        out.add(lookup[key])
    return tuple(f for f in FINDINGS if f in out)


def draw_findings(index: int, seed: int = 0, finding_rate: float = 0.3) -> tuple[str, ...]:
    """Findings of radiograph ``index`` in a cohort: each finding independently with ``finding_rate``."""
    rng = np.random.default_rng(derive_seed(seed, index, "xray", "findings"))
    return tuple(f for f, d in zip(FINDINGS, rng.random(len(FINDINGS))) if d < finding_rate)


# --------------------------------------------------------------------------------------------------
# findings applied to the CT


def _mm_grid(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    return [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.nonzero(mask)
    lo = np.array([max(0, int(i.min()) - pad) for i in idx])
    hi = np.array([min(s, int(i.max()) + 1 + pad) for i, s in zip(idx, mask.shape)])
    return lo, hi


def _scaled_mask(mask: np.ndarray, centre: np.ndarray, factors: Sequence[float], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mask scaled by ``factors`` (per axis, voxel units) about ``centre``, evaluated on box ``[lo, hi)``."""
    axes = _mm_grid(lo, hi)
    grids = np.meshgrid(*axes, indexing="ij")
    src = [centre[k] + (grids[k] - centre[k]) / factors[k] for k in range(3)]
    return ndimage.map_coordinates(mask.astype(np.uint8), src, order=0, mode="constant", cval=0) > 0


def _cardiomegaly(hu: np.ndarray, lab: np.ndarray, names: dict[str, int], rng: np.random.Generator) -> dict[str, Any]:
    heart = lab == names["heart"]
    if not heart.any():
        raise DataError("cannot simulate cardiomegaly: the CT patient has no heart label")
    factor = float(rng.uniform(1.25, 1.4))
    centre = np.array(ndimage.center_of_mass(heart))
    lo, hi = _bbox(heart)
    size = hi - lo
    lo = np.maximum(0, lo - (size * (factor - 1) / 2 + 2).astype(int))
    hi = np.minimum(hu.shape, hi + (size * (factor - 1) / 2 + 2).astype(int))
    big = _scaled_mask(heart, centre, (factor, factor, 1.1), lo, hi)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub_lab = lab[box]
    soft = ~np.isin(sub_lab, [names["bone"], names["background"], names["airway"]])
    grow = big & soft & (sub_lab != names["heart"])
    hu[box][grow] = 40.0
    sub_lab[grow] = names["heart"]
    return {"cardiomegaly_factor": factor}


def _effusion(hu: np.ndarray, env: np.ndarray, names: dict[str, int], spacing: Sequence[float], rng: np.random.Generator) -> dict[str, Any]:
    side = str(rng.choice(["left", "right", "both"], p=[0.4, 0.4, 0.2]))
    sides = ["left", "right"] if side == "both" else [side]
    height = float(rng.uniform(50.0, 90.0))
    for s in sides:
        lung = env == names[f"lung_{s}"]
        if not lung.any():
            continue
        xs, _, zs = np.nonzero(lung)
        z0 = zs.min() * spacing[2]
        x_med = xs.max() if s == "right" else xs.min()  # +X is the patient's left
        x_lat = xs.min() if s == "right" else xs.max()
        x = np.arange(hu.shape[0], dtype=np.float32)[:, None, None]
        lateral = np.clip((x - x_med) / (x_lat - x_med if x_lat != x_med else 1.0), 0.0, 1.0)
        level = z0 + height * (0.55 + 0.8 * lateral**2)  # meniscus: higher laterally
        z = (np.arange(hu.shape[2], dtype=np.float32) * spacing[2])[None, None, :]
        fluid = lung & (z < level)
        hu[fluid] = 15.0 + rng.normal(0, 5.0, size=int(fluid.sum()))
    return {"effusion_side": side, "effusion_height_mm": height}


def _pneumothorax(hu: np.ndarray, env: np.ndarray, names: dict[str, int], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Collapse one lung towards its medial base in the frontal (X, Z) plane.

    The lung's frontal silhouette is shrunk by the collapse factor about a point at its medial base;
    lung voxels whose (X, Z) column falls outside the shrunk silhouette become air (no vessels, no
    parenchyma), the remaining lung is slightly denser (compressed). Returns the air voxels.
    """
    side = str(rng.choice(["left", "right"]))
    lung = env == names[f"lung_{side}"]
    if not lung.any():
        raise DataError(f"cannot simulate a pneumothorax: the CT patient has no {side} lung")
    factor = float(rng.uniform(0.7, 0.85))
    silhouette = lung.any(axis=1)  # (X, Z)
    xs, zs = np.nonzero(silhouette)
    x_med = xs.max() if side == "right" else xs.min()  # +X is the patient's left
    cx, cz = float(x_med), float(zs.min() + 0.2 * (zs.max() - zs.min()))
    gx, gz = np.meshgrid(np.arange(hu.shape[0], dtype=np.float32), np.arange(hu.shape[2], dtype=np.float32), indexing="ij")
    src = [cx + (gx - cx) / factor, cz + (gz - cz) / factor]
    kept = ndimage.map_coordinates(silhouette.astype(np.uint8), src, order=0, mode="constant", cval=0) > 0
    air_columns = silhouette & ~kept
    ptx = lung & air_columns[:, None, :]
    remaining = lung & kept[:, None, :]
    hu[remaining] += 60.0
    hu[ptx] = -1000.0 + rng.normal(0, 5.0, size=int(ptx.sum()))
    return ptx, {"pneumothorax_side": side, "collapse_factor": factor}


def _insert_nodule(hu: np.ndarray, env: np.ndarray, spacing: Sequence[float], rng: np.random.Generator) -> dict[str, Any]:
    diameter = float(rng.uniform(10.0, 20.0))
    r = diameter / 2
    depth = ndimage.distance_transform_edt(env > 0, sampling=spacing)
    ok = np.argwhere(depth > r + 3.0)
    if len(ok) == 0:
        raise DataError("cannot insert a nodule: the lungs of the CT patient are too small")
    c = ok[rng.integers(len(ok))]
    pad = np.ceil(r / np.asarray(spacing)).astype(int) + 1
    lo, hi = np.maximum(c - pad, 0), np.minimum(c + pad + 1, hu.shape)
    grids = np.meshgrid(*[(np.arange(a, b) - cc) * s for a, b, cc, s in zip(lo, hi, c, spacing)], indexing="ij")
    dist = np.sqrt(sum(g * g for g in grids))
    occ = np.clip((r - dist) / float(np.mean(spacing)) + 0.5, 0.0, 1.0)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    hu[box] = hu[box] * (1 - occ) + 30.0 * occ
    return {"inserted_nodule_vox": [int(x) for x in c], "inserted_nodule_mm": diameter}


# --------------------------------------------------------------------------------------------------
# projection


def attenuation(hu: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) from HU: water-equivalent, with extra absorption for bone."""
    rel = np.maximum(hu + 1000.0, 0.0) / 1000.0
    bone_boost = 1.0 + 0.6 * np.clip((hu - 100.0) / 1000.0, 0.0, 2.0)
    return (MU_WATER_PER_MM * rel * bone_boost).astype(np.float32)


def project(values: np.ndarray, spacing: Sequence[float], view: str = "PA") -> np.ndarray:
    """Point-source projection of ``values (X, Y, Z)`` along Y: line integrals (value x mm), ``(X, Z)``.

    Every Y plane is magnified by ``SID / (SID - d)`` (``d`` its distance to the detector) relative
    to the plane through the volume centre, so structures far from the detector look bigger.
    """
    if view not in _SOURCE_TO_DETECTOR_MM:
        raise DataError(f"unknown radiograph view {view!r}; expected 'PA' or 'AP'")
    sid = _SOURCE_TO_DETECTOR_MM[view]
    nx, ny, nz = values.shape
    sy = float(spacing[1])
    y = np.arange(ny) * sy
    # PA: the detector touches the front of the patient (small Y); AP: the back (large Y)
    d = (y - y[0]) if view == "PA" else (y[-1] - y)
    mag = sid / (sid - d - 20.0)
    m_ref = sid / (sid - float(np.mean(d)) - 20.0)
    xc, zc = (nx - 1) / 2, (nz - 1) / 2
    gx, gz = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(nz, dtype=np.float32), indexing="ij")
    out = np.zeros((nx, nz), np.float32)
    for j in range(ny):
        plane = values[:, j, :]
        if not plane.any():
            continue
        ratio = m_ref / mag[j]
        coords = [xc + (gx - xc) * ratio, zc + (gz - zc) * ratio * 1.0]
        out += ndimage.map_coordinates(plane, coords, order=1, mode="constant", cval=0.0)
    return out * sy


def _to_image(proj_xz: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """``(X, Z)`` detector array -> ``(H, W)`` display orientation (row 0 superior) resized to ``size``."""
    img = proj_xz[:, ::-1].T  # rows: Z from head to feet; columns: X (patient's right first)
    zoom = (size[0] / img.shape[0], size[1] / img.shape[1])
    out = ndimage.zoom(img, zoom, order=order, grid_mode=True, mode="nearest")
    return out[: size[0], : size[1]]


def make_radiograph(
    ct_patient: Any,
    findings: Iterable[str] = (),
    size: Sequence[int] = (256, 256),
    view: str = "PA",
) -> Radiograph:
    """Project a CT phantom into a chest radiograph, after applying ``findings`` to a copy of it.

    Args:
        ct_patient: a :class:`~semantic_genesis.phantoms.ct.CTPatient` (not modified).
        findings: any of :data:`FINDINGS` (case-insensitive).
        size: output ``(H, W)``.
        view: ``"PA"`` or ``"AP"``.

    Returns:
        A :class:`Radiograph`; deterministic for a given patient, findings, size and view.
    """
    fnd = normalise_findings(findings)
    if view not in _SOURCE_TO_DETECTOR_MM:
        raise DataError(f"unknown radiograph view {view!r}; expected 'PA' or 'AP'")
    size_t = (int(size[0]), int(size[1]))
    if min(size_t) < 16:
        raise DataError(f"radiograph size must be at least 16 x 16, got {tuple(size)}")
    params = ct_patient.params
    index, seed = int(params.get("index", 0)), int(params.get("seed", 0))
    rng = np.random.default_rng(derive_seed(seed, index, "xray", fnd, view))
    names = ct_patient.label_names
    spacing = tuple(float(s) for s in ct_patient.volume.spacing)
    hu = ct_patient.hu.astype(np.float32)
    lab = ct_patient.labels.copy()
    env = ct_patient.lung_envelope
    applied: dict[str, Any] = {"findings": list(fnd), "view": view}
    if "Cardiomegaly" in fnd:
        applied.update(_cardiomegaly(hu, lab, names, rng))
    if "Effusion" in fnd:
        applied.update(_effusion(hu, env, names, spacing, rng))
    ptx = np.zeros(hu.shape, bool)
    if "Pneumothorax" in fnd:
        ptx, info = _pneumothorax(hu, env, names, rng)
        applied.update(info)
    visible = [n for n in ct_patient.nodules if n.diameter_mm >= 6.0]
    if "Nodule" in fnd and not visible:
        applied.update(_insert_nodule(hu, env, spacing, rng))

    p = project(attenuation(hu), spacing, view)
    # detector: Beer-Lambert transmission with quantum noise, then log and display processing
    transmission = np.exp(-p)
    photons = 4000.0
    transmission = np.maximum(transmission + rng.normal(0, 1, p.shape).astype(np.float32) * np.sqrt(transmission / photons), 1e-5)
    logp = -np.log(transmission)
    body = p > 0.3
    lo_v, hi_v = (np.percentile(logp[body], [1, 99.7]) if body.any() else (0.0, 1.0))
    x = (logp - lo_v) / max(hi_v - lo_v, 1e-6)
    disp = 1.0 / (1.0 + np.exp(-5.0 * (x - 0.5)))
    disp = (disp - 1.0 / (1.0 + math.exp(2.5))) / (1.0 / (1.0 + math.exp(-2.5)) - 1.0 / (1.0 + math.exp(2.5)))
    blur = ndimage.gaussian_filter(disp, 6.0)
    disp = disp + 0.5 * (disp - blur)  # unsharp masking, as CXR post-processing does
    image = np.clip(_to_image(disp.astype(np.float32), size_t), 0.0, 1.0).astype(np.float32)

    m_ref = _SOURCE_TO_DETECTOR_MM[view] / (_SOURCE_TO_DETECTOR_MM[view] - (hu.shape[1] - 1) * spacing[1] / 2 - 20.0)
    extent_rows = hu.shape[2] * spacing[2] * m_ref
    extent_cols = hu.shape[0] * spacing[0] * m_ref
    px = (extent_rows / size_t[0], extent_cols / size_t[1])

    def mask2d(mask3d: np.ndarray, min_mm: float) -> np.ndarray:
        return _to_image(project(mask3d.astype(np.float32), spacing, view), size_t) > min_mm

    lung2d = mask2d(env > 0, 0.5 * spacing[1])
    heart2d = mask2d(lab == names["heart"], 0.5 * spacing[1])
    ptx2d = mask2d(ptx, 0.5 * spacing[1]) if ptx.any() else np.zeros(size_t, bool)
    heart_cols = np.nonzero(heart2d.any(axis=0))[0]
    lung_cols = np.nonzero(lung2d.any(axis=0))[0]
    heart_w = (heart_cols.max() - heart_cols.min() + 1) * px[1] if len(heart_cols) else 0.0
    thorax_w = (lung_cols.max() - lung_cols.min() + 1) * px[1] if len(lung_cols) else 0.0
    labels = {f: f in fnd for f in FINDINGS}
    labels["Nodule"] = bool(visible) or "Nodule" in fnd
    pid = xray_patient_id(index)
    return Radiograph(
        patient_id=pid,
        image=image,
        spacing=(float(px[0]), float(px[1])),
        labels=labels,
        pneumothorax_mask=ptx2d,
        view=view,
        masks={"lung": lung2d, "heart": heart2d},
        measurements={
            "heart_width_mm": float(heart_w),
            "thorax_width_mm": float(thorax_w),
            "cardiothoracic_ratio": float(heart_w / thorax_w) if thorax_w else 0.0,
        },
        params=applied,
    )


def make_xray_cohort(
    n: int,
    seed: int = 0,
    finding_rate: float = 0.3,
    ct_shape: Sequence[int] = (128, 128, 96),
    size: Sequence[int] = (256, 256),
    view: str = "PA",
    start: int = 0,
) -> list[Radiograph]:
    """Radiographs of CT patients ``start .. start + n - 1`` of cohort ``seed``.

    Each finding is present independently with probability ``finding_rate`` (:func:`draw_findings`).
    """
    from semantic_genesis.phantoms.ct import make_ct_patient

    if n < 0:
        raise DataError(f"number of radiographs must be >= 0, got {n}")
    if not 0.0 <= finding_rate <= 1.0:
        raise DataError(f"finding_rate must be in [0, 1], got {finding_rate}")
    out = []
    for i in range(start, start + n):
        ct = make_ct_patient(i, seed, shape=ct_shape)
        out.append(make_radiograph(ct, draw_findings(i, seed, finding_rate), size=size, view=view))
    return out
