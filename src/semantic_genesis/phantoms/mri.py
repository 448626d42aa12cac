"""Synthetic brain MRI patients with a glioma, in four sequences, with BraTS 2018 labels.

A patient is a deterministic function of ``(cohort seed, patient index)`` (``derive_seed``-seeded
NumPy generators), identical on every machine.

**Axes.** Arrays are ``(X, Y, Z)`` with the identity direction in the ITK/LPS world convention: +X to
the patient's left, +Y posterior, +Z superior (slice 0 below the skull base). The default grid
``96 x 96 x 64`` with spacing ``2.0 x 2.4 x 2.6`` mm covers 192 x 230 x 166 mm; when ``spacing`` is
omitted it is chosen so that any ``shape`` covers that field of view.

**Anatomy.** Scalp (fat), skull (cortical bone with a marrow diploe), subarachnoid CSF, cortex (grey
matter, 2.5-5 mm, folded by a smooth random field with CSF-filled sulci), white matter, deep grey
nuclei, lateral and third ventricles and the interhemispheric fissure. The tumour sits in the white
matter of one hemisphere: an irregular core (enhancing rim of 2-5 mm around necrosis; about one in
five tumours is non-enhancing, "lower grade") inside a larger irregular oedema region.

**Contrasts** (arbitrary scanner units, about 0-1500 before gain): T1: fat > WM > GM > CSF, skull
dark, necrosis dark; T1ce: as T1 plus a bright enhancing rim; T2: CSF and necrosis brightest,
oedema bright, GM > WM; FLAIR: CSF suppressed (dark), oedema brightest, GM > WM. Each sequence has
its own gain, a smooth multiplicative bias field, a mild blur and Rician noise.

**Labels** (``seg``, BraTS 2018): 0 background, 1 necrotic / non-enhancing tumour core, 2 peritumoural
oedema, 4 enhancing tumour; the core (1 and 4) always lies inside the whole tumour region.

**What varies between patients:** head size and shape, cortex thickness and folding, ventricle size,
a small rotation and shift, tumour hemisphere, position, size, shape, rim thickness, grade and
oedema extent, scanner gains, bias fields and noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.shapes import PatientFrame, smooth_noise
from semantic_genesis.utils.seeding import derive_seed

#: BraTS 2018 label values of :attr:`MRIPatient.seg`.
BRATS_LABELS: dict[str, int] = {"background": 0, "necrotic_core": 1, "edema": 2, "enhancing": 4}

#: Tissue classes of :attr:`MRIPatient.tissue`.
MRI_TISSUES: dict[str, int] = {
    "background": 0,
    "scalp": 1,
    "skull": 2,
    "diploe": 3,
    "csf": 4,
    "grey_matter": 5,
    "white_matter": 6,
    "deep_grey": 7,
    "ventricle": 8,
    "edema": 9,
    "necrosis": 10,
    "enhancing": 11,
    "non_enhancing": 12,
}

SEQUENCES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")

# Mean signal of every tissue in each sequence (order of MRI_TISSUES), before gain, bias and noise.
_SIGNAL = {
    #              bg  scalp skull diploe  csf   gm    wm   deep  vent  edema necr  enh   nonenh
    "t1": np.array([0, 1100, 150, 700, 250, 600, 850, 680, 240, 520, 300, 560, 450], np.float32),
    "t1ce": np.array([0, 1100, 150, 720, 260, 620, 860, 700, 250, 540, 320, 1400, 470], np.float32),
    "t2": np.array([0, 700, 120, 450, 1500, 900, 650, 820, 1520, 1300, 1380, 1000, 1200], np.float32),
    "flair": np.array([0, 800, 120, 500, 120, 780, 620, 720, 110, 1250, 700, 1000, 1100], np.float32),
}

MRI_FIELD_OF_VIEW_MM: tuple[float, float, float] = (192.0, 230.4, 166.4)
DEFAULT_MRI_SHAPE: tuple[int, int, int] = (96, 96, 64)


@dataclass
class MRIPatient:
    """One synthetic brain MRI patient.

    Attributes:
        patient_id: :func:`mri_patient_id` (``"phantom_mri_<index:03d>"`` for seed 0).
        modalities: ``{"flair", "t1", "t1ce", "t2"}`` -> :class:`~semantic_genesis.io.volumes.Volume`
            (float32 ``(X, Y, Z)``, arbitrary non-negative scanner units, same geometry).
        seg: uint8 ``(X, Y, Z)`` BraTS labels (:data:`BRATS_LABELS`).
        label_names: :data:`BRATS_LABELS`.
        tissue: uint8 ``(X, Y, Z)`` tissue classes (:data:`MRI_TISSUES`).
        params: anatomical and tumour parameters (JSON-serialisable).
    """

    patient_id: str
    modalities: dict[str, Any]
    seg: np.ndarray
    label_names: dict[str, int]
    tissue: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return self.modalities["flair"].spacing


def mri_patient_id(index: int, seed: int = 0) -> str:
    """The id of MRI patient ``index`` of cohort ``seed``: ``phantom_mri_000``, ... for seed 0,
    ``phantom_mri_s<seed>_000``, ... otherwise (cohorts of different seeds are different patients)."""
    return f"phantom_mri_{index:03d}" if int(seed) == 0 else f"phantom_mri_s{int(seed)}_{index:03d}"


def _check_mri_grid(shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape_t = tuple(int(s) for s in shape)
    if len(shape_t) != 3 or min(shape_t) < 16:
        raise DataError(f"phantom MRI shape must be 3 integers >= 16 (X, Y, Z), got {tuple(shape)}")
    if spacing is None:
        spacing_t = tuple(round(f / n, 6) for f, n in zip(MRI_FIELD_OF_VIEW_MM, shape_t))
    else:
        spacing_t = tuple(float(s) for s in spacing)
    if len(spacing_t) != 3 or min(spacing_t) <= 0:
        raise DataError(f"phantom MRI spacing must be 3 positive mm values, got {spacing}")
    fov = [n * s for n, s in zip(shape_t, spacing_t)]
    if fov[0] < 170 or fov[1] < 210 or fov[2] < 150:
        raise DataError(
            f"phantom MRI field of view {tuple(round(f) for f in fov)} mm (shape x spacing) is too small for a head; "
            "expected at least 170 x 210 x 150 mm"
        )
    return shape_t, spacing_t  # type: ignore[return-value]


def sample_mri_params(index: int, seed: int = 0) -> dict[str, Any]:
    """Draw the head and tumour parameters of MRI patient ``index`` of cohort ``seed``."""
    rng = np.random.default_rng(derive_seed(seed, index, "mri", "params"))
    head = rng.uniform(0.9, 1.06)
    side = 1 if rng.uniform() < 0.5 else -1
    core = rng.uniform(8.0, 20.0)
    return {
        "head_scale": float(head),
        "head_ap_ratio": float(rng.uniform(1.15, 1.32)),
        "cortex_mm": float(rng.uniform(3.5, 6.0)),
        "ventricle_scale": float(rng.uniform(0.7, 1.4)),
        "rotation_deg": float(rng.uniform(-6.0, 6.0)),
        "shift_x_mm": float(rng.uniform(-5.0, 5.0)),
        "shift_y_mm": float(rng.uniform(-5.0, 5.0)),
        "shift_z_mm": float(rng.uniform(-5.0, 5.0)),
        "tumour_side": "left" if side > 0 else "right",
        "tumour_center_mm": [float(side * rng.uniform(22.0, 40.0) * head), float(rng.uniform(-40.0, 35.0) * head), float(rng.uniform(0.0, 30.0) * head)],
        "tumour_core_radius_mm": float(core),
        "tumour_rim_mm": float(rng.uniform(2.0, 5.0)),
        "tumour_enhancing": bool(rng.uniform() < 0.8),
        "edema_factor": float(rng.uniform(1.35, 2.1)),
        "gains": {s: float(rng.uniform(0.85, 1.15)) for s in SEQUENCES},
        "noise_fraction": float(rng.uniform(0.015, 0.035)),
    }


def _irregular_metric(du: np.ndarray, dv: np.ndarray, dw: np.ndarray, radius: float, coeffs: np.ndarray) -> np.ndarray:
    """Distance / local radius for a blob whose radius varies smoothly with direction (< 1 inside)."""
    dist = np.sqrt(du * du + dv * dv + dw * dw) + 1e-6
    x, y, z = du / dist, dv / dist, dw / dist
    mod = 1.0 + coeffs[0] * x + coeffs[1] * y + coeffs[2] * z + coeffs[3] * x * y + coeffs[4] * y * z + coeffs[5] * (x * x - z * z)
    return dist / (radius * np.maximum(mod, 0.5))


def make_mri_patient(
    index: int,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_MRI_SHAPE,
    spacing: Sequence[float] | None = None,
) -> MRIPatient:
    """Generate brain MRI patient ``index`` of cohort ``seed``.

    Args:
        index: patient index (>= 0).
        seed: cohort seed.
        shape: grid ``(X, Y, Z)``; default ``(96, 96, 64)``.
        spacing: voxel size (mm); default covers :data:`MRI_FIELD_OF_VIEW_MM`.

    Returns:
        An :class:`MRIPatient`; the same arguments give identical arrays.

    Raises:
        DataError: negative index or a field of view too small for a head.
    """
    from semantic_genesis.io.volumes import Volume

    if int(index) < 0:
        raise DataError(f"phantom patient index must be >= 0, got {index}")
    index, seed = int(index), int(seed)
    shape_t, spacing_t = _check_mri_grid(shape, spacing)
    p = sample_mri_params(index, seed)
    rng = np.random.default_rng(derive_seed(seed, index, "mri", "texture"))
    frame = PatientFrame(shape_t, spacing_t, math.radians(p["rotation_deg"]), (p["shift_x_mm"], p["shift_y_mm"], p["shift_z_mm"]))
    U, V, W = frame.grid()
    T = MRI_TISSUES
    hs = p["head_scale"]
    a, b, c = 66.0 * hs, 66.0 * hs * p["head_ap_ratio"], 60.0 * hs
    c_eff = np.where(W < 0, 0.82 * c, c)  # flatter skull base
    r = np.sqrt((U / a) ** 2 + (V / b) ** 2 + (W / c_eff) ** 2)  # brain surface at r = 1
    depth = (1.0 - r) * 0.5 * (a + c)  # approximate depth (mm) below the brain surface; < 0 outside

    tissue = np.zeros(shape_t, np.uint8)
    tissue[depth > -16.0] = T["scalp"]
    tissue[depth > -10.0] = T["skull"]
    tissue[(depth > -8.0) & (depth < -5.0)] = T["diploe"]
    tissue[depth > -3.0] = T["csf"]
    folds = smooth_noise(rng, shape_t, tuple(max(2, n // 4) for n in shape_t))
    brain = depth > 0.0
    tissue[brain] = T["grey_matter"]
    # gyri: the grey/white boundary follows the folding field; sulci cut CSF into the cortex
    cortex = p["cortex_mm"] * (1.0 + 0.6 * np.abs(folds))
    tissue[brain & (depth > cortex)] = T["white_matter"]
    sulci = brain & (depth < cortex * 0.8) & (np.abs(folds) < 0.12)
    tissue[sulci] = T["csf"]
    fissure = brain & (np.abs(U) < 1.6) & (W > 18.0)
    tissue[fissure] = T["csf"]
    for s in (1, -1):  # deep grey nuclei
        deep = ((U - s * 20.0 * hs) / 11.0) ** 2 + ((V + 2.0) / 18.0) ** 2 + ((W - 4.0) / 10.0) ** 2 < 1.0
        tissue[deep & brain] = T["deep_grey"]
    vs = p["ventricle_scale"]
    for s in (1, -1):  # lateral ventricles: curved, elongated front to back
        vc_w = 12.0 + 6.0 * (V / (30.0 * hs)) ** 2
        vent = ((U - s * 10.0 * hs) / (5.5 * vs)) ** 2 + (V / (30.0 * hs)) ** 2 + ((W - vc_w) / (7.0 * vs)) ** 2 < 1.0
        tissue[vent & brain] = T["ventricle"]
    third = (np.abs(U) < 1.8 * vs) & (np.abs(V + 2.0) < 14.0) & (W > -8.0) & (W < 10.0)
    tissue[third & brain] = T["ventricle"]

    # tumour: irregular core (enhancing rim around necrosis) inside irregular oedema
    tc = np.asarray(p["tumour_center_mm"])
    rc = p["tumour_core_radius_mm"]
    du, dv, dw = U - tc[0], V - tc[1], W - tc[2]
    lumps = smooth_noise(rng, shape_t, tuple(max(2, n // 6) for n in shape_t))
    core_m = _irregular_metric(du, dv, dw, rc, rng.normal(0, 0.15, 6)) * (1.0 + 0.08 * lumps)
    edema_m = _irregular_metric(du, dv, dw, rc * p["edema_factor"], rng.normal(0, 0.22, 6)) * (1.0 - 0.15 * lumps)
    intracranial = depth > -3.0
    margin = 1.0 + 1.5 * max(spacing_t) / rc  # the oedema region always wraps the core
    parenchyma = (depth > 1.0) & (tissue != T["ventricle"]) & (tissue != T["csf"])
    whole = intracranial & (((edema_m < 1.0) & parenchyma) | (core_m < margin))
    core = intracranial & (core_m < 1.0)
    seg = np.zeros(shape_t, np.uint8)
    seg[whole] = BRATS_LABELS["edema"]
    tissue[whole] = T["edema"]
    if p["tumour_enhancing"]:
        rim = core & (core_m > 1.0 - p["tumour_rim_mm"] / rc)
        necrosis = core & ~rim
        seg[necrosis] = BRATS_LABELS["necrotic_core"]
        seg[rim] = BRATS_LABELS["enhancing"]
        tissue[necrosis] = T["necrosis"]
        tissue[rim] = T["enhancing"]
    else:
        seg[core] = BRATS_LABELS["necrotic_core"]
        tissue[core] = T["non_enhancing"]

    # sequences: tissue signal with texture, gain, bias field, blur, Rician noise
    texture = 0.03 * smooth_noise(rng, shape_t, tuple(max(2, n // 3) for n in shape_t))
    head_mask = tissue > 0
    modalities: dict[str, Any] = {}
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape_t, spacing_t))
    pid = mri_patient_id(index, seed)
    for name in SEQUENCES:
        img = _SIGNAL[name][tissue] * (1.0 + texture)
        bias = 1.0 + 0.08 * smooth_noise(rng, shape_t, (2, 2, 2))
        img = img * bias * p["gains"][name]
        img = ndimage.gaussian_filter(img, 0.5, truncate=2.5)
        sigma = p["noise_fraction"] * 800.0
        n1 = rng.standard_normal(shape_t, dtype=np.float32) * sigma
        n2 = rng.standard_normal(shape_t, dtype=np.float32) * sigma
        img = np.sqrt((img + n1) ** 2 + n2**2).astype(np.float32)
        modalities[name] = Volume(img, spacing_t, origin, metadata={"modality": "mri", "sequence": name, "patient_id": pid, "phantom": True})
    params = {"index": index, "seed": seed, "shape": list(shape_t), "spacing": list(spacing_t), **p}
    params["tumour_volume_ml"] = float(np.count_nonzero(seg) * np.prod(spacing_t) / 1000.0)
    params["head_voxels"] = int(np.count_nonzero(head_mask))
    return MRIPatient(pid, modalities, seg, dict(BRATS_LABELS), tissue, params)


def make_mri_cohort(n: int, seed: int = 0, start: int = 0, **kwargs: Any) -> list[MRIPatient]:
    """MRI patients ``start .. start + n - 1`` of cohort ``seed`` (``kwargs``: ``shape``, ``spacing``)."""
    if n < 0:
        raise DataError(f"number of phantom patients must be >= 0, got {n}")
    return [make_mri_patient(i, seed, **kwargs) for i in range(start, start + n)]
