"""Fine-tuning on a target task, as a method of the training engine.

The recipe of the official Models Genesis / Semantic Genesis fine-tuning (Zhou et al., MedIA 2021;
Haghighi et al., MICCAI 2020; the official Keras notebooks of the target tasks): a network
initialised from scratch or from pretrained weights is trained with a supervised loss (BCE for
classification, Dice + BCE for segmentation) and the epoch whose network scores best **on the whole
validation set** (ROC AUC over all validation samples, or IoU of whole scans predicted by sliding
windows) is kept; early stopping on that score. The engine brings the rest: DDP, AMP, the NaN guard,
mid-epoch resume, the lr schedule (``plateau`` = the official ReduceLROnPlateau).

The method is given its pieces (:class:`FinetuneSetup`) by :func:`semantic_genesis.finetune.trainer.run_finetune`,
which builds them from the task: the network, the loss, the datasets of dict samples
``{"image": float32 (C, X, Y, Z) in [0, 1], "target": label int64 or uint8 mask (1, X, Y, Z),
"index": position in the split}``, the training batch order and the :class:`Scoring`.

Hooks used: ``batch_sampler`` (the task's crop / balanced sampling, a function of ``(seed, epoch)``),
``evaluate`` (predictions of every validation sample, gathered over ranks, then scored), ``on_epoch_start``
and ``param_groups`` (a frozen encoder: not optimised, its batch norms in eval mode).

Validation records (``metrics.jsonl``): the task's metrics (``auc`` or ``iou``, ``dice``) and
``monitor``, the value that selects epochs: the primary metric, or minus the epoch's mean training
loss when the metric is undefined on the validation set (e.g. AUC with one class), with the reason
under ``error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
from torch import nn

from semantic_genesis.errors import DataError
from semantic_genesis.methods.base import EpochBatchSampler, Method, StepContext, StepOutput

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import Dataset

    from semantic_genesis.config import Config


@dataclass(frozen=True)
class SlidingWindow:
    """Whole-scan inference by overlapping windows (MONAI ``sliding_window_inference``, Gaussian blending).

    Attributes:
        roi_size: window ``(X, Y, Z)``: the training crop size.
        batch_size: windows per forward pass.
        overlap: fraction of overlap between windows, in [0, 1).
    """

    roi_size: tuple[int, ...]
    batch_size: int = 4
    overlap: float = 0.25


@dataclass(frozen=True)
class Scoring:
    """How a task's predictions become metrics.

    Attributes:
        metric: the primary metric (selects epochs, ``"max"`` mode), a key of ``reduce``'s result.
        case: ``case(logits, target) -> record``: one sample's logits (float32 CPU, ``(1,)`` or
            ``(1, X, Y, Z)``) and target (label or mask) -> a small picklable record (a score and its
            label, or the case's Dice and IoU); runs on the rank that predicted the sample.
        reduce: ``reduce(records) -> metrics`` over every sample's record in split order; may raise
            :class:`~semantic_genesis.errors.DataError` when a metric is undefined.
        window: sliding-window inference of whole scans, or ``None`` (one forward pass per batch).
    """

    metric: str
    case: Callable[[torch.Tensor, torch.Tensor], Any]
    reduce: Callable[[list[Any]], dict[str, float]]
    window: SlidingWindow | None = None


def predict(model: nn.Module, images: torch.Tensor, window: SlidingWindow | None) -> torch.Tensor:
    """Logits of a batch ``(B, C, X, Y, Z)``: one forward pass, or sliding windows over whole scans."""
    if window is None:
        return model(images)
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(images, window.roi_size, window.batch_size, model, overlap=window.overlap,
                                    mode="gaussian")


def score_batches(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], scoring: Scoring,
                  gather: Callable[[Any], list[Any]] = lambda obj: [obj],
                  amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Predict every batch, score each sample, gather all ranks' samples and reduce them in split order.

    Call under ``torch.no_grad()`` with the model in eval mode. An undefined metric gives
    ``{scoring.metric: nan, "error": reason}``.
    """
    cases: list[tuple[int, Any]] = []
    for batch in batches:
        images = batch["image"]
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = predict(model, images, scoring.window)
        logits, targets = logits.float().cpu(), batch["target"].cpu()
        for row, position in enumerate(batch["index"].tolist()):
            cases.append((int(position), scoring.case(logits[row], targets[row])))
    ordered = sorted((case for part in gather(cases) for case in part), key=lambda case: case[0])
    try:
        return scoring.reduce([record for _, record in ordered])
    except DataError as exc:
        return {scoring.metric: math.nan, "error": str(exc)}


@dataclass
class FinetuneSetup:
    """What the fine-tuning method trains (built from a task by ``finetune.trainer``).

    Attributes:
        model: the initialised network (CPU); frozen parameters have ``requires_grad=False``.
        loss: ``loss(logits, target) -> scalar`` in float32; targets are float, ``(B, 1)`` labels or
            ``(B, 1, X, Y, Z)`` masks.
        train_set, val_set: datasets of dict samples (module doc).
        batches: ``batches(seed, rank, world_size)`` -> the training batch sampler.
        scoring: the task's metrics.
        frozen_modules: modules kept in eval mode during training (a frozen encoder's batch norms).
        metadata: saved with the fine-tuned weights (task, initialisation, crop size, ...).
        init_patients: the ``"patients"`` record of the initial weights (``None``: scratch; ``{}``:
            weights without a record), carried into the fine-tuned weights' record.
    """

    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_set: "Dataset"
    val_set: "Dataset"
    batches: Callable[[int, int, int], EpochBatchSampler]
    scoring: Scoring
    frozen_modules: Sequence[nn.Module] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    init_patients: dict[str, Any] | None = None


class Finetune(Method):
    """Supervised fine-tuning of :attr:`FinetuneSetup.model`; epochs selected by the whole-set score."""

    name = "finetune"
    description = "fine-tune a network on a target task (AUC / whole-scan IoU on the validation set selects epochs)"
    monitor = "monitor"
    monitor_mode = "max"

    def __init__(self, cfg: "Config", setup: FinetuneSetup):
        super().__init__(cfg)
        self.setup = setup
        self.initial_patients = setup.init_patients
        if setup.scoring.window is not None:
            self.validation_batch_size = 1  # whole scans of different sizes

    def build_model(self) -> nn.Module:
        return self.setup.model

    def build_datasets(self):
        return self.setup.train_set, self.setup.val_set

    def batch_sampler(self, dataset, seed: int, rank: int, world_size: int) -> EpochBatchSampler:
        return self.setup.batches(seed, rank, world_size)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]] | None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        if len(trainable) == len(list(model.parameters())):
            return None
        return [{"params": trainable}]

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        for module in self.setup.frozen_modules:
            module.eval()

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext) -> StepOutput:
        target = batch["target"].float()
        if target.ndim == 1:  # class labels -> (B, 1), as the logits
            target = target[:, None]
        logits = model(batch["image"])
        with torch.autocast(ctx.device.type, enabled=False):
            loss = self.setup.loss(logits.float(), target)
        return StepOutput(loss)

    def evaluate(self, model: nn.Module, loader, ctx: StepContext) -> dict[str, Any]:
        values = score_batches(model, loader, self.setup.scoring, ctx.gather, ctx.amp_dtype)
        value = values.get(self.setup.scoring.metric, math.nan)
        if not math.isfinite(value):  # undefined on this validation set: judge the epoch by its training loss
            value = -ctx.train_means.get("loss", math.nan)
        return {**values, "monitor": value}

    def weights_metadata(self) -> dict[str, Any]:
        return {"method": self.name, **self.setup.metadata}
