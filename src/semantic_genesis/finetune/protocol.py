"""The papers' evaluation protocol: every initialisation fine-tuned ``trials`` times, then statistics.

Semantic Genesis (MICCAI 2020, Table 2) fine-tunes every method 10 times per target task and reports
mean ± s.d. with independent two-sample t-tests of the best method against each other. Here:

* the task data are read once and split by patient once (``finetune.split_seed``), so every trial
  of every initialisation is scored on the **same test set**;
* trial ``k`` uses the seed ``derive_seed(seed, "trial", k)`` for **every** initialisation, so the
  initialisations differ only in their weights (same head initialisation draws, data order, crops);
* each (init, trial) runs in ``OUT/trials/<init>/trial_<k>/``; a finished trial has a
  ``result.json`` (written atomically), so an interrupted ``evaluate`` skips finished trials and an
  interrupted trial resumes from its last epoch;
* before any trial, every initialisation's record of pretraining patients is compared with the test
  patients (:mod:`semantic_genesis.finetune.leakage`): an overlap is refused unless
  ``finetune.allow_pretraining_overlap=true``; allowed overlaps and weights that cannot be checked
  are listed in ``results.json`` (``pretraining_overlap``) and under the table in ``results.md``;
* a diverged trial (NaN / inf loss) is recorded with ``status: failed`` and a NaN metric: it is
  listed in the tables and excluded from mean, s.d. and tests, never silently dropped;
* the outputs ``results.csv`` (one row per trial), ``results.json`` (summary + comparison),
  ``results.md`` (the table) and ``results.png`` (bar chart, mean ± s.d.) are rewritten atomically
  after every trial, so partial results are always readable.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from semantic_genesis.errors import TrainingError
from semantic_genesis.finetune.results import TrialRecord, nan_to_none, write_results
from semantic_genesis.utils.seeding import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.models import InitSpec

TRIALS_DIR = "trials"
SWEEP_FILE = "sweep.json"
MODES = ("finetune", "linear_probe")
MODE_LABELS = {"finetune": "fine-tuning", "linear_probe": "linear probe"}


def mode_changes(mode: str, kind: str) -> dict[str, Any]:
    """The config changes of an evaluation mode for a task of ``kind`` (``classification`` / ``segmentation``).

    ``finetune`` trains the whole network (no change). ``linear_probe`` freezes the encoder (its
    normalisation layers stay in evaluation mode) and trains only what follows it: for classification
    global average pooling + one linear layer (``finetune.head=linear``), the classical linear probe of
    self-supervised features; for segmentation the decoder and output layer, since a voxel-wise
    prediction needs the decoder (a frozen encoder's features read out at full resolution).

    Raises:
        ConfigError: an unknown mode.
    """
    from semantic_genesis.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"finetune.modes: unknown mode {mode!r}; available: {', '.join(MODES)}")
    if mode == "finetune":
        return {}
    changes: dict[str, Any] = {"finetune.freeze_encoder": True}
    if kind == "classification":
        changes["finetune.head"] = "linear"
    return changes


def sweep_settings(cfg: "Config") -> list[tuple[str, float]]:
    """The ``(mode, label fraction)`` settings of ``evaluate``: every mode at every fraction.

    Raises:
        ConfigError: an unknown mode, a fraction outside (0, 1], or a repeated entry.
    """
    from semantic_genesis.errors import ConfigError

    ft = cfg.finetune
    fractions = [float(f) for f in (ft.label_fractions or (ft.label_fraction,))]
    modes = list(ft.modes) or ["finetune"]
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"finetune.label_fractions: every fraction must be in (0, 1], got {f:g}")
    for name, values in (("label_fractions", fractions), ("modes", modes)):
        if len(set(values)) != len(values):
            raise ConfigError(f"finetune.{name}: {values} repeats an entry")
    for mode in modes:
        mode_changes(mode, "classification")
    if "linear_probe" in modes and (ft.freeze_encoder_epochs or ft.encoder_lr_scale != 1.0):
        raise ConfigError("finetune.freeze_encoder_epochs / finetune.encoder_lr_scale apply to fine-tuning only, and "
                          "the linear_probe mode freezes the encoder for the whole run: evaluate the probe without them")
    return [(mode, f) for mode in modes for f in sorted(fractions)]


def setting_dir(out: Path, mode: str, fraction: float) -> Path:
    """Folder of one setting of a sweep: ``OUT/<mode>/fraction_<f>``."""
    return Path(out) / mode / f"fraction_{fraction:g}"


def test_set_info(data, test_idx) -> dict[str, Any]:
    """Patients, samples and positive samples (class 1, or a non-empty mask) of the test split, and the
    :func:`test_units_fingerprint` of its samples."""
    test = [int(i) for i in test_idx]
    return {"patients": len({data.patients[i] for i in test}), "samples": len(test),
            "positives": sum(1 for i in test if data.positive(i)), "fingerprint": test_units_fingerprint(data, test)}


def test_units_fingerprint(data, test_idx) -> str:
    """16 hex digits of SHA-256 over the test samples in split order: each sample's patient, and for
    tasks held in memory (the crop tasks) its image and target bytes.

    Two evaluations with the same fingerprint were scored on the same test units, e.g. ``ncc`` and its
    slice-based ``ncc2d`` (same candidates, crops, labels and patients); ``report results`` checks it
    before it puts their rows in one table. Lazily read tasks (DXC, PXS) are fingerprinted by their
    test patients only, so that no image is read for it.
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    in_memory = isinstance(data.images, np.ndarray) and isinstance(data.targets, np.ndarray)
    for i in (int(i) for i in test_idx):
        digest.update(str(data.patients[i]).encode("utf-8") + b"\0")
        if in_memory:
            digest.update(np.ascontiguousarray(data.images[i]).tobytes())
            digest.update(np.ascontiguousarray(data.targets[i]).tobytes())
    return digest.hexdigest()[:16]


def trial_seed(seed: int, trial: int) -> int:
    """Seed of trial ``trial`` (shared by all initialisations), below 2**31 for every RNG."""
    return derive_seed(seed, "trial", trial) % (2**31 - 1)


def trial_dir(out: Path, init: str, trial: int) -> Path:
    return Path(out) / TRIALS_DIR / init / f"trial_{trial:02d}"


def _failed_result(init: "InitSpec", task_metric: str, seed: int, error: str, seconds: float) -> dict[str, Any]:
    return {"status": "failed", "metric": task_metric, "test": {task_metric: math.nan}, "best_val": math.nan,
            "best_epoch": -1, "epochs": 0, "seconds": seconds, "seed": seed, "init": {"init": init.name}, "error": error}


# backbone arguments set by the task or the config's own fields, not by the architecture of a file
TASK_ARGUMENTS = ("in_channels", "out_channels", "out_activation", "width", "norm", "skip_connections", "num_classes")


def align_scratch_architecture(cfg: "Config", inits: list["InitSpec"], log: Callable[[str], None] = print) -> "Config":
    """Give scratch networks the width and normalisation of the first weights file being compared.

    A fair comparison of initialisations needs one architecture; the pretrained files fix theirs, so
    ``model.width`` / ``model.norm`` of the config are overridden for scratch (with a log line), and so
    are ``model.name`` / ``model.args`` when the file's backbone has further architecture arguments
    (a Swin's ``size``, ``embed_dim``, ``depths`` ...);
    ``model.norm`` is first mapped by ``finetune.norm`` (:func:`~semantic_genesis.finetune.models.finetune_norm`).
    """
    from semantic_genesis.config import replace
    from semantic_genesis.finetune.models import finetune_norm
    from semantic_genesis.models.loading import read_pretrained

    if finetune_norm(cfg, cfg.model.norm) != cfg.model.norm:
        cfg = replace(cfg, **{"model.norm": finetune_norm(cfg, cfg.model.norm)})
    files = [s for s in inits if s.path is not None]
    if not files or not any(s.is_scratch for s in inits):
        return cfg
    pre = read_pretrained(files[0].path)
    args = pre.backbone_args
    width, norm = args.get("width", cfg.model.width), finetune_norm(cfg, args.get("norm", cfg.model.norm))
    if (width, norm) != (cfg.model.width, cfg.model.norm):
        log(f"scratch uses the architecture of {files[0].name}: width {width}, norm {norm}")
        cfg = replace(cfg, **{"model.width": width, "model.norm": norm})
    # architecture arguments beyond width / norm (a Swin's size, depths, heads ...): the same backbone
    extra = {k: v for k, v in args.items() if k not in TASK_ARGUMENTS}
    if extra and (pre.backbone, extra) != (cfg.model.name, dict(cfg.model.args)):
        log(f"scratch uses the architecture of {files[0].name}: {pre.backbone} {extra}")
        cfg = replace(cfg, **{"model.name": pre.backbone, "model.args": extra})
    return cfg


def equal_steps_config(cfg: "Config", full_train: int, kept_train: int) -> "Config":
    """``cfg`` with ``train.epochs`` / ``train.patience`` scaled by ``full_train / kept_train`` when
    ``finetune.equal_steps`` is on (else ``cfg`` itself).

    With a fixed number of epochs a run on 10% of the labels takes a tenth of the optimiser steps,
    so a label-efficiency curve would also measure how fast a network starts to learn. Scaling the
    epochs by the ratio of training samples gives every fraction about the steps of the full set
    (the epoch with the best validation metric is still the one scored). ``finetune.freeze_encoder_epochs``
    is scaled alike, so the encoder stays frozen for the same share of the run.
    """
    from semantic_genesis.config import replace

    if not cfg.finetune.equal_steps or kept_train >= full_train or kept_train == 0:
        return cfg
    ratio = full_train / kept_train
    changes: dict[str, Any] = {"train.epochs": max(1, round(cfg.train.epochs * ratio))}
    if cfg.train.patience > 0:
        changes["train.patience"] = max(1, round(cfg.train.patience * ratio))
    if cfg.finetune.freeze_encoder_epochs > 0:  # the same share of the run
        changes["finetune.freeze_encoder_epochs"] = min(round(cfg.finetune.freeze_encoder_epochs * ratio),
                                                        changes["train.epochs"] - 1)
    return replace(cfg, **changes)


def protocol_split(cfg: "Config", data) -> dict:
    """The one split of the protocol (``finetune.split`` with ``finetune.split_seed``, default the root
    seed): sample indices ``{"train", "val", "test"}`` shared by every trial of every initialisation."""
    from semantic_genesis.finetune.data import split_by_patient

    split_seed = cfg.seed if cfg.finetune.split_seed is None else cfg.finetune.split_seed
    return split_by_patient(data, cfg.finetune.split, split_seed, cfg.finetune.label_fraction)


def check_inits(cfg: "Config", task: str, data, split: dict, inits: list["InitSpec"]) -> list:
    """:func:`~semantic_genesis.finetune.leakage.check_pretraining_overlap` of every initialisation
    against the test patients of ``split`` (raises on the first refused overlap)."""
    from semantic_genesis.finetune.leakage import check_pretraining_overlap, split_test_patients

    tested = split_test_patients(data, split)
    return [check_pretraining_overlap(spec, tested, task, cfg.finetune.allow_pretraining_overlap) for spec in inits]


def run_protocol(
    cfg: "Config",
    data_root: str | Path,
    inits: list["InitSpec"],
    trials: int,
    out: str | Path,
    log: Callable[[str], None] = print,
    data=None,
) -> dict[str, Any]:
    """Run every (initialisation, trial) of ``cfg.finetune.task`` and write the results files.

    Args:
        cfg: root config (``finetune``, ``train``, ``optim``, ``model``, ``intensity``, ``seed``).
        data_root: the task's dataset folder.
        inits: initialisations to compare (scratch and/or weights files).
        trials: trials per initialisation (paper: 10).
        out: output folder.
        log: where progress lines go.
        data: already loaded :class:`~semantic_genesis.finetune.data.TaskData` (skips reading).

    Returns:
        The summary written to ``results.json``.
    """
    from semantic_genesis.config import save_config
    from semantic_genesis.errors import ConfigError
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.trainer import RESULT_FILE, check_config, primary_metric, run_finetune
    from semantic_genesis.utils.atomic import write_json

    if trials < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    check_config(cfg)
    requested, out = cfg, Path(out)
    task = tasks.get(cfg.finetune.task)
    metric = primary_metric(task, cfg)
    for spec in inits:
        if spec.path is not None and not spec.path.is_file():
            from semantic_genesis.errors import CheckpointError, describe_path

            raise CheckpointError(f"{describe_path(spec.path)}: weights file of initialisation {spec.name!r} not found")
    cfg = align_scratch_architecture(cfg, inits, log)
    started = time.perf_counter()
    if data is None:
        log(f"reading {task.name} data from {data_root}")
        data = task.load(data_root, cfg)
    split = protocol_split(cfg, data)
    if cfg.finetune.equal_steps and cfg.finetune.label_fraction < 1.0:
        from semantic_genesis.config import replace

        full = protocol_split(replace(cfg, **{"finetune.label_fraction": 1.0}), data)
        cfg = equal_steps_config(cfg, len(full["train"]), len(split["train"]))
        log(f"finetune.equal_steps: {len(split['train'])} of {len(full['train'])} training samples, "
            f"{cfg.train.epochs} epochs")
    sizes = {k: int(len(v)) for k, v in split.items()}
    test_set = test_set_info(data, split["test"])
    train_patients = len({data.patients[int(i)] for i in split["train"]})
    log(f"{task.name}: {len(data)} samples from {len(set(data.patients))} patients; split {sizes}; "
        f"test set {test_set['patients']} patients, {test_set['positives']} positive samples")
    # every initialisation against the test patients, before anything is written (an overlap is refused here)
    checks = check_inits(cfg, task.name, data, split, inits)
    for check in checks:
        if check.message:
            log(check.message)
    overlaps = {check.init: check.summary() for check in checks}
    out.mkdir(parents=True, exist_ok=True)
    save_config(requested, out / "config.yaml")
    write_json(out / "split.json", {k: [int(i) for i in v] for k, v in split.items()})

    records: list[TrialRecord] = []
    for spec in inits:
        for k in range(trials):
            seed = trial_seed(cfg.seed, k)
            folder = trial_dir(out, spec.name, k)
            result_path = folder / RESULT_FILE
            if result_path.is_file():
                result = json.loads(result_path.read_text(encoding="utf-8"))
                log(f"  {spec.name} trial {k}: done before ({result['status']}), skipped")
            else:
                t0 = time.perf_counter()
                try:
                    run = run_finetune(task, data, split, cfg, spec, folder, seed, keep_checkpoint=False, save_weights=False)
                    result = run.to_dict()
                except TrainingError as exc:
                    result = _failed_result(spec, metric, seed, str(exc), round(time.perf_counter() - t0, 3))
                    write_json(result_path, result)
                value = result["test"].get(metric, math.nan)
                log(f"  {spec.name} trial {k}: {result['status']} {metric}={value:.4f} "
                    f"({result['epochs']} epochs, {result['seconds']:.1f}s)")
            records.append(TrialRecord(spec.name, k, seed, result["status"], dict(result["test"]), int(result["epochs"]),
                                       int(result["best_epoch"]), float(result["seconds"]), result.get("error")))
            summary = write_results(out, task, metric, [s.name for s in inits], records, data_info={
                "source": data.source, "samples": len(data), "patients": len(set(data.patients)), "split": sizes,
                "train_patients": train_patients, "epochs": cfg.train.epochs, "test": test_set, **{k: v for k, v in data.info.items()}},
                trials=trials, iou_definition=cfg.finetune.iou, equal_var=cfg.finetune.ttest == "student",
                setting={"mode": "linear_probe" if cfg.finetune.freeze_encoder else "finetune",
                         "label_fraction": float(cfg.finetune.label_fraction)},
                pretraining_overlap=overlaps)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "results.json", nan_to_none(summary))
    return summary


