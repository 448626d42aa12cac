"""The :class:`Method` protocol: what a pretraining method plugs into the shared training engine.

The engine (:mod:`semantic_genesis.training`) owns everything that is the same for every method:
devices, DistributedDataParallel, mixed precision, the data loaders and their order, optimiser and
schedule, validation, early stopping, checkpoints, resume and logging. A method owns only what makes
it that method:

* its network (:meth:`Method.build_model`),
* its data (:meth:`Method.build_datasets`: torch ``Dataset`` objects of dict samples),
* its batch recipe and loss (:meth:`Method.training_step` / :meth:`Method.validation_step`), which
  run on the training device on whole batches, so the self-restoration transforms of Models Genesis
  (Zhou et al., MedIA 2021) and Semantic Genesis (Haghighi et al., MICCAI 2020) run on the GPU,
* optional hooks: which parameters are frozen in an epoch (:meth:`Method.frozen_parameters`, e.g. the
  Semantic Genesis classification warm-up), optimiser parameter groups and the metadata saved with
  the weights.

Randomness contract (this is what makes resume exact *by construction*):

* the engine hands every step a fresh CPU ``torch.Generator`` seeded from ``(seed, "train", step)``;
  methods draw all their randomness (transform parameters, ...) from ``ctx.generator`` and nothing
  else (the transforms draw small parameter tensors on the CPU and apply them on the batch's device);
* validation batch ``i`` gets a generator seeded from ``(seed, "validation", i)``, so the transformed
  validation set is identical in every epoch (the official code re-draws it, which makes early
  stopping noisy, reference §5.9);
* the data order is a function of ``(seed, epoch)`` only (see :mod:`semantic_genesis.training.data`);
* under DistributedDataParallel, rank ``r > 0`` seeds its training generator from
  ``(seed, "train", step, "rank", r)`` so that ranks transform their shares differently.

Transforms in the data-loader workers: a method whose random transform depends only on the batch
and the generator defines :attr:`Method.prepare_batch`; with ``train.transforms_on=workers`` the
engine calls it in the loader workers on the CPU batch, with a generator seeded exactly as the
step's would be, and the step reads the prepared tensors through :meth:`Method.prepared` (on a CPU
device the losses are bit-identical to ``transforms_on=device``).

Batches are dicts of tensors, already on ``ctx.device``: ``"image"`` float32 ``(B, C, X, Y, Z)``
(or ``(B, C, H, W)``) in [0, 1], ``"index"`` int64 ``(B,)`` (item index in the store) and, for
pattern sets, ``"label"`` int64 ``(B,)``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from semantic_genesis.config import Config


@dataclass
class StepContext:
    """What the engine tells a method about the current step.

    Attributes:
        epoch: 0-based epoch.
        step: 0-based global optimiser step this batch belongs to (for validation: the number of
            optimiser steps done so far).
        batch_index: index of the batch within its epoch (training) or within the validation set.
        device: the training device; the batch is already there.
        generator: a CPU ``torch.Generator``, seeded deterministically (see module doc).
        amp_dtype: ``torch.bfloat16`` / ``torch.float16`` when the forward pass runs under autocast,
            else ``None``. Losses should be computed in float32 regardless.
        training: ``True`` in :meth:`Method.training_step`, ``False`` in validation.
    """

    epoch: int
    step: int
    batch_index: int
    device: "torch.device"
    generator: "torch.Generator"
    amp_dtype: "torch.dtype | None" = None
    training: bool = True


@dataclass
class StepOutput:
    """The result of one step.

    Attributes:
        loss: scalar tensor (float32) to minimise; the engine calls ``backward`` on it in training.
        metrics: extra scalars to log (plain floats, e.g. ``{"mse": 0.01, "accuracy": 0.5}``). The
            engine averages them over the logging window (training) or the validation set, weighting
            each batch by its size.
        outputs: optional tensors for figures (e.g. ``{"input", "output", "target"}``); not logged.
    """

    loss: "torch.Tensor"
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, "torch.Tensor"] = field(default_factory=dict)


class Method(abc.ABC):
    """Base class of pretraining methods; subclass it and :func:`semantic_genesis.methods.register` it.

    A method instance is built from the resolved root config (``Method(cfg)``) and keeps it as
    ``self.cfg``. Subclasses must implement :meth:`build_model`, :meth:`build_datasets` and
    :meth:`training_step` (abstract: a subclass lacking one cannot be instantiated); the other hooks
    have working defaults.

    Class attributes:
        name: registry name (``method.name`` in the config).
        description: one line for ``--help`` and error messages.
        monitor: the validation metric that selects the best weights and drives early stopping
            (``"loss"`` or a key of :attr:`StepOutput.metrics`).
        monitor_mode: ``"min"`` or ``"max"``.
        find_unused_parameters: set ``True`` when some parameters get no gradient in some steps
            (needed by DistributedDataParallel, e.g. during a classification-only warm-up).
    """

    name: str = ""
    description: str = ""
    monitor: str = "loss"
    monitor_mode: str = "min"
    find_unused_parameters: bool = False

    def __init__(self, cfg: "Config"):
        self.cfg = cfg

    # -- required ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self) -> "nn.Module":
        """The network to train (on the CPU; the engine moves and wraps it)."""

    @abc.abstractmethod
    def build_datasets(self) -> "tuple[Dataset, Dataset | None]":
        """``(train, validation)`` datasets of dict samples (validation may be ``None``).

        Samples: ``{"image": float32 (C, X, Y, Z) in [0, 1], "index": int, ["label": int]}``; use
        :class:`semantic_genesis.io.shard_dataset.StoreDataset` for cube and pattern sets.
        """

    @abc.abstractmethod
    def training_step(self, model: "nn.Module", batch: dict[str, "torch.Tensor"], ctx: StepContext) -> StepOutput:
        """Loss of one training batch (transforms applied here, on ``ctx.device``)."""

    # -- optional hooks ---------------------------------------------------------------------------
    def validation_step(self, model: "nn.Module", batch: dict[str, "torch.Tensor"], ctx: StepContext) -> StepOutput:
        """Loss of one validation batch; by default the training recipe (the engine disables grad)."""
        return self.training_step(model, batch, ctx)

    def frozen_parameters(self, model: "nn.Module", epoch: int) -> Iterable[str]:
        """Names (as in ``model.named_parameters()``) of parameters NOT updated in ``epoch``.

        The engine drops their gradients after ``backward`` (``grad = None``), so neither the
        gradient, nor momentum, nor weight decay changes them. Default: none.
        """
        return ()

    def param_groups(self, model: "nn.Module") -> list[dict[str, Any]] | None:
        """Optimiser parameter groups (``[{"params": [...], "lr": ...}, ...]``) or ``None`` for one group."""
        return None

    def on_epoch_start(self, model: "nn.Module", epoch: int) -> None:
        """Called on every rank before each epoch (after resume, too)."""

    def weights_metadata(self) -> dict[str, Any]:
        """Metadata saved with the pretrained weights (method, preset, input size, ...)."""
        return {"method": self.name}

    def example_batch(self, model: "nn.Module", batch: dict[str, "torch.Tensor"], ctx: StepContext) -> dict[str, "torch.Tensor"]:
        """Tensors for figures: by default the ``outputs`` of :meth:`validation_step`."""
        return self.validation_step(model, batch, ctx).outputs

    # -- transforms in the data-loader workers ------------------------------------------------------
    #: Optional hook ``prepare_batch(batch, generator) -> dict[str, Tensor]``: the tensors the method
    #: derives from ``batch`` with its random transform (e.g. ``{"input": ..., "target": ...}``), on the
    #: batch's device, drawing only from ``generator``. A method that defines it can have it run in the
    #: data-loader workers (``train.transforms_on=workers``) and reads the tensors with
    #: :meth:`prepared`; ``None`` (the default): the method transforms inside its step, and the engine
    #: refuses ``transforms_on=workers``.
    prepare_batch: "Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]] | None" = None

    @classmethod
    def can_prepare_in_workers(cls) -> bool:
        """Whether the method defines :attr:`prepare_batch`."""
        return cls.prepare_batch is not None

    def prepared(self, batch: dict[str, "torch.Tensor"], ctx: StepContext) -> dict[str, "torch.Tensor"]:
        """:attr:`prepare_batch`'s tensors for this step: made by the loader workers (then they are in
        ``batch``, marked by :data:`PREPARED`) or now, on ``ctx.device`` with ``ctx.generator``."""
        if PREPARED in batch:
            return batch
        return self.prepare_batch(batch, ctx.generator)


PREPARED = "prepared_by_loader"  # batch key set when the loader workers ran Method.prepare_batch
