"""Geometric primitives for the phantoms: a patient frame on a voxel grid, smooth noise, tubes, blobs.

Everything here is vectorised NumPy. Shapes are described in a *patient frame* ``(u, v, w)`` in mm
(``u`` towards the patient's left, ``v`` posterior, ``w`` superior), which a :class:`PatientFrame`
maps onto a voxel grid with a small in-plane rotation and a shift. Tubes and blobs are rendered as
partial-volume occupancies in ``[0, 1]`` from distance fields evaluated only inside each shape's
bounding box, so hundreds of vessel segments cost a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PatientFrame:
    """Maps a patient frame ``(u, v, w)`` (mm) onto voxel indices ``(i, j, k)`` of a grid.

    Voxel ``(i, j, k)`` has grid-centred coordinates ``x = (i - (nx - 1) / 2) * sx`` (and alike for
    ``y``, ``z``); the patient frame is that grid rotated by ``angle`` (radians, about the Z axis) and
    shifted by ``shift`` (mm): ``u = c (x - tx) + s (y - ty)``, ``v = -s (x - tx) + c (y - ty)``,
    ``w = z - tz``.

    Attributes:
        shape: grid shape ``(X, Y, Z)``.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        angle: in-plane rotation in radians.
        shift: patient centre in grid-centred mm ``(tx, ty, tz)``.
        U, V: ``(X, Y)`` float32 in-plane patient coordinates of every voxel column.
        W: ``(Z,)`` float32 cranio-caudal coordinate of every slice.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    angle: float = 0.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    U: np.ndarray = field(init=False, repr=False)
    V: np.ndarray = field(init=False, repr=False)
    W: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nx, ny, nz = self.shape
        sx, sy, sz = self.spacing
        x = (np.arange(nx, dtype=np.float64) - (nx - 1) / 2) * sx - self.shift[0]
        y = (np.arange(ny, dtype=np.float64) - (ny - 1) / 2) * sy - self.shift[1]
        z = (np.arange(nz, dtype=np.float64) - (nz - 1) / 2) * sz - self.shift[2]
        c, s = np.cos(self.angle), np.sin(self.angle)
        self.U = (c * x[:, None] + s * y[None, :]).astype(np.float32)
        self.V = (-s * x[:, None] + c * y[None, :]).astype(np.float32)
        self.W = z.astype(np.float32)

    @property
    def voxel_mm(self) -> float:
        """Mean voxel edge length in mm (the width of partial-volume edges)."""
        return float(np.mean(self.spacing))

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable patient coordinates ``U (X, Y, 1)``, ``V (X, Y, 1)``, ``W (1, 1, Z)``."""
        return self.U[:, :, None], self.V[:, :, None], self.W[None, None, :]

    def crop(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable patient coordinates of the voxel box ``[lo, hi)`` (integer index triples)."""
        return (
            self.U[lo[0] : hi[0], lo[1] : hi[1], None],
            self.V[lo[0] : hi[0], lo[1] : hi[1], None],
            self.W[None, None, lo[2] : hi[2]],
        )

    def to_voxel(self, uvw: np.ndarray) -> np.ndarray:
        """Patient-frame points ``(N, 3)`` mm -> continuous voxel indices ``(N, 3)``."""
        uvw = np.asarray(uvw, dtype=np.float64).reshape(-1, 3)
        c, s = np.cos(self.angle), np.sin(self.angle)
        x = self.shift[0] + c * uvw[:, 0] - s * uvw[:, 1]
        y = self.shift[1] + s * uvw[:, 0] + c * uvw[:, 1]
        z = self.shift[2] + uvw[:, 2]
        n = np.asarray(self.shape, dtype=np.float64)
        return np.stack([x, y, z], axis=1) / np.asarray(self.spacing) + (n - 1) / 2

    def to_frame(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(N, 3)`` -> patient-frame points ``(N, 3)`` mm."""
        ijk = np.asarray(ijk, dtype=np.float64).reshape(-1, 3)
        n = np.asarray(self.shape, dtype=np.float64)
        xyz = (ijk - (n - 1) / 2) * np.asarray(self.spacing) - np.asarray(self.shift)
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.stack([c * xyz[:, 0] + s * xyz[:, 1], -s * xyz[:, 0] + c * xyz[:, 1], xyz[:, 2]], axis=1)

    def box(self, points_uvw: np.ndarray, margin_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Integer voxel box ``[lo, hi)`` holding ``points`` (patient frame) plus ``margin_mm``.

        Returns ``None`` when the box misses the grid.
        """
        ijk = self.to_voxel(points_uvw)
        pad = margin_mm / np.asarray(self.spacing) + 1.0
        lo = np.floor(ijk.min(axis=0) - pad).astype(int)
        hi = np.ceil(ijk.max(axis=0) + pad).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(self.shape))
        if np.any(hi <= lo):
            return None
        return lo, hi


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """``(n, cells + 1)`` linear interpolation weights from a coarse lattice to ``n`` samples."""
    pos = np.linspace(0.0, float(cells), n) if n > 1 else np.zeros(1)
    lo = np.minimum(np.floor(pos).astype(int), cells - 1 if cells > 0 else 0)
    frac = pos - lo
    m = np.zeros((n, cells + 1), np.float32)
    m[np.arange(n), lo] = 1.0 - frac
    if cells > 0:
        m[np.arange(n), lo + 1] += frac
    return m


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]) -> np.ndarray:
    """Low-frequency Gaussian noise: white noise on a coarse ``cells`` lattice, linearly interpolated.

    The interpolation is separable (one small matrix product per axis), so a 128 x 128 x 96 field
    costs a few milliseconds.

    Args:
        rng: the random stream.
        shape: output shape.
        cells: lattice cells per axis (about the number of features across), same rank as ``shape``.

    Returns:
        float32 array of ``shape`` with zero mean and unit standard deviation.
    """
    if len(shape) != len(cells):
        raise ValueError(f"smooth_noise: shape {shape} and cells {cells} differ in rank")
    cells = tuple(max(1, int(c)) for c in cells)
    field_ = rng.standard_normal(tuple(c + 1 for c in cells)).astype(np.float32)
    for axis, (n, c) in enumerate(zip(shape, cells)):
        field_ = np.moveaxis(np.tensordot(_interp_matrix(int(n), c), np.moveaxis(field_, axis, 0), axes=1), 0, axis)
    field_ = np.ascontiguousarray(field_, dtype=np.float32)
    field_ -= field_.mean()
    std = float(field_.std())
    return field_ / std if std > 0 else field_


