"""Chest radiographs projected from the phantom CT patients, with findings, sex and labels.

A radiograph is a physical projection of a :class:`~semantic_genesis.phantoms.ct.CTPatient`, so the
2D images share the 3D cohort's anatomy:

1. **Findings** (:data:`FINDINGS`: the 14 ChestX-ray14 labels and tuberculosis) modify a copy of the
   CT first, each by its simulator in :mod:`~semantic_genesis.phantoms.xray_findings` (which lists
   every signature), with its own random stream and a severity in [0, 1]; adding a finding never
   changes the others or the detector noise. The CT phantom is a nodule cohort, so *Nodule* keeps
   the patient's nodules and inserts a 12-28 mm one only if none is >= 10 mm, and a radiograph
   without the finding has the CT's nodules removed: the Nodule label follows the finding rate.
2. **Sex** (``"M"`` / ``"F"``) is a generation parameter with an anatomical effect: a female patient's
   cross-section is projected at :data:`SEX_SCALE` (0.93) of the male size (a narrower thorax and
   heart, a thinner body; the height is kept) and carries breast soft-tissue shadows over the lower
   lung zones (a curved inferior margin), the sex-specific signature a sex-bias analysis has to
   cope with.
3. **Attenuation** ``mu = 0.02/mm * (HU + 1000) / 1000``, raised for bone (HU > 100) to mimic its
   stronger photoelectric absorption, is integrated along the beam (the AP axis, Y) with a point
   source: ``PA`` (source 1800 mm behind the patient, detector at the chest) or ``AP`` (source
   1000 mm in front, detector at the back, so the heart is magnified more).
4. **Detector and display**: Beer-Lambert transmission ``exp(-P)`` with quantum noise, log
   transform, a sigmoid characteristic curve fitted to the body's attenuation range and mild
   unsharp masking, as a processed chest radiograph: air black, lungs dark, soft tissue grey,
   bones bright.

Images are ``(H, W)`` float32 in [0, 1]; row 0 is superior (head) and column 0 is the patient's
right (the usual display: the patient's right on the viewer's left). A cohort draws each patient's
findings, sex, age and view with :func:`draw_xray_spec`, a function of ``(seed, index)`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.io.datasets.chestxray14 import CHESTXRAY14_LABELS
from semantic_genesis.utils.seeding import derive_seed

#: The ChestX-ray14 labels (its spelling and order) the phantoms simulate: all 14, as the reader names them.
CHESTXRAY14_FINDINGS: tuple[str, ...] = CHESTXRAY14_LABELS
#: Every finding name, the keys of :attr:`Radiograph.labels`: the ChestX-ray14 labels, then
#: tuberculosis (used by the Shenzhen and VinDr-CXR exports).
FINDINGS: tuple[str, ...] = CHESTXRAY14_FINDINGS + ("Tuberculosis",)
SEXES = ("M", "F")
#: Width and depth of the projected patient by sex (male = 1).
SEX_SCALE = {"M": 1.0, "F": 0.93}
VIEWS = ("PA", "AP")
#: The CT's own nodules this large stand for the Nodule finding (smaller ones are rarely seen on a
#: radiograph); without one, the finding inserts a nodule.
VISIBLE_NODULE_MM = 10.0
#: Below this severity a report labeler calls a present finding uncertain (see ``xray_labels``).
SUBTLE_SEVERITY = 0.2

MU_WATER_PER_MM = 0.02
MU_BREAST_PER_MM = 0.019  # fat / glandular tissue mix, about -50 HU
_SOURCE_TO_DETECTOR_MM = {"PA": 1800.0, "AP": 1000.0}


@dataclass(frozen=True)
class XraySpec:
    """What a cohort draws for one radiograph (see :func:`draw_xray_spec`).

    Attributes:
        findings: finding names (:data:`FINDINGS` order).
        sex: ``"M"`` or ``"F"``.
        age: years (18-89; recorded in the exports, no anatomical effect).
        view: ``"PA"`` or ``"AP"``.
    """

    findings: tuple[str, ...]
    sex: str
    age: int
    view: str


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
        sex: ``"M"`` or ``"F"``.
        masks: bool ``(H, W)`` projections of ``"lung"`` and ``"heart"`` (for measurements/tests).
        finding_masks: finding -> bool ``(H, W)`` projection of the region it changed, for every
            present finding (the emphysema region is both lungs).
        measurements: ``heart_width_mm``, ``thorax_width_mm``, ``cardiothoracic_ratio``.
        params: what was applied: ``"findings"``, ``"severity"`` (finding -> [0, 1]), sides, sizes...
    """

    patient_id: str
    image: np.ndarray
    spacing: tuple[float, float]
    labels: dict[str, bool]
    pneumothorax_mask: np.ndarray
    view: str = "PA"
    sex: str = "M"
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    finding_masks: dict[str, np.ndarray] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> dict[str, float]:
        """finding -> severity in [0, 1] of every present finding."""
        return dict(self.params.get("severity", {}))


