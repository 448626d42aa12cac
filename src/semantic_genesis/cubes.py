"""Cube sets for Models Genesis pretraining: random sub-volumes of every scan.

For each scan found by :func:`semantic_genesis.io.datasets.list_scans`: read it, map it to [0, 1]
(:func:`semantic_genesis.preprocess.to_unit`, CT window [-1000, 1000] HU by default), then draw
``cubes.cubes_per_scan`` cubes of ``cubes.cube_size`` voxels ``(X, Y, Z)`` at random positions that
pass a content test, trying at most ``max_trials_factor * cubes_per_scan`` positions (official:
32 cubes, 1600 trials per scan; Models Genesis, Zhou et al., MICCAI 2019 / MedIA 2021, generator
``infinite_generator_3D.py``).

Differences from the official generator, on purpose (its behaviour stays available as options):

* **Cubes stay inside the body.** The default ``content_test="lung"`` is the official lung test
  (mean tissue score of the window ``<= content_max``, vectorised over many candidates at once,
  :func:`semantic_genesis.preprocess.lung_scores`) with the air *outside the body* counted as tissue
  (a body mask per scan, :func:`semantic_genesis.preprocess.body_mask`): outside air is not lung.
  ``content_test="lung_official"`` is the official darkness-only test, which accepts the air around
  the patient as well and relies on the borders to stay inside it; ``"body"`` accepts cubes mostly
  inside the body (MRI, non-chest CT, coarse grids), ``"none"`` any.
* **Borders** (``border_rule``) are a fraction of each axis by default (``border_fraction``; shrunk if
  they leave no room), so they mean the same on any grid; ``border_rule="official"`` uses the
  official absolute borders (``border_voxels`` = 100 voxels in-plane, 30 slices, sized for 512x512
  LUNA16 scans; a scan too small for them is skipped with a reason).
* optional multi-scale crops: ``crop_scales`` > 1 crop a larger in-plane window and resize it to the
  cube size (the official "crop_rows/crop_cols" option), < 1 a smaller one;
* train / validation / test split **by patient** (``split``; :mod:`semantic_genesis.io.datasets.splits`;
  the person of :attr:`~semantic_genesis.io.datasets.ScanRef.person`, so the follow-up radiographs of
  one ChestX-ray14, CheXpert or MIMIC-CXR patient share a split):
  ``auto`` uses the official LUNA16 subsets (0-4 train, 5-6 validation, 7-9 test) on LUNA16 data and a
  seeded random split otherwise. Splits are assigned *after* unreadable and empty scans are dropped
  (an empty split is warned about) and written to the manifest (``attrs.splits``: patient -> split,
  ``attrs.split_patients``: split -> patients), so later steps can tell which patients were
  pretrained on;
* each scan's random stream is seeded from ``(seed, patient id, file name)``, so the output is the same
  whatever the order or interruption of the run, and an interrupted run resumes where it stopped
  (one shard per scan, :class:`semantic_genesis.io.shards.ShardWriter`).

Output (a "cube set"): ``manifest.json`` + ``shard_*.npy`` ``(N, 1, X, Y, Z)`` float16 or uint8 +
``shard_*.jsonl`` records ``{"patient", "scan", "position": [x, y, z], "crop": [cx, cy, cz],
"scale", "score", "unit"}``.

**2D patch sets** (Models Genesis 2D, Semantic Genesis 2D): a ``cubes.cube_size`` of two values
``[H, W]`` cuts patches stored as ``(N, 1, H, W)``, with the same sampler, content tests, borders,
patient splits, shards and resumption. A radiograph (X-ray refs: the phantom radiograph cohort,
ChestX-ray14, SIIM-ACR and the other chest X-ray layouts, or any folder of PNG / JPEG / DICOM
radiographs, see :func:`~semantic_genesis.io.datasets.list_scans` with ``images2d``) is read with
:func:`~semantic_genesis.io.images2d.read_image2d`, mapped to [0, 1] (percentiles, ``intensity``) and
sampled as a one-slice volume; a CT or MRI volume gives patches of its axial slices (windows of
``H x W x 1`` voxels, after the same HU window as the cubes), so the lung test still looks
``look_ahead`` slices ahead. Records hold ``position`` ``[x, y]`` (radiographs) or ``[x, y, z]``
(``z`` = the slice) and the in-plane ``crop``.
"""

