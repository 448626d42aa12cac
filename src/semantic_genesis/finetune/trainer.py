"""The fine-tuning loop: one run of one initialisation on one target task.

Recipe (official Models Genesis / Semantic Genesis fine-tuning, reference §4.3, with its documented
bugs fixed): Adam (``optim.*``, lr 1e-3 by default; the official Keras code silently used Keras'
default 1e-3), the loss of :mod:`~semantic_genesis.finetune.losses`, the learning-rate schedule of the
training engine (``optim.scheduler``; ``plateau`` = the official ReduceLROnPlateau), and **early stopping
on the validation metric** (AUC or IoU, ``train.patience`` epochs without improvement, at most
``train.epochs`` epochs). The weights of the best validation epoch are scored on the test set.

Why not the pretraining engine's loop: its validation averages per-batch losses, while fine-tuning
selects epochs by AUC over the whole validation set and by whole-volume sliding-window IoU, neither of
which decomposes into batches. The engine's parts are reused: device resolution, optimiser and
schedule (:mod:`semantic_genesis.training.optim`), atomic checkpoints and JSONL logging.

Resume: after every epoch ``<run>/checkpoints/last.pt`` holds the model, optimiser, schedule, progress
and the best weights so far; a rerun continues after the last finished epoch and, because the data
order and crop sampling of epoch ``e`` are functions of ``(seed, e)`` only, gives the same result as an
uninterrupted run. A finished run writes ``<run>/result.json`` and is not re-run.

Divergence: a non-finite training loss raises :class:`~semantic_genesis.errors.TrainingError`; the
trials protocol records such a trial as failed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from semantic_genesis.errors import ConfigError, DataError, TrainingError
from semantic_genesis.finetune import metrics as M
from semantic_genesis.utils.seeding import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.data import TaskData
    from semantic_genesis.finetune.models import InitSpec
    from semantic_genesis.finetune.tasks import Task

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


def primary_metric(task: "Task", cfg: "Config") -> str:
    """The metric that selects epochs and is compared across trials (``finetune.metric``, auto = the task's)."""
    name = cfg.finetune.metric
    if name == "auto":
        return task.metric
    if name not in task.metrics:
        raise ConfigError(f"finetune.metric: {name!r} is not a metric of task {task.name} ({', '.join(task.metrics)})")
    return name


def _pos_weight(cfg: "Config", data: "TaskData", train_idx: np.ndarray) -> float | None:
    ft = cfg.finetune
    if data.kind != "classification" or ft.balanced_sampling:
        return None
    text = str(ft.pos_weight).strip().lower()
    if text in ("none", "null", ""):
        return None
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


def _epoch_batches(cfg: "Config", data: "TaskData", train_idx: np.ndarray, seed: int, epoch: int):
    """Yield ``(images, targets)`` numpy batches of one training epoch (deterministic in ``(seed, epoch)``)."""
    from semantic_genesis.finetune.data import sample_volume_crops

    ft, bs = cfg.finetune, cfg.train.batch_size
    rng = np.random.default_rng(derive_seed(seed, "finetune-epoch", epoch))
    if data.whole_volume:
        images, targets = sample_volume_crops(
            data.images, data.targets, train_idx, ft.crop_size, ft.samples_per_volume, ft.foreground_fraction, rng
        )
        order = rng.permutation(len(images))
    else:
        images, targets = data.images, data.targets
        if data.kind == "classification" and ft.balanced_sampling:
            labels = np.asarray(targets)[train_idx]
            weights = np.where(labels == 1, 0.5 / max((labels == 1).sum(), 1), 0.5 / max((labels == 0).sum(), 1))
            order = train_idx[rng.choice(len(train_idx), size=len(train_idx), replace=True, p=weights / weights.sum())]
        else:
            order = train_idx[rng.permutation(len(train_idx))]
    n_batches = len(order) // bs if len(order) >= bs else 1  # drop the last partial batch (batch-stat norms)
    if cfg.train.steps_per_epoch > 0:
        n_batches = min(n_batches, cfg.train.steps_per_epoch)
    for b in range(n_batches):
        idx = order[b * bs : (b + 1) * bs]
        yield np.asarray(images[idx]), np.asarray(targets[idx])


def _to_target(targets: np.ndarray, kind: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(targets), device=device).float()
    return t[:, None] if kind == "classification" else t


@torch.no_grad()
def predict(model: torch.nn.Module, data: "TaskData", indices: np.ndarray, cfg: "Config", device: torch.device) -> list[torch.Tensor]:
    """Logits of the samples ``indices``: crops in batches, whole volumes by sliding windows (CPU tensors)."""
    model.eval()
    outputs: list[torch.Tensor] = []
    if data.whole_volume:
        from monai.inferers import sliding_window_inference

        for i in indices:
            x = torch.as_tensor(data.images[int(i)][None], device=device)
            logits = sliding_window_inference(
                x, tuple(cfg.finetune.crop_size), cfg.finetune.sw_batch_size, model,
                overlap=cfg.finetune.sw_overlap, mode="gaussian",
            )
            outputs.append(logits.float().cpu()[0])
        return outputs
    bs = max(cfg.train.batch_size, 2)
    for start in range(0, len(indices), bs):
        idx = indices[start : start + bs]
        x = torch.as_tensor(np.asarray(data.images[idx]), device=device)
        outputs.extend(model(x).float().cpu())
    return outputs


def score(task: "Task", data: "TaskData", indices: np.ndarray, logits: list[torch.Tensor], cfg: "Config") -> dict[str, float]:
    """Metrics of ``task`` on the predictions ``logits`` of samples ``indices``."""
    if task.kind == "classification":
        scores = torch.stack([lg.reshape(-1)[0] for lg in logits])
        labels = torch.as_tensor(np.asarray(data.targets)[indices])
        return {"auc": M.roc_auc(scores, labels)}
    probs = [torch.sigmoid(lg) for lg in logits]
    targets = [torch.as_tensor(np.asarray(data.targets[int(i)])) for i in indices]
    return M.segmentation_scores(probs, targets, cfg.finetune.iou, cfg.finetune.threshold)


def evaluate(task, data, indices, model, cfg, device) -> dict[str, float]:
    """Predict and score; an undefined metric (e.g. AUC with one class) becomes NaN with a reason key."""
    logits = predict(model, data, indices, cfg, device)
    try:
        return score(task, data, indices, logits, cfg)
    except DataError as exc:
        return {task.metric: math.nan, "error": str(exc)}


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
        save_weights: write ``weights/best.safetensors`` (the fine-tuned network).
        on_epoch: called with each epoch's log record (progress display).

    Returns:
        The :class:`RunResult` (also written to ``run_dir/result.json``). A run whose result file exists
        is not repeated: its result is returned.

    Raises:
        TrainingError: the loss became NaN or infinite (the run diverged).
        CheckpointError: the initialisation does not fit the task.
    """
    from semantic_genesis.finetune.losses import build_loss
    from semantic_genesis.finetune.models import build_model, encoder_modules, encoder_parameters
    from semantic_genesis.training.checkpoint import cpu_state_dict, load_checkpoint, save_checkpoint
    from semantic_genesis.training.distributed import resolve_device
    from semantic_genesis.training.logging import MetricsLogger
    from semantic_genesis.training.optim import LRSchedule, build_optimizer
    from semantic_genesis.utils.atomic import write_json
    from semantic_genesis.utils.seeding import seed_everything

    run_dir = Path(run_dir)
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        return RunResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
    check_config(cfg)
    metric = primary_metric(task, cfg)
    for name in ("train", "val", "test"):
        if len(split.get(name, ())) == 0:
            raise DataError(f"task {task.name}: the {name} split is empty ({data.source}); use more patients or change finetune.split")
    started = time.perf_counter()
    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    model, report = build_model(task, cfg, data.in_channels, init)
    model.to(device)
    if cfg.finetune.freeze_encoder:
        for p in encoder_parameters(model):
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim)
    train_idx = split["train"]
    steps_per_epoch = max(1, (len(train_idx) * (cfg.finetune.samples_per_volume if data.whole_volume else 1)) // cfg.train.batch_size)
    if cfg.train.steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, cfg.train.steps_per_epoch)
    schedule = LRSchedule(optimizer, cfg.optim, total_steps=steps_per_epoch * cfg.train.epochs)
    loss_fn = build_loss(cfg.finetune.loss, task.kind, _pos_weight(cfg, data, train_idx))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)

    ckpt_path = run_dir / "checkpoints" / "last.pt"
    progress = {"epoch": -1, "step": 0, "best": -math.inf, "best_epoch": -1, "bad_epochs": 0}
    best_state = cpu_state_dict(model)
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        progress = dict(state["progress"])
        best_state = state["best_model"]
    logger = MetricsLogger(run_dir, tensorboard=False)
    logger.truncate_after(progress["step"])

    epoch = progress["epoch"]
    try:
        while epoch + 1 < cfg.train.epochs and progress["bad_epochs"] < cfg.train.patience:
            epoch += 1
            model.train()
            if cfg.finetune.freeze_encoder:
                for module in encoder_modules(model):
                    module.eval()
            losses = []
            for images, targets in _epoch_batches(cfg, data, train_idx, seed, epoch):
                x = torch.as_tensor(images, device=device)
                y = _to_target(targets, task.kind, device)
                schedule.apply(progress["step"], epoch)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x)
                loss = loss_fn(logits, y)
                if not bool(torch.isfinite(loss)):
                    raise TrainingError(
                        f"fine-tuning {init.name} on {task.name} diverged: loss {loss.item()} at epoch {epoch}, "
                        f"step {progress['step']} (lr {optimizer.param_groups[0]['lr']:.3g})"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.train.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                progress["step"] += 1
                losses.append(loss.item())
            val = evaluate(task, data, split["val"], model, cfg, device)
            monitored = val.get(metric, math.nan)
            if not math.isfinite(monitored):
                monitored = -float(np.mean(losses))  # metric undefined on this validation set: use -loss
            schedule.observe(monitored, mode="max")
            if monitored > progress["best"]:
                progress.update(best=monitored, best_epoch=epoch, bad_epochs=0)
                best_state = cpu_state_dict(model)
            else:
                progress["bad_epochs"] += 1
            progress["epoch"] = epoch
            record = {"kind": "validation", "epoch": epoch, "step": progress["step"], "train_loss": float(np.mean(losses)),
                      **{f"val_{k}": v for k, v in val.items() if k != "error"}, "lr": optimizer.param_groups[0]["lr"]}
            logger.log(record)
            save_checkpoint(ckpt_path, {
                "model": cpu_state_dict(model), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "progress": progress, "best_model": best_state,
            })
            if on_epoch is not None:
                on_epoch(record)
    finally:
        logger.close()

    model.load_state_dict(best_state)
    test = evaluate(task, data, split["test"], model, cfg, device)
    if "error" in test:
        raise DataError(f"task {task.name}: cannot score the test split: {test['error']}")
    result = RunResult(
        status="ok", metric=metric, test={k: float(v) for k, v in test.items()}, best_val=float(progress["best"]),
        best_epoch=int(progress["best_epoch"]), epochs=int(progress["epoch"]) + 1,
        seconds=round(time.perf_counter() - started, 3), seed=int(seed), init=report.summary(),
    )
    if save_weights:
        from semantic_genesis.training.checkpoint import write_weights

        write_weights(model, run_dir / "weights" / "best.safetensors", {
            "method": "finetune", "task": task.name, "init": init.name, "init_path": report.path,
            "crop_size": list(cfg.finetune.crop_size), "test": result.test,
        })
    write_json(result_path, result.to_dict())
    if not keep_checkpoint and ckpt_path.is_file():
        ckpt_path.unlink()
    return result