def segment_occupancy(
    u: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    ra: float,
    rb: float,
    edge_mm: float,
) -> np.ndarray:
    """Partial-volume occupancy of a tapered tube (capsule) from ``a`` to ``b``.

    Args:
        u, v, w: broadcastable patient coordinates (mm).
        a, b: segment end points ``(3,)`` (mm).
        ra, rb: radius at ``a`` and at ``b`` (mm), linearly interpolated in between.
        edge_mm: width of the soft edge (about one voxel).

    Returns:
        float32 occupancy in ``[0, 1]`` with the broadcast shape of ``u, v, w``.
    """
    d = b - a
    length2 = float(d @ d)
    pu, pv, pw = u - a[0], v - a[1], w - a[2]
    if length2 > 0:
        t = np.clip((pu * d[0] + pv * d[1] + pw * d[2]) / length2, 0.0, 1.0)
    else:
        t = np.zeros(np.broadcast_shapes(u.shape, v.shape, w.shape), np.float32)
    du, dv, dw = pu - t * d[0], pv - t * d[1], pw - t * d[2]
    dist = np.sqrt(du * du + dv * dv + dw * dw)
    radius = ra + t * (rb - ra)
    return np.clip((radius - dist) / edge_mm + 0.5, 0.0, 1.0).astype(np.float32)


