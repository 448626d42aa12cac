"""Synthetic chest CT patients with consistent anatomy, lung nodules and LUNA16-style candidates.

A patient is a deterministic function of ``(cohort seed, patient index)``: every random number comes
from ``numpy.random.default_rng(derive_seed(seed, index, ...))``, so the same pair gives the same
volume on any machine and patients can be generated in any order or in parallel.

**Axes and geometry.** Arrays are ``(X, Y, Z)``. With the identity direction in the ITK/LPS world
convention, +X points to the patient's **left** (so the right lung has the smaller X indices), +Y
points **posterior** (sternum at small Y, spine at large Y) and +Z points **superior** (slice 0 is
the most caudal, in the upper abdomen; the last slice is above the lung apices). The default grid
``128 x 128 x 96`` with spacing ``2.8 x 2.8 x 3.2`` mm covers 358 mm in-plane and 307 mm
cranio-caudally: the whole thorax down to the upper abdomen. When ``spacing`` is omitted it is chosen
so that any ``shape`` covers that same field of view.

**Anatomy and HU values** (before blur and noise): air outside -1000; subcutaneous and mediastinal
fat about -100/-90; muscle and chest wall 45; two lungs (parenchyma about -850, with low-frequency
texture and a posterior, gravity-dependent density gradient) separated by the mediastinum; trachea
and main/lobar bronchi (air lumen, soft-tissue wall); pulmonary artery and vein trees that branch
and taper from the hila into the lungs (blood 40); heart 40 with pericardial fat; ascending aorta,
arch and descending aorta 40; superior vena cava and pulmonary trunk; vertebral bodies (cancellous
~250, cortex ~900, discs 90) with neural arches, 12 pairs of ribs that slope downwards anteriorly
(cortex ~850, marrow ~300) and costal cartilage, sternum and clavicles; diaphragm domes (right
higher) closing the lungs below; liver (60) under the right dome, stomach (fluid and gas bubble)
and spleen under the left; abdominal soft tissue with fat. A mild point-spread blur and slightly
correlated Gaussian noise (sigma 10-20 HU) finish the scan.

**What varies between patients:** body size and AP/lateral ratio, subcutaneous fat thickness, lung
height (apex) and diaphragm height (lung volume), heart size, aortic calibre, a small in-plane
rotation and a shift, the vessel and airway branching, noise level, table position (origin) and
the lesions: 0-5 nodules of 3-30 mm, solid (~+30 HU) or part-solid (solid core inside a
ground-glass rim ~-500 HU), free, touching a vessel or touching the pleura. ``candidates`` lists
the true nodules (label 1) and look-alikes (label 0: vessel junctions, vessel cross-sections, random
lung points), as LUNA16's ``candidates.csv`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.shapes import (
    PatientFrame,
    polyline_segments,
    random_perpendicular,
    render_segments,
    smooth_noise,
    smoothstep,
    sphere_directions,
)
from semantic_genesis.utils.seeding import derive_seed

#: Label values of :attr:`CTPatient.labels`.
CT_LABELS: dict[str, int] = {
    "background": 0,
    "body": 1,  # soft tissue: muscle, chest wall, diaphragm, spleen, abdominal organs, cartilage
    "fat": 2,  # subcutaneous, mediastinal, pericardial and abdominal fat
    "lung_left": 3,
    "lung_right": 4,
    "airway": 5,  # trachea and bronchi (lumen and wall)
    "vessel": 6,  # pulmonary arteries and veins, pulmonary trunk, superior vena cava
    "heart": 7,
    "aorta": 8,
    "liver": 9,
    "bone": 10,
    "nodule": 11,
    "stomach": 12,
}

#: Field of view (mm) that the default grid covers; ``spacing=None`` keeps it for any shape.
CT_FIELD_OF_VIEW_MM: tuple[float, float, float] = (358.4, 358.4, 307.2)

DEFAULT_CT_SHAPE: tuple[int, int, int] = (128, 128, 96)

# Reference HU values of the tissues (before blur and noise).
HU = {
    "air": -1000.0,
    "fat": -100.0,
    "mediastinal_fat": -90.0,
    "muscle": 45.0,
    "abdomen": 35.0,
    "lung": -850.0,
    "blood": 40.0,
    "liver": 60.0,
    "spleen": 48.0,
    "stomach_fluid": 15.0,
    "airway_wall": 30.0,
    "cancellous": 260.0,
    "cortical": 900.0,
    "rib_marrow": 320.0,
    "rib_cortex": 850.0,
    "disc": 90.0,
    "cartilage": 110.0,
    "cord": 25.0,
    "nodule_solid": 30.0,
    "ground_glass": -500.0,
}


@dataclass
class Nodule:
    """A lung nodule of a phantom patient.

    Attributes:
        center_vox: centre in continuous voxel indices ``(x, y, z)``.
        diameter_mm: equivalent diameter in mm (3-30).
        kind: ``"solid"`` or ``"part_solid"`` (solid core inside a ground-glass rim).
        attached: ``"vessel"``, ``"pleura"`` or ``None`` (free in the parenchyma).
        side: ``"left"`` or ``"right"`` lung.
    """

    center_vox: tuple[float, float, float]
    diameter_mm: float
    kind: str
    attached: str | None
    side: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "center_vox": [float(c) for c in self.center_vox],
            "diameter_mm": float(self.diameter_mm),
            "kind": self.kind,
            "attached": self.attached,
            "side": self.side,
        }


@dataclass
class Candidate:
    """A nodule candidate, as in LUNA16's ``candidates.csv``.

    Attributes:
        center_vox: position in continuous voxel indices ``(x, y, z)``.
        label: 1 for a true nodule, 0 for a look-alike.
        kind: ``"nodule"``, ``"vessel_junction"``, ``"vessel_cross_section"`` or ``"random"``.
    """

    center_vox: tuple[float, float, float]
    label: int
    kind: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"center_vox": [float(c) for c in self.center_vox], "label": int(self.label), "kind": self.kind}


@dataclass
class CTPatient:
    """One synthetic chest CT patient.

    Attributes:
        patient_id: :func:`ct_patient_id` (``"phantom_ct_<index:03d>"`` for seed 0).
        volume: :class:`~semantic_genesis.io.volumes.Volume` with float32 HU ``(X, Y, Z)``, spacing
            (mm), origin (mm, LPS), identity direction, metadata ``{"modality": "ct", ...}``.
        hu: int16 ``(X, Y, Z)`` HU (the volume rounded, clipped to [-1024, 3071]).
        labels: uint8 ``(X, Y, Z)`` label map, values of ``label_names``.
        label_names: name -> label value (:data:`CT_LABELS`).
        lung_envelope: uint8 ``(X, Y, Z)`` lung segmentation including the vessels, airways and
            nodules inside the lungs: ``label_names["lung_left"]``, ``["lung_right"]`` or 0.
        nodules: the patient's nodules.
        candidates: true nodules first, then look-alikes.
        params: the patient's anatomical parameters (JSON-serialisable).
    """

    patient_id: str
    volume: Any
    hu: np.ndarray
    labels: np.ndarray
    label_names: dict[str, int]
    lung_envelope: np.ndarray
    nodules: list[Nodule] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm ``(sx, sy, sz)``."""
        return self.volume.spacing


