"""Fine-tuning one initialisation on one target task: :func:`run_finetune`, on the training engine.

Recipe (official Models Genesis / Semantic Genesis fine-tuning, Zhou et al., MedIA 2021 and Haghighi
et al., MICCAI 2020; the official Keras target-task notebooks, with their documented bugs fixed): Adam
(``optim.*``, lr 1e-3 by default; the official Keras code silently used Keras' default 1e-3), the loss
of :mod:`~semantic_genesis.finetune.losses`, the learning-rate schedule of the training engine
(``optim.scheduler``; ``plateau`` = the official ReduceLROnPlateau), and **early stopping on the
validation metric** (AUC or IoU over the whole validation set, ``train.patience`` epochs without an
improvement by more than ``train.min_delta``, at most ``train.epochs`` epochs). The weights of the best
validation epoch are scored on the test set.

The training itself is the engine's (:func:`semantic_genesis.training.trainer.train`) with the
:class:`~semantic_genesis.methods.finetune.Finetune` method; this module builds the method's pieces
from the task: the network (:func:`semantic_genesis.finetune.models.build_model`, seeded with the
run's seed), the loss, the datasets and batch order (:mod:`semantic_genesis.finetune.data`) and the
scoring (:func:`scoring_for`). So fine-tuning runs under ``torchrun`` (DDP), with ``train.amp``, stops
on a NaN loss, and resumes mid-epoch: ``<run>/checkpoints/last.pt`` is written every
``train.checkpoint_every`` steps and after every epoch, and a rerun continues from it with the same
result as an uninterrupted run, because the data order and crop sampling of epoch ``e`` are
functions of ``(seed, e)`` only. A finished run writes ``<run>/result.json`` and is not re-run.

Run folder: ``config.yaml``, ``metrics.jsonl`` (one validation record per epoch), ``checkpoints/last.pt``,
``weights/best.safetensors`` (the best epoch's network, with its test metrics in the metadata),
``weights/final.safetensors`` (the last epoch's), ``result.json``.

Divergence: a non-finite training loss raises :class:`~semantic_genesis.errors.TrainingError`; the
trials protocol records such a trial as failed.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from semantic_genesis.errors import ConfigError, DataError, TrainingError
from semantic_genesis import metrics as M

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData
    from semantic_genesis.finetune.models import InitSpec
    from semantic_genesis.finetune.tasks import Task
    from semantic_genesis.methods.finetune import FinetuneSetup, Scoring

RESULT_FILE = "result.json"


@dataclass
class RunResult:
    """Outcome of one fine-tuning run.

    Attributes:
        status: ``"ok"`` or ``"failed"`` (diverged).
        metric: name of the task's primary metric.
        test: test-set metrics of the best epoch (e.g. ``{"auc": 0.93}`` or ``{"iou": .., "dice": ..}``);
            NaN values when failed.
        best_val: best validation value of the primary metric.
        best_epoch: 0-based epoch of the best validation value.
        epochs: epochs run.
        seconds: wall-clock time of the run (this process only).
        seed: the run's seed.
        init: the initialisation report summary.
        error: the failure message, if any.
        pretraining_overlap: :meth:`~semantic_genesis.finetune.leakage.OverlapCheck.summary` of the
            initialisation against the test patients (status ``scratch``, ``clean``, ``unchecked`` or
            ``allowed`` with the patients).
    """

    status: str
    metric: str
    test: dict[str, float]
    best_val: float = math.nan
    best_epoch: int = -1
    epochs: int = 0
    seconds: float = 0.0
    seed: int = 0
    init: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pretraining_overlap: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return float(self.test.get(self.metric, math.nan))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def check_config(cfg: "Config") -> None:
    """Validate the fine-tuning settings that the dataclass types cannot express."""
    ft = cfg.finetune
    bad = [s for s in ft.crop_size if s <= 0 or s % 8]
    if bad:
        raise ConfigError(f"finetune.crop_size {tuple(ft.crop_size)}: every size must be a positive multiple of 8 (U-Net with 3 poolings)")
    if cfg.train.batch_size < 2:
        raise ConfigError(f"train.batch_size must be >= 2 for batch-statistics normalisation, got {cfg.train.batch_size}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    if not 0.0 <= ft.foreground_fraction <= 1.0:
        raise ConfigError(f"finetune.foreground_fraction must be in [0, 1], got {ft.foreground_fraction}")
    if not (math.isfinite(ft.encoder_lr_scale) and ft.encoder_lr_scale > 0):
        raise ConfigError(f"finetune.encoder_lr_scale must be a number > 0, got {ft.encoder_lr_scale}")
    if not 0 <= ft.freeze_encoder_epochs < cfg.train.epochs:
        raise ConfigError(f"finetune.freeze_encoder_epochs must be in [0, train.epochs) = [0, {cfg.train.epochs}), "
                          f"got {ft.freeze_encoder_epochs}")
    if ft.freeze_encoder and (ft.freeze_encoder_epochs or ft.encoder_lr_scale != 1.0):
        raise ConfigError("finetune.freeze_encoder=true (the linear probe) freezes the encoder for the whole run; "
                          "finetune.freeze_encoder_epochs and finetune.encoder_lr_scale apply to fine-tuning only")


@dataclass(frozen=True)
class EncoderSchedule:
    """How the pretrained encoder of one fine-tuning run is trained (:func:`encoder_schedule`).

    Attributes:
        lr_scale: the encoder's learning rate is ``optim.lr * lr_scale``; the rest of the network gets ``optim.lr``.
        frozen_epochs: the encoder is not updated in epochs ``0 .. frozen_epochs - 1`` (its batch norms in
            eval mode), then trained.
    """

    lr_scale: float = 1.0
    frozen_epochs: int = 0


def encoder_schedule(cfg: "Config", init: "InitSpec") -> EncoderSchedule:
    """``finetune.encoder_lr_scale`` and ``finetune.freeze_encoder_epochs`` as they apply to ``init``.

    They protect a *pretrained* encoder from the first, large updates of a randomly initialised head
    (discriminative learning rates; freezing, then unfreezing, as in ULMFiT, Howard & Ruder, ACL 2018).
    A scratch encoder is random, so it has nothing to protect: scratch runs ignore both settings and stay
    the same baseline as without them. A linear probe (``finetune.freeze_encoder``) freezes the whole run.
    """
    ft = cfg.finetune
    if init.is_scratch or ft.freeze_encoder:
        return EncoderSchedule()
    return EncoderSchedule(float(ft.encoder_lr_scale), int(ft.freeze_encoder_epochs))


def primary_metric(task: "Task", cfg: "Config") -> str:
    """The metric that selects epochs and is compared across trials (``finetune.metric``, auto = the task's)."""
    name = cfg.finetune.metric
    if name == "auto":
        return task.metric
    if name not in task.metrics:
        raise ConfigError(f"finetune.metric: {name!r} is not a metric of task {task.name} ({', '.join(task.metrics)})")
    return name


def _pos_weight(cfg: "Config", data: "TaskData", train_idx: np.ndarray) -> float | list[float] | None:
    """``finetune.pos_weight`` of the BCE loss: one number, or with ``auto`` the negatives / positives of
    the training split (per label for multi-label targets; 1 for a label without positives)."""
    ft = cfg.finetune
    if data.kind != "classification" or ft.balanced_sampling:
        return None
    text = str(ft.pos_weight).strip().lower()
    if text in ("none", "null", ""):
        return None
    if text == "auto" and np.ndim(data.targets[0]) > 0:
        labels = np.asarray(data.targets)[train_idx]
        pos = (labels == 1).sum(axis=0)
        return [float((len(labels) - p) / p) if p else 1.0 for p in pos.tolist()]
    if text == "auto":
        labels = np.asarray(data.targets)[train_idx]
        pos = int((labels == 1).sum())
        return float((len(labels) - pos) / pos) if pos else None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"finetune.pos_weight: expected auto, none or a number, got {ft.pos_weight!r}") from None
    if not value > 0:
        raise ConfigError(f"finetune.pos_weight must be > 0, got {value}")
    return value


