"""Reference strategies: which reference patients, which neighbours, which coordinates per class.

Two strategies (``discovery.strategy``):

* ``"paper"`` (default; Haghighi et al., MICCAI 2020, §2): anchor one random train patient as the reference, take
  its top-K nearest train patients (the reference itself is rank 0), draw ``classes_per_reference``
  random but fixed coordinates in the reference, one class per coordinate; repeat with a new
  reference until ``num_classes`` classes exist.
* ``"per_class"`` (the official code ``pattern_generator_3D.py``, TransVW's recipe): a new reference for
  every class, with one coordinate each (``classes_per_reference = 1``).

Validation patterns come from the ``num_val_neighbours`` validation patients nearest to the
reference. A reference whose coordinates cannot be placed is skipped for the next unused one (as the
official generator does); when the train patients run out a :class:`CoordinateError` says why. The
work is bounded: at most one attempt per train patient, each of at most ``max_coordinate_trials``
candidates, so it never loops forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from semantic_genesis.discovery.coordinates import Borders, ContentTest, CoordinateError, Frame, sample_coordinates
from semantic_genesis.discovery.neighbours import nearest
from semantic_genesis.discovery.scans import sampling_size
from semantic_genesis.errors import ConfigError
from semantic_genesis.utils.seeding import derive_seed


@dataclass
class Group:
    """One reference with its neighbours and the classes (coordinates) drawn in it.

    Attributes:
        reference: patient id of the reference.
        labels: class index of each coordinate (consecutive).
        coordinates: ``(n, 3)`` relative crop centres (see :mod:`.coordinates`).
        reference_corners: ``(n, 3)`` crop corners in the reference volume (voxels).
        neighbours: the K train patients, nearest first (``neighbours[0]`` is the reference).
        distances: feature distances of ``neighbours``.
        val_neighbours: the nearest validation patients.
        val_distances: their distances.
    """

    reference: str
    labels: list[int]
    coordinates: np.ndarray
    reference_corners: np.ndarray
    neighbours: list[str]
    distances: list[float]
    val_neighbours: list[str] = field(default_factory=list)
    val_distances: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "labels": [int(v) for v in self.labels],
            "coordinates": np.asarray(self.coordinates, dtype=float).round(6).tolist(),
            "reference_corners": np.asarray(self.reference_corners, dtype=int).tolist(),
            "neighbours": list(self.neighbours),
            "distances": [float(d) for d in self.distances],
            "val_neighbours": list(self.val_neighbours),
            "val_distances": [float(d) for d in self.val_distances],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Group":
        return cls(
            d["reference"], [int(v) for v in d["labels"]], np.asarray(d["coordinates"], dtype=np.float64).reshape(-1, 3),
            np.asarray(d["reference_corners"], dtype=np.int64).reshape(-1, 3), list(d["neighbours"]),
            [float(v) for v in d["distances"]], list(d.get("val_neighbours", [])),
            [float(v) for v in d.get("val_distances", [])],
        )


def check_counts(dcfg, n_train: int, n_val: int) -> None:
    """Raise :class:`ConfigError` when K, the validation neighbours or C cannot be served by the cohort."""
    if dcfg.num_classes < 1:
        raise ConfigError(f"discovery.num_classes must be >= 1, got {dcfg.num_classes}")
    if dcfg.num_neighbours < 1:
        raise ConfigError(f"discovery.num_neighbours must be >= 1, got {dcfg.num_neighbours}")
    if dcfg.num_neighbours > n_train:
        raise ConfigError(
            f"discovery.num_neighbours K={dcfg.num_neighbours} is larger than the {n_train} train patients "
            f"of the cohort; use K <= {n_train} or add scans"
        )
    if dcfg.num_val_neighbours > n_val:
        raise ConfigError(
            f"discovery.num_val_neighbours={dcfg.num_val_neighbours} is larger than the {n_val} validation "
            f"patients (discovery.val_fraction={dcfg.val_fraction}); lower it or raise val_fraction"
        )
    per_ref = classes_per_reference(dcfg)
    groups = math.ceil(dcfg.num_classes / per_ref)
    if groups > n_train:
        raise ConfigError(
            f"discovery.num_classes C={dcfg.num_classes} with {per_ref} class(es) per reference "
            f"(strategy {dcfg.strategy!r}) needs {groups} distinct reference patients but the cohort has "
            f"only {n_train} train patients"
        )


def classes_per_reference(dcfg) -> int:
    """Coordinates drawn per reference: 1 for ``per_class``, ``classes_per_reference`` for ``paper``."""
    if dcfg.strategy == "per_class":
        return 1
    if dcfg.classes_per_reference < 1:
        raise ConfigError(f"discovery.classes_per_reference must be >= 1, got {dcfg.classes_per_reference}")
    return int(dcfg.classes_per_reference)


def make_plan(
    ids: Sequence[str],
    splits: Sequence[str],
    features: np.ndarray,
    frames: dict[str, Frame],
    load_unit: Callable[[str], np.ndarray],
    dcfg,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[Group]:
    """Choose references, neighbours and coordinates for ``num_classes`` classes.

    Args:
        ids: patient ids, one per feature row.
        splits: ``"train"`` / ``"validation"`` per patient.
        features: ``(N, D)`` patient features.
        frames: coordinate frame of every patient.
        load_unit: patient id -> its scan ``(X, Y, Z)`` in [0, 1] (only references are loaded, for the
            content test).
        dcfg: the ``discovery`` config section.
        seed: the config seed (reference order and coordinates derive from it).
        log: one-line messages.

    Raises:
        ConfigError: K / validation neighbours / C too large for the cohort.
        CoordinateError: no remaining reference can hold the coordinates.
    """
    ids = list(ids)
    train = np.flatnonzero(np.asarray(splits) == "train")
    val = np.flatnonzero(np.asarray(splits) == "validation")
    check_counts(dcfg, len(train), len(val))
    per_ref = classes_per_reference(dcfg)
    order = np.random.default_rng(derive_seed(seed, "discovery-references")).permutation(train)
    size = sampling_size(dcfg)  # the crop window; (H, W, 1) in the one-slice grid of 2D discovery
    groups: list[Group] = []
    next_label, cursor = 0, 0
    last_error: CoordinateError | None = None
    while next_label < dcfg.num_classes:
        want = min(per_ref, dcfg.num_classes - next_label)
        placed = False
        while cursor < len(order) and not placed:
            ref = int(order[cursor])
            cursor += 1
            ref_id = ids[ref]
            d_tr, i_tr = nearest(features[ref : ref + 1], features[train], dcfg.num_neighbours,
                                 what="discovery.num_neighbours")
            neighbours = [ids[train[j]] for j in i_tr[0]]
            if ref_id in neighbours:  # the reference is rank 0 (ties could move it)
                k = neighbours.index(ref_id)
                neighbours.insert(0, neighbours.pop(k))
                dist = list(d_tr[0])
                dist.insert(0, dist.pop(k))
            else:
                neighbours = [ref_id, *neighbours[:-1]]
                dist = [0.0, *list(d_tr[0][:-1])]
            if len(val) and dcfg.num_val_neighbours:
                d_val, i_val = nearest(features[ref : ref + 1], features[val], dcfg.num_val_neighbours,
                                       what="discovery.num_val_neighbours")
                val_neighbours, val_dist = [ids[val[j]] for j in i_val[0]], list(d_val[0])
            else:
                val_neighbours, val_dist = [], []
            others = [frames[p] for p in neighbours[1:] + val_neighbours]
            unit = load_unit(ref_id)
            test = ContentTest(unit, dcfg.content_test, size, dcfg.content_threshold, dcfg.content_max,
                               dcfg.look_ahead, dcfg.body_min_fraction)
            rng = np.random.default_rng(derive_seed(seed, "discovery-coordinates", ref_id))
            try:
                coords, corners = sample_coordinates(
                    frames[ref_id], others, test, want, rng, Borders.from_config(dcfg), dcfg.min_distance,
                    dcfg.max_coordinate_trials, reference_id=ref_id,
                )
            except CoordinateError as exc:
                last_error = exc
                log(f"discovery: skipping reference {ref_id}: {exc}")
                continue
            labels = list(range(next_label, next_label + want))
            groups.append(Group(ref_id, labels, coords, corners, neighbours, [float(v) for v in dist],
                                val_neighbours, [float(v) for v in val_dist]))
            next_label += want
            placed = True
        if not placed:
            raise CoordinateError(
                f"could place only {next_label} of discovery.num_classes={dcfg.num_classes} classes: every "
                f"remaining train patient failed as a reference; last failure: {last_error}"
            )
    return groups