def ct_patient_id(index: int, seed: int = 0) -> str:
    """The id of patient ``index`` of cohort ``seed``: ``phantom_ct_000``, ``phantom_ct_001``, ... for
    seed 0, ``phantom_ct_s1000_000`` ... for another seed. Cohorts of different seeds are different
    people, so their ids differ, as real datasets' do (the pretraining / test leakage check compares
    patient ids across cohorts)."""
    return f"phantom_ct_{index:03d}" if int(seed) == 0 else f"phantom_ct_s{int(seed)}_{index:03d}"


def default_spacing(shape: Sequence[int], fov_mm: Sequence[float] = CT_FIELD_OF_VIEW_MM) -> tuple[float, float, float]:
    """Spacing (mm) so that a grid of ``shape`` covers ``fov_mm``."""
    return tuple(round(float(f) / int(s), 6) for f, s in zip(fov_mm, shape))  # type: ignore[return-value]


def _check_grid(shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape_t = tuple(int(s) for s in shape)
    if len(shape_t) != 3 or min(shape_t) < 16:
        raise DataError(f"phantom CT shape must be 3 integers >= 16 (X, Y, Z), got {tuple(shape)}")
    spacing_t = default_spacing(shape_t) if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing_t) != 3 or min(spacing_t) <= 0:
        raise DataError(f"phantom CT spacing must be 3 positive mm values, got {spacing}")
    fov = [n * s for n, s in zip(shape_t, spacing_t)]
    if fov[0] < 300 or fov[1] < 250 or fov[2] < 200:
        raise DataError(
            f"phantom CT field of view {tuple(round(f) for f in fov)} mm (shape x spacing) is too small "
            "for a thorax; expected at least 300 x 250 x 200 mm"
        )
    return shape_t, spacing_t  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Parameters and the analytic anatomy
# --------------------------------------------------------------------------------------------------


def sample_ct_params(index: int, seed: int = 0) -> dict[str, float]:
    """Draw the anatomical parameters of patient ``index`` of cohort ``seed`` (deterministic)."""
    rng = np.random.default_rng(derive_seed(seed, index, "ct", "params"))
    body_scale = rng.uniform(0.88, 1.05)
    params = {
        "body_scale": body_scale,
        "body_half_width_mm": 150.0 * body_scale,
        "ap_ratio": rng.uniform(0.62, 0.72),
        "belly": rng.uniform(0.0, 0.15),
        "fat_mm": rng.uniform(5.0, 22.0),
        "muscle_mm": rng.uniform(6.0, 10.0),
        "apex_mm": 118.0 + rng.uniform(-8.0, 8.0),
        "dome_left_mm": rng.uniform(-72.0, -45.0),
        "dome_right_extra_mm": rng.uniform(10.0, 22.0),
        "heart_scale": rng.uniform(0.88, 1.12),
        "aorta_scale": rng.uniform(0.9, 1.15),
        "rotation_deg": rng.uniform(-5.0, 5.0),
        "shift_x_mm": rng.uniform(-10.0, 10.0),
        "shift_y_mm": rng.uniform(-8.0, 8.0),
        "shift_z_mm": rng.uniform(-8.0, 8.0),
        "vertebra_mm": 25.0 * math.sqrt(body_scale) + rng.uniform(-1.0, 1.0),
        "vertebra_phase": rng.uniform(0.0, 1.0),
        "rib_drop_mm": rng.uniform(45.0, 70.0),
        "noise_hu": rng.uniform(10.0, 20.0),
        "lung_density_hu": rng.uniform(-870.0, -835.0),
        "table_z_mm": float(np.round(rng.uniform(-40.0, 40.0) * 2) / 2),
    }
    return {k: float(v) for k, v in params.items()}


