"""The :class:`Method` protocol: what a training method plugs into the shared training engine.

The engine (:mod:`semantic_genesis.training`) owns everything that is the same for every method:
devices, DistributedDataParallel, mixed precision, the data loaders and their order, optimiser and
schedule, validation, early stopping, checkpoints, resume and logging. A method owns only what makes
it that method:

* its network (:meth:`Method.build_model`),
* its data (:meth:`Method.build_datasets`: torch ``Dataset`` objects of dict samples),
* its batch recipe and loss (:meth:`Method.training_step` / :meth:`Method.validation_step`), which
  run on the training device on whole batches, so the self-restoration transforms of Models Genesis
  (Zhou et al., MedIA 2021) and Semantic Genesis (Haghighi et al., MICCAI 2020) run on the GPU,
* optional hooks with do-nothing defaults (below).

Hooks, in the order the engine calls them (every rank unless said otherwise):

================================  ==============================================================
``build_model()``                 once, after the global RNG is seeded from ``(seed, "init")``
``build_datasets()``              once
``batch_sampler(ds, seed, r, w)`` once, on the training set (``None``: the engine's shuffled order)
``param_groups(model)``           once, to build the optimiser
``load_state_dict(state)``        once when resuming, after the model and optimiser states
``on_epoch_start(model, e)``      before each epoch (also the partial epoch of a resumed run),
                                  after the network was put in training mode
``frozen_parameters(model, e)``   before each epoch
``training_step(net, batch, c)``  each step, under autocast
``after_step(model, c)``          each step, after the optimiser and grad-scaler step
``state_dict()``                  rank 0, at each checkpoint (``train.checkpoint_every`` steps, each
                                  epoch end, the end of the run)
``evaluate(net, loader, c)``      once per completed epoch when there is a validation set;
                                  ``None`` -> ``validation_step`` on each validation batch
``export_module(model)``          rank 0, whenever weights are written (a new best, the end)
``weights_metadata()``            rank 0, with ``export_module`` (the engine adds ``step``,
                                  ``epoch``, ``config`` and ``patients``: the hashed patients of
                                  the training and validation data, :mod:`semantic_genesis.provenance`)
================================  ==============================================================

Randomness contract (this is what makes resume exact *by construction*):

* the engine hands every step a fresh CPU ``torch.Generator`` seeded from ``(seed, "train", step)``;
  methods draw all their randomness (transform parameters, ...) from ``ctx.generator`` and nothing
  else (the transforms draw small parameter tensors on the CPU and apply them on the batch's device);
  the global torch RNG is also reseeded from ``(seed, "global", step)`` before each step;
* validation batch ``i`` gets a generator seeded from ``(seed, "validation", i)``, so the transformed
  validation set is identical in every epoch (the official Models Genesis code re-draws it in every
  epoch, which makes early stopping noisy); :meth:`Method.evaluate` gets one seeded from
  ``(seed, "evaluate")``;
* the data order is a function of ``(seed, epoch)`` only (see :mod:`semantic_genesis.training.data`);
  a method's own :meth:`Method.batch_sampler` must keep that property;
* under DistributedDataParallel, rank ``r > 0`` seeds its training generator from
  ``(seed, "train", step, "rank", r)`` so that ranks transform their shares differently;
* everything else a method keeps between steps (an EMA teacher, counters) goes through
  :meth:`Method.state_dict` / :meth:`Method.load_state_dict`, which the engine saves in and restores
  from the training checkpoint.

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
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from semantic_genesis.config import Config


def _one_process(obj: Any) -> list[Any]:
    return [obj]


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
        total_steps: optimiser steps the run is planned for (``train.epochs`` x ``steps_per_epoch``,
            at most ``train.max_steps``): the horizon of momentum schedules (an EMA teacher).
        steps_per_epoch: optimiser steps per epoch.
        train_means: in :meth:`Method.evaluate`: the epoch's training loss and metrics averaged over
            all ranks (``{"loss": ..., ...}``); empty elsewhere.
        gather: ``gather(obj) -> [obj of rank 0, obj of rank 1, ...]`` (every rank gets the list; a
            world of one gets ``[obj]``): how :meth:`Method.evaluate` collects all ranks' predictions.
    """

    epoch: int
    step: int
    batch_index: int
    device: "torch.device"
    generator: "torch.Generator"
    amp_dtype: "torch.dtype | None" = None
    training: bool = True
    total_steps: int = 0
    steps_per_epoch: int = 0
    train_means: dict[str, float] = field(default_factory=dict)
    gather: Callable[[Any], list[Any]] = _one_process


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


class EpochBatchSampler(Protocol):
    """What :meth:`Method.batch_sampler` returns: the batches of an epoch, resumable mid-epoch.

    Attributes:
        num_batches: batches per epoch on this rank (the same on every rank and in every epoch).

    The engine calls :meth:`set_epoch` and :meth:`set_start` before iterating. Iterating yields the
    keys (dataset indices, or anything the dataset's ``__getitem__`` accepts) of batches
    ``start .. num_batches - 1`` of the epoch, one list per batch. The batches must be a pure
    function of ``(seed, epoch, rank, world_size)``: a resumed run calls ``set_start(b)`` and must
    see exactly the batches ``b, b + 1, ...`` that the uninterrupted run saw.
    """

    num_batches: int

    def set_epoch(self, epoch: int) -> None: ...

    def set_start(self, batch: int) -> None: ...

    def __iter__(self) -> Iterator[list[Any]]: ...


