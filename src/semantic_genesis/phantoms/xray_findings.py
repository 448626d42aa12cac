"""Thoracic findings simulated in a copy of a phantom CT before it is projected into a radiograph.

Each finding changes the HU volume where the disease would be, so its radiographic signature comes
from the same projection physics as the normal anatomy (:mod:`semantic_genesis.phantoms.xray`).
Every simulator takes a :class:`FindingContext` (the HU copy and the label maps), its own random
stream and a **severity** ``s`` in [0, 1] (size / density of the finding; the report labelers of
:mod:`~semantic_genesis.phantoms.xray_labels` call low-severity findings uncertain), and returns the
bool ``(X, Y, Z)`` region it changed plus its parameters. Signatures (ChestX-ray14 names):

==================  ===============================================================================
Atelectasis         1-2 plate-like bands of collapsed lung (soft tissue, 5-12 mm thick) across a lower
                    lung zone: bright horizontal lines
Cardiomegaly        heart enlarged x1.25-1.4 in-plane about its centre into lung and fat
Effusion            fluid at one or both lung bases up to a level that rises laterally (a meniscus)
Infiltration        diffuse, heterogeneous (reticulonodular) density increase over the mid and lower
                    zones of one or both lungs
Mass                a lobulated solid lesion of 35-60 mm in a lung
Nodule              the patient's nodules if one is >= 10 mm, else an inserted solid 12-28 mm nodule;
                    without the finding the CT's own nodules are removed (:func:`remove_nodules`)
Pneumonia           2-4 patchy, ill-defined airspace opacities (ground glass to dense)
Pneumothorax        one lung collapsed towards its medial base: an apical / lateral rim of air
                    without lung markings
Consolidation       a lobar-sized homogeneous airspace opacity (22-40 mm radius) that spares the
                    airways (air bronchograms)
Edema               bilateral perihilar ("bat-wing") haze fading towards the periphery
Emphysema           hyperlucent lungs (parenchyma -50 to -110 HU), pruned peripheral vessels, apical
                    bullae
Fibrosis            subpleural, basal reticulation (a net of fine dense lines) with a mild haze
Pleural_Thickening  a soft-tissue band of 4-10 mm along the lateral chest wall and the apex
Hernia              a hiatal hernia: a round retrocardiac mass above the diaphragm with an air-fluid
                    level (fluid below, a gas cap above)
Tuberculosis        upper-zone patchy opacities with a thick-walled cavity (not a ChestX-ray14 label:
                    the Shenzhen and VinDr-CXR exports use it)
==================  ===============================================================================

Axes are the CT's ``(X, Y, Z)``: +X the patient's left (the right lung has the smaller X), +Y
posterior, +Z superior.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from semantic_genesis.errors import DataError
from semantic_genesis.phantoms.shapes import smooth_noise, sphere_directions, smoothstep

SIDES = ("right", "left")


@dataclass
class FindingContext:
    """The CT copy the findings modify, with cached lung geometry.

    Attributes:
        hu: float32 ``(X, Y, Z)`` HU, modified in place by the simulators.
        lab: uint8 label map (:data:`~semantic_genesis.phantoms.ct.CT_LABELS`), modified by cardiomegaly.
        env: uint8 lung envelope (lung codes or 0), not modified.
        names: label name -> value.
        spacing: voxel size in mm.
    """

    hu: np.ndarray
    lab: np.ndarray
    env: np.ndarray
    names: dict[str, int]
    spacing: tuple[float, float, float]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def lung(self, side: str) -> np.ndarray:
        """bool ``(X, Y, Z)`` envelope of the ``"left"`` or ``"right"`` lung."""
        key = f"lung_{side}"
        if key not in self._cache:
            self._cache[key] = self.env == self.names[key]
        return self._cache[key]

    def lungs(self) -> np.ndarray:
        """bool ``(X, Y, Z)`` envelope of both lungs."""
        if "lungs" not in self._cache:
            self._cache["lungs"] = self.env > 0
        return self._cache["lungs"]

    def box(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Voxel bounding box ``[lo, hi)`` of one lung."""
        key = f"box_{side}"
        if key not in self._cache:
            mask = self.lung(side)
            if not mask.any():
                raise DataError(f"cannot simulate a finding: the CT patient has no {side} lung")
            lo, hi = [], []
            for axis in range(3):
                present = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
                lo.append(int(present[0]))
                hi.append(int(present[-1]) + 1)
            self._cache[key] = (np.array(lo), np.array(hi))
        return self._cache[key]

    def height_fraction(self, side: str, z: np.ndarray) -> np.ndarray:
        """0 at the lung's base, 1 at its apex, for slice indices ``z``."""
        lo, hi = self.box(side)
        return (np.asarray(z, dtype=np.float32) - lo[2]) / max(1, hi[2] - 1 - lo[2])

    def mm(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable voxel-centre coordinates in mm of the box ``[lo, hi)``."""
        return tuple(  # type: ignore[return-value]
            (np.arange(lo[a], hi[a], dtype=np.float32) * self.spacing[a]).reshape([-1 if b == a else 1 for b in range(3)])
            for a in range(3)
        )

    def parenchyma(self) -> np.ndarray:
        """bool: inside the lung envelope but not airway lumen/wall (opacities spare the airways)."""
        if "parenchyma" not in self._cache:
            self._cache["parenchyma"] = self.lungs() & (self.lab != self.names["airway"])
        return self._cache["parenchyma"]

    def surface_distance(self, side: str) -> np.ndarray:
        """float32 mm from each voxel of the lung's bounding box (:meth:`box`) to the lung's lateral,
        posterior or apical surface along its row (not a full distance transform: cheap, and exact
        enough on the analytic lungs); ``inf`` outside the lung."""
        key = f"surface_{side}"
        if key not in self._cache:
            lo, hi = self.box(side)
            mask = self.lung(side)[tuple(slice(a, b) for a, b in zip(lo, hi))]
            sx, sy, sz = self.spacing
            x = np.arange(mask.shape[0])[:, None, None]
            y = np.arange(mask.shape[1])[None, :, None]
            z = np.arange(mask.shape[2])[None, None, :]
            big = 10**6
            if side == "right":  # lateral = small X
                d_lat = (x - np.where(mask, x, big).min(axis=0, keepdims=True)) * sx
            else:
                d_lat = (np.where(mask, x, -big).max(axis=0, keepdims=True) - x) * sx
            d_post = (np.where(mask, y, -big).max(axis=1, keepdims=True) - y) * sy
            d_top = (np.where(mask, z, -big).max(axis=2, keepdims=True) - z) * sz
            dist = np.minimum(np.minimum(d_lat, d_post), d_top).astype(np.float32)
            self._cache[key] = np.where(mask, dist, np.float32(np.inf))
        return self._cache[key]


@dataclass
class FindingResult:
    """What a simulator changed: bool ``(X, Y, Z)`` region (``None`` when it changed nothing) and params."""

    region: np.ndarray | None
    params: dict[str, Any]


def _side(rng: np.random.Generator, both: float = 0.0) -> list[str]:
    if both and rng.random() < both:
        return list(SIDES)
    return [str(rng.choice(SIDES))]


def _random_point(ctx: FindingContext, side: str, rng: np.random.Generator, zone: tuple[float, float] = (0.0, 1.0),
                  radius_mm: float = 0.0, inside: float = 0.8, tries: int = 60) -> np.ndarray:
    """A lung voxel in the height zone ``zone`` (fractions base -> apex) around which a ball of
    ``radius_mm`` lies at least ``inside`` in the lung (checked on 26 directions at 0.8 radius)."""
    mask = ctx.lung(side)
    lo, hi = ctx.box(side)
    z_lo = int(lo[2] + zone[0] * (hi[2] - lo[2]))
    z_hi = max(z_lo + 1, int(lo[2] + zone[1] * (hi[2] - lo[2])))
    candidates = np.argwhere(mask[:, :, z_lo:z_hi]) + np.array([0, 0, z_lo])
    if len(candidates) == 0:
        raise DataError(f"cannot place a finding: no {side} lung in height zone {zone}")
    offsets = sphere_directions(26) * (0.8 * radius_mm) / np.asarray(ctx.spacing)
    best, best_inside = candidates[rng.integers(len(candidates))], -1.0
    for _ in range(tries):
        point = candidates[rng.integers(len(candidates))]
        probes = np.rint(point + offsets).astype(int)
        valid = np.all((probes >= 0) & (probes < np.asarray(mask.shape)), axis=1)
        frac = float(np.mean(valid & mask[tuple(np.clip(probes, 0, np.asarray(mask.shape) - 1).T)]))
        if frac >= inside:
            return point
        if frac > best_inside:
            best, best_inside = point, frac
    return best


def _ball_box(ctx: FindingContext, centre: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    pad = np.ceil(radius_mm / np.asarray(ctx.spacing)).astype(int) + 1
    return np.maximum(centre - pad, 0), np.minimum(centre + pad + 1, ctx.hu.shape)


def _blob_weight(ctx: FindingContext, centre: np.ndarray, radii_mm: np.ndarray, lo: np.ndarray, hi: np.ndarray, edge: float) -> np.ndarray:
    """Soft ellipsoid weight in [0, 1] on the box: 1 inside, fading over ``edge`` (relative radius)."""
    gx, gy, gz = ctx.mm(lo, hi)
    c = centre * np.asarray(ctx.spacing)
    d = np.sqrt(((gx - c[0]) / radii_mm[0]) ** 2 + ((gy - c[1]) / radii_mm[1]) ** 2 + ((gz - c[2]) / radii_mm[2]) ** 2)
    return np.clip((1.0 + edge / 2 - d) / edge, 0.0, 1.0).astype(np.float32)


def _coarse_texture(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, float, float], feature_mm: float) -> np.ndarray:
    """Zero-mean unit-variance smooth noise with features about ``feature_mm`` across."""
    cells = tuple(max(1, int(round(n * s / feature_mm))) for n, s in zip(shape, spacing))
    return smooth_noise(rng, tuple(int(n) for n in shape), cells)


def _paint(ctx: FindingContext, lo: np.ndarray, hi: np.ndarray, weight: np.ndarray, value: np.ndarray | float, where: np.ndarray) -> np.ndarray:
    """Blend ``value`` into the HU box with ``weight`` where ``where``; return the box's changed voxels."""
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    w = weight * where[box]
    sub = ctx.hu[box]
    sub[...] = sub * (1.0 - w) + np.asarray(value, dtype=np.float32) * w
    region = np.zeros(ctx.hu.shape, dtype=bool)
    region[box] = w > 0.25
    return region


# --------------------------------------------------------------------------------------------------
# the simulators


def atelectasis(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    side = _side(rng)[0]
    lung = ctx.lung(side) & ctx.parenchyma()
    lo, hi = ctx.box(side)
    gx, gy, gz = ctx.mm(lo, hi)
    region = np.zeros(ctx.hu.shape, bool)
    bands = []
    x_med, x_lat = (hi[0] - 1, lo[0]) if side == "right" else (lo[0], hi[0] - 1)
    for _ in range(1 + int(s > 0.5)):
        level = float(rng.uniform(0.2, 0.45))
        zc = (lo[2] + level * (hi[2] - lo[2])) * ctx.spacing[2]
        thick = 5.0 + 7.0 * s
        slope = float(rng.uniform(-0.12, 0.12))
        start, stop = sorted((float(rng.uniform(0.1, 0.35)), float(rng.uniform(0.85, 1.0))))
        xa = (x_med + start * (x_lat - x_med)) * ctx.spacing[0]
        xb = (x_med + stop * (x_lat - x_med)) * ctx.spacing[0]
        xc = 0.5 * (xa + xb)
        plane = zc + slope * (gx - xc) + 2.0 * np.sin(gy / 17.0)
        band = (np.abs(gz - plane) < thick / 2) & (gx >= min(xa, xb)) & (gx <= max(xa, xb))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        band &= lung[box]
        region[box] |= band
        bands.append({"height": level, "thickness_mm": thick})
    ctx.hu[region] = 15.0 + rng.normal(0.0, 8.0, int(region.sum())).astype(np.float32)
    return FindingResult(region, {"atelectasis_side": side, "atelectasis_bands": bands})


def cardiomegaly(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    names, lab, hu = ctx.names, ctx.lab, ctx.hu
    heart = lab == names["heart"]
    if not heart.any():
        raise DataError("cannot simulate cardiomegaly: the CT patient has no heart label")
    factor = 1.25 + 0.15 * s
    centre = np.array(ndimage.center_of_mass(heart))
    idx = np.nonzero(heart)
    lo = np.array([int(i.min()) for i in idx])
    hi = np.array([int(i.max()) + 1 for i in idx])
    size = hi - lo
    lo = np.maximum(0, lo - (size * (factor - 1) / 2 + 2).astype(int))
    hi = np.minimum(hu.shape, hi + (size * (factor - 1) / 2 + 2).astype(int))
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)], indexing="ij")
    factors = (factor, factor, 1.1)
    src = [centre[k] + (grids[k] - centre[k]) / factors[k] for k in range(3)]
    big = ndimage.map_coordinates(heart.astype(np.uint8), src, order=0, mode="constant", cval=0) > 0
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub_lab = lab[box]
    soft = ~np.isin(sub_lab, [names["bone"], names["background"], names["airway"]])
    grow = big & soft & (sub_lab != names["heart"])
    hu[box][grow] = 40.0
    sub_lab[grow] = names["heart"]
    region = np.zeros(hu.shape, bool)
    region[box] = grow
    return FindingResult(region, {"cardiomegaly_factor": factor})