class ChestAnatomy:
    """Analytic chest anatomy in the patient frame ``(u, v, w)`` (mm; left, posterior, superior).

    Every method takes broadcastable arrays, so the same code answers for a whole grid
    (``U (X, Y, 1)``, ``V (X, Y, 1)``, ``W (1, 1, Z)``) and for a list of points (``(N,)`` each).
    """

    def __init__(self, p: dict[str, float]):
        self.p = p
        self.A0 = p["body_half_width_mm"]
        self.B0 = self.A0 * p["ap_ratio"]
        self.wall = p["fat_mm"] + p["muscle_mm"] + 7.0  # fat + muscle + rib layer
        self.Ac0 = self.A0 - self.wall
        self.Bc0 = self.B0 - self.wall
        self.apex = p["apex_mm"]
        self.dome_l = p["dome_left_mm"]
        self.dome_r = p["dome_left_mm"] + p["dome_right_extra_mm"]
        hs = p["heart_scale"]
        self.heart_c = np.array([0.12 * self.Ac0, -0.28 * self.Bc0, self.dome_l + 46.0 * hs])
        self.heart_axes = np.array([54.0, 42.0, 50.0]) * hs * math.sqrt(p["body_scale"])
        self.heart_top = float(self.heart_c[2] + self.heart_axes[2] * 0.95)
        ang = math.radians(-35.0)  # long axis towards the left and anterior
        self.heart_rot = np.array([[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]])
        self.spine_v = self.Bc0 - 14.0
        self.spine_axes = (20.0 * math.sqrt(p["body_scale"]), 16.0 * math.sqrt(p["body_scale"]))
        self.canal_v = self.spine_v + self.spine_axes[1] + 9.0
        self.carina_w = self.heart_top + 18.0
        self.trachea_v = self.spine_v - self.spine_axes[1] - 22.0

    # -- outlines ------------------------------------------------------------------------------
    def body_axes(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral and AP semi-axes (mm) of the body outline at height ``w``."""
        a = self.A0 * (1.0 + 0.06 * np.clip(w / 150.0, -1.0, 1.0))
        b = self.B0 * (1.0 + self.p["belly"] * smoothstep(-20.0, -150.0, w))
        return a, b

    def body_metric(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, inset_mm: float = 0.0) -> np.ndarray:
        """Superellipse metric of the body outline shrunk by ``inset_mm`` (< 1 inside)."""
        a, b = self.body_axes(w)
        # powers of the (in-plane) coordinates and of the (per-slice) axes separately: on a grid
        # the 3D work is then a few multiplications instead of powers
        av = np.abs(v) ** 2.2
        back = (b * 0.97 - inset_mm) ** -2.2
        front = (b - inset_mm) ** -2.2
        return np.abs(u) ** 2.4 * (a - inset_mm) ** -2.4 + np.where(v > 0, av, 0.0) * back + np.where(v > 0, 0.0, av) * front

    def cavity_axes(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Semi-axes (mm) of the inner rib cage (thoracic / abdominal cavity) at height ``w``."""
        a, b = self.body_axes(w)
        return a - self.wall, b - self.wall

    def cavity_metric(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Elliptic metric of the cavity (< 1 inside)."""
        a, b = self.cavity_axes(w)
        return (u / a) ** 2 + (v / b) ** 2

    def cavity_top(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height (mm) of the top of the thoracic cavity per column (the thoracic inlet)."""
        return self.apex + 12.0 - 50.0 * ((u / self.Ac0) ** 2 + (v / self.Bc0) ** 2)

    def diaphragm(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height (mm) of the diaphragm surface per column; right dome higher; lower laterally/posteriorly."""
        lat = np.abs(u) - 0.42 * self.Ac0
        shape = (lat / (0.62 * self.Ac0)) ** 2 + ((v + 0.1 * self.Bc0) / (1.15 * self.Bc0)) ** 2
        drop = 72.0 * shape + 14.0 * (v / self.Bc0)
        left = 1.0 / (1.0 + np.exp(-u / 12.0))
        dome = left * self.dome_l + (1.0 - left) * self.dome_r
        return dome - drop

    def lung_top(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height (mm) of the lung apex surface per column (a dome over each lung)."""
        lat = (np.abs(u) - 0.5 * self.Ac0) / (0.65 * self.Ac0)
        ap = (v - 0.15 * self.Bc0) / (0.95 * self.Bc0)
        return self.apex - 55.0 * (lat**2 + ap**2)

    def mediastinum_half_width(self, w: np.ndarray) -> np.ndarray:
        """Half width (mm) of the mediastinal band between the lungs at height ``w``."""
        return 8.0 + 14.0 * smoothstep(self.heart_top - 10.0, self.heart_top + 25.0, w)

    def heart_metric(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Ellipsoid metric of the heart (< 1 inside), optionally scaled about its centre."""
        d = [u - self.heart_c[0], v - self.heart_c[1], w - self.heart_c[2]]
        r = self.heart_rot
        q0 = r[0, 0] * d[0] + r[1, 0] * d[1]
        q1 = r[0, 1] * d[0] + r[1, 1] * d[1]
        ax = self.heart_axes * scale
        return (q0 / ax[0]) ** 2 + (q1 / ax[1]) ** 2 + (d[2] / ax[2]) ** 2

    def spine_metric(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Elliptic metric of the vertebral body cross-section (< 1 inside)."""
        return (u / self.spine_axes[0]) ** 2 + ((v - self.spine_v) / self.spine_axes[1]) ** 2

    def lung_side(self, u: np.ndarray, v: np.ndarray, w: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Which lung holds each point: +1 left, -1 right, 0 none (analytic envelope).

        ``margin_mm`` shrinks the envelope (points must be that deep inside). Great vessels and the
        airway tubes are not part of this analytic test; the grid renderer removes them.
        """
        a, b = self.cavity_axes(w)
        m = margin_mm
        inside = ((u / (a - 2.0 - m)) ** 2 + (v / (b - 2.0 - m)) ** 2) < 1.0
        inside &= w > self.diaphragm(u, v) + m
        inside &= w < self.lung_top(u, v) - m
        inside &= np.abs(u) > self.mediastinum_half_width(w) + m
        inside &= self.heart_metric(u, v, w, scale=1.0 + (5.0 + m) / 45.0) > 1.0
        sx, sy = self.spine_axes
        inside &= ((u / (sx + 6.0 + m)) ** 2 + ((v - self.spine_v) / (sy + 8.0 + m)) ** 2) > 1.0
        inside &= ~((np.abs(u) < 28.0 + m) & (v > self.spine_v))  # paravertebral soft tissue
        return np.where(inside, np.where(u > 0, 1, -1), 0).astype(np.int8)

    # -- tubular structures (patient-frame polylines) ------------------------------------------
    def aorta(self) -> np.ndarray:
        """Aorta segments ``(N, 8)``: ascending, arch, descending through the diaphragm."""
        s = self.p["aorta_scale"]
        hc = self.heart_c
        top = self.heart_top + 22.0
        asc0 = np.array([-8.0, hc[1] + 2.0, hc[2] + 10.0])
        asc1 = np.array([-14.0, -0.35 * self.Bc0, top])
        desc0 = np.array([20.0, self.spine_v - self.spine_axes[1] - 10.0, top])
        t = np.linspace(0, 1, 9)
        arch = asc1[None] + t[:, None] * (desc0 - asc1)[None]
        arch[:, 2] += 26.0 * np.sin(np.pi * t)
        desc = np.array(
            [
                desc0,
                [21.0, desc0[1] + 2.0, self.heart_c[2]],
                [14.0, desc0[1] + 4.0, self.dome_l - 20.0],
                [6.0, desc0[1] + 4.0, -260.0],
            ]
        )
        pts = np.concatenate([asc0[None], arch, desc[1:]])
        radii = np.concatenate([[15.0], np.linspace(14.5, 11.5, len(arch)), [11.0, 10.5, 10.0]]) * s
        return polyline_segments(pts, radii)

    def great_veins_and_trunk(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Superior vena cava and pulmonary trunk segments, and the two hilum points."""
        hc = self.heart_c
        svc = polyline_segments(
            np.array([[-30.0, -0.18 * self.Bc0, 260.0], [-28.0, -0.2 * self.Bc0, self.heart_top + 5.0], [-22.0, hc[1] + 5.0, hc[2] + 15.0]]),
            np.array([9.0, 9.0, 10.0]),
        )
        bif = np.array([4.0, hc[1] + 18.0, self.heart_top + 12.0])
        hila = {
            "left": np.array([0.36 * self.Ac0, 0.05 * self.Bc0, self.heart_top + 4.0]),
            "right": np.array([-0.34 * self.Ac0, 0.05 * self.Bc0, self.heart_top - 2.0]),
        }
        trunk = polyline_segments(np.array([[14.0, hc[1] - 28.0, self.heart_top - 18.0], bif]), np.array([13.0, 12.0]))
        branches = np.concatenate(
            [
                polyline_segments(np.stack([bif, hila["left"]]), np.array([10.0, 8.0])),
                polyline_segments(np.stack([bif, hila["right"]]), np.array([10.0, 8.0])),
            ]
        )
        return np.concatenate([svc, trunk, branches]), hila

    def trachea(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Trachea and main bronchi segments (outer radius) and the two bronchus end points."""
        v = self.trachea_v
        car = np.array([0.0, v, self.carina_w])
        ends = {
            "right": np.array([-0.3 * self.Ac0, v + 12.0, self.carina_w - 24.0]),
            "left": np.array([0.3 * self.Ac0, v + 14.0, self.carina_w - 36.0]),
        }
        segs = np.concatenate(
            [
                polyline_segments(np.array([[0.0, v - 6.0, 260.0], [0.0, v - 3.0, self.carina_w + 40.0], car]), np.array([9.5, 9.5, 9.0])),
                polyline_segments(np.stack([car, ends["right"]]), np.array([7.5, 6.5])),
                polyline_segments(np.stack([car, ends["left"]]), np.array([7.0, 6.0])),
            ]
        )
        return segs, ends


# --------------------------------------------------------------------------------------------------
# Branching trees (vessels, airways)
# --------------------------------------------------------------------------------------------------


@dataclass
class Tree:
    """A rendered branching tree.

    Attributes:
        segments: ``(N, 8)`` rows ``(a, b, ra, rb)`` in patient-frame mm.
        junctions: ``(M, 4)`` branch points ``(u, v, w, radius)``.
    """

    segments: np.ndarray
    junctions: np.ndarray


def grow_tree(
    rng: np.random.Generator,
    anatomy: ChestAnatomy,
    roots: np.ndarray,
    directions: np.ndarray,
    radii: np.ndarray,
    side: int,
    max_generations: int = 7,
    min_radius: float = 0.6,
    length_factor: tuple[float, float] = (4.0, 7.0),
    min_length: float = 6.0,
) -> Tree:
    """Grow binary trees from ``roots`` inside one lung, generation by generation (vectorised).

    Each branch is a tapered tube whose length is a random multiple of its radius; it splits into a
    major and a minor child (radius ratios about 0.8 and 0.65, angles 15-35 and 30-55 degrees), with a
    pull away from the root so trees fan out and fill the lung. Branches that would leave the lung
    envelope (3 mm margin) are shortened once, then dropped.

    Args:
        rng: random stream.
        anatomy: the patient's analytic anatomy.
        roots, directions: ``(K, 3)`` start points and directions.
        radii: ``(K,)`` start radii (mm).
        side: +1 left lung, -1 right lung.
        max_generations: number of branching generations.
        min_radius: branches thinner than this (mm) are not grown.
        length_factor: range of branch length / radius.
        min_length: shortest branch (mm), so thin branches still reach the periphery.
    """
    tips = np.asarray(roots, dtype=np.float64)
    dirs = np.asarray(directions, dtype=np.float64)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    rad = np.asarray(radii, dtype=np.float64)
    origin = tips.copy()
    segments, junctions = [], []

    def inside(p: np.ndarray) -> np.ndarray:
        return anatomy.lung_side(p[:, 0], p[:, 1], p[:, 2], margin_mm=3.0) == side

    for gen in range(max_generations):
        if len(tips) == 0:
            break
        length = np.clip(rad * rng.uniform(*length_factor, size=len(rad)), min_length, 30.0)
        end = tips + dirs * length[:, None]
        ok = inside(end)
        if gen > 0:
            ok &= inside(tips + dirs * (0.5 * length[:, None]))
        short = ~ok
        if short.any():
            length[short] *= 0.5
            end[short] = tips[short] + dirs[short] * length[short, None]
            ok[short] = inside(end[short])
        tips, dirs, rad, end, origin = tips[ok], dirs[ok], rad[ok], end[ok], origin[ok]
        if len(tips) == 0:
            break
        r_end = rad * 0.95
        segments.append(np.concatenate([tips, end, rad[:, None], r_end[:, None]], axis=1))
        junctions.append(np.concatenate([end, r_end[:, None]], axis=1))
        # children: a major and a minor branch in a random plane around the parent direction
        perp = random_perpendicular(rng, dirs)
        a1 = np.radians(rng.uniform(15, 35, size=len(dirs)))[:, None]
        a2 = np.radians(rng.uniform(30, 55, size=len(dirs)))[:, None]
        away = end - origin
        away /= np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6)
        c1 = np.cos(a1) * dirs + np.sin(a1) * perp + 0.25 * away
        c2 = np.cos(a2) * dirs - np.sin(a2) * perp + 0.25 * away
        new_dirs = np.concatenate([c1, c2])
        new_dirs /= np.linalg.norm(new_dirs, axis=1, keepdims=True)
        new_rad = np.concatenate([r_end * rng.uniform(0.8, 0.92, len(r_end)), r_end * rng.uniform(0.6, 0.8, len(r_end))])
        keep = new_rad >= min_radius
        tips = np.concatenate([end, end])[keep]
        origin = np.concatenate([origin, origin])[keep]
        dirs, rad = new_dirs[keep], new_rad[keep]
    if segments:
        return Tree(np.concatenate(segments), np.concatenate(junctions))
    return Tree(np.zeros((0, 8)), np.zeros((0, 4)))


def _vessel_trees(rng: np.random.Generator, anat: ChestAnatomy, hila: dict[str, np.ndarray]) -> list[Tree]:
    """Pulmonary artery trees from each hilum and vein trees from the left atrium region.

    Trunks point to the lobes (upper, lateral, lower, anterior, posterior, apical); they branch
    down to 0.6 mm radius, so the periphery shows the partial-volume dots and lines of small vessels.
    """
    trees = []
    for name, s in (("left", 1), ("right", -1)):
        h = hila[name]
        art_dirs = np.array(
            [
                [0.35 * s, 0.1, 1.0],
                [0.2 * s, -0.5, 1.0],
                [1.0 * s, -0.35, 0.1],
                [1.0 * s, 0.4, 0.3],
                [0.5 * s, 0.45, -1.0],
                [0.5 * s, -0.5, -1.0],
                [0.6 * s, -0.8, -0.4],
                [0.7 * s, 0.9, 0.2],
            ]
        )
        art_dirs += rng.normal(0, 0.12, art_dirs.shape)
        start = h[None] + np.array([[s * 6.0, 0.0, 0.0]])
        trees.append(
            grow_tree(rng, anat, np.repeat(start, len(art_dirs), 0), art_dirs, rng.uniform(4.5, 5.5, len(art_dirs)), s, max_generations=11, min_radius=0.6)
        )
        atrium = np.array([s * 0.26 * anat.Ac0, 0.1 * anat.Bc0, anat.heart_c[2] + 12.0])
        vein_dirs = np.array([[1.0 * s, 0.4, -0.5], [1.0 * s, -0.3, 0.3], [0.5 * s, 0.7, -0.9], [0.6 * s, -0.6, -0.8]]) + rng.normal(0, 0.12, (4, 3))
        trees.append(grow_tree(rng, anat, np.repeat(atrium[None], 4, 0), vein_dirs, rng.uniform(4.5, 5.5, 4), s, max_generations=10, min_radius=0.6))
    return trees


def _airway_trees(rng: np.random.Generator, anat: ChestAnatomy, ends: dict[str, np.ndarray]) -> list[Tree]:
    """Lobar and segmental bronchi (3 generations) from the ends of the main bronchi."""
    trees = []
    for name, s in (("left", 1), ("right", -1)):
        dirs = np.array([[0.3 * s, 0.1, 1.0], [0.6 * s, 0.3, -1.0], [0.9 * s, -0.5, -0.2]]) + rng.normal(0, 0.1, (3, 3))
        trees.append(
            grow_tree(rng, anat, np.repeat(ends[name][None], 3, 0), dirs, np.full(3, 5.0), s, max_generations=3, min_radius=2.5, length_factor=(4.0, 6.0))
        )
    return trees


# --------------------------------------------------------------------------------------------------
# Nodules and candidates
# --------------------------------------------------------------------------------------------------


def _sample_diameter(rng: np.random.Generator) -> float:
    r = rng.uniform()
    if r < 0.6:
        return float(rng.uniform(3.0, 10.0))
    if r < 0.9:
        return float(rng.uniform(10.0, 20.0))
    return float(rng.uniform(20.0, 30.0))


def _random_lung_points(rng: np.random.Generator, anat: ChestAnatomy, n: int, margin_mm: float) -> np.ndarray:
    """``n`` uniform random points inside the lungs (rejection sampling in the thoracic box)."""
    out = []
    for _ in range(50):
        m = max(4 * n, 64)
        a = anat.Ac0
        pts = np.stack(
            [rng.uniform(-a, a, m), rng.uniform(-anat.Bc0, anat.Bc0, m), rng.uniform(anat.dome_l - 80.0, anat.apex, m)], axis=1
        )
        ok = anat.lung_side(pts[:, 0], pts[:, 1], pts[:, 2], margin_mm=margin_mm) != 0
        out.append(pts[ok])
        if sum(len(o) for o in out) >= n:
            break
    pts = np.concatenate(out) if out else np.zeros((0, 3))
    return pts[:n]


def _place_nodules(
    rng: np.random.Generator, anat: ChestAnatomy, vessels: np.ndarray, grid_side: Callable[[np.ndarray], int]
) -> list[dict[str, Any]]:
    """Choose 0-5 nodules: centre (patient frame), diameter, kind, attachment; all inside a lung.

    ``grid_side(point)`` gives the lung (+1 / -1 / 0) of the voxel holding a point on the rendered
    grid, which also excludes the great vessels and central airways.
    """
    count = int(rng.integers(0, 6))
    dirs = sphere_directions(26)
    placed: list[dict[str, Any]] = []
    thick = vessels[(vessels[:, 6] >= 1.0) & (vessels[:, 6] <= 4.0)] if len(vessels) else vessels
    for _ in range(count):
        for _attempt in range(40):
            d = _sample_diameter(rng)
            r = d / 2
            mode = rng.choice(["free", "vessel", "pleura"], p=[0.5, 0.25, 0.25])
            if mode == "vessel" and len(thick):
                seg = thick[rng.integers(len(thick))]
                a, b = seg[0:3], seg[3:6]
                axis = (b - a) / max(np.linalg.norm(b - a), 1e-6)
                perp = random_perpendicular(rng, axis[None])[0]
                c = a + rng.uniform(0.3, 0.7) * (b - a) + perp * (seg[6] + 0.6 * r)
                need_inside = c[None] + 0.6 * r * dirs
                attached = "vessel"
            elif mode == "pleura":
                p = _random_lung_points(rng, anat, 1, margin_mm=r)
                if len(p) == 0:
                    continue
                direction = dirs[rng.integers(len(dirs))]
                steps = p[0][None] + np.arange(0, 120, 1.0)[:, None] * direction[None]
                side = anat.lung_side(steps[:, 0], steps[:, 1], steps[:, 2])
                out_idx = np.flatnonzero(side == 0)
                if len(out_idx) == 0:
                    continue
                boundary = steps[out_idx[0]]
                c = boundary - direction * (0.75 * r + 1.0)
                need_inside = c[None] - 0.5 * r * dirs[dirs @ direction < 0]
                attached = "pleura"
            else:
                p = _random_lung_points(rng, anat, 1, margin_mm=r + 2.0)
                if len(p) == 0:
                    continue
                c = p[0]
                need_inside = c[None] + (r + 1.5) * dirs
                attached = None
            side_c = int(anat.lung_side(*[np.array([x]) for x in c])[0])
            if side_c == 0 or grid_side(c) != side_c:
                continue
            sides = anat.lung_side(need_inside[:, 0], need_inside[:, 1], need_inside[:, 2])
            if np.any(sides != side_c):
                continue
            if any(np.linalg.norm(c - q["center"]) < r + q["radius"] + 3.0 for q in placed):
                continue
            kind = "part_solid" if (d >= 8.0 and rng.uniform() < 0.3) else "solid"
            placed.append(
                {
                    "center": c,
                    "radius": r,
                    "diameter": d,
                    "kind": kind,
                    "attached": attached,
                    "side": "left" if side_c > 0 else "right",
                    "core_fraction": float(rng.uniform(0.3, 0.6)),
                    "lobulation": rng.normal(0, 0.08, size=4),
                    "hu": float(rng.uniform(10.0, 60.0)),
                }
            )
            break
    return placed


def _render_nodule(frame: PatientFrame, hu: np.ndarray, occupancy_out: np.ndarray, nod: dict[str, Any], rng: np.random.Generator) -> None:
    """Blend one nodule into ``hu`` (in place) and record its occupancy (max) in ``occupancy_out``."""
    c, r = nod["center"], nod["radius"]
    box = frame.box(c[None], r * 1.4 + frame.voxel_mm)
    if box is None:
        return
    lo, hi = box
    u, v, w = frame.crop(lo, hi)
    du, dv, dw = u - c[0], v - c[1], w - c[2]
    dist = np.sqrt(du * du + dv * dv + dw * dw) + 1e-6
    lob = nod["lobulation"]
    # low-order angular modulation of the radius: a lobulated, not perfectly round, nodule
    mod = 1.0 + lob[0] * (du / dist) * (dv / dist) * 3 + lob[1] * (dw / dist) + lob[2] * ((du / dist) ** 2 - (dv / dist) ** 2) + lob[3] * (dv / dist)
    edge = frame.voxel_mm
    occ = np.clip((r * mod - dist) / edge + 0.5, 0.0, 1.0).astype(np.float32)
    view = hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    if nod["kind"] == "part_solid":
        rc = r * nod["core_fraction"]
        core = np.clip((rc * mod - dist) / edge + 0.5, 0.0, 1.0)
        texture = 60.0 * rng.standard_normal(occ.shape).astype(np.float32)
        target = HU["ground_glass"] + texture
        target = target * (1 - core) + nod["hu"] * core
        # ground glass raises density but never hides vessels: take the denser of the two
        blended = np.maximum(view, target)
        view[...] = view * (1 - occ) + blended * occ
    else:
        view[...] = view * (1 - occ) + nod["hu"] * occ
    oview = occupancy_out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    np.maximum(oview, occ, out=oview)


def _candidates(
    rng: np.random.Generator,
    anat: ChestAnatomy,
    trees: list[Tree],
    nodules: list[dict[str, Any]],
    grid_side: Callable[[np.ndarray], int],
) -> list[tuple[np.ndarray, int, str]]:
    """True nodules plus look-alikes: vessel junctions, vessel cross-sections and random lung points."""
    out: list[tuple[np.ndarray, int, str]] = [(n["center"], 1, "nodule") for n in nodules]
    junctions = np.concatenate([t.junctions for t in trees]) if trees else np.zeros((0, 4))
    segs = np.concatenate([t.segments for t in trees]) if trees else np.zeros((0, 8))
    negatives: list[tuple[np.ndarray, str]] = []
    j = junctions[(junctions[:, 3] >= 1.2) & (junctions[:, 3] <= 4.5)]
    if len(j):
        for idx in rng.choice(len(j), size=min(len(j), int(rng.integers(8, 16))), replace=False):
            negatives.append((j[idx, :3], "vessel_junction"))
    if len(segs):
        d = segs[:, 3:6] - segs[:, 0:3]
        vertical = np.abs(d[:, 2]) / np.maximum(np.linalg.norm(d, axis=1), 1e-6) > 0.7
        cand = segs[vertical & (segs[:, 6] >= 1.2)]
        if len(cand):
            for idx in rng.choice(len(cand), size=min(len(cand), int(rng.integers(5, 11))), replace=False):
                negatives.append((0.5 * (cand[idx, 0:3] + cand[idx, 3:6]), "vessel_cross_section"))
    for p in _random_lung_points(rng, anat, int(rng.integers(5, 11)), margin_mm=3.0):
        negatives.append((p, "random"))
    for p, kind in negatives:
        if anat.lung_side(*[np.array([x]) for x in p])[0] == 0 or grid_side(p) == 0:
            continue
        if any(np.linalg.norm(p - n["center"]) < n["radius"] + 5.0 for n in nodules):
            continue
        out.append((p, 0, kind))
    return out


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _render_bones(anat: ChestAnatomy, frame: PatientFrame, hu: np.ndarray, lab: np.ndarray) -> None:
    """Spine, ribs, costal cartilage, sternum and clavicles (override everything else)."""
    p = anat.p
    U, V, W = frame.grid()
    bone = CT_LABELS["bone"]
    # -- spine: vertebral bodies with cortex, discs, neural arch and spinous process
    sm = anat.spine_metric(U, V)  # (X, Y, 1)
    period = p["vertebra_mm"]
    phase = ((W - p["vertebra_phase"] * period) / period) % 1.0  # (1, 1, Z)
    disc = phase > 0.82
    body2d = sm < 1.0
    vb = body2d & ~disc
    hu[vb] = np.where(np.broadcast_to(sm, vb.shape)[vb] > 0.72, HU["cortical"], HU["cancellous"])
    lab[vb] = bone
    dsk = body2d & disc
    hu[dsk] = HU["disc"]
    lab[dsk] = CT_LABELS["body"]
    cr = np.sqrt(U**2 + (V - anat.canal_v) ** 2)
    arch2d = (cr > 7.5) & (cr < 13.0) & (V > anat.canal_v - 6.0)
    back = 0.97 * anat.B0 - p["fat_mm"] - 3.0  # keep the spinous process under the skin
    spinous = (np.abs(U) < 4.5) & (V > anat.canal_v + 8.0) & (V < np.minimum(anat.canal_v + 26.0, back))
    transverse = (np.abs(U) < 24.0) & (np.abs(V - anat.canal_v + 2.0) < 5.0)
    post = (arch2d | spinous | transverse) & (phase > 0.15) & (phase < 0.7)
    hu[post] = HU["cortical"] * 0.8
    lab[post] = bone
    cord = np.broadcast_to(cr <= 7.5, hu.shape)
    hu[cord] = HU["cord"]
    lab[cord] = CT_LABELS["body"]
    # -- ribs: 12 pairs following the rib cage, sloping down anteriorly; cartilage near the sternum
    a_c, b_c = anat.cavity_axes(W)
    ar, br = a_c + 6.0, b_c + 6.0
    rho = np.sqrt(U**2 + V**2) + 1e-6
    r = np.sqrt((U / ar) ** 2 + (V / br) ** 2)
    dr = (r - 1.0) * rho / np.maximum(r, 1e-6)  # approximately the radial distance in mm
    shell = np.abs(dr) < 5.0
    anterior = 0.5 * (1.0 - V / rho)  # 0 posterior ... 1 anterior
    rib_top = anat.apex + 4.0
    phi = (rib_top - W - p["rib_drop_mm"] * anterior) / period
    k = np.rint(phi)
    dw = (phi - k) * period
    q = (dw / 5.5) ** 2 + (dr / 4.0) ** 2
    in_rib = shell & (q < 1.0) & (k >= 0) & (k <= 11) & (np.abs(U) > 22.0)
    cartilage = in_rib & (anterior > 0.86) & (np.abs(U) > 16.0)
    ribs = in_rib & (anterior <= 0.86)
    hu[ribs] = np.where(q[ribs] > 0.45, HU["rib_cortex"], HU["rib_marrow"])
    lab[ribs] = bone
    hu[cartilage] = HU["cartilage"]
    lab[cartilage] = CT_LABELS["body"]
    # -- sternum (manubrium to xiphoid)
    v_st = -(anat.Bc0 + 6.0)
    sq = (U / 17.0) ** 2 + ((V - v_st) / 7.0) ** 2
    st = (sq < 1.0) & (W < anat.apex - 25.0) & (W > anat.dome_l - 15.0)
    hu[st] = np.where(np.broadcast_to(sq, st.shape)[st] > 0.55, HU["cortical"], HU["cancellous"])
    lab[st] = bone
    # -- clavicles: from the sternal notch out to the shoulders
    occ = np.zeros(hu.shape, np.float32)
    notch_w = anat.apex - 25.0
    for s in (1, -1):
        pts = np.array(
            [[s * 18.0, v_st - 4.0, notch_w + 2.0], [s * 0.45 * anat.A0, v_st - 8.0, notch_w + 14.0], [s * 0.85 * anat.A0, -0.1 * anat.B0, notch_w + 22.0]]
        )
        render_segments(frame, occ, polyline_segments(pts, np.array([7.0, 6.0, 6.5])))
    clav = occ >= 0.5
    hu[clav] = np.where(occ[clav] > 0.85, HU["cancellous"] + 200.0, HU["rib_cortex"])
    lab[clav] = bone


def make_ct_patient(
    index: int,
    seed: int = 0,
    shape: Sequence[int] = DEFAULT_CT_SHAPE,
    spacing: Sequence[float] | None = None,
) -> CTPatient:
    """Generate chest CT patient ``index`` of cohort ``seed``.

    Args:
        index: patient index (>= 0) in the cohort.
        seed: cohort seed.
        shape: grid ``(X, Y, Z)``; default ``(128, 128, 96)``.
        spacing: voxel size in mm; default: the spacing that makes ``shape`` cover
            :data:`CT_FIELD_OF_VIEW_MM` (2.8 x 2.8 x 3.2 mm for the default shape).

    Returns:
        A :class:`CTPatient`; the same ``(index, seed, shape, spacing)`` always gives identical arrays.

    Raises:
        DataError: on a negative index, or a grid whose field of view cannot hold a thorax.
    """
    from semantic_genesis.io.volumes import Volume

    if int(index) < 0:
        raise DataError(f"phantom patient index must be >= 0, got {index}")
    index, seed = int(index), int(seed)
    shape_t, spacing_t = _check_grid(shape, spacing)
    params = sample_ct_params(index, seed)
    anat = ChestAnatomy(params)
    frame = PatientFrame(
        shape_t, spacing_t, math.radians(params["rotation_deg"]), (params["shift_x_mm"], params["shift_y_mm"], params["shift_z_mm"])
    )
    rng_tree = np.random.default_rng(derive_seed(seed, index, "ct", "trees"))
    rng_les = np.random.default_rng(derive_seed(seed, index, "ct", "lesions"))
    rng_tex = np.random.default_rng(derive_seed(seed, index, "ct", "texture"))
    U, V, W = frame.grid()
    full = shape_t
    L = CT_LABELS

    # -- body, fat, muscle, cavity
    hu = np.full(full, HU["air"], np.float32)
    lab = np.zeros(full, np.uint8)
    body = anat.body_metric(U, V, W) < 1.0
    hu[body] = HU["fat"]
    lab[body] = L["fat"]
    muscle = anat.body_metric(U, V, W, inset_mm=params["fat_mm"]) < 1.0
    hu[muscle] = HU["muscle"]
    lab[muscle] = L["body"]
    diaph = anat.diaphragm(U, V)  # (X, Y, 1)
    cavity = (anat.cavity_metric(U, V, W) < 1.0) & (W < anat.cavity_top(U, V))
    thorax = cavity & (W > diaph)
    abdomen = cavity & (W <= diaph - 5.0)
    hu[thorax] = HU["mediastinal_fat"]
    lab[thorax] = L["fat"]
    visceral = smooth_noise(rng_tex, full, tuple(max(2, n // 10) for n in full))
    abd_fat = abdomen & (visceral > 1.0)
    abd_soft = abdomen & ~abd_fat
    hu[abd_soft] = HU["abdomen"]
    lab[abd_soft] = L["body"]
    hu[abd_fat] = HU["fat"]
    lab[abd_fat] = L["fat"]

    # -- lungs (analytic envelope minus the great vessels and central airways)
    side = anat.lung_side(U, V, W)
    excl = np.zeros(full, np.float32)
    aorta = anat.aorta()
    veins, hila = anat.great_veins_and_trunk()
    trachea, bronchus_ends = anat.trachea()
    for segs in (aorta, veins, trachea):
        widened = segs.copy()
        widened[:, 6:8] += 3.0
        render_segments(frame, excl, widened)
    side[excl >= 0.5] = 0
    texture = smooth_noise(rng_tex, full, tuple(max(2, n // 6) for n in full))
    lung = side != 0
    dens = params["lung_density_hu"] + 22.0 * texture + 40.0 * (V / anat.Bc0)
    hu[lung] = np.broadcast_to(dens, full)[lung]
    lab[side > 0] = L["lung_left"]
    lab[side < 0] = L["lung_right"]

    # -- abdominal organs: liver under the right dome, stomach and spleen under the left
    liver_left_edge = 0.38 * anat.Ac0 - 0.5 * np.maximum(0.0, anat.dome_r - 30.0 - W)
    liver_bottom = anat.dome_r - 165.0 + 70.0 * (U + anat.Ac0) / (2 * anat.Ac0)
    liver = abdomen & (U < liver_left_edge) & (W > liver_bottom) & (anat.spine_metric(U, V) > 2.0) & (W <= diaph - 6.0)
    hu[liver] = HU["liver"] + 4.0 * np.broadcast_to(texture, full)[liver]
    lab[liver] = L["liver"]
    sc = np.array([0.45 * anat.Ac0, -0.12 * anat.Bc0, anat.dome_l - 42.0])
    stomach = abdomen & ((((U - sc[0]) / 36.0) ** 2 + ((V - sc[1]) / 30.0) ** 2 + ((W - sc[2]) / 38.0) ** 2) < 1.0) & ~liver
    gas = stomach & (W > sc[2] + 14.0)
    hu[stomach] = HU["stomach_fluid"]
    hu[gas] = HU["air"]
    lab[stomach] = L["stomach"]
    spleen = abdomen & ((((U - 0.66 * anat.Ac0) / 24.0) ** 2 + ((V - 0.45 * anat.Bc0) / 34.0) ** 2 + ((W - anat.dome_l + 48.0) / 45.0) ** 2) < 1.0)
    spleen &= ~stomach
    hu[spleen] = HU["spleen"]
    lab[spleen] = L["body"]

    # -- heart with pericardial fat, great vessels
    hm = anat.heart_metric(U, V, W)
    above = W > diaph - 8.0
    peri = (hm < 1.12**2) & above & (lab != L["lung_left"]) & (lab != L["lung_right"])
    hu[peri] = HU["mediastinal_fat"]
    lab[peri] = L["fat"]
    heart = (hm < 1.0) & above
    hu[heart] = HU["blood"]
    lab[heart] = L["heart"]
    for segs, name in ((veins, "vessel"), (aorta, "aorta")):
        occ = np.zeros(full, np.float32)
        render_segments(frame, occ, segs)
        m = occ > 0
        hu[m] = hu[m] * (1 - occ[m]) + HU["blood"] * occ[m]
        lab[occ >= 0.5] = L[name]

    # -- airways: trachea, main and lobar bronchi (wall and air lumen)
    air_trees = _airway_trees(rng_tree, anat, bronchus_ends)
    air_segs = np.concatenate([trachea] + [t.segments for t in air_trees])
    outer = np.zeros(full, np.float32)
    lumen = np.zeros(full, np.float32)
    render_segments(frame, outer, air_segs)
    inner = air_segs.copy()
    inner[:, 6:8] = np.maximum(inner[:, 6:8] - np.where(inner[:, 6:8] > 6.0, 2.0, 1.2), 0.5)
    render_segments(frame, lumen, inner)
    m = outer > 0
    wall = outer[m] - lumen[m]
    hu[m] = hu[m] * (1 - outer[m]) + HU["airway_wall"] * wall + HU["air"] * lumen[m]
    lab[outer >= 0.5] = L["airway"]
    lung_env = np.where(side > 0, L["lung_left"], np.where(side < 0, L["lung_right"], 0)).astype(np.uint8)

    # -- pulmonary vessel trees (inside the lungs only)
    trees = _vessel_trees(rng_tree, anat, hila)
    vessel_segs = np.concatenate([t.segments for t in trees]) if trees else np.zeros((0, 8))
    vocc = np.zeros(full, np.float32)
    render_segments(frame, vocc, vessel_segs)
    in_lung = (vocc > 0) & ((lab == L["lung_left"]) | (lab == L["lung_right"]))
    hu[in_lung] = hu[in_lung] * (1 - vocc[in_lung]) + HU["blood"] * vocc[in_lung]
    lab[in_lung & (vocc >= 0.5)] = L["vessel"]

    # -- nodules
    def grid_side(point: np.ndarray) -> int:
        ijk = np.rint(frame.to_voxel(point)[0]).astype(int)
        if np.any(ijk < 0) or np.any(ijk >= np.asarray(full)):
            return 0
        value = lung_env[tuple(ijk)]
        return 1 if value == L["lung_left"] else (-1 if value == L["lung_right"] else 0)

    placed = _place_nodules(rng_les, anat, vessel_segs, grid_side)
    nocc = np.zeros(full, np.float32)
    for nod in placed:
        _render_nodule(frame, hu, nocc, nod, rng_les)
    lab[(nocc >= 0.5) & (lung_env > 0)] = L["nodule"]

    # -- bones
    _render_bones(anat, frame, hu, lab)

    # -- acquisition: mild point-spread blur and slightly correlated noise
    hu = ndimage.gaussian_filter(hu, sigma=0.55, truncate=2.5)
    noise = rng_tex.standard_normal(full, dtype=np.float32)
    noise = (noise + 0.6 * np.roll(noise, 1, axis=0) + 0.6 * np.roll(noise, 1, axis=1)) / math.sqrt(1.72)
    hu += params["noise_hu"] * noise
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    origin = (
        -(shape_t[0] - 1) / 2 * spacing_t[0],
        -(shape_t[1] - 1) / 2 * spacing_t[1],
        -(shape_t[2] - 1) / 2 * spacing_t[2] + params["table_z_mm"],
    )
    pid = ct_patient_id(index, seed)
    volume = Volume(hu_int.astype(np.float32), spacing_t, origin, metadata={"modality": "ct", "patient_id": pid, "phantom": True})

    nodules = [
        Nodule(tuple(float(x) for x in frame.to_voxel(n["center"])[0]), n["diameter"], n["kind"], n["attached"], n["side"])  # type: ignore[arg-type]
        for n in placed
    ]
    cands = [
        Candidate(tuple(float(x) for x in frame.to_voxel(p)[0]), label, kind)  # type: ignore[arg-type]
        for p, label, kind in _candidates(rng_les, anat, trees, placed, grid_side)
    ]
    all_params: dict[str, Any] = {"index": index, "seed": seed, "shape": list(shape_t), "spacing": list(spacing_t)}
    all_params.update(params)
    all_params.update(
        {
            "body_width_mm": 2 * anat.A0,
            "body_depth_mm": 2 * anat.B0,
            "heart_width_mm": float(2 * anat.heart_axes[0]),
            "lung_volume_ml": float(np.count_nonzero(lung_env) * np.prod(spacing_t) / 1000.0),
            "vessel_segments": int(len(vessel_segs)),
        }
    )
    return CTPatient(pid, volume, hu_int, lab, dict(CT_LABELS), lung_env, nodules, cands, all_params)


def _make_one(args: tuple) -> CTPatient:
    index, seed, kwargs = args
    return make_ct_patient(index, seed, **kwargs)


def make_ct_cohort(n: int, seed: int = 0, workers: int = 1, start: int = 0, **kwargs: Any) -> list[CTPatient]:
    """Generate patients ``start .. start + n - 1`` of cohort ``seed``.

    Args:
        n: number of patients.
        seed: cohort seed.
        workers: processes (>1 uses a process pool; results are identical to ``workers=1``).
        start: index of the first patient.
        **kwargs: ``shape`` / ``spacing`` for :func:`make_ct_patient`.
    """
    if n < 0:
        raise DataError(f"number of phantom patients must be >= 0, got {n}")
    jobs = [(i, seed, kwargs) for i in range(start, start + n)]
    if workers <= 1 or n <= 1:
        return [_make_one(j) for j in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_make_one, jobs))