def xray_patient_id(index: int) -> str:
    """The id of the radiograph of CT patient ``index``: ``phantom_xray_000``, ..."""
    return f"phantom_xray_{index:03d}"


def normalise_findings(findings: Iterable[str]) -> tuple[str, ...]:
    """Canonical names (:data:`FINDINGS` spelling, any case, ``Pleural Thickening`` accepted), in
    :data:`FINDINGS` order."""
    lookup = {f.lower(): f for f in FINDINGS} | {f.lower().replace("_", " "): f for f in FINDINGS}
    out = set()
    for name in findings:
        key = str(name).strip().lower()
        if key not in lookup:
            raise DataError(f"unknown radiograph finding {name!r}; expected some of {', '.join(FINDINGS)}")
        out.add(lookup[key])
    return tuple(f for f in FINDINGS if f in out)


def draw_findings(index: int, seed: int = 0, finding_rate: float = 0.2) -> tuple[str, ...]:
    """Findings of radiograph ``index`` in a cohort: each finding independently with ``finding_rate``."""
    if not 0.0 <= finding_rate <= 1.0:
        raise DataError(f"finding_rate must be in [0, 1], got {finding_rate}")
    rng = np.random.default_rng(derive_seed(seed, index, "xray", "findings"))
    return tuple(f for f, d in zip(FINDINGS, rng.random(len(FINDINGS))) if d < finding_rate)


def draw_xray_spec(
    index: int, seed: int = 0, finding_rate: float = 0.2, female_fraction: float = 0.5, ap_fraction: float = 0.3
) -> XraySpec:
    """Findings, sex, age and view of radiograph ``index`` of cohort ``seed`` (deterministic).

    Args:
        index: patient index.
        seed: cohort seed.
        finding_rate: probability of each finding (independently).
        female_fraction: probability that the patient is female.
        ap_fraction: probability of an AP (rather than PA) view.
    """
    for name, value in (("female_fraction", female_fraction), ("ap_fraction", ap_fraction)):
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{name} must be in [0, 1], got {value}")
    rng = np.random.default_rng(derive_seed(seed, index, "xray", "demographics"))
    sex = "F" if rng.random() < female_fraction else "M"
    age = int(rng.integers(18, 90))
    view = "AP" if rng.random() < ap_fraction else "PA"
    return XraySpec(draw_findings(index, seed, finding_rate), sex, age, view)


# --------------------------------------------------------------------------------------------------
# projection