def effusion(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    side = str(rng.choice(["left", "right", "both"], p=[0.4, 0.4, 0.2]))
    height = 50.0 + 40.0 * s
    region = np.zeros(ctx.hu.shape, bool)
    x = np.arange(ctx.hu.shape[0], dtype=np.float32)[:, None, None]
    z = (np.arange(ctx.hu.shape[2], dtype=np.float32) * ctx.spacing[2])[None, None, :]
    for sd in (["left", "right"] if side == "both" else [side]):
        lung = ctx.lung(sd)
        if not lung.any():
            continue
        lo, hi = ctx.box(sd)
        z0 = lo[2] * ctx.spacing[2]
        x_med, x_lat = (hi[0] - 1, lo[0]) if sd == "right" else (lo[0], hi[0] - 1)
        lateral = np.clip((x - x_med) / (x_lat - x_med if x_lat != x_med else 1.0), 0.0, 1.0)
        level = z0 + height * (0.55 + 0.8 * lateral**2)  # meniscus: higher laterally
        fluid = lung & (z < level)
        ctx.hu[fluid] = 15.0 + rng.normal(0, 5.0, size=int(fluid.sum()))
        region |= fluid
    return FindingResult(region, {"effusion_side": side, "effusion_height_mm": height})


def infiltration(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    sides = _side(rng, both=0.5)
    region = np.zeros(ctx.hu.shape, bool)
    zone = (float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.6, 0.8)))
    amount = 150.0 + 200.0 * s
    for side in sides:
        lo, hi = ctx.box(side)
        shape = tuple(int(b - a) for a, b in zip(lo, hi))
        texture = _coarse_texture(rng, shape, ctx.spacing, 12.0)
        frac = ctx.height_fraction(side, np.arange(lo[2], hi[2]))[None, None, :]
        fade = smoothstep(zone[0], zone[0] + 0.1, frac) * (1.0 - smoothstep(zone[1] - 0.1, zone[1], frac))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        where = (ctx.lung(side) & ctx.parenchyma())[box]
        delta = amount * np.clip(0.55 + 0.6 * texture, 0.0, None) * fade
        ctx.hu[box] += np.where(where, delta, 0.0).astype(np.float32)
        region[box] |= where & (delta > 0.3 * amount)
    return FindingResult(region, {"infiltration_sides": sides, "infiltration_zone": list(zone), "infiltration_hu": amount})