def render_segments(
    frame: PatientFrame,
    occupancy: np.ndarray,
    segments: np.ndarray,
) -> None:
    """Render tapered tubes into ``occupancy`` in place (voxel-wise maximum).

    Thin tubes (radius + half an edge within one voxel) are splatted in one vectorised pass
    (:func:`splat_segments`); thicker ones get an exact distance field on their bounding box.

    Args:
        frame: the grid's patient frame.
        occupancy: ``(X, Y, Z)`` float32 array updated in place.
        segments: ``(N, 8)`` rows ``(ua, va, wa, ub, vb, wb, ra, rb)`` in mm.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 8)
    edge = frame.voxel_mm
    thin = np.maximum(segments[:, 6], segments[:, 7]) + 0.5 * edge <= min(frame.spacing)
    if thin.any():
        splat_segments(frame, occupancy, segments[thin])
    for row in segments[~thin]:
        a, b, ra, rb = row[0:3], row[3:6], row[6], row[7]
        box = frame.box(np.stack([a, b]), max(ra, rb) + edge)
        if box is None:
            continue
        lo, hi = box
        u, v, w = frame.crop(lo, hi)
        occ = segment_occupancy(u, v, w, a, b, ra, rb, edge)
        view = occupancy[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, occ, out=view)


_NEIGHBOURS = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), axis=-1).reshape(-1, 3)


def splat_segments(frame: PatientFrame, occupancy: np.ndarray, segments: np.ndarray, step_voxels: float = 0.45) -> None:
    """Render thin tubes (radius + half an edge <= one voxel) in one vectorised pass.

    Each segment is sampled every ``step_voxels`` voxel along its centreline; the 27 voxels around
    every sample get the exact occupancy of the segment (distance to the segment, not to the sample).
    Every voxel a thin tube touches lies within one voxel of some sample, so the result equals the
    bounding-box rendering of :func:`segment_occupancy`.
    """
    edge = frame.voxel_mm
    step = step_voxels * min(frame.spacing)
    a, b = segments[:, 0:3], segments[:, 3:6]
    d = b - a
    len2 = np.maximum(np.sum(d * d, axis=1), 1e-12)
    counts = np.maximum(1, np.ceil(np.sqrt(len2) / step).astype(int)) + 1
    seg_idx = np.repeat(np.arange(len(segments)), counts)
    starts = np.cumsum(counts) - counts
    t = (np.arange(counts.sum()) - np.repeat(starts, counts)) / np.repeat(counts - 1, counts).clip(min=1)
    pts = a[seg_idx] + t[:, None] * d[seg_idx]
    centre = np.rint(frame.to_voxel(pts)).astype(np.int64)
    shape = np.asarray(occupancy.shape)
    vox = (centre[:, None, :] + _NEIGHBOURS[None]).reshape(-1, 3)
    inside = np.all((vox >= 0) & (vox < shape), axis=1)
    vox = vox[inside]
    seg = np.repeat(seg_idx, len(_NEIGHBOURS))[inside]
    pu = frame.U[vox[:, 0], vox[:, 1]] - a[seg, 0]
    pv = frame.V[vox[:, 0], vox[:, 1]] - a[seg, 1]
    pw = frame.W[vox[:, 2]] - a[seg, 2]
    ts = np.clip((pu * d[seg, 0] + pv * d[seg, 1] + pw * d[seg, 2]) / len2[seg], 0.0, 1.0)
    du, dv, dw = pu - ts * d[seg, 0], pv - ts * d[seg, 1], pw - ts * d[seg, 2]
    dist = np.sqrt(du * du + dv * dv + dw * dw)
    radius = segments[seg, 6] + ts * (segments[seg, 7] - segments[seg, 6])
    occ = np.clip((radius - dist) / edge + 0.5, 0.0, 1.0).astype(np.float32)
    keep = occ > 0
    flat = np.ravel_multi_index(tuple(vox[keep].T), occupancy.shape)
    np.maximum.at(occupancy.reshape(-1), flat, occ[keep])


def polyline_segments(points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Consecutive segments ``(N - 1, 8)`` of a polyline ``points (N, 3)`` with per-point ``radii``."""
    points = np.asarray(points, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    return np.concatenate([points[:-1], points[1:], radii[:-1, None], radii[1:, None]], axis=1)


def random_perpendicular(rng: np.random.Generator, directions: np.ndarray) -> np.ndarray:
    """Unit vectors ``(N, 3)`` perpendicular to unit ``directions (N, 3)``, uniformly random in angle."""
    directions = np.asarray(directions, dtype=np.float64)
    helper = np.where(np.abs(directions[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(directions, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(directions, e1)
    phi = rng.uniform(0, 2 * np.pi, size=(len(directions), 1))
    return np.cos(phi) * e1 + np.sin(phi) * e2


def sphere_directions(n: int = 26) -> np.ndarray:
    """``n`` roughly uniform unit vectors (Fibonacci sphere), deterministic."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * k / n)
    azimuth = np.pi * (1 + 5**0.5) * k
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (``x <= edge0``) to 1 (``x >= edge1``)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)