def scoring_for(task: "Task", cfg: "Config", whole_volume: bool) -> "Scoring":
    """The metrics of ``task``: ROC AUC of the logits (classification; multi-label: the AUC of every label
    as ``auc/<label>``, NaN where the split has one class only, and their mean ``auc``), or IoU and Dice of the sigmoid
    at ``finetune.threshold`` as ``finetune.iou`` defines them (segmentation; pooled over all test
    voxels by default; whole scans by sliding windows of ``finetune.crop_size``); a task whose metrics
    include ``iou/per_image`` / ``dice/per_image`` (PXS) also gets the mean of each image's IoU and Dice.
    Slice-based tasks (``ncc2d``, ``ncs2d``) predict every crop slice by slice and score the aggregated
    candidate / the stacked 3D mask (:class:`~semantic_genesis.methods.finetune.SliceInference`)."""
    from semantic_genesis.methods.finetune import Scoring, SlidingWindow

    ft = cfg.finetune
    slices = task.slice_inference(cfg)
    if task.kind == "classification" and task.multilabel:
        names = task.label_names

        def reduce_labels(records: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
            scores = torch.stack([score for score, _ in records])
            labels = torch.stack([label for _, label in records])
            return M.per_label_auc(scores, labels, names)

        return Scoring(primary_metric(task, cfg), lambda logits, label: (logits.reshape(-1), label.reshape(-1).float()),
                       reduce_labels)
    if task.kind == "classification":
        def reduce_auc(records: list[tuple[torch.Tensor, int]]) -> dict[str, float]:
            scores = torch.stack([score for score, _ in records])
            labels = torch.as_tensor([label for _, label in records])
            return {"auc": M.roc_auc(scores, labels)}

        return Scoring(primary_metric(task, cfg), lambda logits, label: (logits.reshape(-1)[0], int(label)), reduce_auc,
                       slices=slices)

    threshold, definition = ft.threshold, ft.iou

    def overlap(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return M.overlap_counts(torch.sigmoid(logits.float()), mask, threshold)

    per_image = [m for m in task.metrics if m.endswith("/per_image")]

    def reduce_overlap(records: list[torch.Tensor]) -> dict[str, float]:
        scores = M.scores_from_counts(records, definition)
        if per_image:  # 2D tasks report the mean per image next to finetune.iou's definition
            scores.update({f"{k}/per_image": v for k, v in M.scores_from_counts(records, "per_case").items()})
        return scores

    window = SlidingWindow(tuple(ft.crop_size), ft.sw_batch_size, ft.sw_overlap) if whole_volume else None
    return Scoring(primary_metric(task, cfg), overlap, reduce_overlap, window, slices=slices, segmentation=True)


def _score(task: "Task", data: "TaskData", indices: np.ndarray, model: torch.nn.Module, cfg: "Config",
           device: torch.device, amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from semantic_genesis.finetune.data import TaskSamples
    from semantic_genesis.methods.finetune import score_batches
    from semantic_genesis.training.data import ValidationBatches, collate

    samples = TaskSamples(data, indices)
    batch_size = 1 if data.whole_volume else max(cfg.train.batch_size, 2)
    loader = DataLoader(samples, batch_sampler=ValidationBatches(len(samples), batch_size), collate_fn=collate)
    model.eval()
    with torch.no_grad():
        return score_batches(model, ({k: v.to(device) for k, v in b.items()} for b in loader),
                             scoring_for(task, cfg, data.whole_volume), amp_dtype=amp_dtype)


def evaluate(task: "Task", data: "TaskData", indices: np.ndarray, model: torch.nn.Module, cfg: "Config",
             device: torch.device) -> dict[str, Any]:
    """Metrics of ``model`` on the samples ``indices`` (crops in batches of ``train.batch_size``, whole
    scans by sliding windows), as validation computes them; an undefined metric (e.g. AUC with one
    class) becomes NaN with the reason under ``"error"``."""
    return _score(task, data, indices, model, cfg, device)


def _setup(task: "Task", data: "TaskData", split: dict[str, np.ndarray], cfg: "Config", init: "InitSpec",
           seed: int) -> tuple["FinetuneSetup", Any]:
    """The fine-tuning method's pieces for ``task`` (the network seeded with ``seed``) and the init report."""
    from semantic_genesis.finetune.data import AxialSlices, FinetuneBatches, TaskSamples, VolumeCrops
    from semantic_genesis.finetune.leakage import record_of
    from semantic_genesis.finetune.losses import build_loss
    from semantic_genesis.finetune.models import build_model, encoder_modules, encoder_parameters
    from semantic_genesis.methods.finetune import FinetuneSetup
    from semantic_genesis.utils.seeding import seed_everything

    ft, train_idx = cfg.finetune, split["train"]
    seed_everything(seed)
    model, report = build_model(task, cfg, data.in_channels, init)
    slices = task.slice_inference(cfg)
    if not data.whole_volume:
        shape = tuple(data.images[int(train_idx[0])].shape[1:])
        what = "finetune.image_size" if len(shape) == 2 else "finetune.crop_size"
        if slices is not None:  # a 2D network on the (X, Y) axial slices of the crops
            shape, what = shape[:2], "finetune.crop_size (its axial slices X, Y)"
        divisor = int(getattr(model, "min_divisor", 1))
        if any(s % divisor for s in shape):
            raise ConfigError(f"{what} {list(shape)}: every size must be a multiple of {divisor} for the "
                              f"{report.backbone} backbone")
    encoder = tuple(encoder_modules(model))
    encoder_params = tuple(encoder_parameters(model))
    encoder_ids = {id(p) for p in encoder_params}
    if ft.freeze_encoder:
        for param in encoder_params:
            param.requires_grad_(False)
    schedule = encoder_schedule(cfg, init)
    encoder_names = tuple(name for name, p in model.named_parameters() if id(p) in encoder_ids)
    if data.whole_volume:
        train_set = VolumeCrops(data, train_idx, ft.crop_size)
    elif slices is not None:
        train_set = AxialSlices(data, train_idx)
    else:
        train_set = TaskSamples(data, train_idx)

    def batches(run_seed: int, rank: int, world_size: int) -> FinetuneBatches:
        return FinetuneBatches(data, train_idx, cfg.train.batch_size, run_seed, balanced=ft.balanced_sampling,
                               per_volume=ft.samples_per_volume, foreground_fraction=ft.foreground_fraction,
                               slices=None if slices is None else slices.slices, rank=rank, world_size=world_size)

    recalibrated = 0
    if ft.recalibrate_norm and (ft.freeze_encoder or schedule.frozen_epochs > 0):
        from semantic_genesis.finetune.models import recalibrate_norms
        from semantic_genesis.training.data import collate
        from semantic_genesis.training.distributed import resolve_device

        # every key of epoch 0 on every rank (the same statistics everywhere), on the run's device
        device = resolve_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))))
        images = (collate([train_set[key] for key in keys])["image"].to(device) for keys in batches(seed, 0, 1))
        recalibrated = recalibrate_norms(model.to(device), encoder, images)
        model.cpu()
    setup = FinetuneSetup(
        model=model, loss=build_loss(ft.loss, task.kind, _pos_weight(cfg, data, train_idx)), train_set=train_set,
        val_set=TaskSamples(data, split["val"]), batches=batches, scoring=scoring_for(task, cfg, data.whole_volume),
        frozen_modules=encoder if ft.freeze_encoder else (),
        encoder_modules=encoder, encoder_parameters=encoder_names,
        encoder_lr_scale=schedule.lr_scale, freeze_encoder_epochs=schedule.frozen_epochs,
        metadata={"task": task.name, "init": init.name, "init_path": report.path, "crop_size": list(ft.crop_size),
                  "encoder_lr_scale": schedule.lr_scale, "freeze_encoder_epochs": schedule.frozen_epochs,
                  "recalibrated_norms": recalibrated,
                  **({"slices": list(slices.slices), "slice_aggregate": slices.aggregate} if slices else {})},
        init_patients=None if init.is_scratch else record_of(report.metadata),
    )
    return setup, report


