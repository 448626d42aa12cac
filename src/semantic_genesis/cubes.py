"""Cube sets for Models Genesis pretraining: random sub-volumes of every scan (reference §2.6).

For each scan found by :func:`semantic_genesis.io.datasets.list_scans`: read it, map it to [0, 1]
(:func:`semantic_genesis.preprocess.to_unit`, CT window [-1000, 1000] HU by default), then draw
``cubes.cubes_per_scan`` cubes of ``cubes.cube_size`` voxels ``(X, Y, Z)`` at random positions that
pass a content test, trying at most ``max_trials_factor * cubes_per_scan`` positions (official:
32 cubes, 1600 trials per scan).

Differences from the official generator (``infinite_generator_3D.py``), on purpose:

* borders are a fraction of each axis (``border_fraction``) instead of 100 voxels in-plane and 30
  slices: the official values assume ~512×512 LUNA16 scans and leave nothing of a resampled or
  smaller scan; if the border leaves no room it is shrunk until the crop fits;
* the lung test (mean of ``d = 1 - k/2`` over the window, accept if ``<= content_max``; reference
  §1.3) is vectorised over many candidate positions at once (:func:`semantic_genesis.preprocess.lung_scores`);
  ``content_test="body"`` accepts cubes mostly inside the body (MRI, non-chest CT), ``"none"`` any;
* optional multi-scale crops: ``crop_scales`` > 1 crop a larger in-plane window and resize it to the
  cube size (the official "crop_rows/crop_cols" option), < 1 a smaller one;
* train / validation / test split **by patient** (seeded), stored per shard;
* each scan's random stream is seeded from ``(seed, patient id, file name)``, so the output is the same
  whatever the order or interruption of the run, and an interrupted run resumes where it stopped
  (one shard per scan, :class:`semantic_genesis.io.shards.ShardWriter`).

Output (a "cube set"): ``manifest.json`` + ``shard_*.npy`` ``(N, 1, X, Y, Z)`` float16 or uint8 +
``shard_*.jsonl`` records ``{"patient", "scan", "position": [x, y, z], "crop": [cx, cy, cz],
"scale", "score", "unit"}``.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semantic_genesis.config import Config, CubesConfig, to_dict
from semantic_genesis.errors import ConfigError, DataError, SemanticGenesisError
from semantic_genesis.utils.seeding import derive_seed

KIND = "cubes"
SPLITS = ("train", "validation", "test")


@dataclass
class CubeSetSummary:
    """What :func:`generate_cubes` did.

    Attributes:
        out: the cube-set folder.
        counts: cubes per split in the whole set.
        scans: scans that contributed cubes; skipped: ``{scan: reason}`` for scans without cubes.
        resumed: scans found already done (from an earlier, interrupted run).
    """

    out: Path
    counts: dict[str, int]
    scans: int
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: int = 0


def split_patients(patient_ids: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign each patient to ``train`` / ``validation`` / ``test`` (seeded, by patient).

    Counts are ``round(fraction * n)`` for validation and test, at least one each when there are
    enough patients (``n >= 2`` for validation, ``n >= 3`` for test) and the fraction is positive;
    the rest is training. The assignment depends only on the set of ids and the seed.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError(f"cubes.split must be three non-negative fractions (train, validation, test), got {list(fractions)}")
    total = float(sum(fractions))
    f_train, f_val, f_test = (f / total for f in fractions)
    ids = sorted(set(patient_ids))
    n = len(ids)
    n_val = round(f_val * n)
    n_test = round(f_test * n)
    if f_val > 0 and n >= 2:
        n_val = max(n_val, 1)
    if f_test > 0 and n >= 3:
        n_test = max(n_test, 1)
    if f_train > 0:
        while n_val + n_test > max(n - 1, 0):
            if n_test >= n_val and n_test > 0:
                n_test -= 1
            else:
                n_val -= 1
    rng = np.random.default_rng(derive_seed(seed, "split"))
    order = [ids[i] for i in rng.permutation(n)]
    out = {}
    for i, pid in enumerate(order):
        out[pid] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def _axis_range(size: int, crop: int, border: float) -> tuple[int, int]:
    """Inclusive range of crop starts on one axis, the border shrunk if it leaves no room."""
    margin = int(math.floor(border * size))
    margin = min(margin, (size - crop) // 2)
    return margin, size - crop - margin


class _ContentTest:
    """Scores candidate windows of one scan; ``accept(scores)`` says which pass.

    The per-scan tables (lung darkness / body mask summed-area tables) are built once, so each
    candidate window costs O(1) whatever its size.
    """

    def __init__(self, unit: np.ndarray, cfg: CubesConfig):
        self.cfg = cfg
        self.unit = unit
        self._table: Any = None

    def scores(self, corners: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
        """Lung test: mean darkness ``mean(d)`` (lower = more air/lung); body test: fraction outside the body."""
        from semantic_genesis import preprocess

        cfg = self.cfg
        if cfg.content_test == "lung":
            if self._table is None:
                self._table = preprocess.lung_table(self.unit, cfg.content_threshold, cfg.look_ahead)
            return np.asarray(preprocess.lung_scores(self._table, corners, crop, cfg.content_threshold, cfg.look_ahead))
        if cfg.content_test == "body":
            if self._table is None:
                self._table = preprocess.body_table(self.unit)
            return 1.0 - np.asarray(preprocess.body_scores(self._table, corners, crop))
        return np.zeros(len(corners))

    def accept(self, scores: np.ndarray) -> np.ndarray:
        if self.cfg.content_test == "lung":
            return scores <= self.cfg.content_max
        if self.cfg.content_test == "body":
            return scores <= 1.0 - self.cfg.body_min_fraction
        return np.ones(len(scores), dtype=bool)


def sample_cubes(unit: np.ndarray, cfg: CubesConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw up to ``cfg.cubes_per_scan`` cubes from one scan in [0, 1].

    Args:
        unit: float32 ``(X, Y, Z)`` volume in [0, 1].
        cfg: the ``cubes`` section.
        rng: the scan's generator.

    Returns:
        ``(cubes, records)``: float32 ``(N, 1, cx, cy, cz)`` in [0, 1] (N <= cubes_per_scan; fewer
        when the trial budget runs out) and one provenance record per cube (position, crop, scale,
        content score).

    Raises:
        DataError: the volume is smaller than the largest crop on some axis.
    """
    cx, cy, cz = cfg.cube_size
    test = _ContentTest(unit, cfg)
    crops = []
    for scale in cfg.crop_scales:
        if scale <= 0:
            raise ConfigError(f"cubes.crop_scales must be positive, got {list(cfg.crop_scales)}")
        crops.append((max(1, round(cx * scale)), max(1, round(cy * scale)), cz))
    need = tuple(max(c[i] for c in crops) for i in range(3))
    if any(unit.shape[i] < need[i] for i in range(3)):
        raise DataError(
            f"volume of shape {tuple(unit.shape)} is too small for cubes of {tuple(cfg.cube_size)}"
            f" (needs at least {need} voxels (X, Y, Z) for crop scales {list(cfg.crop_scales)})"
        )
    want = cfg.cubes_per_scan
    budget = max(cfg.max_trials_factor * want, want)
    cubes: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    tried = 0
    chunk = max(4 * want, 16)
    while len(cubes) < want and tried < budget:
        n = min(chunk, budget - tried)
        tried += n
        which = rng.integers(0, len(crops), size=n)
        starts = np.empty((n, 3), dtype=np.int64)
        for i in range(3):
            lo_hi = [_axis_range(unit.shape[i], c[i], cfg.border_fraction[i]) for c in crops]
            lo = np.array([a for a, _ in lo_hi])[which]
            hi = np.array([b for _, b in lo_hi])[which]
            starts[:, i] = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
        scores = np.empty(n)
        for k, crop in enumerate(crops):
            sel = which == k
            if sel.any():
                scores[sel] = test.scores(starts[sel], crop)
        ok = test.accept(scores)
        for j in np.flatnonzero(ok):
            if len(cubes) >= want:
                break
            crop = crops[which[j]]
            x, y, z = (int(v) for v in starts[j])
            window = unit[x : x + crop[0], y : y + crop[1], z : z + crop[2]]
            if crop != (cx, cy, cz):
                from semantic_genesis.preprocess import resize

                window = resize(window, (cx, cy, cz), order=1)
            cubes.append(np.clip(np.asarray(window, dtype=np.float32), 0.0, 1.0))
            records.append(
                {
                    "position": [x, y, z],
                    "crop": list(crop),
                    "scale": float(cfg.crop_scales[which[j]]),
                    "score": float(scores[j]),
                }
            )
    array = np.stack(cubes)[:, None] if cubes else np.zeros((0, 1, cx, cy, cz), dtype=np.float32)
    return array, records


