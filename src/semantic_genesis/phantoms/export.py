"""Export of the phantom cohorts into the on-disk layouts of the public datasets.

The exported folders are read by the real dataset readers in :mod:`semantic_genesis.io.datasets`,
so those readers run on real file formats offline:

=============  ====================================================================================
layout         files (see each ``export_*`` function for details)
=============  ====================================================================================
``native``     ``images/<id>.nii.gz``, ``labels/<id>.nii.gz``, ``meta/<id>.json``, ``cohort.json``
``luna16``     ``subset0..9/<seriesuid>.mhd`` + ``.raw``, ``annotations.csv``, ``candidates.csv``
``lits``       ``volume-<i>.nii``, ``segmentation-<i>.nii`` (0 background, 1 liver, 2 lesion)
``brats``      ``Brats18_PHANTOM_<i>_1/Brats18_PHANTOM_<i>_1_{flair,t1,t1ce,t2,seg}.nii.gz``
X-ray          ``chestxray14``, ``siim``, ``chexpert``, ``mimic_cxr``, ``vindr_cxr``, ``rsna_pneumonia``,
               ``shenzhen``: see :mod:`semantic_genesis.phantoms.export_xray` (each with its own labels)
=============  ====================================================================================

Exports are resumable: after a patient's files are written, a small record
(``.phantom_export/<index>.json``) is saved; a rerun with the same settings skips recorded patients and
rebuilds the tables (CSV, split lists, ``cohort.json``) from all records, atomically. A rerun with a
larger ``--patients`` extends the cohort (patient ``i`` depends only on the seed and ``i``). The
radiograph exports take ``workers`` (a process pool; the same files as one worker).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from semantic_genesis.errors import ConfigError, DataError, describe_path
from semantic_genesis.phantoms.export_xray import XRAY_EXPORT_LAYOUTS, XrayExportOptions, siim_uids
from semantic_genesis.utils.atomic import write_json, write_text
from semantic_genesis.utils.seeding import derive_seed

CT_LAYOUTS = ("native", "luna16", "lits")
MRI_LAYOUTS = ("native", "brats")
XRAY_LAYOUTS = ("native", *XRAY_EXPORT_LAYOUTS)
STATE_DIR = ".phantom_export"

#: World position (mm, LPS) of voxel (0, 0, 0) in the LUNA16 export, before a per-patient jitter;
#: non-zero so that world and voxel coordinates differ, as in the real data.
LUNA16_ORIGIN = (-180.0, -180.0, -300.0)
LUNA16_UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        root: the output folder.
        layout: the layout name.
        patients: number of patients in the cohort (written now or earlier).
        written: patients written by this call (the rest were resumed from an earlier run).
        files: the main table/list files (empty for layouts without tables).
    """

    root: Path
    layout: str
    patients: int
    written: int
    files: tuple[Path, ...] = ()


# --------------------------------------------------------------------------------------------------
# resume bookkeeping


class _ExportState:
    """Per-patient records in ``root/.phantom_export`` and the settings they were made with."""

    def __init__(self, root: Path, settings: dict[str, Any]):
        self.root = root
        self.dir = root / STATE_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.dir / "settings.json"
        if settings_file.is_file():
            previous = json.loads(settings_file.read_text(encoding="utf-8"))
            if previous != settings:
                changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
                raise ConfigError(
                    f"{describe_path(root)} holds a phantom export made with different settings "
                    f"({', '.join(f'{k}: {previous.get(k)!r} -> {settings.get(k)!r}' for k in changed)}); "
                    "use another --out folder or delete this one"
                )
        else:
            write_json(settings_file, settings)

    def record(self, index: int) -> dict | None:
        path = self.dir / f"{index:06d}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def save(self, index: int, record: dict) -> None:
        write_json(self.dir / f"{index:06d}.json", record)


def _run_export(
    root: str | Path,
    layout: str,
    n_patients: int,
    settings: dict[str, Any],
    write_patient: Callable[[int], dict],
    progress: bool,
    desc: str,
    workers: int = 1,
) -> tuple[Path, list[dict], int]:
    """Write every patient not yet recorded; return ``(root, records in index order, written)``.

    With ``workers > 1`` patients are written by a process pool (``write_patient`` must then be
    picklable, e.g. a ``functools.partial`` of a module-level function); records are saved in
    index order as they arrive, so an interrupted run resumes.
    """
    if n_patients < 1:
        raise ConfigError(f"--patients must be at least 1, got {n_patients}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    root = Path(root).expanduser()
    state = _ExportState(root, {"layout": layout, **settings})
    todo = [i for i in range(n_patients) if state.record(i) is None]
    pool = None
    results: Iterable[dict]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)))
        results = pool.map(write_patient, todo)
    else:
        results = (write_patient(i) for i in todo)
    try:
        pairs: Iterable[tuple[int, dict]] = zip(todo, results)
        if progress and todo:
            from tqdm.auto import tqdm

            pairs = tqdm(pairs, total=len(todo), desc=desc, unit="patient")
        for index, record in pairs:
            state.save(index, record)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    records = [state.record(i) for i in range(n_patients)]
    return root, records, len(todo)  # type: ignore[return-value]


