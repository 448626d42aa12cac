"""Coordinates of the discovered patterns: where to crop, in every neighbour, the cube of one class.

Semantic Genesis picks C random but fixed coordinates in a reference patient and crops the same
coordinate in each of its K nearest patients (Haghighi et al., MICCAI 2020, §2, Fig. 1a). The official
generator (``pattern_generator_3D.py``) uses the same *voxel* index in every patient with fixed
100-voxel borders, which assumes 512x512 LUNA16 scans. Here scans may differ in size, so:

* **Frames.** A coordinate is the *relative* position of a crop's centre inside a frame of each
  patient: the bounding box of the body (``coordinate_frame="body"``, default: it follows the anatomy
  when patients differ in size or position) or the whole volume (``"volume"``). It is sampled in the
  reference's voxel grid and mapped to patient ``p`` by ``centre_p = origin_p + c * extent_p``.
* **Fit.** Only relative positions at which the base crop lies inside every involved patient
  (reference, train and validation neighbours), away from the borders of each volume, are drawn, so no
  crop is ever clamped or padded. The borders follow :class:`Borders`: a fraction of each volume's
  size (``border_rule="relative"``, default) or the official absolute 100 / 100 / 30 voxels
  (``"official"``, :func:`semantic_genesis.preprocess.border_margins`).
* **Spread.** Coordinates of one reference are at least ``min_distance`` reference voxels apart
  (the official generator's ``repeated`` flag is never reset, so after one rejection it rejects
  everything; here each candidate is judged on its own).
* **Content.** The base crop in the reference passes a content test: ``"lung"`` (default: the official
  lung statistic with the air *outside the body* counted as tissue, so the crop is mostly lung inside
  the body; vectorised in ``preprocess.lung_scores``), ``"lung_official"`` (the official darkness-only
  test, which accepts outside air too), ``"body"`` (at least ``body_min_fraction`` of the crop inside
  the body mask) or ``"none"``.
* **Bounded.** At most ``max_coordinate_trials`` candidates are tried; if fewer than the requested
  number pass, :class:`CoordinateError` says how many were placed and what to change (the official
  generator can loop forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from semantic_genesis.errors import DataError


class CoordinateError(DataError):
    """Coordinates could not be placed (volume too small, content test never passes, too close)."""


@dataclass(frozen=True)
class Borders:
    """The excluded margins of every volume (``discovery.border_rule`` and its parameters).

    Attributes:
        rule: ``"relative"`` (``fraction`` of each axis) or ``"official"`` (``voxels``: the official
            generator's 100 / 100 / 30, plus its extra 1 voxel in-plane and ``look_ahead + 1`` slices at
            the upper end).
        fraction: relative margins (X, Y, Z).
        voxels: official margins (X, Y, Z).
        look_ahead: the lung test's look-ahead (official upper z bound).
    """

    rule: str = "relative"
    fraction: tuple[float, float, float] = (0.1, 0.1, 0.1)
    voxels: tuple[int, int, int] = (100, 100, 30)
    look_ahead: int = 3

    @classmethod
    def from_config(cls, dcfg) -> "Borders":
        return cls(dcfg.border_rule, tuple(dcfg.border_fraction), tuple(dcfg.border_voxels), int(dcfg.look_ahead))

    def corner_range(self, shape: Sequence[int], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive corner bounds ``(lo, hi)`` of a ``size`` crop in a volume of ``shape``.

        Unlike cube generation the relative margin is not shrunk: every patient keeps the same
        relative border.
        """
        from semantic_genesis.preprocess import border_margins

        if self.rule == "relative":
            shape_a = np.asarray(shape, dtype=np.float64)
            margin = np.floor(np.asarray(self.fraction, dtype=np.float64) * shape_a)
            return margin, shape_a - np.asarray(size, dtype=np.float64) - margin
        lo, hi = border_margins(shape, size, self.rule, self.fraction, self.voxels, self.look_ahead)
        return lo.astype(np.float64), hi.astype(np.float64)

    def describe(self) -> str:
        if self.rule == "relative":
            return f"borders of {', '.join(f'{v:g}' for v in self.fraction)} of the volume"
        return f"the official borders of {', '.join(str(v) for v in self.voxels)} voxels"