from __future__ import annotations

import dataclasses
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
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)  # random split (cubes.split=random or auto on non-LUNA16 data)
PENDING = "pending"  # split of a shard until the whole set is cut (readers of a split skip it)
LEFT_OUT = "unused"  # shards of patients an official split does not use


@dataclass
class CubeSetSummary:
    """What :func:`generate_cubes` did.

    Attributes:
        out: the cube-set folder.
        counts: cubes per split in the whole set.
        scans: scans that contributed cubes; skipped: ``{scan: reason}`` for scans without cubes.
        resumed: scans found already done (from an earlier, interrupted run).
        split_rule: how patients were split (official subsets, or random with fractions and seed).
        left_out: patients an official split does not use (their cubes are in no split).
    """

    out: Path
    counts: dict[str, int]
    scans: int
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: int = 0
    split_rule: str = ""
    left_out: list[str] = field(default_factory=list)


def split_patients(patient_ids: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign each patient to ``train`` / ``validation`` / ``test`` at random (seeded, by patient).

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


def assign_splits(cfg: Config, layout: str, patients: Sequence[tuple[str, str]], warn=None) -> tuple[dict[str, str], str]:
    """Apply ``cubes.split`` to the usable patients: ``(patient -> split, description)``.

    Patients an official split does not use are absent from the result (their cubes are dropped).
    """
    from semantic_genesis.io.datasets.splits import choose_split

    rule = cfg.cubes.split
    choice = choose_split(rule, layout, patients, needs=("train", "validation"), key="cubes.split", warn=warn)
    if choice.rule == "official":
        return dict(choice.assignment), choice.description
    fractions = tuple(rule) if not isinstance(rule, str) else DEFAULT_FRACTIONS
    description = f"{choice.description}, fractions {list(fractions)}, seed {cfg.seed}"
    return split_patients([pid for pid, _ in patients], fractions, cfg.seed), description


def patch_mode(cube_size: Sequence[int]) -> bool:
    """True for a 2D patch set (``cube_size`` ``[H, W]``), False for cubes ``[X, Y, Z]``.

    Raises:
        ConfigError: not two or three positive sizes.
    """
    size = list(cube_size)
    if len(size) not in (2, 3) or any(int(v) != v or v <= 0 for v in size):
        raise ConfigError(
            f"cubes.cube_size must be [X, Y, Z] (cubes) or [H, W] (2D patches) of positive ints, got {size}"
        )
    return len(size) == 2


def sampling_shape(cube_size: Sequence[int]) -> tuple[int, int, int]:
    """The window the sampler draws: the cube, or ``(H, W, 1)`` (one slice) for a 2D patch."""
    size = tuple(int(v) for v in cube_size)
    return (size[0], size[1], 1) if patch_mode(size) else (size[0], size[1], size[2])


def crop_range(shape: Sequence[int], crop: Sequence[int], cfg: CubesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive corner range of ``crop`` in a volume of ``shape`` under ``cubes.border_rule``.

    Raises:
        DataError: the official borders leave no room (naming the option to change).
    """
    from semantic_genesis.preprocess import border_margins

    lo, hi = border_margins(shape, crop, cfg.border_rule, cfg.border_fraction, cfg.border_voxels, cfg.look_ahead)
    if np.any(lo > hi):
        raise DataError(
            f"the official borders (cubes.border_rule=official, border_voxels {list(cfg.border_voxels)}) leave no "
            f"room for a crop of {tuple(int(c) for c in crop)} in a volume of shape {tuple(int(v) for v in shape)}; "
            "they are sized for 512x512 LUNA16 scans: use cubes.border_rule=relative"
        )
    return lo, hi


class _ContentTest:
    """Scores candidate windows of one scan; ``accept(scores)`` says which pass.

    The per-scan tables (body mask, lung tissue score / body summed-area tables) are built once, so
    each candidate window costs O(1) whatever its size. ``best`` keeps the best score seen, for the
    message when nothing passes.
    """

    def __init__(self, unit: np.ndarray, cfg: CubesConfig):
        self.cfg = cfg
        self.unit = unit
        self._table: Any = None
        self.best = math.inf
        self.passed = 0

    def scores(self, corners: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
        """Lung tests: mean tissue score (lower = more air/lung); body test: fraction outside the body."""
        from semantic_genesis import preprocess

        cfg = self.cfg
        if cfg.content_test in ("lung", "lung_official"):
            if self._table is None:
                body = preprocess.body_mask(self.unit) if cfg.content_test == "lung" else None
                self._table = preprocess.lung_table(self.unit, cfg.content_threshold, cfg.look_ahead, body=body)
            out = np.asarray(preprocess.lung_scores(self._table, corners, crop, cfg.content_threshold, cfg.look_ahead))
        elif cfg.content_test == "body":
            if self._table is None:
                self._table = preprocess.body_table(self.unit)
            out = 1.0 - np.asarray(preprocess.body_scores(self._table, corners, crop))
        else:
            out = np.zeros(len(corners))
        if len(out):
            self.best = min(self.best, float(out.min()))
        return out

    def accept(self, scores: np.ndarray) -> np.ndarray:
        if self.cfg.content_test in ("lung", "lung_official"):
            ok = scores <= self.cfg.content_max
        elif self.cfg.content_test == "body":
            ok = scores <= 1.0 - self.cfg.body_min_fraction
        else:
            ok = np.ones(len(scores), dtype=bool)
        self.passed += int(ok.sum())
        return ok

    def failure(self, trials: int) -> str:
        """Why no window passed, with the option(s) that would change it."""
        cfg = self.cfg
        best = "" if not math.isfinite(self.best) else f"; best score {self.best:.3f}"
        if cfg.content_test in ("lung", "lung_official"):
            inside = " inside the body" if cfg.content_test == "lung" else ""
            return (f"no position passed the {cfg.content_test} content test (mostly air{inside}: mean tissue score "
                    f"<= cubes.content_max={cfg.content_max:g}{best}) in {trials} trials")
        if cfg.content_test == "body":
            return (f"no position passed the body content test (>= cubes.body_min_fraction={cfg.body_min_fraction:g} "
                    f"inside the body{best and f'; best {1 - self.best:.3f}'}) in {trials} trials")
        return f"no position found in {trials} trials"


def sample_cubes(
    unit: np.ndarray, cfg: CubesConfig, rng: np.random.Generator, diagnostics: dict[str, Any] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw up to ``cfg.cubes_per_scan`` cubes from one scan in [0, 1].

    For a 2D patch set (``cfg.cube_size`` ``[H, W]``) the windows are ``H x W x 1`` voxels (one
    slice; a radiograph is passed as a ``(H, W, 1)`` volume) and the result is squeezed to
    ``(N, 1, H, W)``; records then hold the in-plane ``crop`` (and ``position`` ``[x, y]`` when the
    volume has a single slice).

    Args:
        unit: float32 ``(X, Y, Z)`` volume in [0, 1].
        cfg: the ``cubes`` section.
        rng: the scan's generator.
        diagnostics: if given, filled with ``trials``, ``passed``, ``best_score`` and ``reason`` (why
            no cube passed, naming the options to change; empty when some did).

    Returns:
        ``(cubes, records)``: float32 ``(N, 1, cx, cy, cz)`` in [0, 1] (N <= cubes_per_scan; fewer
        when the trial budget runs out) and one provenance record per cube (position, crop, scale,
        content score).

    Raises:
        DataError: the volume is smaller than the largest crop on some axis, or the official borders
            leave no room.
    """
    cx, cy, cz = sampling_shape(cfg.cube_size)
    test = _ContentTest(unit, cfg)
    crops = []
    for scale in cfg.crop_scales:
        if scale <= 0:
            raise ConfigError(f"cubes.crop_scales must be positive, got {list(cfg.crop_scales)}")
        crops.append((max(1, round(cx * scale)), max(1, round(cy * scale)), cz))
    need = tuple(max(c[i] for c in crops) for i in range(3))
    patches = patch_mode(cfg.cube_size)
    if patches and any(unit.shape[i] < need[i] for i in range(2)):
        what = "image" if unit.shape[2] == 1 else "axial slices"
        raise DataError(
            f"{what} of {unit.shape[0]}x{unit.shape[1]} pixels too small for patches of "
            f"{cx}x{cy} (cubes.cube_size; needs {need[0]}x{need[1]} for crop scales {list(cfg.crop_scales)})"
        )
    if any(unit.shape[i] < need[i] for i in range(3)):
        raise DataError(
            f"volume of shape {tuple(unit.shape)} is too small for cubes of {tuple(cfg.cube_size)}"
            f" (needs at least {need} voxels (X, Y, Z) for crop scales {list(cfg.crop_scales)})"
        )
    ranges = [crop_range(unit.shape, crop, cfg) for crop in crops]
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
            lo = np.array([r[0][i] for r in ranges])[which]
            hi = np.array([r[1][i] for r in ranges])[which]
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
    if diagnostics is not None:
        diagnostics.update(trials=tried, passed=test.passed, best_score=test.best,
                           reason="" if cubes else test.failure(tried))
    array = np.stack(cubes)[:, None] if cubes else np.zeros((0, 1, cx, cy, cz), dtype=np.float32)
    if patches:
        array = array[..., 0]
        for record in records:
            record["crop"] = record["crop"][:2]
            if unit.shape[2] == 1:
                record["position"] = record["position"][:2]
    return array, records


def _unit_volume(ref: Any, cfg: Config) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read one scan and map it to float32 (X, Y, Z) in [0, 1]; also return its spacing (mm).

    Raises:
        DataError: not 3D, or every voxel has the same value (an empty or broken scan).
    """
    from semantic_genesis.io.volumes import read_volume
    from semantic_genesis.preprocess import check_contrast, to_unit

    volume = read_volume(ref.path)
    if not volume.metadata.get("modality") and ref.modality in ("ct", "mri"):
        volume = volume.with_array(volume.array, modality=ref.modality)
    if np.ndim(volume.array) != 3:
        raise DataError(f"expected a 3D volume, got shape {tuple(np.shape(volume.array))}")
    check_contrast(volume.array)
    unit = to_unit(volume, cfg.intensity)  # resampled to intensity.spacing first when set
    return np.asarray(unit.array, dtype=np.float32), tuple(float(v) for v in unit.spacing)


def _unit_image(ref: Any, cfg: Config) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read one radiograph and map it to float32 ``(H, W, 1)`` in [0, 1] (a one-slice volume); also
    return its spacing (mm, the slice axis 1).

    The intensity mapping follows the ref's modality (X-ray: percentiles; a 2D DICOM slice of a CT:
    the HU window) unless ``intensity.modality`` is set.

    Raises:
        ImageReadError: unreadable, or not a single-frame 2D image (e.g. a 3D file).
        DataError: every pixel has the same value.
    """
    from semantic_genesis.io.images2d import read_image2d
    from semantic_genesis.preprocess import check_contrast, to_unit

    image = read_image2d(ref.path)
    check_contrast(image.array)
    modality = ref.modality if ref.modality in ("ct", "mri", "xray") else (image.modality or "xray")
    image = dataclasses.replace(image, metadata={**image.metadata, "modality": modality})
    unit = to_unit(image, cfg.intensity)
    return np.asarray(unit.array, dtype=np.float32)[:, :, None], (*(float(v) for v in unit.spacing), 1.0)


def _is_image2d(ref: Any) -> bool:
    """A radiograph (an X-ray ref, or a 2D image file) rather than a volume."""
    name = Path(ref.path).name.lower()
    return ref.modality == "xray" or (Path(ref.path).is_file() and name.endswith((".png", ".jpg", ".jpeg", ".dcm", ".dicom")))


def _unit_name(ref: Any) -> str:
    return f"{ref.patient_id}/{Path(ref.path).name}"


def _no_cube_advice(cfg: Config, spacings: dict[str, tuple[float, ...]]) -> str:
    """What to change when no scan passed the content test (the paper settings on small or coarse data)."""
    c = cfg.cubes
    mm = ""
    if spacings:
        sp = np.median(np.asarray(list(spacings.values()), dtype=np.float64), axis=0)
        size = np.asarray(sampling_shape(c.cube_size), dtype=np.float64) * sp
        what = "patch" if patch_mode(c.cube_size) else "cube"
        mm = (f" A {what} of {tuple(c.cube_size)} voxels spans {size[0]:.0f} x {size[1]:.0f} x {size[2]:.0f} mm at "
              f"these scans' {sp[0]:.2g} x {sp[1]:.2g} x {sp[2]:.2g} mm voxels.")
    if c.content_test in ("lung", "lung_official"):
        return (mm + " Options: cubes.content_test=body (cubes inside the body, as the *_tiny.yaml presets use "
                "on the phantoms), a smaller cubes.cube_size, a finer intensity.spacing, or a larger cubes.content_max")
    if c.content_test == "body":
        return mm + " Options: a lower cubes.body_min_fraction, a smaller cubes.cube_size, or cubes.content_test=none"
    return mm


def generate_cubes(cfg: Config, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True) -> CubeSetSummary:
    """Write (or resume) the cube set of every scan under ``data`` into ``out``.

    Every scan is read and cut first; the train / validation / test split is assigned at the end,
    over the scans that gave cubes (``cubes.split``), and recorded per shard and in the manifest.

    Args:
        cfg: root config (sections ``cubes``, ``intensity``; ``seed``; ``data``/``out`` if not given).
        data: scans folder (any layout :func:`~semantic_genesis.io.datasets.list_scans` knows).
        out: cube-set folder; an interrupted run in it is resumed.
        progress: show a tqdm bar.

    Raises:
        ConfigError: missing data/out, bad cube settings, or ``out`` holds a cube set made with other
            settings.
        DataError: no scans, or no scan gave any cube (the message lists why per scan and names the
            options to change).
    """
    from tqdm.auto import tqdm

    from semantic_genesis.io.datasets import detect_layout, list_scans
    from semantic_genesis.io.shards import ShardWriter

    data = data if data is not None else cfg.data
    out = out if out is not None else cfg.out
    if data is None or out is None:
        raise ConfigError("cube generation needs --data DIR (scans) and --out DIR (cube set)")
    c = cfg.cubes
    patches = patch_mode(c.cube_size)
    if patches and any(s % 32 for s in c.cube_size):
        warnings.warn(f"cubes.cube_size {tuple(c.cube_size)} is not divisible by 32; the ResNet-18 U-Net needs "
                      "multiples of 32 (the 2D U-Net of 8)", stacklevel=2)
    elif not patches and any(s % 8 for s in c.cube_size):
        warnings.warn(f"cubes.cube_size {tuple(c.cube_size)} is not divisible by 8; the 3D U-Net needs multiples of 8", stacklevel=2)
    if c.cubes_per_scan <= 0:
        raise ConfigError(f"cubes.cubes_per_scan must be > 0, got {c.cubes_per_scan}")
    if not isinstance(c.split, str):
        split_patients(["check"], c.split, cfg.seed)  # bad fractions fail before any work
    refs = list_scans(data, images2d=patches)
    if not refs:
        raise DataError(f"{data}: no scans found")
    layout = detect_layout(data) if Path(data).is_dir() else "generic"
    # a split rule the data cannot serve (official on a layout without one) fails before any scan is cut
    assign_splits(cfg, layout, sorted({(r.person, str(r.path)) for r in refs}), warn=lambda text: None)
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
    writer.manifest["attrs"].update({"settings": settings, "source": str(data), "layout": layout,
                                     "planned": [r.patient_id for r in refs]})
    skipped: dict[str, str] = dict(writer.manifest["attrs"].get("skipped", {}))
    spacings: dict[str, tuple[float, ...]] = {k: tuple(v) for k, v in writer.manifest["attrs"].get("spacings", {}).items()}
    done = writer.completed_units()
    resumed = sum(1 for r in refs if _unit_name(r) in done)
    todo = [r for r in refs if _unit_name(r) not in done]
    bar = tqdm(todo, desc="cubes", unit="scan", disable=not progress, initial=0, total=len(todo))
    for ref in bar:
        unit = _unit_name(ref)
        rng = np.random.default_rng(derive_seed(cfg.seed, "cubes", ref.patient_id, Path(ref.path).name))
        info: dict[str, Any] = {}
        try:
            volume, spacing = _unit_image(ref, cfg) if patches and _is_image2d(ref) else _unit_volume(ref, cfg)
            spacings[unit] = spacing
            cubes, records = sample_cubes(volume, c, rng, diagnostics=info)
        except SemanticGenesisError as exc:
            reason = str(exc)
            skipped[unit] = reason
            print(f"warning: skipping scan {ref.path}: {reason}", file=sys.stderr)
            cubes, records = np.zeros((0, 1, *c.cube_size), dtype=np.float32), []
        else:
            if len(cubes) == 0:
                skipped[unit] = info["reason"]
                print(f"warning: scan {ref.path}: {info['reason']}", file=sys.stderr)
            elif len(cubes) < c.cubes_per_scan:
                print(f"warning: scan {ref.path}: only {len(cubes)} of {c.cubes_per_scan} cubes passed the "
                      f"{c.content_test} content test in {info['trials']} trials", file=sys.stderr)
        for record in records:
            record.update({"patient": ref.patient_id, "scan": str(ref.path)})
        writer.manifest["attrs"]["skipped"] = skipped
        writer.manifest["attrs"]["spacings"] = {k: list(v) for k, v in spacings.items()}
        writer.add_unit(unit, cubes, records, split=PENDING)
        bar.set_postfix(cubes=len(cubes))
    bar.close()

    counts_by_unit = {shard["unit"]: 0 for shard in writer.manifest["shards"]}
    for shard in writer.manifest["shards"]:
        counts_by_unit[shard["unit"]] += int(shard["count"])
    usable = [(r.person, str(r.path)) for r in refs if counts_by_unit.get(_unit_name(r), 0) > 0]
    if not usable:
        details = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        advice = _no_cube_advice(cfg, spacings) if any("content test" in v for v in skipped.values()) else ""
        what = "patch of {} pixels" if patches else "cube of {} voxels"
        raise DataError(f"{data}: no scan gave any {what.format(tuple(c.cube_size))} ({details}).{advice}")
    patient_paths = dict(sorted({pid: path for pid, path in usable}.items()))
    splits, description = assign_splits(cfg, layout, list(patient_paths.items()))
    unit_patient = {_unit_name(r): r.person for r in refs}
    for shard in writer.manifest["shards"]:
        shard["split"] = splits.get(unit_patient.get(shard["unit"], ""), LEFT_OUT)
    counts = {s: 0 for s in SPLITS}
    for shard in writer.manifest["shards"]:
        if shard["split"] in counts:
            counts[shard["split"]] += int(shard["count"])
    for name in SPLITS:
        if counts[name] == 0:
            print(f"warning: the {name} split of the cube set is empty ({description}; {len(splits)} patients)",
                  file=sys.stderr)
    by_split = {name: sorted(pid for pid, s in splits.items() if s == name) for name in SPLITS}
    left_out = sorted(set(patient_paths) - set(splits))
    writer.finish(counts=counts, scans=len(usable), skipped=skipped, splits=splits, split_patients=by_split,
                  split_rule=description, left_out=left_out)
    return CubeSetSummary(out, counts, len(usable), skipped, resumed, description, left_out)