def attenuation(hu: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) from HU: water-equivalent, with extra absorption for bone."""
    rel = np.maximum(hu + 1000.0, 0.0) / 1000.0
    bone_boost = 1.0 + 0.6 * np.clip((hu - 100.0) / 1000.0, 0.0, 2.0)
    return (MU_WATER_PER_MM * rel * bone_boost).astype(np.float32)


def project(values: np.ndarray, spacing: Sequence[float], view: str = "PA", scale: float = 1.0, tolerance: float = 0.01) -> np.ndarray:
    """Point-source projection of ``values (X, Y, Z)`` along Y: line integrals (value x mm), ``(X, Z)``.

    Every Y plane is magnified by ``SID / (SID - d)`` (``d`` its distance to the detector) relative
    to the plane through the volume centre, so structures far from the detector look bigger.
    ``scale`` shrinks (< 1) or enlarges the patient's cross-section about the volume centre: the
    width (X) and every path length (Y) by ``scale``, the height (Z) is kept, so the anatomy still
    fills the detector from top to bottom.

    Speed: consecutive planes whose magnifications differ by at most ``tolerance`` (relative) are
    summed first and resampled once at their mean magnification (resampling is linear, so this only
    rounds each plane's magnification: with the default 1 %, positions move by at most 0.5 % of
    their distance to the centre, a third of a voxel at the edge of a 128-voxel grid), and only the
    planes and the detector area that the non-zero voxels reach are computed.
    """
    if view not in _SOURCE_TO_DETECTOR_MM:
        raise DataError(f"unknown radiograph view {view!r}; expected 'PA' or 'AP'")
    if not 0.5 <= scale <= 1.5:
        raise DataError(f"projection scale must be in [0.5, 1.5], got {scale}")
    sid = _SOURCE_TO_DETECTOR_MM[view]
    nx, ny, nz = values.shape
    sy = float(spacing[1])
    y = np.arange(ny) * sy
    # PA: the detector touches the front of the patient (small Y); AP: the back (large Y)
    d = (y - y[0]) if view == "PA" else (y[-1] - y)
    mag = sid / (sid - d - 20.0)
    m_ref = sid / (sid - float(np.mean(d)) - 20.0)
    xc, zc = (nx - 1) / 2, (nz - 1) / 2
    out = np.zeros((nx, nz), np.float32)
    occupied = values.any(axis=1)
    if not occupied.any():
        return out
    xs = np.nonzero(occupied.any(axis=1))[0]
    zs = np.nonzero(occupied.any(axis=0))[0]
    (bx0, bx1), (bz0, bz1) = (xs[0] - 1, xs[-1] + 1), (zs[0] - 1, zs[-1] + 1)
    planes = np.nonzero(values.any(axis=(0, 2)))[0]
    ratios = m_ref / mag  # detector position g samples plane j at c + (g - c) * ratio
    start = 0
    while start < len(planes):
        stop = start + 1
        while (
            stop < len(planes)
            and planes[stop] == planes[stop - 1] + 1
            and abs(ratios[planes[stop]] / ratios[planes[start]] - 1.0) <= tolerance
        ):
            stop += 1
        j0, j1 = planes[start], planes[stop - 1] + 1
        slab = values[:, j0:j1, :].sum(axis=1, dtype=np.float32) if j1 - j0 > 1 else values[:, j0, :]
        rz = float(np.mean(ratios[j0:j1]))
        rx = rz / scale
        start = stop
        gx0, gx1 = max(0, math.floor(xc + (bx0 - xc) / rx)), min(nx, math.ceil(xc + (bx1 - xc) / rx) + 1)
        gz0, gz1 = max(0, math.floor(zc + (bz0 - zc) / rz)), min(nz, math.ceil(zc + (bz1 - zc) / rz) + 1)
        if gx1 <= gx0 or gz1 <= gz0:
            continue
        cx = xc + (np.arange(gx0, gx1, dtype=np.float32)[:, None] - xc) * rx
        cz = zc + (np.arange(gz0, gz1, dtype=np.float32)[None, :] - zc) * rz
        coords = np.stack(np.broadcast_arrays(cx, cz))
        out[gx0:gx1, gz0:gz1] += ndimage.map_coordinates(slab, coords, order=1, mode="constant", cval=0.0)
    return out * (sy * scale)


def _to_image(proj_xz: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """``(X, Z)`` detector array -> ``(H, W)`` display orientation (row 0 superior) resized to ``size``."""
    img = proj_xz[:, ::-1].T  # rows: Z from head to feet; columns: X (patient's right first)
    zoom = (size[0] / img.shape[0], size[1] / img.shape[1])
    out = ndimage.zoom(img, zoom, order=order, grid_mode=True, mode="nearest")
    return out[: size[0], : size[1]]


def breast_shadows(lung_xz: np.ndarray, spacing_xz: Sequence[float], rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Breast soft tissue as line integrals ``(X, Z)`` (mu x mm) over the lower lung zones.

    Each breast is a half-ellipsoid whose thickness peaks (35-70 mm) over the lower third of the
    hemithorax, with a sharp curved inferior margin and a thickness fading upwards, centred on the
    lung of its side (from the projected lung silhouette ``lung_xz``).
    """
    out = np.zeros(lung_xz.shape, np.float32)
    xs, zs = np.nonzero(lung_xz)
    if len(xs) == 0:
        return out, {}
    mid = 0.5 * (xs.min() + xs.max())
    z_lo, z_hi = zs.min(), zs.max()
    depth = float(rng.uniform(35.0, 70.0))
    gx = np.arange(lung_xz.shape[0], dtype=np.float32)[:, None]
    gz = np.arange(lung_xz.shape[1], dtype=np.float32)[None, :]
    for lo, hi in ((xs.min(), mid), (mid, xs.max())):
        x0 = 0.5 * (lo + hi) + rng.normal(0.0, 0.05) * (hi - lo)
        a = 0.62 * (hi - lo)
        z0 = z_lo + float(rng.uniform(0.2, 0.3)) * (z_hi - z_lo)
        b = 0.3 * (z_hi - z_lo)
        r2 = ((gx - x0) / a) ** 2 + ((gz - z0) / b) ** 2
        below = np.sqrt(np.clip(1.0 - r2, 0.0, None))
        above = np.clip(1.0 - ((gz - z0) / (1.6 * b)) ** 2 - ((gx - x0) / a) ** 2, 0.0, None)
        out += MU_BREAST_PER_MM * depth * np.where(gz < z0, below, above)
    return out, {"breast_depth_mm": depth}