BorderSpec = Union[Borders, Sequence[float]]


def as_borders(spec: BorderSpec) -> Borders:
    """A :class:`Borders` from itself or from relative fractions ``(fx, fy, fz)``."""
    if isinstance(spec, Borders):
        return spec
    return Borders("relative", tuple(float(v) for v in spec))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Frame:
    """Where relative coordinates live in one patient (voxel units).

    Attributes:
        shape: the volume shape ``(X, Y, Z)``.
        origin: voxel position of relative coordinate 0 per axis.
        extent: voxels spanned by relative coordinates 0..1 per axis (>= 1).
    """

    shape: tuple[int, int, int]
    origin: tuple[float, float, float]
    extent: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "origin": list(self.origin), "extent": list(self.extent)}

    @classmethod
    def from_dict(cls, d: dict) -> "Frame":
        return cls(tuple(int(v) for v in d["shape"]), tuple(float(v) for v in d["origin"]),
                   tuple(float(v) for v in d["extent"]))


def volume_frame(shape: Sequence[int]) -> Frame:
    """The whole volume as frame: relative 0..1 spans voxels 0..shape."""
    shape = tuple(int(s) for s in shape)
    return Frame(shape, (0.0, 0.0, 0.0), tuple(float(max(s, 1)) for s in shape))  # type: ignore[arg-type]


def body_frame(unit: np.ndarray) -> Frame:
    """The body's bounding box as frame (the whole volume when no body is found).

    Args:
        unit: ``(X, Y, Z)`` float32 scan in [0, 1].
    """
    from semantic_genesis.preprocess import body_mask

    mask = np.asarray(body_mask(unit), dtype=bool)
    if not mask.any():
        return volume_frame(unit.shape)
    origin, extent = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        lo, hi = int(present[0]), int(present[-1]) + 1
        origin.append(float(lo))
        extent.append(float(max(hi - lo, 1)))
    return Frame(tuple(int(s) for s in unit.shape), tuple(origin), tuple(extent))  # type: ignore[arg-type]


def make_frame(unit: np.ndarray, kind: str) -> Frame:
    """``body_frame`` or ``volume_frame`` by name."""
    if kind == "body":
        return body_frame(unit)
    if kind == "volume":
        return volume_frame(unit.shape)
    raise DataError(f"unknown coordinate frame {kind!r}; expected 'body' or 'volume'")