def _unit_volume(ref: Any, cfg: Config) -> np.ndarray:
    """Read one scan and map it to float32 (X, Y, Z) in [0, 1]."""
    from semantic_genesis.io.volumes import read_volume
    from semantic_genesis.preprocess import to_unit

    volume = read_volume(ref.path)
    if not volume.metadata.get("modality") and ref.modality in ("ct", "mri"):
        volume = volume.with_array(volume.array, modality=ref.modality)
    unit = to_unit(volume, cfg.intensity).array  # resampled to intensity.spacing first when set
    return np.asarray(unit, dtype=np.float32)


def _unit_name(ref: Any) -> str:
    return f"{ref.patient_id}/{Path(ref.path).name}"


def generate_cubes(cfg: Config, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True) -> CubeSetSummary:
    """Write (or resume) the cube set of every scan under ``data`` into ``out``.

    Args:
        cfg: root config (sections ``cubes``, ``intensity``; ``seed``; ``data``/``out`` if not given).
        data: scans folder (any layout :func:`~semantic_genesis.io.datasets.list_scans` knows).
        out: cube-set folder; an interrupted run in it is resumed.
        progress: show a tqdm bar.

    Raises:
        ConfigError: missing data/out, bad cube settings, or ``out`` holds a cube set made with other
            settings.
        DataError: no scans, or no scan gave any cube (the message lists why per scan).
    """
    from tqdm.auto import tqdm

    from semantic_genesis.io.datasets import list_scans
    from semantic_genesis.io.shards import ShardWriter

    data = data if data is not None else cfg.data
    out = out if out is not None else cfg.out
    if data is None or out is None:
        raise ConfigError("cube generation needs --data DIR (scans) and --out DIR (cube set)")
    c = cfg.cubes
    if any(s <= 0 or s % 8 for s in c.cube_size):
        warnings.warn(f"cubes.cube_size {tuple(c.cube_size)} is not divisible by 8; the 3D U-Net needs multiples of 8", stacklevel=2)
    if c.cubes_per_scan <= 0:
        raise ConfigError(f"cubes.cubes_per_scan must be > 0, got {c.cubes_per_scan}")
    refs = list_scans(data)
    if not refs:
        raise DataError(f"{data}: no scans found")
    splits = split_patients([r.patient_id for r in refs], c.split, cfg.seed)
    settings = {"seed": cfg.seed, "cubes": to_dict(c), "intensity": to_dict(cfg.intensity)}
    out = Path(out)
    writer = ShardWriter(out, KIND, (1, *c.cube_size), dtype=c.dtype, attrs={})
    old = writer.manifest["attrs"].get("settings")
    if old is not None and old != settings:
        changed = sorted(k for k in set(old["cubes"]) | set(settings["cubes"]) if old["cubes"].get(k) != settings["cubes"].get(k))
        extra = [k for k in ("seed", "intensity") if old.get(k) != settings.get(k)]
        raise ConfigError(
            f"{out}: holds a cube set made with other settings ({', '.join(changed + extra)}); "
            "use another --out folder or delete it"
        )
    writer.manifest["attrs"].update({"settings": settings, "source": str(data), "splits": splits})
    skipped: dict[str, str] = dict(writer.manifest["attrs"].get("skipped", {}))
    done = writer.completed_units()
    resumed = sum(1 for r in refs if _unit_name(r) in done)
    todo = [r for r in refs if _unit_name(r) not in done]
    bar = tqdm(todo, desc="cubes", unit="scan", disable=not progress, initial=0, total=len(todo))
    for ref in bar:
        unit = _unit_name(ref)
        rng = np.random.default_rng(derive_seed(cfg.seed, "cubes", ref.patient_id, Path(ref.path).name))
        try:
            volume = _unit_volume(ref, cfg)
            if volume.ndim != 3:
                raise DataError(f"expected a 3D volume, got shape {tuple(volume.shape)}")
            cubes, records = sample_cubes(volume, c, rng)
        except SemanticGenesisError as exc:
            reason = str(exc)
            skipped[unit] = reason
            print(f"warning: skipping scan {ref.path}: {reason}", file=sys.stderr)
            cubes, records = np.zeros((0, 1, *c.cube_size), dtype=np.float32), []
        else:
            if len(cubes) == 0:
                reason = (
                    f"no position passed the {c.content_test} content test in "
                    f"{c.max_trials_factor * c.cubes_per_scan} trials"
                )
                skipped[unit] = reason
                print(f"warning: scan {ref.path}: {reason}", file=sys.stderr)
            elif len(cubes) < c.cubes_per_scan:
                print(f"warning: scan {ref.path}: only {len(cubes)} of {c.cubes_per_scan} cubes passed the content test",
                      file=sys.stderr)
        for record in records:
            record.update({"patient": ref.patient_id, "scan": str(ref.path)})
        writer.manifest["attrs"]["skipped"] = skipped
        writer.add_unit(unit, cubes, records, split=splits[ref.patient_id])
        bar.set_postfix(cubes=len(cubes))
    bar.close()
    counts = {s: 0 for s in SPLITS}
    for shard in writer.manifest["shards"]:
        counts[shard["split"]] = counts.get(shard["split"], 0) + int(shard["count"])
    if sum(counts.values()) == 0:
        details = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise DataError(f"{data}: no scan gave any cube of {tuple(c.cube_size)} voxels ({details})")
    writer.finish(counts=counts, scans=len(refs) - len(skipped), skipped=skipped)
    return CubeSetSummary(out, counts, len(refs) - len(skipped), skipped, resumed)
