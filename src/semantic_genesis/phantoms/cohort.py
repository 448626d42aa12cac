"""The native on-disk layout of the phantom cohorts (read by ``semantic_genesis.io.datasets.native``).

Layout (one folder per cohort)::

    OUT/cohort.json                 modality, seed, n, shape, spacing, label names, patient ids
    OUT/images/<id>.nii.gz          CT: int16 HU          MRI: <id>_<seq>.nii.gz (flair, t1, t1ce, t2)
                                    X-ray: <id>.png (16-bit, [0, 1] scaled)
    OUT/labels/<id>.nii.gz          CT: uint8 label map   MRI: uint8 BraTS labels (0, 1, 2, 4)
                                    X-ray: <id>.png pneumothorax mask (0 / 255)
    OUT/meta/<id>.json              per-patient ground truth (see each writer)
    OUT/labels.csv                  X-ray only: one row per image: sex, age, view, then the findings (0 / 1)

Writers are resumable: a patient whose ``meta/<id>.json`` exists (written last, after its images)
is skipped, so an interrupted run continues where it stopped and a rerun with a larger ``n``
extends the cohort. ``cohort.json`` records the generation settings; resuming into a folder made
with different settings raises :class:`~semantic_genesis.errors.DataError`. Every file is written
atomically. Patient ``i`` depends only on ``(seed, i)``, so ``workers > 1`` (a process pool) gives
the same files as one worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from semantic_genesis.errors import DataError, describe_path
from semantic_genesis.phantoms.xray import FINDINGS
from semantic_genesis.utils.atomic import write_json, write_text

#: Findings of the radiograph cohort, in the column order of ``labels.csv`` (after ``patient_id``,
#: ``sex``, ``age``, ``view``): the 14 ChestX-ray14 labels, then tuberculosis.
XRAY_LABEL_COLUMNS = FINDINGS


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "cohort.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{describe_path(path)}: unreadable cohort description ({exc}); remove it or use a new folder") from exc
    for key, value in settings.items():
        if key in old and old[key] != value:
            raise DataError(
                f"{describe_path(path)}: existing cohort has {key}={old[key]!r} but this run asks for {value!r}; "
                "use a new output folder or the same settings to resume"
            )


def _pending(out: Path, ids: Sequence[str]) -> list[int]:
    return [i for i, pid in enumerate(ids) if not (out / "meta" / f"{pid}.json").is_file()]


def _run(
    out: Path, indices: list[int], job: Callable[[tuple], Any], args: Callable[[int], tuple], workers: int, progress: bool, desc: str
) -> None:
    iterator: Any
    if workers > 1 and len(indices) > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers)
        iterator = pool.map(job, [args(i) for i in indices])
    else:
        pool = None
        iterator = (job(args(i)) for i in indices)
    try:
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=len(indices), desc=desc, unit="patient")
        for _ in iterator:
            pass
    finally:
        if pool is not None:
            pool.shutdown()


# --------------------------------------------------------------------------------------------------
# chest CT


def ct_patient_meta(patient: Any) -> dict[str, Any]:
    """The ``meta/<id>.json`` record of a CT patient: geometry, label names, params, and the nodules
    and candidates in voxel **and** world (mm, LPS) coordinates."""
    vol = patient.volume

    def world(vox: Sequence[float]) -> list[float]:
        return [float(x) for x in vol.voxel_to_world(np.asarray(vox, dtype=np.float64))]

    return {
        "patient_id": patient.patient_id,
        "modality": "ct",
        "shape": list(vol.shape),
        "spacing": list(vol.spacing),
        "origin": list(vol.origin),
        "direction": list(vol.direction),
        "label_names": dict(patient.label_names),
        "params": patient.params,
        "nodules": [dict(n.to_dict(), center_world=world(n.center_vox)) for n in patient.nodules],
        "candidates": [dict(c.to_dict(), center_world=world(c.center_vox)) for c in patient.candidates],
    }


def _write_ct_job(args: tuple) -> str:
    out, index, seed, shape, spacing = args
    from semantic_genesis.io.volumes import write_volume
    from semantic_genesis.phantoms.ct import make_ct_patient

    patient = make_ct_patient(index, seed, shape=shape, spacing=spacing)
    pid = patient.patient_id
    write_volume(patient.volume, out / "images" / f"{pid}.nii.gz", dtype="int16")
    write_volume(patient.volume.with_array(patient.labels), out / "labels" / f"{pid}.nii.gz", dtype="uint8")
    write_json(out / "meta" / f"{pid}.json", ct_patient_meta(patient))
    return pid


def write_native_ct_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    shape: Sequence[int] = (128, 128, 96),
    spacing: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> list[str]:
    """Write patients ``0 .. n-1`` of the chest CT cohort ``seed`` in the native layout.

    Args:
        out: output folder (created).
        n: number of patients (>= 1).
        seed: cohort seed.
        shape: grid ``(X, Y, Z)``.
        spacing: voxel size (mm); default keeps the standard field of view (see ``phantoms.ct``).
        workers: processes.
        progress: show a tqdm bar.

    Returns:
        The patient ids (``phantom_ct_000`` ... for seed 0, ``phantom_ct_s<seed>_000`` ... otherwise), in index order.
    """
    from semantic_genesis.phantoms.ct import CT_LABELS, _check_grid, ct_patient_id

    if n < 1:
        raise DataError(f"number of phantom patients must be >= 1, got {n}")
    shape_t, spacing_t = _check_grid(shape, spacing)
    out = Path(out).expanduser()
    settings = {"modality": "ct", "seed": int(seed), "shape": list(shape_t), "spacing": list(spacing_t)}
    _check_settings(out, settings)
    ids = [ct_patient_id(i, seed) for i in range(n)]
    todo = _pending(out, ids)
    _run(out, todo, _write_ct_job, lambda i: (out, i, int(seed), shape_t, spacing_t), workers, progress, "phantom ct")
    write_json(out / "cohort.json", {**settings, "layout": "native", "n": n, "label_names": dict(CT_LABELS), "patients": ids})
    return ids


# --------------------------------------------------------------------------------------------------
# brain MRI


def _write_mri_job(args: tuple) -> str:
    out, index, seed, shape, spacing = args
    from semantic_genesis.io.volumes import write_volume
    from semantic_genesis.phantoms.mri import make_mri_patient

    patient = make_mri_patient(index, seed, shape=shape, spacing=spacing)
    pid = patient.patient_id
    for name, volume in patient.modalities.items():
        write_volume(volume, out / "images" / f"{pid}_{name}.nii.gz")
    ref = patient.modalities["flair"]
    write_volume(ref.with_array(patient.seg), out / "labels" / f"{pid}.nii.gz", dtype="uint8")
    meta = {
        "patient_id": pid,
        "modality": "mri",
        "shape": list(ref.shape),
        "spacing": list(ref.spacing),
        "origin": list(ref.origin),
        "label_names": dict(patient.label_names),
        "params": patient.params,
    }
    write_json(out / "meta" / f"{pid}.json", meta)
    return pid


def write_native_mri_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> list[str]:
    """Write brain MRI patients ``0 .. n-1``: ``images/<id>_{flair,t1,t1ce,t2}.nii.gz`` (float32),
    ``labels/<id>.nii.gz`` (BraTS labels 0/1/2/4), ``meta/<id>.json``, ``cohort.json``."""
    from semantic_genesis.phantoms.mri import BRATS_LABELS, _check_mri_grid, mri_patient_id

    if n < 1:
        raise DataError(f"number of phantom patients must be >= 1, got {n}")
    shape_t, spacing_t = _check_mri_grid(shape, spacing)
    out = Path(out).expanduser()
    settings = {"modality": "mri", "seed": int(seed), "shape": list(shape_t), "spacing": list(spacing_t)}
    _check_settings(out, settings)
    ids = [mri_patient_id(i, seed) for i in range(n)]
    todo = _pending(out, ids)
    _run(out, todo, _write_mri_job, lambda i: (out, i, int(seed), shape_t, spacing_t), workers, progress, "phantom mri")
    write_json(
        out / "cohort.json",
        {**settings, "layout": "native", "n": n, "sequences": ["flair", "t1", "t1ce", "t2"], "label_names": dict(BRATS_LABELS), "patients": ids},
    )
    return ids


# --------------------------------------------------------------------------------------------------
# chest radiographs


def _write_xray_job(args: tuple) -> str:
    out, index, seed, ct_shape, size, finding_rate, female_fraction, ap_fraction = args
    from semantic_genesis.io.images2d import Image2D, write_image2d
    from semantic_genesis.phantoms.ct import ct_patient_id
    from semantic_genesis.phantoms.xray import draw_xray_spec, radiograph_from_spec, xray_patient_id

    spec = draw_xray_spec(index, seed, finding_rate, female_fraction, ap_fraction)
    rg = radiograph_from_spec(index, seed, spec, ct_shape, size)
    pid = xray_patient_id(index)
    write_image2d(Image2D(rg.image, rg.spacing, {"modality": "xray"}), out / "images" / f"{pid}.png", bits=16)
    mask = rg.pneumothorax_mask.astype(np.uint8) * 255
    write_image2d(Image2D(mask.astype(np.float32), rg.spacing, {}), out / "labels" / f"{pid}.png", bits=8)
    meta = {
        "patient_id": pid,
        "modality": "xray",
        "ct_patient_id": ct_patient_id(index, seed),
        "shape": list(rg.image.shape),
        "spacing": list(rg.spacing),
        "view": rg.view,
        "sex": rg.sex,
        "age": spec.age,
        "labels": {k: bool(v) for k, v in rg.labels.items()},
        "findings": [k for k, v in rg.labels.items() if v],
        "severity": rg.severity,
        "label_names": {"background": 0, "pneumothorax": 1},
    }
    write_json(out / "meta" / f"{pid}.json", meta)
    return pid


def write_native_xray_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    ct_shape: Sequence[int] = (128, 128, 96),
    size: Sequence[int] = (256, 256),
    finding_rate: float = 0.2,
    workers: int = 1,
    progress: bool = True,
    female_fraction: float = 0.5,
    ap_fraction: float = 0.3,
) -> list[str]:
    """Write radiographs of CT patients ``0 .. n-1``: ``images/<id>.png`` (16-bit), ``labels/<id>.png``
    (pneumothorax mask 0/255), ``meta/<id>.json`` (findings, severity, sex, age, view), ``labels.csv``
    (``patient_id``, ``sex``, ``age``, ``view``, then one 0/1 column per :data:`XRAY_LABEL_COLUMNS`)
    and ``cohort.json``. Each patient's findings, sex, age and view come from
    :func:`semantic_genesis.phantoms.xray.draw_xray_spec`."""
    from semantic_genesis.phantoms.ct import _check_grid
    from semantic_genesis.phantoms.xray import xray_patient_id

    if n < 1:
        raise DataError(f"number of phantom patients must be >= 1, got {n}")
    for name, value in (("finding_rate", finding_rate), ("female_fraction", female_fraction), ("ap_fraction", ap_fraction)):
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{name} must be in [0, 1], got {value}")
    shape_t, _ = _check_grid(ct_shape, None)
    size_t = (int(size[0]), int(size[1]))
    out = Path(out).expanduser()
    settings = {
        "modality": "xray", "seed": int(seed), "ct_shape": list(shape_t), "size": list(size_t),
        "finding_rate": float(finding_rate), "female_fraction": float(female_fraction), "ap_fraction": float(ap_fraction),
    }
    _check_settings(out, settings)
    ids = [xray_patient_id(i) for i in range(n)]
    todo = _pending(out, ids)
    job_args = (int(seed), shape_t, size_t, float(finding_rate), float(female_fraction), float(ap_fraction))
    _run(out, todo, _write_xray_job, lambda i: (out, i, *job_args), workers, progress, "phantom xray")
    rows = ["patient_id,sex,age,view," + ",".join(XRAY_LABEL_COLUMNS)]
    for pid in ids:
        meta = json.loads((out / "meta" / f"{pid}.json").read_text(encoding="utf-8"))
        labels = meta["labels"]
        rows.append(
            f"{pid},{meta['sex']},{meta['age']},{meta['view']},"
            + ",".join(str(int(bool(labels.get(c, False)))) for c in XRAY_LABEL_COLUMNS)
        )
    write_text(out / "labels.csv", "\n".join(rows) + "\n")
    write_json(
        out / "cohort.json", {**settings, "layout": "native", "n": n, "findings": list(XRAY_LABEL_COLUMNS), "patients": ids}
    )
    return ids