def _check_layout(layout: str, allowed: tuple[str, ...], what: str) -> None:
    if layout not in allowed:
        raise ConfigError(f"unknown {what} layout {layout!r}; expected one of {', '.join(allowed)}")


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or mapping access (generator records may be dataclasses or dicts)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _shape_kwargs(shape: tuple[int, int, int] | None) -> dict:
    return {} if shape is None else {"shape": tuple(int(s) for s in shape)}


# --------------------------------------------------------------------------------------------------
# chest CT


def luna16_seriesuid(seed: int, index: int) -> str:
    """A deterministic LUNA16-style series UID (``1.3.6.1.4.1.14519.5.2.1.6279.6001.<30 digits>``)."""
    a = derive_seed("luna16-uid", seed, index)
    b = derive_seed("luna16-uid-2", seed, index)
    digits = str(10**29 + (a * (1 << 63) + b) % (9 * 10**29))
    return LUNA16_UID_ROOT + digits


def export_ct_cohort(
    out: str | Path,
    n_patients: int,
    seed: int = 0,
    layout: str = "native",
    shape: tuple[int, int, int] | None = None,
    progress: bool = False,
    spacing: tuple[float, float, float] | None = None,
) -> ExportResult:
    """Generate ``n_patients`` chest CT phantoms and write them in ``layout`` (``native``, ``luna16``, ``lits``).

    ``shape`` and ``spacing`` (mm) set the voxel grid; the anatomy is defined in millimetres, so it
    keeps its physical size on any grid (e.g. LUNA16's typical ``512 x 512 x 140`` at
    ``0.7 x 0.7 x 2.5`` mm). ``spacing=None`` keeps the default 358 x 358 x 307 mm field of view.
    """
    _check_layout(layout, CT_LAYOUTS, "CT")
    return {"native": export_native_ct, "luna16": export_luna16, "lits": export_lits}[layout](
        out, n_patients, seed=seed, shape=shape, progress=progress, spacing=spacing
    )


def _make_ct(index: int, seed: int, shape: tuple[int, int, int] | None, spacing: tuple[float, ...] | None = None):
    from semantic_genesis.phantoms.ct import make_ct_patient

    grid = _shape_kwargs(shape)
    if spacing is not None:
        grid["spacing"] = tuple(float(s) for s in spacing)
    return make_ct_patient(index, seed=seed, **grid)


def _grid_settings(shape: tuple[int, ...] | None, spacing: tuple[float, ...] | None) -> dict:
    """Export settings of the grid (``spacing`` only when given, so older exports still resume)."""
    out: dict = {"shape": _shape_list(shape)}
    if spacing is not None:
        out["spacing"] = [float(s) for s in spacing]
    return out


def _native_export(kind: str, out: str | Path, n_patients: int, progress: bool, **kwargs: Any) -> ExportResult:
    """Delegate to the native writers of :mod:`semantic_genesis.phantoms.cohort` (resumable there)."""
    from semantic_genesis.phantoms import cohort

    writer = {
        "ct": cohort.write_native_ct_cohort,
        "mri": cohort.write_native_mri_cohort,
        "xray": cohort.write_native_xray_cohort,
    }[kind]
    if n_patients < 1:
        raise ConfigError(f"--patients must be at least 1, got {n_patients}")
    root = Path(out).expanduser()
    meta = root / "meta"
    before = len(list(meta.glob("*.json"))) if meta.is_dir() else 0
    ids = writer(root, n_patients, progress=progress, **{k: v for k, v in kwargs.items() if v is not None})
    written = sum(1 for pid in ids if (meta / f"{pid}.json").is_file()) - min(before, len(ids))
    files = tuple(p for p in (root / "cohort.json", root / "labels.csv") if p.is_file())
    return ExportResult(root, "native", n_patients, max(written, 0), files)


