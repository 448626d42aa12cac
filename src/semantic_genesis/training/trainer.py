"""The one training loop, shared by every pretraining method and by fine-tuning: :func:`train`.

One call trains ``methods.build(cfg)`` (or a given :class:`~semantic_genesis.methods.base.Method`)
into the run folder ``cfg.out``:

* one process, or many under ``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on CUDA;
  each rank reads its share of every global batch; only rank 0 writes files);
* optional mixed precision (``train.amp``: bf16, or fp16 with a gradient scaler) and ``torch.compile``;
* data loaded by ``train.num_workers`` worker processes from the stores; the method's transforms run
  on whole batches on the training device, or (``train.transforms_on=workers``, for methods with a
  ``prepare_batch``) in the loader workers on the CPU with the same generators, which keeps the GPU
  for the network and scales with the workers; ``auto`` (the default) picks the workers on a CUDA
  device when there are loader workers and the method can, else the device
  (:func:`resolve_transforms_on`);
* optimiser and lr schedule from ``optim`` (:mod:`~semantic_genesis.training.optim`);
* validation after each epoch: the method's ``evaluate`` on all predictions (AUC, whole-scan IoU) or
  the mean of its ``validation_step`` over the fixed transformed validation set; the best weights (by
  the method's ``monitor``, improved by more than ``train.min_delta``) go to
  ``weights/best.safetensors``, which exists only when a validation gave a best value (a network
  that was never validated is not called "best": :attr:`TrainResult.best_note` says why); early stopping after ``train.patience`` epochs without improvement
  (the official Models Genesis trainer, ``Genesis_Chest_CT.py``, used 50);
* checkpoints (``checkpoints/last.pt``, with the method's own ``state_dict``) every
  ``train.checkpoint_every`` steps, after each epoch and at the end; rerunning the same command
  resumes exactly where the checkpoint stopped, mid-epoch too: the data order is a function of
  ``(seed, epoch)``, the transform generator of ``(seed, step)``, and the global RNG is reseeded from
  ``(seed, step)`` before each step;
* ``metrics.jsonl`` (and TensorBoard), a tqdm bar with the loss and cubes/s;
* a guard that stops on a NaN/inf loss before the optimiser applies it, leaving the last checkpoint
  untouched, and raises :class:`~semantic_genesis.errors.TrainingError` naming it;
* a check of every parameter **and buffer** before each checkpoint and weights write: a non-finite
  tensor (also one the loss does not see, e.g. a batch-norm ``running_var``) stops the run with a
  :class:`~semantic_genesis.errors.TrainingError` naming the tensor and the step; the last finite
  checkpoint is kept and no weights are written from that state;
* SIGINT (Ctrl-C) and SIGTERM: the step in progress finishes, a checkpoint is written at its
  boundary and :class:`~semantic_genesis.errors.RunInterrupted` is raised (the CLI exits 130 / 143);
  rerunning resumes exactly (:mod:`~semantic_genesis.training.signals`).

The order in which the method's hooks are called is written down in :mod:`semantic_genesis.methods.base`.

Run folder::

    config.yaml  metrics.jsonl  checkpoints/last.pt  weights/final.safetensors  [weights/best.safetensors]
    [tensorboard/]
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from semantic_genesis import config as config_mod
from semantic_genesis.config import Config
from semantic_genesis.errors import CheckpointError, ConfigError, DataError, RunInterrupted, TrainingError
from semantic_genesis.methods.base import PREPARED, Method, StepContext
from semantic_genesis.provenance import KEY as PATIENTS_KEY
from semantic_genesis.provenance import training_record
from semantic_genesis.training import checkpoint as ckpt
from semantic_genesis.training import distributed as dist_mod
from semantic_genesis.training.data import (
    EpochBatches,
    EpochSampler,
    NumberedDataset,
    NumberedValidationBatches,
    PreparingCollate,
    StepBatches,
    ValidationBatches,
    collate,
    transform_seed,
)
from semantic_genesis.training.logging import MetricsLogger, progress_bar
from semantic_genesis.training.optim import LRSchedule, build_optimizer
from semantic_genesis.training.signals import StopSignals
from semantic_genesis.utils.allocator import keep_large_blocks_in_heap
from semantic_genesis.utils.seeding import derive_seed, seed_everything

# Config keys that may change between a run and its resumption (they do not change the result of the
# steps already taken). Anything else differing from the saved config.yaml is refused.
RESUMABLE_KEYS = (
    "data",
    "out",
    "train.epochs",
    "train.max_steps",
    "train.patience",
    "train.checkpoint_every",
    "train.log_every",
    "train.num_workers",
    "train.progress",
    "discovery.progress",  # -q turns both bars off; a rerun without -q still resumes
    "train.tensorboard",
    "train.resume",
    "train.device",
    "train.compile",
    "train.nan_guard",
    "train.transforms_on",  # the same generators draw the same transforms in the step or in the workers
    "optim.lr",
    "optim.min_lr",
)

_LOG = logging.getLogger(__name__)  # the resolved settings, shown with -v

TRANSFORMS_ON = ("auto", "device", "workers")

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# What train(log=...) writes: "steps" = every record kind, the tqdm bar and TensorBoard; "epochs" = one
# validation record per epoch in metrics.jsonl and nothing else (a fine-tuning trial's log).
LOG_MODES = ("steps", "epochs")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        run_dir: the run folder.
        step: optimiser steps done in total.
        epoch: epochs completed.
        stop_reason: ``"max_steps"``, ``"epochs"`` or ``"early_stop"``.
        best: best monitored validation value (``None`` without validation).
        model: the trained, unwrapped network (on the training device).
        final_weights / best_weights: paths of the weights files (rank 0 writes them; they hold the
            method's ``export_module``). ``best_weights`` is ``None`` when no validation gave a best
            value (no validation data, validation never ran, or never a finite value): a network that
            was never validated is not called "best"; :attr:`best_note` says why.
        resumed_from: the step this call resumed from (``None``: a fresh run).
        best_epoch: 0-based epoch of the best monitored value (-1 without one).
        is_main: whether this process is rank 0 (the one that writes files).
        best_note: why there is no best (``""`` when there is one), e.g. ``"no validation data:
            best is not defined"``.
    """

    run_dir: Path
    step: int
    epoch: int
    stop_reason: str
    best: float | None
    model: nn.Module
    final_weights: Path
    best_weights: Path | None
    resumed_from: int | None = None
    best_epoch: int = -1
    is_main: bool = True
    best_note: str = ""