def run_finetune(
    task: "Task",
    data: "TaskData",
    split: dict[str, np.ndarray],
    cfg: "Config",
    init: "InitSpec",
    run_dir: str | Path,
    seed: int,
    keep_checkpoint: bool = True,
    save_weights: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Fine-tune one initialisation on ``task`` and score the best epoch on the test split.

    Args:
        task, data, split: the task, its samples and the ``train``/``val``/``test`` sample indices.
        cfg: root config (``finetune``, ``train``, ``optim``, ``model`` sections).
        init: scratch or weights file.
        run_dir: run folder (``checkpoints/last.pt``, ``metrics.jsonl``, ``result.json``, weights).
        seed: seeds the random initialisation of new layers, the data order and the crops.
        keep_checkpoint: keep ``checkpoints/last.pt`` after a finished run (the protocol deletes it).
        save_weights: keep ``weights/`` (the fine-tuned network; the protocol does not).
        on_epoch: called with each epoch's validation record (progress display), after the epoch's
            checkpoint was written.

    Returns:
        The :class:`RunResult` (also written to ``run_dir/result.json``). A run whose result file exists
        is not repeated: its result is returned.

    Raises:
        TrainingError: the loss became NaN or infinite (the run diverged).
        CheckpointError: the initialisation does not fit the task.
        DataError: the initialisation was pretrained on test patients of the task (before any training;
            ``finetune.allow_pretraining_overlap=true`` accepts it, recorded in the result).
    """
    from semantic_genesis.config import replace
    from semantic_genesis.finetune.leakage import check_pretraining_overlap, split_test_patients
    from semantic_genesis.methods.finetune import Finetune
    from semantic_genesis.models.weights import load_weights
    from semantic_genesis.training.checkpoint import write_weights
    from semantic_genesis.training.trainer import AMP_DTYPES, train
    from semantic_genesis.utils.atomic import write_json

    run_dir = Path(run_dir)
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        return RunResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
    check_config(cfg)
    metric = primary_metric(task, cfg)
    for name in ("train", "val", "test"):
        if len(split.get(name, ())) == 0:
            raise DataError(f"task {task.name}: the {name} split is empty ({data.source}); use more patients or change finetune.split")
    overlap = check_pretraining_overlap(init, split_test_patients(data, split), task.name,
                                        cfg.finetune.allow_pretraining_overlap)
    started = time.perf_counter()
    setup, report = _setup(task, data, split, cfg, init, seed)
    # the run's own config: this init, this seed (protocol-level keys do not block resuming a trial)
    if init.path is not None:
        init_text = f"{init.name}={init.path}"
    else:
        init_text = "scratch" if init.name == "scratch" else f"{init.name}=scratch"
    run_cfg = replace(cfg, out=str(run_dir), seed=int(seed),
                      **{"finetune.init": init_text, "finetune.inits": [init_text], "finetune.trials": 1})
    try:
        trained = train(run_cfg, Finetune(run_cfg, setup), log="epochs", on_epoch=on_epoch)
    except TrainingError as exc:
        raise TrainingError(f"fine-tuning {init.name} on {task.name} diverged: {exc}") from None

    if trained.best_weights is None:
        raise TrainingError(
            f"fine-tuning {init.name} on {task.name} in {run_dir}: {trained.best_note}, so there is no best epoch "
            "to score on the test split; let at least one epoch finish (train.max_steps, train.steps_per_epoch)"
        )
    model = trained.model
    best_state, metadata = load_weights(trained.best_weights)
    model.load_state_dict(best_state)
    device = next(model.parameters()).device
    test = _score(task, data, split["test"], model, cfg, device, AMP_DTYPES.get(cfg.train.amp))
    if "error" in test:
        raise DataError(f"task {task.name}: cannot score the test split: {test['error']}")
    result = RunResult(
        status="ok", metric=metric, test={k: float(v) for k, v in test.items()},
        best_val=math.nan if trained.best is None else float(trained.best),
        best_epoch=int(trained.best_epoch), epochs=int(trained.epoch),
        seconds=round(time.perf_counter() - started, 3), seed=int(seed), init=report.summary(),
        pretraining_overlap=overlap.summary(),
    )
    if trained.is_main:
        weights = run_dir / "weights"
        if save_weights:
            write_weights(model, weights / "best.safetensors", {**metadata, "test": result.test})
        else:
            for path in (trained.best_weights, trained.final_weights):  # both exist (checked above)
                path.unlink(missing_ok=True)
            if weights.is_dir() and not any(weights.iterdir()):
                weights.rmdir()
        write_json(result_path, result.to_dict())
        if not keep_checkpoint:
            (run_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)
    return result