def run_sweep(
    cfg: "Config",
    data_root: str | Path,
    inits: list["InitSpec"],
    trials: int,
    out: str | Path,
    log: Callable[[str], None] = print,
    data=None,
    on_setting: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """The protocol at every ``(mode, label fraction)`` of ``finetune.modes`` x ``finetune.label_fractions``.

    Label efficiency is the point of self-supervised pretraining (Zhou et al., Models Genesis, MedIA
    2021, Fig. 5; Haghighi et al., Semantic Genesis, MICCAI 2020): the target metric of every
    initialisation is measured with a growing share of the labelled training patients. The subsets
    are nested and the same for every initialisation (:func:`~semantic_genesis.finetune.data.split_by_patient`);
    validation and test sets never change, so every setting is scored on the same test patients.

    A single setting writes its files into ``out`` itself (the layout of a plain ``evaluate``); a sweep
    runs each setting in ``OUT/<mode>/fraction_<f>/`` (a complete ``evaluate`` folder, resumable trial
    by trial) and indexes them in ``OUT/sweep.json``, rewritten after every setting, which
    ``semantic-genesis report results`` turns into label-efficiency curves and per-fraction tables.

    Args:
        on_setting: called after every finished setting of a sweep (``evaluate`` rewrites the merged
            tables there, so an interrupted sweep leaves readable partial tables).

    Returns:
        The summaries of the settings, in the order run.
    """
    from semantic_genesis.config import replace, save_config
    from semantic_genesis.finetune import tasks
    from semantic_genesis.utils.atomic import write_json

    settings = sweep_settings(cfg)
    task = tasks.get(cfg.finetune.task)
    if len(settings) == 1:
        mode, fraction = settings[0]
        single = replace(cfg, **{"finetune.label_fraction": fraction, **mode_changes(mode, task.kind)})
        return [run_protocol(single, data_root, inits, trials, out, log=log, data=data)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if data is None:
        log(f"reading {task.name} data from {data_root}")
        data = task.load(data_root, cfg)
    summaries, index = [], []
    for mode, fraction in settings:
        folder = setting_dir(out, mode, fraction)
        index.append({"mode": mode, "label_fraction": fraction, "folder": str(folder.relative_to(out))})
    write_json(out / SWEEP_FILE, {"task": task.name, "settings": index, "trials_per_init": trials,
                                  "inits": [s.name for s in inits]})
    for mode, fraction in settings:
        log(f"{task.name}: {MODE_LABELS[mode]}, label fraction {fraction:g}")
        setting_cfg = replace(cfg, **{"finetune.label_fraction": fraction, **mode_changes(mode, task.kind)})
        summaries.append(run_protocol(setting_cfg, data_root, inits, trials, setting_dir(out, mode, fraction),
                                      log=log, data=data))
        if on_setting is not None:
            on_setting()
    return summaries
