"""The resumable self-discovery pipeline behind ``semantic-genesis discover``.

Stages and their outputs in the run folder ``RUN``:

===========  ====================================  ==============================================
stage        output                                 skipped when
===========  ====================================  ==============================================
scans        ``RUN/discovery/scans/`` (shard store  every patient is a completed unit (resumes per
             of scans resized to ae_input_size,     patient); other settings -> ConfigError
             records with shape and body frame)
autoencoder  ``RUN/discovery/autoencoder/``        finished (resumes mid-epoch); another input
             (an engine run folder: weights/       size/width -> CheckpointError
             best.safetensors, checkpoints/...)
features     ``RUN/discovery/features.npz``         its fingerprint (autoencoder weights, cohort)
                                                    matches; recomputed otherwise
plan         ``RUN/discovery/plan.json``            its fingerprint (features + discovery
             (references, neighbours, coordinates)  settings + seed) matches; recomputed otherwise
patterns     ``RUN/patterns/`` (pattern set)        complete (resumes per class); made from
                                                    another plan -> ConfigError
===========  ====================================  ==============================================

``discovery.ae_weights`` replaces the autoencoder stage by a given trained autoencoder (checked for
the configured input size).

**2D** (Semantic Genesis 2D): ``discovery.pattern_size`` and ``ae_input_size`` of two values ``[H, W]``
run the same stages on 2D images (:func:`~.scans.spatial_dims`): the data folder's radiographs (any
layout ``list_scans(..., images2d=True)`` recognises) or each CT/MRI volume's axial slice at
``discovery.slice_position`` of its body box (:func:`~.scans.load_unit_image`), the autoencoder
``discovery.ae_model`` (``unet2d`` / ``resunet2d``) and ``(1, H, W)`` patterns. Internally an image is
a one-slice volume ``(H, W, 1)``, so frames, coordinates, content tests and crops are shared with 3D.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from semantic_genesis.discovery.coordinates import Frame, body_frame, volume_frame
from semantic_genesis.discovery.plan import Group
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.utils.atomic import atomic_open, write_json

SCANS_KIND = "discovery_scans"
PENDING = "pending"  # split of a resized scan until every scan is read


def _check_counts_before_reading(dcfg, plan, seed: int) -> None:
    """K, the validation neighbours and C against the cohort as listed (an upper bound: unreadable
    scans can only lower it), so an impossible setting fails before any scan is read."""
    from semantic_genesis.discovery.plan import check_counts
    from semantic_genesis.discovery.scans import assign_splits

    listed = [(str(r.patient_id), str(r.path)) for r in plan.candidates]
    splits = assign_splits(plan, listed, dcfg.val_fraction, seed)
    n_train = sum(s == "train" for s in splits.values())
    check_counts(dcfg, n_train, len(splits) - n_train)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class UnitCache:
    """Scans in [0, 1] by patient id, with a small least-recently-used cache (bytes-bounded).

    Args:
        paths: patient id -> scan path.
        intensity: the ``intensity`` config section (used by the default loader).
        max_bytes: cache bound (0: no caching, every call reads).
        loader: ``path -> unit`` (default :func:`~.scans.load_unit_scan`; 2D discovery passes
            :func:`~.scans.unit_loader`'s one-slice loader).
    """

    def __init__(self, paths: dict[str, str], intensity, max_bytes: int = 512 * 2**20,
                 loader: Callable[[str], np.ndarray] | None = None):
        self.paths, self.intensity, self.max_bytes = paths, intensity, max_bytes
        self.loader = loader
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.loads = 0

    def __call__(self, pid: str) -> np.ndarray:
        from semantic_genesis.discovery.scans import load_unit_scan

        if pid in self._cache:
            self._cache.move_to_end(pid)
            return self._cache[pid]
        path = self.paths[pid]
        unit = self.loader(path) if self.loader is not None else load_unit_scan(path, self.intensity)
        self.loads += 1
        self._cache[pid] = unit
        while sum(a.nbytes for a in self._cache.values()) > self.max_bytes and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return unit


@dataclass
class DiscoveryResult:
    """What :func:`run_discovery` produced."""

    run_dir: Path
    patterns: Path
    groups: list[Group]
    ids: list[str]
    splits: list[str]
    features: np.ndarray


def _stage_scans(cfg, plan, root: Path, log, warn) -> tuple[Any, dict[str, str]]:
    """Resize every usable scan to ``ae_input_size`` into a shard store, then split the patients.

    Each candidate scan is read once: unreadable ones, scans whose voxels all have one value and scans
    smaller than ``discovery.pattern_size`` are skipped with a warning (recorded in the manifest), the
    others are resized (linear, with scikit-image's anti-aliasing rule, as the official
    ``skimage.transform.resize``) and their shape and body frame recorded. The train / validation
    split is assigned afterwards, over the readable patients (:func:`~.scans.assign_splits`).

    Returns:
        ``(store, splits)``: the complete :class:`~semantic_genesis.io.shards.ShardedArray` and
        patient -> ``"train"`` / ``"validation"``.
    """
    from tqdm.auto import tqdm

    from semantic_genesis.discovery.scans import assign_splits, sampling_size, spatial_dims, unit_loader
    from semantic_genesis.errors import SemanticGenesisError
    from semantic_genesis.io.shards import ShardedArray, ShardWriter, read_manifest
    from semantic_genesis.preprocess import resize

    dcfg = cfg.discovery
    size = tuple(int(s) for s in dcfg.ae_input_size)
    dims = spatial_dims(dcfg)
    divisor = 32 if dcfg.ae_model == "resunet2d" else 8
    if any(s % divisor for s in size):
        raise ConfigError(f"discovery.ae_input_size must be divisible by {divisor} (the downsamplings of "
                          f"discovery.ae_model={dcfg.ae_model}), got {list(size)}")
    from semantic_genesis.config import to_dict

    load = unit_loader(dcfg, cfg.intensity, {str(r.path): str(getattr(r, "modality", "unknown")) for r in plan.candidates})
    crop = sampling_size(dcfg)
    what = "image" if dims == 2 else "scan"

    # patient ids and split settings, not paths: a moved data folder does not invalidate the run
    fingerprint = _digest({"size": size, "intensity": to_dict(cfg.intensity), "resize": "linear+antialias",
                           **({"slice_position": dcfg.slice_position} if dims == 2 else {}),
                           "patients": [str(r.patient_id) for r in plan.candidates], "split": plan.description,
                           "val_fraction": dcfg.val_fraction, "seed": cfg.seed})
    if (root / "manifest.json").is_file():
        manifest = read_manifest(root)
        if manifest.get("attrs", {}).get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{root}: resized scans were made from another cohort or with other settings "
                "(discovery.ae_input_size, intensity, data, split, val_fraction, seed or the resize method); "
                "use a new output folder"
            )
        if manifest.get("complete"):
            return ShardedArray(root), dict(manifest["attrs"]["splits"])
    writer = ShardWriter(root, SCANS_KIND, (1, *size), "float16", attrs={"fingerprint": fingerprint})
    done = writer.completed_units()
    skipped: dict[str, str] = dict(writer.manifest["attrs"].get("skipped", {}))
    todo = [r for r in plan.candidates if str(r.patient_id) not in done]
    if todo:
        log(f"scans: resizing {len(todo)} scans to {size} ({len(done)} done)")
    for ref in tqdm(todo, disable=not dcfg.progress, desc="scans", unit="scan", leave=False):
        pid, path = str(ref.patient_id), str(ref.path)
        try:
            unit = load(path)
            for axis, (s, need) in enumerate(zip(unit.shape, crop)):
                if s < need:
                    shown = unit.shape[:2] if dims == 2 else unit.shape
                    raise DataError(
                        f"{path}: {what} of shape {shown} is smaller than discovery.pattern_size "
                        f"{list(dcfg.pattern_size)} along axis {('HW' if dims == 2 else 'XYZ')[axis]}"
                    )
        except SemanticGenesisError as exc:
            skipped[pid] = str(exc)
            warn(f"skipping {what} {path}: {exc}")
            writer.manifest["attrs"]["skipped"] = skipped
            writer.add_unit(pid, np.zeros((0, 1, *size), np.float32), [], split=PENDING)
            continue
        small = resize(unit[:, :, 0] if dims == 2 else unit, size, order=1, anti_aliasing=True)
        record = {"patient": pid, "path": path, "shape": list(unit.shape), "body_frame": body_frame(unit).to_dict(),
                  "modality": str(getattr(ref, "modality", "unknown"))}
        writer.add_unit(pid, np.clip(small, 0, 1)[None, None], [record], split=PENDING)
    readable = [(r["patient"], r["path"]) for r in ShardedArray(root, require_complete=False).all_records()]
    if not readable:
        raise DataError(f"no readable scan for self-discovery ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    splits = assign_splits(plan, readable, dcfg.val_fraction, cfg.seed)
    for shard in writer.manifest["shards"]:
        shard["split"] = splits[shard["unit"]]
    by_split = {name: sorted(p for p, s in splits.items() if s == name) for name in ("train", "validation")}
    for name, members in by_split.items():
        if not members:
            warn(f"the {name} split of the discovery cohort is empty ({plan.description})")
    writer.finish(num_scans=len(readable), splits=splits, split_patients=by_split, split_rule=plan.description,
                  skipped=skipped, left_out=list(plan.left_out))
    return ShardedArray(root), splits


def run_discovery(
    cfg,
    data: str | Path,
    out: str | Path,
    log: Callable[[str], None] = print,
    stop_after: dict[str, int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> DiscoveryResult:
    """Run (or resume) self-discovery on the scans in ``data``; write the pattern set to ``out/patterns``.

    Args:
        cfg: the root config (sections ``discovery``, ``intensity``, ``train.device``; ``seed``).
        data: a folder of scans (any layout ``io.datasets.list_scans`` recognises).
        out: the run folder.
        log: one-line messages.
        stop_after: interrupt stages early (tests of resume): ``{"ae_epochs": n, "classes": n}``.
        warn: one-line warnings (skipped scans, empty splits); default: ``warning: ...`` on stderr.

    Raises:
        ConfigError, DataError, CheckpointError: bad settings, data or checkpoints (see module doc).
    """
    import torch

    from semantic_genesis.config import save_config, to_dict
    from semantic_genesis.discovery.autoencoder import load_autoencoder, train_autoencoder
    from semantic_genesis.discovery.features import embed, recalibrate_batchnorm
    from semantic_genesis.discovery.plan import make_plan
    from semantic_genesis.discovery.patterns import check_multires, write_pattern_set
    from semantic_genesis.discovery.plan import check_counts
    from semantic_genesis.discovery.scans import plan_cohort, spatial_dims, unit_loader
    from semantic_genesis.io.datasets import detect_layout, list_scans
    from semantic_genesis.io.shards import ShardedArray, read_manifest
    from semantic_genesis.training.distributed import resolve_device

    stop_after = stop_after or {}
    dcfg = cfg.discovery
    check_multires(dcfg)
    dims = spatial_dims(dcfg)
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    data = Path(data)
    refs = list_scans(data, images2d=dims == 2)
    layout = detect_layout(data) if data.is_dir() else "generic"
    plan = plan_cohort(refs, dcfg, layout, cfg.seed, warn)
    _check_counts_before_reading(dcfg, plan, cfg.seed)  # fail before any expensive stage
    run = Path(out)
    disc = run / "discovery"
    disc.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    log(f"discovery ({dims}D): {len(plan.candidates)} {'images' if dims == 2 else 'scans'}, split {plan.description}"
        + (f"; {len(plan.left_out)} patients left out" if plan.left_out else ""))

    # 1. scans resized for the autoencoder (+ shapes and body frames), then the split
    scans, split_of = _stage_scans(cfg, plan, disc / "scans", log, warn)
    records = scans.all_records()
    ids = [r["patient"] for r in records]
    splits = [split_of[pid] for pid in ids]
    n_train = sum(s == "train" for s in splits)
    check_counts(dcfg, n_train, len(ids) - n_train)
    log(f"discovery: {len(ids)} patients ({n_train} train, {len(ids) - n_train} validation)")
    if dcfg.coordinate_frame == "body":
        frames = {r["patient"]: Frame.from_dict(r["body_frame"]) for r in records}
    else:
        frames = {r["patient"]: volume_frame(r["shape"]) for r in records}

    # 2. autoencoder
    device = resolve_device(cfg.train.device)
    if dcfg.ae_weights:
        weights = Path(dcfg.ae_weights)
        log(f"autoencoder: using {weights}")
    else:
        weights = train_autoencoder(disc / "scans", disc / "autoencoder", cfg, log, stop_after.get("ae_epochs"))
        if "ae_epochs" in stop_after:
            return DiscoveryResult(run, run / "patterns", [], ids, splits, np.zeros((0, 0)))
    model = load_autoencoder(weights, dcfg)

    # 3. features
    feat_path = disc / "features.npz"
    feat_fp = _digest({"weights": _file_digest(weights), "ids": ids, "splits": splits})
    features = None
    if feat_path.is_file():
        with np.load(feat_path, allow_pickle=False) as z:
            if str(z["fingerprint"]) == feat_fp:
                features = z["features"]
    if features is None:
        log("features: embedding every patient (global average of the bottleneck)")
        recalibrate_batchnorm(model, ShardedArray(disc / "scans", split="train"), dcfg.ae_batch_size, device)
        features = embed(model.to(device), scans, dcfg.ae_batch_size, device)
        with atomic_open(feat_path, "wb") as handle:
            np.savez(handle, features=features, ids=np.asarray(ids), splits=np.asarray(splits),
                     fingerprint=np.asarray(feat_fp))
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 4. plan: references, neighbours, coordinates
    paths = {r["patient"]: r["path"] for r in records}
    modalities = {r["path"]: r.get("modality", "unknown") for r in records}
    load_unit = UnitCache(paths, cfg.intensity, loader=unit_loader(dcfg, cfg.intensity, modalities))
    plan_path = disc / "plan.json"
    keys = ("strategy", "num_neighbours", "num_val_neighbours", "num_classes", "classes_per_reference",
            "pattern_size", "min_distance", "border_rule", "border_fraction", "border_voxels", "content_test",
            "content_threshold", "content_max", "look_ahead", "body_min_fraction", "coordinate_frame",
            "max_coordinate_trials")
    if dims == 2:
        keys += ("slice_position",)
    plan_fp = _digest({"features": feat_fp, "seed": cfg.seed, **{k: getattr(dcfg, k) for k in keys}})
    groups = None
    if plan_path.is_file():
        saved = json.loads(plan_path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == plan_fp:
            groups = [Group.from_dict(g) for g in saved["groups"]]
    if groups is None:
        log(f"plan: strategy {dcfg.strategy!r}, C={dcfg.num_classes}, K={dcfg.num_neighbours}")
        groups = make_plan(ids, splits, features, frames, load_unit, dcfg, cfg.seed, log)
        write_json(plan_path, {"fingerprint": plan_fp, "groups": [g.to_dict() for g in groups]})

    # 5. pattern set
    pat_root = run / "patterns"
    pat_fp = _digest({"plan": plan_fp, "resolutions": dcfg.num_resolutions, "range": dcfg.multires_size_range,
                      "jitter": dcfg.multires_jitter, "dtype": dcfg.dtype, "intensity": to_dict(cfg.intensity)})
    if (pat_root / "manifest.json").is_file():
        manifest = read_manifest(pat_root)
        if manifest.get("attrs", {}).get("fingerprint") != pat_fp:
            raise ConfigError(
                f"{pat_root}: the existing pattern set was made with other discovery settings; "
                "use a new output folder or delete it"
            )
        if manifest.get("complete"):
            log(f"patterns: {pat_root} is complete")
            return DiscoveryResult(run, pat_root, groups, ids, splits, features)
    attrs = {
        "fingerprint": pat_fp,
        "source": str(data),
        "strategy": dcfg.strategy,
        "num_classes": int(dcfg.num_classes),
        "pattern_size": [int(s) for s in dcfg.pattern_size],
        "spatial_dims": dims,
        "num_resolutions": int(dcfg.num_resolutions),
        "coordinate_frame": dcfg.coordinate_frame,
        "references": [g.reference for g in groups],
        "groups": [g.to_dict() for g in groups],
        "frames": {pid: f.to_dict() for pid, f in frames.items()},
        "paths": paths,
        # the patients of each split (which patients the pretrained weights will have seen)
        "splits": dict(zip(ids, splits)),
        "split_patients": {name: sorted(p for p, s in zip(ids, splits) if s == name) for name in ("train", "validation")},
        "split_rule": plan.description,
        "left_out": list(plan.left_out),
        "skipped": scans.manifest["attrs"].get("skipped", {}),
        "config": to_dict(cfg),
    }
    write_pattern_set(groups, frames, load_unit, pat_root, dcfg, cfg.seed, attrs, log, stop_after.get("classes"))
    return DiscoveryResult(run, pat_root, groups, ids, splits, features)
