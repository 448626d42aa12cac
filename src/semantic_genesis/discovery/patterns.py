"""Crops of the discovered patterns and the on-disk pattern set.

For every class (coordinate) and every neighbour of its reference, Semantic Genesis crops the cube at
that coordinate; the coordinate index is the pseudo-label (Haghighi et al., MICCAI 2020, §2).
Multi-resolution cubes (paper: "multi-resolution cubes ... resized to 64x64x32"; official
``pattern_generator_3D.py`` with ``--multi_res``) are drawn per class and neighbour:

* resolution 0: the base crop of ``pattern_size`` at the mapped corner;
* resolutions 1 .. ``num_resolutions - 1``: an in-plane square of side ``s`` drawn from
  ``multires_size_range`` (paper size: 50..79 voxels for a 64-voxel pattern; scale the range with the
  pattern for smaller configs), shifted in-plane by up to ``multires_jitter`` voxels, the same depth as
  the pattern, resized (trilinear) to ``pattern_size``. The official code anchors the larger square at
  the base crop's corner; here it is centred on the base crop's centre (so every resolution shows the
  same anatomy) and shifted back inside the volume when it would leave it. The official
  ``skimage.transform.resize`` smooths before downsampling (sigma ``(factor - 1) / 2``), but for the
  at most 1.23x shrink of these crops its kernel has radius 0 (``int(4 * 0.12 + 0.5)``), i.e. no
  smoothing: plain trilinear resizing is the same operation.

Validation patterns are base crops only (as in the official generator) from the validation
neighbours. The store (:class:`~semantic_genesis.io.shards.ShardWriter`, ``kind="patterns"``) holds,
per class, one unit ``class_NNNNN`` (train split) and one ``class_NNNNN_val`` (validation split), so an
interrupted generation resumes at the first unfinished class. Items are ``(1, X, Y, Z)`` float16 (or
uint8) in [0, 1]; records carry ``label``, ``patient``, ``reference``, ``coordinate`` (relative centre),
``corner`` (voxels in that patient), ``scale`` (in-plane crop size), ``resolution`` and ``rank``.

**2D** (Semantic Genesis 2D, ``pattern_size`` ``[H, W]``; paper: 224x224 patches of ChestX-ray14
radiographs): the same crops in one-slice volumes, stored as ``(1, H, W)`` items; ``coordinate`` and
``corner`` have two values. The paper gives no 2D multi-resolution range and no 2D code was released;
the 2D presets scale the 3D range with the pattern (50..79 of 64 -> 175..276 of 224).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semantic_genesis.discovery.coordinates import Frame, relative_to_corner
from semantic_genesis.discovery.plan import Group
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.utils.seeding import derive_seed

KIND = "patterns"


def unit_names(label: int) -> tuple[str, str]:
    """Store units of class ``label``: (train unit, validation unit)."""
    return f"class_{label:05d}", f"class_{label:05d}_val"


def check_multires(dcfg) -> None:
    """Validate the multi-resolution settings against the pattern size."""
    if dcfg.num_resolutions < 1:
        raise ConfigError(f"discovery.num_resolutions must be >= 1, got {dcfg.num_resolutions}")
    lo, hi = dcfg.multires_size_range
    if dcfg.num_resolutions > 1 and not 2 <= lo <= hi:
        raise ConfigError(f"discovery.multires_size_range must be 2 <= low <= high, got {list(dcfg.multires_size_range)}")
    if dcfg.multires_jitter < 0:
        raise ConfigError(f"discovery.multires_jitter must be >= 0, got {dcfg.multires_jitter}")


def _resize(crop: np.ndarray, size: Sequence[int]) -> np.ndarray:
    if tuple(crop.shape) == tuple(size):
        return crop
    t = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in size), mode="trilinear", align_corners=False)[0, 0].numpy()


def crop_patterns(
    unit: np.ndarray,
    frame: Frame,
    coordinates: np.ndarray,
    size: Sequence[int],
    num_resolutions: int = 1,
    size_range: Sequence[int] = (50, 79),
    jitter: int = 10,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Crop every coordinate of one patient at every resolution.

    2D patterns (Semantic Genesis 2D): ``size`` ``(h, w)`` with a 2D image ``(H, W)`` or a one-slice
    volume ``(H, W, 1)``; coordinates may then be ``(n, 2)``. The multi-resolution crops are in-plane
    squares as in 3D (resized bilinearly), items are ``(1, h, w)`` and ``corner`` has two values.

    Args:
        unit: the patient's scan ``(X, Y, Z)`` in [0, 1] (2D: ``(H, W)`` or ``(H, W, 1)``).
        frame: its coordinate frame (of the one-slice volume in 2D).
        coordinates: ``(n, 3)`` relative crop centres (2D: ``(n, 2)`` or ``(n, 3)``).
        size: pattern size ``(x, y, z)``, or ``(h, w)``.
        num_resolutions: crops per coordinate (1 = base crop only).
        size_range: inclusive in-plane side range of the multi-resolution crops.
        jitter: maximum in-plane shift (voxels) of the multi-resolution crops.
        rng: NumPy generator for the multi-resolution draws.

    Returns:
        ``(items, meta)``: ``(n * num_resolutions, 1, *size)`` float32 in [0, 1], coordinate-major
        (all resolutions of coordinate 0 first), and one dict per item with ``index`` (coordinate
        row), ``resolution``, ``corner`` and ``scale``.
    """
    flat = len(size) == 2
    if flat:
        unit = unit[:, :, None] if unit.ndim == 2 else unit
        coordinates = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
        if coordinates.shape[1] == 2:
            coordinates = np.concatenate([coordinates, np.full((len(coordinates), 1), 0.5)], axis=1)
        size = (int(size[0]), int(size[1]), 1)
    size = tuple(int(s) for s in size)
    rng = rng if rng is not None else np.random.default_rng(0)
    corners = relative_to_corner(coordinates, frame, size)
    shape = np.asarray(unit.shape)
    if np.any(shape < np.asarray(size)):
        shown = (tuple(unit.shape[:2]), size[:2]) if flat else (tuple(unit.shape), size)
        raise DataError(f"{'image' if flat else 'scan'} of shape {shown[0]} is smaller than the pattern size {shown[1]}")
    items = np.empty((len(corners) * num_resolutions, 1, *size), dtype=np.float32)
    meta: list[dict[str, Any]] = []
    k = 0
    for i, corner in enumerate(corners):
        x, y, z = (int(v) for v in corner)
        items[k, 0] = unit[x : x + size[0], y : y + size[1], z : z + size[2]]
        meta.append({"index": i, "resolution": 0, "corner": [x, y, z], "scale": [size[0], size[1]]})
        k += 1
        for r in range(1, num_resolutions):
            side = int(rng.integers(size_range[0], size_range[1] + 1))
            dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
            sx, sy = min(side, int(shape[0])), min(side, int(shape[1]))
            cx = x + size[0] / 2.0 + dx
            cy = y + size[1] / 2.0 + dy
            ox = int(np.clip(round(cx - sx / 2.0), 0, shape[0] - sx))
            oy = int(np.clip(round(cy - sy / 2.0), 0, shape[1] - sy))
            crop = unit[ox : ox + sx, oy : oy + sy, z : z + size[2]]
            items[k, 0] = _resize(crop, size)
            meta.append({"index": i, "resolution": r, "corner": [ox, oy, z], "scale": [sx, sy]})
            k += 1
    np.clip(items, 0.0, 1.0, out=items)
    if flat:
        for m in meta:
            m["corner"] = m["corner"][:2]
        return items[..., 0], meta
    return items, meta


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="scan", leave=False)