def make_radiograph(
    ct_patient: Any,
    findings: Iterable[str] = (),
    size: Sequence[int] = (256, 256),
    view: str = "PA",
    sex: str | None = None,
) -> Radiograph:
    """Project a CT phantom into a chest radiograph, after applying ``findings`` to a copy of it.

    Args:
        ct_patient: a :class:`~semantic_genesis.phantoms.ct.CTPatient` (not modified).
        findings: any of :data:`FINDINGS` (case-insensitive).
        size: output ``(H, W)``.
        view: ``"PA"`` or ``"AP"``.
        sex: ``"M"`` or ``"F"``; ``None`` takes the patient's sex from :func:`draw_xray_spec` (cohort
            defaults).

    Returns:
        A :class:`Radiograph`; deterministic for a given patient, findings, size, view and sex.
    """
    from semantic_genesis.phantoms.xray_findings import SIMULATORS, FindingContext, remove_nodules

    fnd = normalise_findings(findings)
    if view not in _SOURCE_TO_DETECTOR_MM:
        raise DataError(f"unknown radiograph view {view!r}; expected 'PA' or 'AP'")
    size_t = (int(size[0]), int(size[1]))
    if min(size_t) < 16:
        raise DataError(f"radiograph size must be at least 16 x 16, got {tuple(size)}")
    params = ct_patient.params
    index, seed = int(params.get("index", 0)), int(params.get("seed", 0))
    if sex is None:
        sex = draw_xray_spec(index, seed).sex
    if sex not in SEXES:
        raise DataError(f"unknown patient sex {sex!r}; expected 'M' or 'F'")
    scale = SEX_SCALE[sex]
    names = ct_patient.label_names
    spacing = tuple(float(s) for s in ct_patient.volume.spacing)
    ctx = FindingContext(ct_patient.hu.astype(np.float32), ct_patient.labels.copy(), ct_patient.lung_envelope, names, spacing)
    applied: dict[str, Any] = {"findings": list(fnd), "view": view, "sex": sex, "severity": {}}
    regions: dict[str, np.ndarray] = {}
    visible = [n for n in ct_patient.nodules if n.diameter_mm >= VISIBLE_NODULE_MM] if "Nodule" in fnd else []
    if "Nodule" not in fnd:
        removed = remove_nodules(ctx, float(params.get("lung_density_hu", -850.0)),
                                 np.random.default_rng(derive_seed(seed, index, "xray", "remove-nodules")))
        applied["removed_nodule_voxels"] = removed
    for name, simulate in SIMULATORS.items():
        if name not in fnd or (name == "Nodule" and visible):
            continue
        rng = np.random.default_rng(derive_seed(seed, index, "xray", "finding", name))
        severity = float(rng.random())
        result = simulate(ctx, rng, severity)
        applied["severity"][name] = severity
        applied.update(result.params)
        if result.region is not None and result.region.any():
            regions[name] = result.region
    if visible:
        regions["Nodule"] = ct_patient.labels == names["nodule"]
        applied["severity"]["Nodule"] = float(np.clip((max(n.diameter_mm for n in visible) - 12.0) / 16.0, 0.0, 1.0))

    rng = np.random.default_rng(derive_seed(seed, index, "xray", "detector", view, sex))
    p = project(attenuation(ctx.hu), spacing, view, scale)
    lung_xz = project((ctx.env > 0).astype(np.float32), spacing, view, scale) > 0.5 * spacing[1] * scale
    if sex == "F":
        breasts, info = breast_shadows(lung_xz, (spacing[0], spacing[2]), rng)
        p += breasts
        applied.update(info)
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

    m_ref = _SOURCE_TO_DETECTOR_MM[view] / (_SOURCE_TO_DETECTOR_MM[view] - (ctx.hu.shape[1] - 1) * spacing[1] / 2 - 20.0)
    extent_rows = ctx.hu.shape[2] * spacing[2] * m_ref
    extent_cols = ctx.hu.shape[0] * spacing[0] * m_ref
    px = (extent_rows / size_t[0], extent_cols / size_t[1])
    threshold = 0.5 * spacing[1] * scale

    def mask2d(mask3d: np.ndarray) -> np.ndarray:
        return _to_image(project(mask3d.astype(np.float32), spacing, view, scale), size_t) > threshold

    lung2d = _to_image(lung_xz.astype(np.float32), size_t) > 0.5
    heart2d = mask2d(ctx.lab == names["heart"])
    finding_masks = {name: mask2d(region) for name, region in regions.items()}
    ptx2d = finding_masks.get("Pneumothorax", np.zeros(size_t, bool))
    heart_cols = np.nonzero(heart2d.any(axis=0))[0]
    lung_cols = np.nonzero(lung2d.any(axis=0))[0]
    heart_w = (heart_cols.max() - heart_cols.min() + 1) * px[1] if len(heart_cols) else 0.0
    thorax_w = (lung_cols.max() - lung_cols.min() + 1) * px[1] if len(lung_cols) else 0.0
    labels = {f: f in fnd for f in FINDINGS}
    return Radiograph(
        patient_id=xray_patient_id(index),
        image=image,
        spacing=(float(px[0]), float(px[1])),
        labels=labels,
        pneumothorax_mask=ptx2d,
        view=view,
        sex=sex,
        masks={"lung": lung2d, "heart": heart2d},
        finding_masks=finding_masks,
        measurements={
            "heart_width_mm": float(heart_w),
            "thorax_width_mm": float(thorax_w),
            "cardiothoracic_ratio": float(heart_w / thorax_w) if thorax_w else 0.0,
        },
        params=applied,
    )