def export_native_ct(
    out: str | Path, n_patients: int, seed: int = 0, shape: tuple[int, int, int] | None = None, progress: bool = False,
    spacing: tuple[float, float, float] | None = None,
) -> ExportResult:
    """The native layout (:func:`semantic_genesis.phantoms.cohort.write_native_ct_cohort`):
    ``images/<id>.nii.gz`` (HU, int16), ``labels/<id>.nii.gz`` (uint8), ``meta/<id>.json`` (label
    names, nodules and candidates in voxel and world coordinates), ``cohort.json``.
    """
    return _native_export("ct", out, n_patients, progress, seed=seed, shape=shape, spacing=spacing)


def export_luna16(
    out: str | Path, n_patients: int, seed: int = 0, shape: tuple[int, int, int] | None = None, progress: bool = False,
    spacing: tuple[float, float, float] | None = None,
) -> ExportResult:
    """The LUNA16 layout.

    Patient ``i`` goes to ``subset{i % 10}/<seriesuid>.mhd`` (+ ``.raw``, int16 HU, identity direction,
    origin :data:`LUNA16_ORIGIN` plus a per-patient jitter of a few mm). ``annotations.csv`` lists the
    nodules (world-mm centre, diameter), ``candidates.csv`` the candidates (true nodules class 1,
    look-alikes class 0), both with world coordinates computed exactly from the written geometry.
    """
    from semantic_genesis.io.volumes import Volume, write_volume

    root_path = Path(out).expanduser()

    def write_patient(index: int) -> dict:
        patient = _make_ct(index, seed, shape, spacing)
        uid = luna16_seriesuid(seed, index)
        rng = np.random.default_rng(derive_seed(seed, index, "luna16-origin"))
        origin = tuple(float(o + j) for o, j in zip(LUNA16_ORIGIN, np.round(rng.uniform(-8, 8, 3), 2)))
        src = patient.volume
        volume = Volume(src.array, src.spacing, origin, (1, 0, 0, 0, 1, 0, 0, 0, 1), {"modality": "ct"})
        write_volume(volume, root_path / f"subset{index % 10}" / f"{uid}.mhd", dtype="int16")
        annotations = []
        for nodule in _field(patient, "nodules", []) or []:
            world = volume.voxel_to_world(np.asarray(_field(nodule, "center_vox"), dtype=np.float64))
            annotations.append([uid, *map(float, world), float(_field(nodule, "diameter_mm"))])
        candidates = []
        for cand in _field(patient, "candidates", []) or []:
            world = volume.voxel_to_world(np.asarray(_field(cand, "center_vox"), dtype=np.float64))
            candidates.append([uid, *map(float, world), int(_field(cand, "label"))])
        return {"seriesuid": uid, "annotations": annotations, "candidates": candidates}

    root, records, written = _run_export(
        out, "luna16", n_patients, {"modality": "ct", "seed": seed, **_grid_settings(shape, spacing)},
        write_patient, progress, "phantom ct (luna16)",
    )
    ann_rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    cand_rows = ["seriesuid,coordX,coordY,coordZ,class"]
    for record in records:
        ann_rows += [f"{u},{x!r},{y!r},{z!r},{d!r}" for u, x, y, z, d in record["annotations"]]
        cand_rows += [f"{u},{x!r},{y!r},{z!r},{c}" for u, x, y, z, c in record["candidates"]]
    write_text(root / "annotations.csv", "\n".join(ann_rows) + "\n")
    write_text(root / "candidates.csv", "\n".join(cand_rows) + "\n")
    return ExportResult(root, "luna16", n_patients, written, (root / "annotations.csv", root / "candidates.csv"))


def add_liver_lesions(
    hu: np.ndarray,
    liver: np.ndarray,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    max_lesions: int = 3,
) -> np.ndarray:
    """Insert hypodense lesions into the liver, consistently in the image and a lesion mask.

    Each lesion is a smooth-edged ellipsoid (radii 4-15 mm, fitted to the liver's depth at its
    centre) whose voxels are darkened by 40-70 HU, so the liver's texture and noise are kept. Lesion
    voxels are clipped to the liver mask, so a lesion never leaves the liver.

    Args:
        hu: float ``(X, Y, Z)`` CT in HU, modified in place.
        liver: bool ``(X, Y, Z)`` liver mask.
        spacing: voxel size in mm.
        rng: random source (the count is drawn in ``1..max_lesions``).

    Returns:
        bool ``(X, Y, Z)`` lesion mask (empty if the liver is too small or no lesion was drawn).
    """
    from scipy import ndimage

    lesions = np.zeros(liver.shape, dtype=bool)
    count = int(rng.integers(1, max_lesions + 1))
    if count == 0 or liver.sum() < 50:
        return lesions
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    grid = np.indices(liver.shape, dtype=np.float32)
    for _ in range(count):
        centres = np.argwhere(depth >= 6.0)
        if centres.size == 0:
            break
        centre = centres[rng.integers(len(centres))]
        radius_max = min(15.0, float(depth[tuple(centre)]) - 1.0)
        radii = rng.uniform(5.0, max(5.0, radius_max)) * rng.uniform(0.8, 1.0, 3)
        dist = np.sqrt(sum(((grid[a] - centre[a]) * spacing[a] / radii[a]) ** 2 for a in range(3)))
        weight = np.clip((1.15 - dist) / 0.3, 0.0, 1.0) * liver  # soft edge, 0 outside the liver
        hu -= weight * rng.uniform(40.0, 70.0)
        lesions |= (dist <= 1.0) & liver
        depth = np.where(dist <= 1.3, 0.0, depth)  # keep the next lesion apart
    return lesions