def feasible_interval(
    frames: Sequence[Frame], size: Sequence[int], borders: BorderSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Relative centre positions at which a ``size`` crop fits inside every frame's volume.

    In patient ``p`` the crop corner must lie in the :class:`Borders` range of its volume (relative:
    ``[b_p, S_p - b_p - size]`` with ``b_p = floor(fraction * S_p)``); the corresponding relative
    centres are intersected.

    Args:
        frames: the patients' frames.
        size: crop size ``(x, y, z)``.
        borders: a :class:`Borders`, or relative fractions per axis.

    Returns:
        ``(lo, hi)``, each ``(3,)``; an axis with ``lo > hi`` has no feasible position.
    """
    rule = as_borders(borders)
    size_a = np.asarray(size, dtype=np.float64)
    lo = np.full(3, -np.inf)
    hi = np.full(3, np.inf)
    for f in frames:
        c_lo, c_hi = rule.corner_range(f.shape, size)
        c_lo, c_hi = c_lo + size_a / 2.0, c_hi + size_a / 2.0
        origin, extent = np.asarray(f.origin), np.asarray(f.extent)
        lo = np.maximum(lo, (c_lo - origin) / extent)
        hi = np.minimum(hi, (c_hi - origin) / extent)
    return lo, hi


def relative_to_corner(coords: np.ndarray, frame: Frame, size: Sequence[int]) -> np.ndarray:
    """Map relative centres ``(N, 3)`` to integer crop corners ``(N, 3)`` in ``frame``'s volume.

    Corners are clamped into the volume, which only matters for rounding at the feasible edge.
    """
    coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
    size_a = np.asarray(size, dtype=np.float64)
    centre = np.asarray(frame.origin) + coords * np.asarray(frame.extent)
    corner = np.rint(centre - size_a / 2.0).astype(np.int64)
    upper = np.asarray(frame.shape, dtype=np.int64) - np.asarray(size, dtype=np.int64)
    return np.clip(corner, 0, np.maximum(upper, 0))


def corner_to_relative(corners: np.ndarray, frame: Frame, size: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`relative_to_corner` (crop centre, relative to ``frame``)."""
    corners = np.atleast_2d(np.asarray(corners, dtype=np.float64))
    centre = corners + np.asarray(size, dtype=np.float64) / 2.0
    return (centre - np.asarray(frame.origin)) / np.asarray(frame.extent)


# ------------------------------------------------------------------------------------------------
# Content tests
# ------------------------------------------------------------------------------------------------
class ContentTest:
    """Vectorised acceptance test of crops of one reference volume.

    Args:
        unit: the reference scan ``(X, Y, Z)`` in [0, 1].
        kind: ``"lung"`` (lung inside the body), ``"lung_official"`` (darkness only), ``"body"`` or
            ``"none"``.
        size: crop size ``(x, y, z)``.
        threshold, max_score, look_ahead: lung test parameters (official: 0.425, 0.15, 3).
        body_min_fraction: body test parameter.

    ``best`` holds the best score seen (lowest tissue score for the lung tests, highest body fraction
    for the body test), for the message when too few crops pass.
    """

    KINDS = ("lung", "lung_official", "body", "none")

    def __init__(self, unit: np.ndarray, kind: str, size: Sequence[int], threshold: float = 0.425,
                 max_score: float = 0.15, look_ahead: int = 3, body_min_fraction: float = 0.5):
        if kind not in self.KINDS:
            raise DataError(f"unknown content test {kind!r}; expected one of {', '.join(repr(k) for k in self.KINDS)}")
        self.unit, self.kind, self.size = unit, kind, tuple(int(s) for s in size)
        self.threshold, self.max_score, self.look_ahead = threshold, max_score, look_ahead
        self.body_min_fraction = body_min_fraction
        self.best: float | None = None
        # summed-area tables: every candidate window is then scored in O(1)
        from semantic_genesis.preprocess import body_mask, body_table, lung_table

        self._table = None
        if kind == "body":
            self._table = body_table(unit)
        elif kind == "lung":
            self._table = lung_table(unit, threshold, look_ahead, body=body_mask(unit))
        elif kind == "lung_official":
            self._table = lung_table(unit, threshold, look_ahead)

    def __call__(self, corners: np.ndarray) -> np.ndarray:
        """Boolean ``(N,)``: which crops at ``corners`` ``(N, 3)`` pass."""
        corners = np.asarray(corners, dtype=np.int64).reshape(-1, 3)
        if self.kind == "none" or len(corners) == 0:
            return np.ones(len(corners), dtype=bool)
        from semantic_genesis.preprocess import body_scores, lung_scores

        if self.kind == "body":
            scores = np.asarray(body_scores(self._table, corners, self.size))
            self.best = max(self.best if self.best is not None else 0.0, float(scores.max()))
            return scores >= self.body_min_fraction
        scores = np.asarray(lung_scores(self._table, corners, self.size, self.threshold, self.look_ahead))
        self.best = min(self.best if self.best is not None else 1.0, float(scores.min()))
        return scores <= self.max_score

    def describe(self) -> str:
        """The test and its threshold, with the best score seen."""
        best = "" if self.best is None else f", best {self.best:.3f}"
        if self.kind in ("lung", "lung_official"):
            inside = " inside the body" if self.kind == "lung" else ""
            return f"{self.kind!r} (mostly air{inside}: tissue score <= discovery.content_max={self.max_score:g}{best})"
        if self.kind == "body":
            return f"'body' (>= discovery.body_min_fraction={self.body_min_fraction:g} inside the body{best})"
        return "'none'"


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------
def candidate_corner_range(
    reference: Frame, frames: Sequence[Frame], size: Sequence[int], borders: BorderSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive integer corner range ``(lo, hi)`` in the reference grid whose centres fit everywhere.

    Raises:
        CoordinateError: naming the axis, the crop size and the smallest volume, when no position fits.
    """
    rule = as_borders(borders)
    lo_rel, hi_rel = feasible_interval([reference, *frames], size, rule)
    size_a = np.asarray(size, dtype=np.float64)
    origin, extent = np.asarray(reference.origin), np.asarray(reference.extent)
    # a reference corner is admissible when its (relative) centre lies in [lo_rel, hi_rel]
    lo = np.ceil(origin + lo_rel * extent - size_a / 2.0 - 1e-9).astype(np.int64)
    hi = np.floor(origin + hi_rel * extent - size_a / 2.0 + 1e-9).astype(np.int64)
    hi = np.minimum(hi, np.asarray(reference.shape) - np.asarray(size, dtype=np.int64))
    lo = np.maximum(lo, 0)
    for axis in range(3):
        if lo[axis] > hi[axis]:
            smallest = min([reference, *frames], key=lambda f: f.shape[axis])
            fix = ("discovery.border_rule=relative (the official borders are sized for 512x512 LUNA16 scans), "
                   if rule.rule == "official" else "smaller discovery.border_fraction, ")
            raise CoordinateError(
                f"no crop position fits: axis {'XYZ'[axis]} needs a crop of {int(size[axis])} voxels "
                f"inside every one of {len(frames) + 1} patients with {rule.describe()}, but the smallest "
                f"volume is {smallest.shape} (and body boxes differ); use a smaller discovery.pattern_size, "
                f"{fix}coordinate_frame=volume or fewer neighbours"
            )
    return lo, hi


def sample_coordinates(
    reference: Frame,
    frames: Sequence[Frame],
    test: ContentTest,
    count: int,
    rng: np.random.Generator,
    borders: BorderSpec,
    min_distance: float,
    max_trials: int,
    chunk: int = 256,
    reference_id: str = "reference",
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` crop positions in the reference that fit every frame, are spread, pass ``test``.

    Args:
        reference: frame of the reference patient (its volume is the one ``test`` looks at).
        frames: frames of every other patient the coordinates will be cropped in.
        test: the content test of the reference volume.
        count: coordinates wanted.
        rng: NumPy generator (seeded by the caller).
        borders: a :class:`Borders`, or the excluded margin per axis relative to each volume's size.
        min_distance: minimum Euclidean distance between accepted crop centres (reference voxels).
        max_trials: candidates tried at most.
        chunk: candidates drawn and tested together.
        reference_id: named in error messages.

    Returns:
        ``(coords, corners)``: relative centres ``(count, 3)`` float64 and reference corners
        ``(count, 3)`` int64, in acceptance order.

    Raises:
        CoordinateError: fewer than ``count`` positions found within ``max_trials`` candidates.
    """
    size = test.size
    lo, hi = candidate_corner_range(reference, frames, size, borders)
    accepted: list[np.ndarray] = []
    trials = passed = 0
    while len(accepted) < count and trials < max_trials:
        n = min(chunk, max_trials - trials)
        cand = rng.integers(lo, hi + 1, size=(n, 3))
        trials += n
        ok = test(cand)
        passed += int(ok.sum())
        for corner in cand[ok]:
            if accepted:
                d = np.sqrt(((np.asarray(accepted) - corner) ** 2).sum(axis=1)).min()
                if d < min_distance:
                    continue
            accepted.append(corner)
            if len(accepted) == count:
                break
    if len(accepted) < count:
        if passed == 0 and test.kind in ("lung", "lung_official"):
            advice = ("discovery.content_test=body (patterns inside the body, as the semantic_genesis_3d_tiny preset "
                      "uses on the phantoms), a smaller discovery.pattern_size or a finer intensity.spacing")
        else:
            advice = ("lower discovery.num_classes / classes_per_reference or min_distance, raise "
                      "max_coordinate_trials, or use another discovery.content_test")
        raise CoordinateError(
            f"placed only {len(accepted)} of {count} coordinates in reference {reference_id} "
            f"(volume {reference.shape}, crop {tuple(size)}) after {trials} candidates: {passed} passed "
            f"the {test.describe()} content test, min_distance={min_distance:g}, corner range "
            f"{lo.tolist()}..{hi.tolist()}; {advice}"
        )
    corners = np.asarray(accepted, dtype=np.int64).reshape(-1, 3)
    return corner_to_relative(corners, reference, size), corners