def radiograph_from_spec(index: int, seed: int, spec: XraySpec, ct_shape: Sequence[int] | None = None,
                         size: Sequence[int] = (256, 256)) -> Radiograph:
    """The radiograph of CT patient ``index`` of cohort ``seed`` with the findings, view and sex of ``spec``."""
    from semantic_genesis.phantoms.ct import make_ct_patient

    ct = make_ct_patient(index, seed, **({} if ct_shape is None else {"shape": tuple(int(s) for s in ct_shape)}))
    return make_radiograph(ct, spec.findings, size=size, view=spec.view, sex=spec.sex)


def make_xray_cohort(
    n: int,
    seed: int = 0,
    finding_rate: float = 0.2,
    ct_shape: Sequence[int] = (128, 128, 96),
    size: Sequence[int] = (256, 256),
    view: str | None = None,
    start: int = 0,
    female_fraction: float = 0.5,
    ap_fraction: float = 0.3,
) -> list[Radiograph]:
    """Radiographs of CT patients ``start .. start + n - 1`` of cohort ``seed``.

    Each patient's findings, sex and view come from :func:`draw_xray_spec` (each finding present
    independently with ``finding_rate``); ``view`` forces one view for all.
    """
    if n < 0:
        raise DataError(f"number of radiographs must be >= 0, got {n}")
    out = []
    for i in range(start, start + n):
        spec = draw_xray_spec(i, seed, finding_rate, female_fraction, ap_fraction)
        if view is not None:
            spec = XraySpec(spec.findings, spec.sex, spec.age, view)
        out.append(radiograph_from_spec(i, seed, spec, ct_shape, size))
    return out