def export_lits(
    out: str | Path, n_patients: int, seed: int = 0, shape: tuple[int, int, int] | None = None, progress: bool = False,
    spacing: tuple[float, float, float] | None = None,
) -> ExportResult:
    """The LiTS layout: ``volume-<i>.nii`` (int16 HU) and ``segmentation-<i>.nii`` (uint8: 0, 1 liver, 2 lesion).

    Liver lesions are added here by :func:`add_liver_lesions`, in the volume and the segmentation alike.
    """
    from semantic_genesis.io.volumes import write_volume

    root_path = Path(out).expanduser()

    def write_patient(index: int) -> dict:
        patient = _make_ct(index, seed, shape, spacing)
        names = dict(patient.label_names)
        if "liver" not in names:
            raise DataError(f"phantom CT patient {index} has no 'liver' label (labels: {sorted(names)})")
        liver = np.asarray(patient.labels) == names["liver"]
        hu = np.array(patient.volume.array, dtype=np.float32)
        rng = np.random.default_rng(derive_seed(seed, index, "lits-lesions"))
        lesions = add_liver_lesions(hu, liver, patient.volume.spacing, rng)
        seg = liver.astype(np.uint8)
        seg[lesions] = 2
        volume = patient.volume.with_array(hu, modality="ct")
        write_volume(volume, root_path / f"volume-{index}.nii", dtype="int16")
        write_volume(volume.with_array(seg), root_path / f"segmentation-{index}.nii", dtype="uint8")
        return {"case": index, "liver_voxels": int(liver.sum()), "lesion_voxels": int(lesions.sum())}

    root, _records, written = _run_export(
        out, "lits", n_patients, {"modality": "ct", "seed": seed, **_grid_settings(shape, spacing)},
        write_patient, progress, "phantom ct (lits)",
    )
    return ExportResult(root, "lits", n_patients, written)


# --------------------------------------------------------------------------------------------------
# brain MRI


def export_mri_cohort(
    out: str | Path,
    n_patients: int,
    seed: int = 0,
    layout: str = "native",
    shape: tuple[int, int, int] | None = None,
    progress: bool = False,
) -> ExportResult:
    """Generate brain MRI phantoms and write them in ``layout`` (``native`` or ``brats``).

    ``native``: :func:`semantic_genesis.phantoms.cohort.write_native_mri_cohort`. ``brats``: one folder
    ``Brats18_PHANTOM_<i>_1/`` per patient with ``<id>_flair.nii.gz``, ``_t1``, ``_t1ce``, ``_t2``
    (int16, like the released files) and ``_seg`` (uint8, BraTS 2018 labels 0/1/2/4).
    """
    _check_layout(layout, MRI_LAYOUTS, "MRI")
    if layout == "native":
        return _native_export("mri", out, n_patients, progress, seed=seed, shape=shape)
    from semantic_genesis.io.volumes import write_volume
    from semantic_genesis.phantoms.mri import SEQUENCES, make_mri_patient

    root_path = Path(out).expanduser()

    def write_patient(index: int) -> dict:
        patient = make_mri_patient(index, seed=seed, **_shape_kwargs(shape))
        pid = f"Brats18_PHANTOM_{index}_1"
        folder = root_path / pid
        for name in SEQUENCES:
            write_volume(patient.modalities[name], folder / f"{pid}_{name}.nii.gz", dtype="int16")
        reference = patient.modalities["flair"]
        write_volume(reference.with_array(patient.seg), folder / f"{pid}_seg.nii.gz", dtype="uint8")
        return {"patient_id": pid, "source": patient.patient_id}

    root, _records, written = _run_export(
        out, layout, n_patients, {"modality": "mri", "seed": seed, "shape": _shape_list(shape)},
        write_patient, progress, "phantom mri (brats)",
    )
    return ExportResult(root, layout, n_patients, written)