class Method(abc.ABC):
    """Base class of training methods; subclass it and :func:`semantic_genesis.methods.register` it.

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
        validation_batch_size: items per validation batch; ``None`` = ``train.batch_size`` (1 for
            whole scans of different sizes, evaluated by sliding windows).
        monitor_start_epoch: the first epoch (0-based) of the training whose validation values are
            compared for model selection, e.g. the first joint epoch after a warm-up that trains only
            part of the network. Earlier epochs still keep the best weights so far, but early stopping
            cannot trigger in them, and at this epoch the engine forgets their best value and resets
            the early-stopping counter (``train.patience`` counts joint epochs only). Default 0.
        initial_patients: the ``"patients"`` metadata record (:mod:`semantic_genesis.provenance`) of
            the weights the network starts from; ``None`` for a random start. The engine records in
            every weights file these sources plus the patients of its own training and validation
            data; a start from weights without a record (``{}``) leaves the new file without one.
    """

    name: str = ""
    description: str = ""
    monitor: str = "loss"
    monitor_mode: str = "min"
    find_unused_parameters: bool = False
    validation_batch_size: int | None = None
    monitor_start_epoch: int = 0
    initial_patients: "dict[str, Any] | None" = None

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
        """Called on every rank before each epoch (also the partial epoch of a resumed run), after the
        engine put the network in training mode (so a method may put parts of it in eval mode, e.g. a
        frozen encoder's batch norms). ``model`` is the unwrapped network."""

    def after_step(self, model: "nn.Module", ctx: StepContext) -> None:
        """Called on every rank after every optimiser step (after the grad scaler's update; also for
        fp16 steps the scaler skipped), before the engine logs or checkpoints that step.

        ``model`` is the unwrapped network with the updated weights; ``ctx`` is the step's context
        (``ctx.step`` is the 0-based step just taken, ``ctx.total_steps`` the run's horizon). Use it
        for an exponential moving average teacher (PEAC, Ark: ``teacher = m * teacher + (1 - m) *
        student`` with ``m`` scheduled over ``ctx.step / ctx.total_steps``). Runs under ``no_grad``.
        """

    def state_dict(self) -> dict[str, Any]:
        """The method's own state (e.g. an EMA teacher's weights), saved in every checkpoint.

        Called on rank 0 whenever the engine writes ``checkpoints/last.pt``, after :meth:`after_step`
        of the last step. Values: tensors (copied to the CPU), numbers, strings, lists and dicts (the
        checkpoint is read back with ``torch.load(weights_only=True)``). Default: ``{}``.
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s ``state`` when resuming (every rank, once, after
        :meth:`build_model` and :meth:`build_datasets` and after the network's own weights were
        restored, before the first :meth:`on_epoch_start`). Raise
        :class:`~semantic_genesis.errors.CheckpointError` when the state does not fit (the engine
        adds the checkpoint's path to the message)."""

    def export_module(self, model: "nn.Module") -> "nn.Module":
        """The network written to the weights files (``weights/best.safetensors`` when the monitored
        value improves, ``weights/final.safetensors`` at the end); rank 0 only. Default: ``model``
        (the unwrapped trained network); e.g. an EMA teacher's backbone for PEAC."""
        return model

    def evaluate(self, model: "nn.Module", loader: Iterable[dict[str, "torch.Tensor"]],
                 ctx: StepContext) -> dict[str, Any] | None:
        """Epoch-level validation on all predictions (AUC, whole-scan IoU, ...); ``None`` (the default)
        keeps the engine's validation: :meth:`validation_step` on every batch, metrics averaged.

        Called on every rank once per completed epoch (when there is a validation set), under
        ``no_grad`` with the network in eval mode (``model`` is the wrapped network, as in the steps).
        ``loader`` yields this rank's share of the fixed validation batches (in order, already on
        ``ctx.device``, ``validation_batch_size`` items each). Collect the predictions, combine all
        ranks' with ``ctx.gather`` and return the same metrics on every rank: a dict of floats
        holding :attr:`monitor` (other JSON values, e.g. an ``"error"`` string, are logged as well).
        Return ``None`` without reading ``loader`` to use the batch means instead.
        """
        return None

    def batch_sampler(self, dataset: "Dataset", seed: int, rank: int, world_size: int) -> EpochBatchSampler | None:
        """The training batches (e.g. one dataset per batch, datasets in turn, for Ark; class-balanced
        or crop sampling for fine-tuning), or ``None`` for the engine's order (a seeded permutation per
        epoch, split between ranks). Called once per run on every rank, with the training set.

        The returned sampler follows :class:`EpochBatchSampler` (resumable mid-epoch, a pure function
        of ``(seed, epoch, rank, world_size)``); an epoch is its ``num_batches`` steps (at most
        ``train.steps_per_epoch`` when that is set). Its keys index ``dataset``.
        """
        return None

    def weights_metadata(self) -> dict[str, Any]:
        """Metadata saved with the weights (method, preset, input size, ...)."""
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