def mass(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    side = _side(rng)[0]
    diameter = 35.0 + 25.0 * s
    r = diameter / 2
    centre = _random_point(ctx, side, rng, (0.15, 0.85), radius_mm=r, inside=0.85)
    lo, hi = _ball_box(ctx, centre, 1.4 * r)
    weight = np.zeros(tuple(hi - lo), np.float32)
    for _ in range(3):  # lobulated: three overlapping balls
        offset = rng.normal(0.0, 0.22 * r, 3) / np.asarray(ctx.spacing)
        radius = r * float(rng.uniform(0.7, 0.9))
        weight = np.maximum(weight, _blob_weight(ctx, centre + offset, np.full(3, radius), lo, hi, edge=0.15))
    region = _paint(ctx, lo, hi, weight, 35.0, ctx.lungs())
    return FindingResult(region, {"mass_side": side, "mass_mm": diameter, "mass_vox": [int(c) for c in centre]})


def nodule(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    """A solid nodule of 12-28 mm (large enough to be seen on a radiograph) in a random lung zone."""
    diameter = 12.0 + 16.0 * s
    side = _side(rng)[0]
    r = diameter / 2
    centre = _random_point(ctx, side, rng, (0.15, 0.9), radius_mm=r + 3.0, inside=1.0)
    lo, hi = _ball_box(ctx, centre, r + 2.0)
    weight = _blob_weight(ctx, centre, np.full(3, r), lo, hi, edge=float(np.mean(ctx.spacing)) / r)
    region = _paint(ctx, lo, hi, weight, 40.0, ctx.lungs())
    return FindingResult(region, {"inserted_nodule_vox": [int(c) for c in centre], "inserted_nodule_mm": diameter})


def remove_nodules(ctx: FindingContext, lung_density_hu: float, rng: np.random.Generator) -> int:
    """Replace the CT's own nodules (and a one-voxel rim) by lung parenchyma; return the voxels changed.

    The CT phantom is a nodule cohort (most patients have one); a radiograph without the Nodule
    finding must not show them.
    """
    nodules = ctx.lab == ctx.names["nodule"]
    if not nodules.any():
        return 0
    idx = np.nonzero(nodules)
    lo = np.maximum(np.array([int(i.min()) for i in idx]) - 2, 0)
    hi = np.minimum(np.array([int(i.max()) + 3 for i in idx]), ctx.hu.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grown = ndimage.binary_dilation(nodules[box], iterations=1)
    keep = np.isin(ctx.lab[box], [ctx.names["vessel"], ctx.names["airway"]]) & ~nodules[box]
    where = grown & ~keep & (ctx.env[box] > 0)
    sub = ctx.hu[box]
    sub[where] = lung_density_hu + rng.normal(0.0, 15.0, int(where.sum())).astype(np.float32)
    return int(where.sum())


def _patches(ctx: FindingContext, rng: np.random.Generator, sides: list[str], count: int, zone: tuple[float, float],
             radius: tuple[float, float], amount: float) -> tuple[np.ndarray, list[dict]]:
    """Patchy ill-defined opacities: soft blobs whose density follows a smooth texture."""
    region = np.zeros(ctx.hu.shape, bool)
    patches = []
    for i in range(count):
        side = sides[i % len(sides)]
        r = float(rng.uniform(*radius))
        centre = _random_point(ctx, side, rng, zone, radius_mm=r, inside=0.6)
        lo, hi = _ball_box(ctx, centre, 1.3 * r)
        radii = r * rng.uniform(0.8, 1.2, 3)
        weight = _blob_weight(ctx, centre, radii, lo, hi, edge=0.6)
        texture = _coarse_texture(rng, tuple(int(v) for v in hi - lo), ctx.spacing, 8.0)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        where = ctx.parenchyma()[box]
        delta = amount * weight * np.clip(0.7 + 0.45 * texture, 0.2, 1.3)
        sub = ctx.hu[box]
        sub[...] = np.where(where, np.minimum(sub + delta, 40.0), sub)
        region[box] |= where & (weight > 0.3)
        patches.append({"side": side, "radius_mm": r, "vox": [int(c) for c in centre]})
    return region, patches


def pneumonia(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    sides = _side(rng, both=0.3)
    count = 2 + int(round(2 * s))
    region, patches = _patches(ctx, rng, sides, count, (0.25, 0.8), (14.0, 24.0), 450.0 + 400.0 * s)
    return FindingResult(region, {"pneumonia_patches": patches})


def consolidation(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    side = _side(rng)[0]
    r = 22.0 + 18.0 * s
    centre = _random_point(ctx, side, rng, (0.1, 0.7), radius_mm=0.7 * r, inside=0.7)
    lo, hi = _ball_box(ctx, centre, 1.4 * r)
    weight = np.zeros(tuple(hi - lo), np.float32)
    for _ in range(3):
        offset = rng.normal(0.0, 0.2 * r, 3) / np.asarray(ctx.spacing)
        weight = np.maximum(weight, _blob_weight(ctx, centre + offset, r * rng.uniform(0.75, 1.0, 3), lo, hi, edge=0.12))
    region = _paint(ctx, lo, hi, weight, 30.0, ctx.parenchyma())
    return FindingResult(region, {"consolidation_side": side, "consolidation_radius_mm": r, "consolidation_vox": [int(c) for c in centre]})


def edema(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    amount = 250.0 + 250.0 * s
    width = float(rng.uniform(55.0, 75.0))
    region = np.zeros(ctx.hu.shape, bool)
    for side in SIDES:
        lo, hi = ctx.box(side)
        x_med = hi[0] - 1 if side == "right" else lo[0]
        hilum = np.array([x_med, 0.5 * (lo[1] + hi[1]), lo[2] + 0.55 * (hi[2] - lo[2])]) * np.asarray(ctx.spacing)
        gx, gy, gz = ctx.mm(lo, hi)
        d2 = (gx - hilum[0]) ** 2 + (gy - hilum[1]) ** 2 + ((gz - hilum[2]) * 1.3) ** 2
        haze = np.exp(-d2 / width**2).astype(np.float32)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        where = (ctx.lung(side) & ctx.parenchyma())[box]
        ctx.hu[box] += np.where(where, amount * haze, 0.0).astype(np.float32)
        region[box] |= where & (haze > 0.35)
    return FindingResult(region, {"edema_hu": amount, "edema_width_mm": width})


def emphysema(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    names, lab, hu = ctx.names, ctx.lab, ctx.hu
    drop = 60.0 + 60.0 * s
    lungs = ctx.lungs()
    parenchyma = lungs & ((lab == names["lung_left"]) | (lab == names["lung_right"]))
    hu[parenchyma] = np.maximum(hu[parenchyma] - drop, -1000.0)
    bullae = []
    for side in SIDES:
        lo, hi = ctx.box(side)
        x_med = hi[0] - 1 if side == "right" else lo[0]
        hilum = np.array([x_med, 0.5 * (lo[1] + hi[1]), lo[2] + 0.55 * (hi[2] - lo[2])])
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        gx, gy, gz = ctx.mm(lo, hi)
        c = hilum * np.asarray(ctx.spacing)
        dist = np.sqrt((gx - c[0]) ** 2 + (gy - c[1]) ** 2 + (gz - c[2]) ** 2)
        reach = 0.45 * float(np.max((hi - lo) * np.asarray(ctx.spacing)))
        pruned = ctx.lung(side)[box] & (lab[box] == names["vessel"]) & (dist > reach)
        hu[box][pruned] = -900.0 - drop
        for _ in range(1 + int(round(2 * s * rng.random()))):
            r = float(rng.uniform(8.0, 20.0))
            centre = _random_point(ctx, side, rng, (0.6, 0.95), radius_mm=r, inside=0.7)
            blo, bhi = _ball_box(ctx, centre, r)
            weight = _blob_weight(ctx, centre, np.full(3, r), blo, bhi, edge=0.1)
            _paint(ctx, blo, bhi, weight, -1000.0, ctx.lung(side))
            bullae.append({"side": side, "radius_mm": r})
    return FindingResult(lungs.copy(), {"emphysema_drop_hu": drop, "bullae": bullae})


def fibrosis(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    depth = 15.0 + 15.0 * s
    region = np.zeros(ctx.hu.shape, bool)
    for side in SIDES:
        lo, hi = ctx.box(side)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        near = ctx.surface_distance(side)
        frac = ctx.height_fraction(side, np.arange(lo[2], hi[2]))[None, None, :]
        weight = (1.0 - smoothstep(0.55, 0.7, frac)) * (1.0 - smoothstep(0.6 * depth, depth, near))
        net = np.abs(_coarse_texture(rng, tuple(int(v) for v in hi - lo), ctx.spacing, 7.0)) < 0.25
        where = (ctx.lung(side) & ctx.parenchyma())[box]
        delta = weight * (60.0 + 420.0 * net)
        ctx.hu[box] += np.where(where, delta, 0.0).astype(np.float32)
        region[box] |= where & (weight > 0.5)
    return FindingResult(region, {"fibrosis_depth_mm": depth})


def pleural_thickening(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    """A soft-tissue band along the lateral chest wall (where the lung's outer surface is tangent to
    the beam: within ``t`` of the slice's most lateral lung voxel) and over the apex."""
    sides = _side(rng, both=0.4)
    thick = 4.0 + 6.0 * s
    apical_only = bool(rng.random() < 0.3)
    region = np.zeros(ctx.hu.shape, bool)
    for side in sides:
        lo, hi = ctx.box(side)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        lung = ctx.lung(side)[box]
        x = np.arange(lo[0], hi[0])[:, None, None]
        z = np.arange(lo[2], hi[2])[None, None, :]
        big = 10**6
        if side == "right":  # lateral = small X
            d_lat = (x - np.where(lung, x, big).min(axis=(0, 1), keepdims=True)) * ctx.spacing[0]
        else:
            d_lat = (np.where(lung, x, -big).max(axis=(0, 1), keepdims=True) - x) * ctx.spacing[0]
        d_top = (np.where(lung, z, -big).max(axis=(1, 2), keepdims=True) - z) * ctx.spacing[2]
        frac = ctx.height_fraction(side, z)
        band = (d_top < thick) & (frac > 0.75)
        if not apical_only:
            band |= (d_lat < thick) & (frac > 0.15)
        region[box] |= band & lung
    ctx.hu[region] = 40.0 + rng.normal(0.0, 6.0, int(region.sum())).astype(np.float32)
    return FindingResult(region, {"pleural_thickening_sides": sides, "pleural_thickening_mm": thick, "apical_only": apical_only})


def hernia(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    names, lab = ctx.names, ctx.lab
    heart = lab == names["heart"]
    if not heart.any():
        raise DataError("cannot simulate a hiatal hernia: the CT patient has no heart label")
    idx = np.nonzero(heart)
    r = 20.0 + 12.0 * s
    sp = np.asarray(ctx.spacing)
    cx = float(np.mean(idx[0])) + rng.uniform(0.0, 15.0) / sp[0]  # slightly to the patient's left
    cy = float(np.max(idx[1])) + 0.3 * r / sp[1]  # behind the heart
    cz = float(np.min(idx[2])) + rng.uniform(0.2, 0.6) * r / sp[2]  # at the heart's base, above the diaphragm
    centre = np.array([cx, cy, cz])
    lo, hi = _ball_box(ctx, np.rint(centre).astype(int), r)
    gx, gy, gz = ctx.mm(lo, hi)
    c = centre * sp
    d = np.sqrt((gx - c[0]) ** 2 + (gy - c[1]) ** 2 + (gz - c[2]) ** 2)
    inside = d < r
    level = c[2] + float(rng.uniform(0.2, 0.5)) * r  # air-fluid level
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = ctx.hu[box]
    wall = inside & (d > r - 3.0)
    gas = inside & ~wall & (gz > level)
    fluid = inside & ~wall & ~gas
    sub[wall] = 40.0
    sub[fluid] = 15.0
    sub[gas] = -1000.0
    region = np.zeros(ctx.hu.shape, bool)
    region[box] = inside
    return FindingResult(region, {"hernia_radius_mm": r, "hernia_vox": [float(v) for v in centre]})


def pneumothorax(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    """Collapse one lung towards its medial base in the frontal (X, Z) plane.

    The lung's frontal silhouette is shrunk by the collapse factor (0.85 -> 0.7 with severity) about
    a point at its medial base; lung voxels whose (X, Z) column falls outside the shrunk silhouette
    become air (no vessels, no parenchyma), the remaining lung is slightly denser (compressed). The
    region is the air rim.
    """
    side = _side(rng)[0]
    lung = ctx.lung(side)
    if not lung.any():
        raise DataError(f"cannot simulate a pneumothorax: the CT patient has no {side} lung")
    factor = 0.85 - 0.15 * s
    silhouette = lung.any(axis=1)  # (X, Z)
    xs, zs = np.nonzero(silhouette)
    x_med = xs.max() if side == "right" else xs.min()  # +X is the patient's left
    cx, cz = float(x_med), float(zs.min() + 0.2 * (zs.max() - zs.min()))
    gx, gz = np.meshgrid(np.arange(ctx.hu.shape[0], dtype=np.float32), np.arange(ctx.hu.shape[2], dtype=np.float32), indexing="ij")
    src = [cx + (gx - cx) / factor, cz + (gz - cz) / factor]
    kept = ndimage.map_coordinates(silhouette.astype(np.uint8), src, order=0, mode="constant", cval=0) > 0
    air_columns = silhouette & ~kept
    ptx = lung & air_columns[:, None, :]
    remaining = lung & kept[:, None, :]
    ctx.hu[remaining] += 60.0
    ctx.hu[ptx] = -1000.0 + rng.normal(0, 5.0, size=int(ptx.sum()))
    return FindingResult(ptx, {"pneumothorax_side": side, "collapse_factor": factor})


def tuberculosis(ctx: FindingContext, rng: np.random.Generator, s: float) -> FindingResult:
    sides = _side(rng, both=0.25)
    region, patches = _patches(ctx, rng, sides, 2 + int(s > 0.6), (0.62, 0.95), (14.0, 22.0), 500.0 + 300.0 * s)
    cavity = None
    if s > 0.3:
        side = sides[0]
        r = 6.0 + 6.0 * s
        centre = _random_point(ctx, side, rng, (0.65, 0.9), radius_mm=r + 3.0, inside=0.9)
        lo, hi = _ball_box(ctx, centre, r + 3.0)
        gx, gy, gz = ctx.mm(lo, hi)
        c = centre * np.asarray(ctx.spacing)
        d = np.sqrt((gx - c[0]) ** 2 + (gy - c[1]) ** 2 + (gz - c[2]) ** 2)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        lung = ctx.lungs()[box]
        sub = ctx.hu[box]
        sub[lung & (d < r + 3.0)] = 30.0  # thick wall
        sub[lung & (d < r)] = -1000.0  # air in the cavity
        region[box] |= lung & (d < r + 3.0)
        cavity = {"side": side, "radius_mm": r, "vox": [int(v) for v in centre]}
    return FindingResult(region, {"tuberculosis_patches": patches, "cavity": cavity})


#: Simulators by finding name, in the order they are applied (heart and hernia, parenchyma, then
#: pleura; the pneumothorax comes last and overrides what lies in its air rim).
SIMULATORS: dict[str, Callable[[FindingContext, np.random.Generator, float], FindingResult]] = {
    "Cardiomegaly": cardiomegaly,
    "Hernia": hernia,
    "Emphysema": emphysema,
    "Edema": edema,
    "Infiltration": infiltration,
    "Fibrosis": fibrosis,
    "Pneumonia": pneumonia,
    "Consolidation": consolidation,
    "Tuberculosis": tuberculosis,
    "Atelectasis": atelectasis,
    "Mass": mass,
    "Nodule": nodule,
    "Pleural_Thickening": pleural_thickening,
    "Effusion": effusion,
    "Pneumothorax": pneumothorax,
}