def write_pattern_set(
    groups: Sequence[Group],
    frames: dict[str, Frame],
    load_unit: Callable[[str], np.ndarray],
    out: str | Path,
    dcfg,
    seed: int = 0,
    attrs: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    stop_after_classes: int | None = None,
) -> Path:
    """Crop every class in every neighbour and write (or finish) the pattern set at ``out``.

    Classes of one group share neighbours; they are processed in chunks whose crops fit in
    ``discovery.memory_mb`` (float16), so each neighbour scan is read once per chunk, not per class.

    Args:
        groups: the plan (:func:`semantic_genesis.discovery.plan.make_plan`).
        frames: coordinate frame of every patient.
        load_unit: patient id -> scan ``(X, Y, Z)`` float32 in [0, 1].
        out: the pattern-set folder.
        dcfg: the ``discovery`` section.
        seed: the config seed (multi-resolution draws derive from ``(seed, label, patient)``, so a
            resumed run writes exactly what an uninterrupted one would).
        attrs: manifest attributes (provenance: config, references, ...).
        log: one-line messages.
        stop_after_classes: stop after writing that many classes in this call (tests of resume).

    Returns:
        ``out``.
    """
    from semantic_genesis.io.shards import ShardWriter

    check_multires(dcfg)
    size = tuple(int(s) for s in dcfg.pattern_size)  # (X, Y, Z), or (H, W) in 2D
    item_shape = (1, *size)
    writer = ShardWriter(out, KIND, item_shape, dcfg.dtype, attrs=attrs)
    done = writer.completed_units()
    n_res = int(dcfg.num_resolutions)
    item_bytes = 2 * math.prod(item_shape)
    written = 0
    todo = [(g, [lab for lab in g.labels if not set(unit_names(lab)) <= done]) for g in groups]
    todo = [(g, labels) for g, labels in todo if labels]
    total_scans = sum(len(g.neighbours) + len(g.val_neighbours) for g, _ in todo)
    if todo:
        log(f"patterns: {sum(len(l) for _, l in todo)} classes to write ({len(done) // 2} done)")
    bar = _progress(total_scans, dcfg.progress, "patterns")
    try:
        for group, labels in todo:
            per_class = (len(group.neighbours) * n_res + len(group.val_neighbours)) * item_bytes
            chunk = max(1, int(dcfg.memory_mb) * 2**20 // max(per_class, 1))
            row_of = {lab: group.labels.index(lab) for lab in labels}
            for start in range(0, len(labels), chunk):
                part = labels[start : start + chunk]
                coords = group.coordinates[[row_of[lab] for lab in part]]
                train = {lab: np.empty((len(group.neighbours) * n_res, *item_shape), np.float16) for lab in part}
                val = {lab: np.empty((len(group.val_neighbours), *item_shape), np.float16) for lab in part}
                rec_train: dict[int, list[dict]] = {lab: [] for lab in part}
                rec_val: dict[int, list[dict]] = {lab: [] for lab in part}
                for rank, pid in enumerate(group.neighbours):
                    unit = load_unit(pid)
                    for j, lab in enumerate(part):
                        rng = np.random.default_rng(derive_seed(seed, "multires", lab, pid))
                        items, meta = crop_patterns(unit, frames[pid], coords[j : j + 1], size, n_res,
                                                    dcfg.multires_size_range, dcfg.multires_jitter, rng)
                        train[lab][rank * n_res : (rank + 1) * n_res] = items
                        for m in meta:
                            rec_train[lab].append(_record(lab, pid, group, coords[j], m, rank))
                    bar.update(1)
                for rank, pid in enumerate(group.val_neighbours):
                    unit = load_unit(pid)
                    items, meta = crop_patterns(unit, frames[pid], coords, size, 1)
                    for j, lab in enumerate(part):
                        val[lab][rank] = items[j]
                        rec_val[lab].append(_record(lab, pid, group, coords[j], meta[j], rank))
                    bar.update(1)
                for lab in part:
                    unit_train, unit_val = unit_names(lab)
                    if unit_train not in done:
                        writer.add_unit(unit_train, train[lab], rec_train[lab], split="train")
                    if unit_val not in done:
                        writer.add_unit(unit_val, val[lab], rec_val[lab], split="validation")
                    written += 1
                    if stop_after_classes is not None and written >= stop_after_classes:
                        return Path(out)
    finally:
        bar.close()
    counts = _counts(writer.manifest)
    writer.finish(num_classes=int(dcfg.num_classes), **counts)
    return Path(out)


def _record(label: int, pid: str, group: Group, coordinate: np.ndarray, meta: dict, rank: int) -> dict[str, Any]:
    coordinate = coordinate[: len(meta["corner"])]  # 2D: the in-plane (x, y) of the one-slice grid
    return {
        "label": int(label),
        "patient": pid,
        "reference": group.reference,
        "coordinate": [round(float(v), 6) for v in coordinate],
        "corner": meta["corner"],
        "scale": meta["scale"],
        "resolution": meta["resolution"],
        "rank": rank,
    }


def _counts(manifest: dict) -> dict[str, int]:
    counts = {"num_train": 0, "num_validation": 0}
    for shard in manifest["shards"]:
        key = "num_train" if shard["split"] == "train" else "num_validation"
        counts[key] += int(shard["count"])
    return counts