# --------------------------------------------------------------------------------------------------
# chest radiographs


def export_xray_cohort(
    out: str | Path,
    n_patients: int,
    seed: int = 0,
    layout: str = "native",
    shape: tuple[int, int, int] | None = None,
    progress: bool = False,
    size: tuple[int, int] | None = None,
    finding_rate: float = 0.2,
    female_fraction: float = 0.5,
    ap_fraction: float = 0.3,
    workers: int = 1,
) -> ExportResult:
    """Generate radiographs (projections of the CT phantoms) and write them in ``layout``.

    Args:
        out: output folder (created; reruns with the same settings resume).
        n_patients: number of patients (>= 1).
        seed: cohort seed.
        layout: ``native`` (:func:`semantic_genesis.phantoms.cohort.write_native_xray_cohort`) or one of
            :data:`~semantic_genesis.phantoms.export_xray.XRAY_EXPORT_LAYOUTS` (files and label spaces in
            :mod:`semantic_genesis.phantoms.export_xray`).
        shape: grid of the projected CT phantom (default: the generator's).
        progress: show a tqdm bar.
        size: radiograph ``(H, W)`` (default 256 x 256).
        finding_rate: probability of each finding; female_fraction: of a female patient;
            ap_fraction: of an AP view (:func:`semantic_genesis.phantoms.xray.draw_xray_spec`).
        workers: processes (the files do not depend on it).
    """
    from functools import partial

    from semantic_genesis.phantoms import export_xray

    _check_layout(layout, XRAY_LAYOUTS, "X-ray")
    for name, value in (("finding_rate", finding_rate), ("female_fraction", female_fraction), ("ap_fraction", ap_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value}")
    if layout == "native":
        return _native_export(
            "xray", out, n_patients, progress, seed=seed, ct_shape=shape, size=size, finding_rate=finding_rate,
            female_fraction=female_fraction, ap_fraction=ap_fraction, workers=workers,
        )
    options = XrayExportOptions(
        seed=int(seed),
        ct_shape=None if shape is None else tuple(int(s) for s in shape),  # type: ignore[arg-type]
        size=None if size is None else tuple(int(s) for s in size),  # type: ignore[arg-type]
        finding_rate=float(finding_rate),
        female_fraction=float(female_fraction),
        ap_fraction=float(ap_fraction),
    )
    root_path = Path(out).expanduser()
    root, records, written = _run_export(
        out, layout, n_patients, {"modality": "xray", **options.settings()},
        partial(export_xray.write_patient, layout, root_path, options), progress, f"phantom xray ({layout})", workers,
    )
    files = export_xray.write_tables(layout, root, options, records)
    return ExportResult(root, layout, n_patients, written, files)


def export_chestxray14(out: str | Path, n_patients: int, seed: int = 0, **kwargs: Any) -> ExportResult:
    """The ChestX-ray14 layout (:func:`export_xray_cohort` with ``layout="chestxray14"``)."""
    return export_xray_cohort(out, n_patients, seed=seed, layout="chestxray14", **kwargs)


def export_siim(out: str | Path, n_patients: int, seed: int = 0, **kwargs: Any) -> ExportResult:
    """The SIIM-ACR layout (:func:`export_xray_cohort` with ``layout="siim"``)."""
    return export_xray_cohort(out, n_patients, seed=seed, layout="siim", **kwargs)


# --------------------------------------------------------------------------------------------------
# helpers


def _patient_id(patient: Any, index: int) -> str:
    pid = _field(patient, "patient_id") or _field(patient, "id") or _field(patient, "name")
    return str(pid) if pid else f"phantom_{index:04d}"


def _shape_list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else [int(s) for s in shape]


def _nodule_json(nodule: Any) -> dict:
    out = {}
    for key in ("center_vox", "diameter_mm", "kind", "label", "solid", "attached_to"):
        value = _field(nodule, key)
        if value is not None:
            out[key] = np.asarray(value).tolist() if isinstance(value, (np.ndarray, tuple, list)) else value
    return json.loads(json.dumps(out, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _candidate_json(cand: Any) -> dict:
    return {
        "center_vox": np.asarray(_field(cand, "center_vox"), dtype=np.float64).tolist(),
        "label": int(_field(cand, "label")),
        "kind": str(_field(cand, "kind", "")),
    }