@dataclass
class _Progress:
    epoch: int = 0
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimiser steps done in total
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    stop_reason: str = ""
    window: dict[str, float] = field(default_factory=dict)  # loss/metric sums of the logging window
    epoch_sums: dict[str, float] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and not dotted.endswith(("overrides", "options")):
            keys.extend(_diff_configs(a, b, dotted + "."))
        elif a != b:
            keys.append(dotted)
    return keys


def _check_resume(cfg: Config, run_dir: Path) -> Path | None:
    """The checkpoint to resume from (``None``: fresh run); refuses incompatible configs."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return None
    if not cfg.train.resume:
        raise ConfigError(
            f"{run_dir} already holds a training run ({last}); use another out= folder or train.resume=true to continue it"
        )
    saved = run_dir / "config.yaml"
    if saved.is_file():
        old = config_mod.to_dict(config_mod.load_config(saved))
        changed = [k for k in _diff_configs(old, config_mod.to_dict(cfg)) if k not in RESUMABLE_KEYS]
        if changed:
            raise ConfigError(
                f"{run_dir}: cannot resume, the config differs from the run's {saved} in {', '.join(changed)}; "
                "use another out= folder (only these may change on resume: " + ", ".join(RESUMABLE_KEYS) + ")"
            )
    return last


def _make_generator(seed: int) -> torch.Generator:
    # a CPU generator: transforms draw their (small) parameters on the CPU and apply them on the device
    return torch.Generator().manual_seed(seed)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    image = out.get("image")
    if channels_last and isinstance(image, torch.Tensor) and image.ndim == 5:
        out["image"] = image.contiguous(memory_format=torch.channels_last_3d)
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _frozen(method: Method, model: nn.Module, epoch: int) -> list[nn.Parameter]:
    names = set(method.frozen_parameters(model, epoch))
    params = dict(model.named_parameters())
    unknown = sorted(names - set(params))
    if unknown:
        raise ConfigError(f"method {method.name!r} froze unknown parameters: {', '.join(unknown[:5])}")
    return [params[n] for n in sorted(names)]


def resolve_transforms_on(setting: str, device: torch.device | str, method: Method, num_workers: int) -> str:
    """Where the method's random transforms run: ``"device"`` or ``"workers"`` (``train.transforms_on``).

    ``"auto"`` resolves to ``"workers"`` when the training device is CUDA, the method can prepare its
    batches in the loader workers (it defines :attr:`Method.prepare_batch`) and ``num_workers > 0``,
    else to ``"device"``. The reason: the transforms draw their parameters from a CPU
    ``torch.Generator``, so on a GPU the step is host-bound (on an H200, ``models_genesis_3d`` made
    133 cubes/s with the transforms in the step and 214 cubes/s with them in 8 loader workers); on a
    CPU device the step's own threads already do the work, and runs stay exactly as they were.

    Args:
        setting: ``"auto"``, ``"device"`` or ``"workers"``.
        device: the training device (only its type matters).
        method: the method to train.
        num_workers: ``train.num_workers``.

    Raises:
        ConfigError: an unknown setting, or ``"workers"`` for a method without ``prepare_batch``.
    """
    if setting not in TRANSFORMS_ON:
        raise ConfigError(f"train.transforms_on must be one of {', '.join(TRANSFORMS_ON)}, got {setting!r}")
    can_prepare = type(method).can_prepare_in_workers()
    if setting == "workers" and not can_prepare:
        raise ConfigError(
            f"train.transforms_on=workers: method {method.name!r} transforms inside its step "
            "(it has no prepare_batch); use train.transforms_on=device"
        )
    if setting != "auto":
        return setting
    device_type = torch.device(device).type
    return "workers" if device_type == "cuda" and can_prepare and num_workers > 0 else "device"


class _Trainer:
    """State of one :func:`train` call (split into methods for readability)."""

    def __init__(self, cfg: Config, method: Method | None, log: str = "steps",
                 on_epoch: Callable[[dict[str, Any]], None] | None = None):
        if log not in LOG_MODES:
            raise ConfigError(f"train(log=...): {log!r} is not one of {', '.join(LOG_MODES)}")
        if cfg.out is None:
            raise ConfigError("pretrain needs an output folder: out=RUN_DIR")
        self.run_dir = Path(cfg.out)
        self.info = dist_mod.setup(cfg.train.device)
        self.device = self.info.device
        self.method = method if method is not None else _build_method(cfg)
        where = resolve_transforms_on(cfg.train.transforms_on, self.device, self.method, cfg.train.num_workers)
        if self.info.is_main:
            _LOG.info("train.transforms_on=%s (resolved to %s: device %s, method %s, %d loader workers)",
                     cfg.train.transforms_on, where, self.device.type, self.method.name, cfg.train.num_workers)
        # from here on the run sees the resolved choice: config.yaml, the weights' metadata and the
        # start event record it, so the run can be repeated exactly
        self.cfg = cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, transforms_on=where))
        if self.device.type == "cpu" or where == "workers":
            # transforms of whole batches on the CPU (here or in the forked loader workers): reuse the
            # freed batch buffers instead of faulting in fresh pages for every batch (utils/allocator.py)
            keep_large_blocks_in_heap()
        tc = cfg.train
        if tc.batch_size <= 0:
            raise ConfigError(f"train.batch_size must be > 0, got {tc.batch_size}")
        if tc.amp not in AMP_DTYPES:
            raise ConfigError(f"train.amp: {tc.amp!r} is not one of {', '.join(AMP_DTYPES)}")
        self.amp_dtype = AMP_DTYPES[tc.amp]
        self.resume_path = _check_resume(cfg, self.run_dir)
        self.log_steps = log == "steps"
        self.on_epoch = on_epoch
        self.signals = StopSignals()  # replaced by the active one while run() trains
        self.logger = MetricsLogger(self.run_dir, enabled=self.info.is_main, tensorboard=tc.tensorboard and self.log_steps)

    # -- set-up ---------------------------------------------------------------------------------------
    def build(self) -> None:
        cfg, tc, info = self.cfg, self.cfg.train, self.info
        seed_everything(derive_seed(cfg.seed, "init"))
        self.model = self.method.build_model().to(self.device)
        if tc.channels_last:
            # channels-last 3D convolutions: ~2x faster for the small U-Nets of the CPU configs
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.train_set, self.val_set = self.method.build_datasets()
        self.patients = training_record(self.method.name, self.train_set, self.val_set, self.method.initial_patients)
        if len(self.train_set) == 0:
            raise DataError(f"method {self.method.name!r}: the training set is empty (data={cfg.data})")
        batches = self.method.batch_sampler(self.train_set, cfg.seed, info.rank, info.world_size)
        if batches is None:
            per_step = tc.batch_size * info.world_size
            self.steps_per_epoch = tc.steps_per_epoch or max(1, len(self.train_set) // per_step)
            batches = EpochBatches(EpochSampler(len(self.train_set), tc.batch_size, self.steps_per_epoch, seed=cfg.seed,
                                                shuffle=True, rank=info.rank, world_size=info.world_size))
        else:
            if batches.num_batches <= 0:
                raise DataError(
                    f"method {self.method.name!r}: its batch sampler gives {batches.num_batches} batches per epoch")
            self.steps_per_epoch = min(batches.num_batches, tc.steps_per_epoch or batches.num_batches)
        self.total_steps = tc.epochs * self.steps_per_epoch
        if tc.max_steps > 0:
            self.total_steps = min(self.total_steps, tc.max_steps)
        groups = self.method.param_groups(self.model)
        self.optimizer = build_optimizer(groups if groups is not None else self.model.parameters(), cfg.optim)
        self.schedule = LRSchedule(self.optimizer, cfg.optim, self.total_steps, self.method.monitor_mode, tc.min_delta)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.progress = _Progress()
        self.resumed_from: int | None = None
        if self.resume_path is not None:
            self._load(self.resume_path)
        if info.is_main:
            config_mod.save_config(cfg, self.run_dir / "config.yaml")
            if self.resume_path is not None:
                self.logger.truncate_after(self.progress.step, self.progress.epoch)
        dist_mod.barrier(info)

        net: nn.Module = self.model
        if info.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.method.find_unused_parameters,
            )
        if tc.compile:
            net = torch.compile(net)
        self.net = net

        in_workers = tc.transforms_on == "workers"
        self.train_batches = StepBatches(batches, self.steps_per_epoch, numbered=in_workers)
        loader_args: dict[str, Any] = {
            "num_workers": tc.num_workers,
            "pin_memory": self.device.type == "cuda",
        }
        if tc.num_workers > 0:
            loader_args["persistent_workers"] = True
            loader_args["prefetch_factor"] = 4
        if in_workers:
            # the loader workers run the method's transform with the generator the step would use
            self.train_loader = DataLoader(
                NumberedDataset(self.train_set), batch_sampler=self.train_batches,
                collate_fn=PreparingCollate(self.method, cfg.seed, "train", info.rank), **loader_args,
            )
        else:
            self.train_loader = DataLoader(self.train_set, batch_sampler=self.train_batches, collate_fn=collate,
                                           **loader_args)
        self.val_loader = None
        if self.val_set is not None and len(self.val_set) > 0:
            val_batch_size = self.method.validation_batch_size or tc.batch_size
            self.val_batches = ValidationBatches(len(self.val_set), val_batch_size, tc.val_batches, info.rank,
                                                 info.world_size)
            if in_workers:
                self.val_loader = DataLoader(
                    NumberedDataset(self.val_set), batch_sampler=NumberedValidationBatches(self.val_batches),
                    collate_fn=PreparingCollate(self.method, cfg.seed, "validation"), **loader_args,
                )
            else:
                self.val_loader = DataLoader(self.val_set, batch_sampler=self.val_batches, collate_fn=collate, **loader_args)

    def _load(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: checkpoint does not fit this model/optimiser ({exc})") from None
        try:
            self.schedule.load_state_dict(state["schedule"])
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if "scaler" in state and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            ckpt.set_rng_state(state["rng"])
        self.progress = _Progress(**state["progress"])
        if "method" in state:
            try:
                self.method.load_state_dict(state["method"])
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
        if self.progress.stop_reason != "early_stop":  # a finished run may be extended (epochs, max_steps)
            self.progress.stop_reason = ""
        self.resumed_from = self.progress.step

    def _save(self) -> None:
        """Write ``checkpoints/last.pt`` (rank 0), after checking the network is finite (all ranks)."""
        self._check_finite(self.model, "network")
        if not self.info.is_main:
            return
        ckpt.save_checkpoint(
            self.run_dir / "checkpoints" / "last.pt",
            {
                "model": ckpt.cpu_state_dict(self.model),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "progress": self.progress.state(),
                "rng": ckpt.rng_state(),
                "method": self.method.state_dict(),
            },
        )

    def _weights_metadata(self) -> dict[str, Any]:
        meta = dict(self.method.weights_metadata())
        meta.setdefault("method", self.method.name)
        meta["step"] = self.progress.step
        meta["epoch"] = self.progress.epoch
        meta["config"] = config_mod.to_dict(self.cfg)
        if self.patients is not None:
            meta[PATIENTS_KEY] = self.patients
        else:
            meta.pop(PATIENTS_KEY, None)
        return meta

    def _write_weights(self, path: Path) -> None:
        """Write the method's exported network to ``path`` (rank 0), after checking it is finite (all ranks)."""
        exported = self.method.export_module(self.model)
        self._check_finite(exported, f"exported network ({path.name})")
        if self.info.is_main:
            ckpt.write_weights(exported, path, self._weights_metadata())

    def _check_finite(self, module: nn.Module, what: str) -> None:
        """Stop with a :class:`TrainingError` if a parameter or buffer of ``module`` is NaN or inf.

        Called before every checkpoint and weights write, so a diverged state (also one whose loss
        is still finite, e.g. batch-norm ``running_var = inf``) never replaces the last finite
        checkpoint and never becomes a weights file. Every rank checks and the ranks agree (one
        all-reduce), so all of them stop together.
        """
        from semantic_genesis.models.state import describe_nonfinite, find_nonfinite

        bad = find_nonfinite(module.state_dict())
        if self._reduce([1.0 if bad else 0.0])[0] == 0:
            return
        p = self.progress
        names = describe_nonfinite(bad) if bad else "a tensor on another rank"
        self._log({"kind": "event", "event": "nonfinite_state", "step": p.step, "epoch": p.epoch,
                   "tensors": [k for k, _ in bad]})
        raise TrainingError(
            f"the {what} holds non-finite values at step {p.step} (epoch {p.epoch}): {names}; training stopped; "
            f"{self._kept_checkpoint()}; no weights were written from this state. "
            "Lower optim.lr, enable train.grad_clip or check the data."
        )

    def _kept_checkpoint(self) -> str:
        last = self.run_dir / "checkpoints" / "last.pt"
        if not last.is_file():
            return "no checkpoint had been written yet"
        saved = ckpt.load_checkpoint(last)["progress"]["step"] if self.info.is_main else "?"
        return f"the last good checkpoint {last} (step {saved}) is kept; rerunning resumes from it"

    def _log(self, record: dict[str, Any]) -> None:
        if self.log_steps or record.get("kind") == "validation":
            self.logger.log(record)

    def _gather(self, obj: Any) -> list[Any]:
        return dist_mod.all_gather_object(obj, self.info)

    # -- the loop -------------------------------------------------------------------------------------
    def _reduce(self, values: list[float]) -> list[float]:
        if self.info.world_size == 1:
            return values
        t = dist_mod.all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device), self.info)
        return t.tolist()

    def _nonfinite(self, value: float, epoch: int, batch: int) -> None:
        p = self.progress
        where = self._kept_checkpoint()
        self._log({"kind": "event", "event": "nonfinite", "step": p.step, "epoch": epoch, "loss": value})
        raise TrainingError(
            f"the training loss became {value} at step {p.step} (epoch {epoch}, batch {batch}); training stopped "
            f"before applying it; {where}. Lower optim.lr, enable train.grad_clip or check the data."
        )

    def run(self) -> TrainResult:
        cfg, tc, info, p = self.cfg, self.cfg.train, self.info, self.progress
        if self.resumed_from is not None:
            self._log({"kind": "event", "event": "resume", "step": p.step, "epoch": p.epoch,
                       "transforms_on": tc.transforms_on})
        else:
            self._log({"kind": "event", "event": "start", "step": 0, "epoch": 0, "world_size": info.world_size,
                       "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                       "transforms_on": tc.transforms_on})
        bar = progress_bar(self.total_steps, p.step, enabled=tc.progress and info.is_main and self.log_steps,
                           desc=self.method.name or "train")
        t_start = time.perf_counter()
        try:
            # SIGINT / SIGTERM: finish the step, write a checkpoint at its boundary, raise RunInterrupted
            with StopSignals() as self.signals:
                while not p.stop_reason:
                    if p.epoch >= tc.epochs:
                        p.stop_reason = "epochs"
                        break
                    if tc.max_steps > 0 and p.step >= tc.max_steps:
                        p.stop_reason = "max_steps"
                        break
                    self._train_epoch(bar, t_start)
                    if p.batch >= self.steps_per_epoch:
                        self._end_epoch()
        finally:
            bar.close()
        self._save()
        final = self.run_dir / "weights" / "final.safetensors"
        self._write_weights(final)
        # best.safetensors exists only when a validation gave a best value (_end_epoch writes it)
        best = self.run_dir / "weights" / "best.safetensors" if p.best is not None else None
        note = "" if best is not None else self._no_best_note()
        self._log({"kind": "event", "event": "done", "step": p.step, "epoch": p.epoch, "reason": p.stop_reason,
                         "best": p.best})
        dist_mod.barrier(info)
        return TrainResult(self.run_dir, p.step, p.epoch, p.stop_reason, p.best, self.model, final, best, self.resumed_from,
                           p.best_epoch, info.is_main, note)

    def _no_best_note(self) -> str:
        """Why a finished run has no best weights (one phrase for summaries and error messages)."""
        if self.val_loader is None:
            return "no validation data: best is not defined"
        if self.progress.epoch == 0:
            return ("validation never ran (the run stopped before its first epoch ended): best is not defined")
        return f"validation never gave a finite {self.method.monitor}: best is not defined"

    def _stop_requested(self, reduced_signal: float) -> int | None:
        """The signal to stop on at this step boundary (``None``: go on); the same on every rank."""
        if self.info.world_size == 1:
            return self.signals.received
        if reduced_signal <= 0:
            return None
        return self.signals.received or 15  # another rank got it: stop as if terminated

    def _interrupt(self, signum: int) -> None:
        p = self.progress
        self._save()
        last = self.run_dir / "checkpoints" / "last.pt"
        name = {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")
        self._log({"kind": "event", "event": "interrupted", "signal": name, "step": p.step, "epoch": p.epoch})
        raise RunInterrupted(signum, f"{name} at step {p.step} (epoch {p.epoch}): wrote the checkpoint {last}; "
                                     "rerun the same command to resume")

    def _train_epoch(self, bar, t_start: float) -> None:
        cfg, tc, p = self.cfg, self.cfg.train, self.progress
        epoch = p.epoch
        self.net.train()
        self.method.on_epoch_start(self.model, epoch)
        frozen = _frozen(self.method, self.model, epoch)
        self.train_batches.set_epoch(epoch)
        self.train_batches.set_start(p.batch)
        iterator = iter(self.train_loader)
        window_t0 = time.perf_counter()
        window_wait = 0.0
        window_items = 0
        for batch_index in range(p.batch, self.steps_per_epoch):
            if tc.max_steps > 0 and p.step >= tc.max_steps:
                return
            t0 = time.perf_counter()
            batch = next(iterator)
            window_wait += time.perf_counter() - t0
            batch = _to_device(batch, self.device, self.cfg.train.channels_last)
            n = int(batch["image"].shape[0])
            torch.manual_seed(derive_seed(cfg.seed, "global", p.step))
            if PREPARED in batch and int(batch[PREPARED]) != p.step:
                raise TrainingError(f"internal: the loader prepared step {int(batch[PREPARED])} for step {p.step}")
            ctx = StepContext(epoch, p.step, batch_index, self.device,
                              _make_generator(transform_seed(cfg.seed, "train", p.step, self.info.rank)),
                              self.amp_dtype, True, self.total_steps, self.steps_per_epoch)
            with _autocast(self.device, self.amp_dtype):
                out = self.method.training_step(self.net, batch, ctx)
            loss = out.loss
            local = float(loss.detach().float())
            metric_keys = sorted(out.metrics)
            reduced = self._reduce([local * n, float(n), 0.0 if math.isfinite(local) else 1.0,
                                    float(self.signals.received or 0)]
                                   + [float(out.metrics[k]) * n for k in metric_keys])
            if tc.nan_guard and reduced[2] > 0:
                self._nonfinite(local if not math.isfinite(local) else float("nan"), epoch, batch_index)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            for param in frozen:
                param.grad = None
            if tc.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            lr = self.schedule.lr
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            with torch.no_grad():
                self.method.after_step(self.model, ctx)
            p.step += 1
            p.batch = batch_index + 1
            window_items += n * self.info.world_size
            total_n = reduced[1]
            for key, value in [("loss", reduced[0])] + list(zip(metric_keys, reduced[4:])):
                p.window[key] = p.window.get(key, 0.0) + value
                p.epoch_sums[key] = p.epoch_sums.get(key, 0.0) + value
            p.window["_n"] = p.window.get("_n", 0.0) + total_n
            p.epoch_sums["_n"] = p.epoch_sums.get("_n", 0.0) + total_n
            bar.update(1)
            if p.step % max(tc.log_every, 1) == 0:
                elapsed = max(time.perf_counter() - window_t0, 1e-9)
                count = p.window.pop("_n")
                record = {"kind": "train", "step": p.step, "epoch": epoch}
                record.update({k: v / count for k, v in p.window.items()})
                record.update({"lr": lr, "cubes_per_s": window_items / elapsed, "data_wait": window_wait / elapsed,
                               "time": time.perf_counter() - t_start})
                self._log(record)
                bar.set_postfix(loss=f"{record['loss']:.4g}", cubes_s=f"{record['cubes_per_s']:.1f}")
                p.window = {}
                window_t0, window_wait, window_items = time.perf_counter(), 0.0, 0
            if tc.checkpoint_every > 0 and p.step % tc.checkpoint_every == 0:
                self._save()
            signum = self._stop_requested(reduced[3])
            if signum is not None:
                self._interrupt(signum)

    def _validation_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.val_loader:
            yield _to_device(batch, self.device, self.cfg.train.channels_last)

    @torch.no_grad()
    def _validate(self, train_means: dict[str, float]) -> dict[str, Any] | None:
        if self.val_loader is None:
            return None
        cfg, p = self.cfg, self.progress
        ctx = StepContext(p.epoch, p.step, 0, self.device, _make_generator(derive_seed(cfg.seed, "evaluate")),
                          self.amp_dtype, False, self.total_steps, self.steps_per_epoch, dict(train_means), self._gather)
        self.net.eval()
        try:
            values = self.method.evaluate(self.net, self._validation_batches(), ctx)
            if values is None:
                values = self._batch_means()
        finally:
            self.net.train()
        return values

    def _batch_means(self) -> dict[str, float] | None:
        """The engine's validation: :meth:`Method.validation_step` on every batch, weighted means."""
        cfg, p = self.cfg, self.progress
        sums: dict[str, float] = {}
        keys: list[str] | None = None
        for batch_id, batch in zip(self.val_batches.batch_ids(), self._validation_batches()):
            n = int(batch["image"].shape[0])
            ctx = StepContext(p.epoch, p.step, batch_id, self.device,
                              _make_generator(transform_seed(cfg.seed, "validation", batch_id)), self.amp_dtype, False,
                              self.total_steps, self.steps_per_epoch)
            with _autocast(self.device, self.amp_dtype):
                out = self.method.validation_step(self.net, batch, ctx)
            keys = sorted(out.metrics) if keys is None else keys
            sums["loss"] = sums.get("loss", 0.0) + float(out.loss.float()) * n
            for k in keys:
                sums[k] = sums.get(k, 0.0) + float(out.metrics[k]) * n
            sums["_n"] = sums.get("_n", 0.0) + n
        names = sorted(sums)
        if self.info.world_size > 1:
            # every rank must contribute the same keys; ranks without batches send zeros
            names = sorted(set(names) | {"loss", "_n"})
        totals = dict(zip(names, self._reduce([sums.get(k, 0.0) for k in names])))
        count = totals.pop("_n", 0.0)
        if count <= 0:
            return None
        return {k: v / count for k, v in totals.items()}

    def _end_epoch(self) -> None:
        tc, p = self.cfg.train, self.progress
        n = p.epoch_sums.pop("_n", 0.0)
        train_means = {k: v / n for k, v in p.epoch_sums.items()} if n else {}
        val = self._validate(train_means)
        record: dict[str, Any] = {"kind": "validation", "step": p.step, "epoch": p.epoch}
        if val is not None:
            monitor = self.method.monitor
            if monitor not in val:
                raise ConfigError(f"method {self.method.name!r} monitors {monitor!r}, but validation gives {', '.join(sorted(val))}")
            value = val[monitor]
            mode = self.method.monitor_mode
            if p.epoch == self.method.monitor_start_epoch > 0:
                # e.g. the first joint epoch after a warm-up: values before it measured another training
                p.best, p.bad_epochs = None, 0
                self._log({"kind": "event", "event": "monitor_reset", "step": p.step, "epoch": p.epoch})
            improved = math.isfinite(value) and (
                p.best is None
                or (mode == "min" and value < p.best - tc.min_delta)
                or (mode == "max" and value > p.best + tc.min_delta)
            )
            if improved:
                self._write_weights(self.run_dir / "weights" / "best.safetensors")
                p.best, p.best_epoch, p.bad_epochs = value, p.epoch, 0
            else:
                p.bad_epochs += 1
            record.update(val)
            record.update({"best": p.best, "improved": improved, "bad_epochs": p.bad_epochs})
        record.update({f"train_{k}": v for k, v in train_means.items()})
        record["lr"] = self.schedule.lr  # of the next step, before the epoch's schedule update
        self.schedule.end_epoch(None if val is None else val[self.method.monitor])
        self._log(record)
        p.epoch += 1
        p.batch = 0
        p.epoch_sums = {}
        if (val is not None and tc.patience > 0 and p.bad_epochs >= tc.patience
                and p.epoch > self.method.monitor_start_epoch):
            p.stop_reason = "early_stop"
            self._log({"kind": "event", "event": "early_stop", "step": p.step, "epoch": p.epoch,
                             "best": p.best, "patience": tc.patience})
        self._save()
        if self.on_epoch is not None and self.info.is_main:
            self.on_epoch(record)

    def close(self) -> None:
        self.logger.close()
        dist_mod.cleanup(self.info)


def _build_method(cfg: Config) -> Method:
    from semantic_genesis import methods

    return methods.build(cfg)


def train(cfg: Config, method: Method | None = None, *, log: str = "steps",
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train ``method`` (default: ``methods.build(cfg)``) into ``cfg.out``; resumes if a checkpoint exists.

    Args:
        cfg: the root config (``train``, ``optim``, ``seed``, ``out`` and what the method reads).
        method: the method to train; ``None`` builds the registered ``cfg.method.name``.
        log: ``"steps"``: ``metrics.jsonl`` gets training records every ``train.log_every`` steps,
            validation records and events, plus the progress bar and TensorBoard when configured;
            ``"epochs"``: one validation record per epoch and nothing else (fine-tuning trials).
        on_epoch: called on rank 0 with each epoch's validation record, after that epoch's checkpoint
            was written (progress display; an exception raised there stops the run resumably).

    Returns:
        :class:`TrainResult` (on every rank).

    Raises:
        ConfigError: bad settings, or ``cfg.out`` holds an incompatible run.
        DataError: empty or unreadable data.
        TrainingError: the loss became NaN/inf (the last checkpoint is kept).
    """
    trainer = _Trainer(cfg, method, log, on_epoch)
    try:
        trainer.build()
        return trainer.run()
    finally:
        trainer.close()
