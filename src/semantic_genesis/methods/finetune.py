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
``evaluate`` (predictions of every validation sample, gathered over ranks, then scored), ``on_epoch_start``,
``param_groups`` and ``frozen_parameters`` (a frozen encoder: not optimised, its batch norms in eval mode; a
pretrained encoder at a lower learning rate or frozen for the first epochs).

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


#: How slice predictions of a classification task become one score per volume.
SLICE_AGGREGATIONS = ("mean", "max")


@dataclass(frozen=True)
class SliceInference:
    """Slice-based prediction of volumes by a 2D network (the 2D slice-based solutions of the 3D target
    tasks, Semantic Genesis, Haghighi et al., MICCAI 2020, Fig. 3).

    A volume ``(C, X, Y, Z)`` is cut into its axial slices ``(C, X, Y)`` (the last axis), the 2D network
    predicts each slice, and the slice predictions are put back together on the volume's grid:

    * classification: the slice probabilities of :attr:`slices` are aggregated into one probability of
      the volume (:func:`aggregate_slice_logits`: their mean, or their maximum);
    * segmentation: the slice logits ``(n, X, Y)`` are stacked along Z into the volume ``(n, X, Y, Z)``
      (every slice is predicted, whatever :attr:`slices` says).

    Attributes:
        slices: the axial slice indices that are predicted and aggregated (classification), in [0, Z).
        aggregate: ``"mean"`` or ``"max"`` of the slice probabilities (classification only).
        batch_size: slices per forward pass.
    """

    slices: tuple[int, ...]
    aggregate: str = "mean"
    batch_size: int = 256


def aggregate_slice_logits(logits: torch.Tensor, how: str) -> torch.Tensor:
    """One logit per volume from the logits of its slices.

    ``mean`` is the mean of the slice **probabilities** ``p_s = sigmoid(l_s)``, returned as its logit
    ``log(mean p) - log(mean (1 - p))``, computed from log-sigmoids in float64 (no rounding to 0 or 1 for
    confident slices, so the ranking that the AUC sees is exact); ``max`` is the largest slice logit,
    i.e. the logit of the largest probability.

    Args:
        logits: ``(B, S, n)`` logits of ``S`` slices of each of ``B`` volumes.
        how: ``"mean"`` or ``"max"`` (:data:`SLICE_AGGREGATIONS`).

    Returns:
        ``(B, n)`` logits, float32; ``sigmoid`` of them is the aggregated probability.

    Raises:
        DataError: an unknown aggregation or a tensor that is not ``(B, S, n)`` with ``S >= 1``.
    """
    if how not in SLICE_AGGREGATIONS:
        raise DataError(f"slice aggregation {how!r}: expected one of {', '.join(SLICE_AGGREGATIONS)}")
    if logits.ndim != 3 or logits.shape[1] == 0:
        raise DataError(f"slice aggregation: expected (volumes, slices >= 1, outputs) logits, got {tuple(logits.shape)}")
    if how == "max":
        return logits.max(dim=1).values.float()
    x = logits.double()
    positive = torch.logsumexp(torch.nn.functional.logsigmoid(x), dim=1)
    negative = torch.logsumexp(torch.nn.functional.logsigmoid(-x), dim=1)
    return (positive - negative).float()


def predict_slices(model: nn.Module, volumes: torch.Tensor, spec: SliceInference, segmentation: bool) -> torch.Tensor:
    """Logits of volumes ``(B, C, X, Y, Z)`` predicted slice by slice by a 2D ``model``.

    Returns:
        segmentation: ``(B, n, X, Y, Z)``, the slice logits stacked along Z; classification: ``(B, n)``,
        the :func:`aggregate_slice_logits` of the slices ``spec.slices``.
    """
    b, c, x, y, z = volumes.shape
    chosen = list(range(z)) if segmentation else list(spec.slices)
    if not chosen or min(chosen) < 0 or max(chosen) >= z:
        raise DataError(f"slice-based prediction: slices {chosen} do not fit volumes of {z} axial slices")
    stack = volumes[..., chosen].permute(0, 4, 1, 2, 3).reshape(b * len(chosen), c, x, y)  # (B*S, C, X, Y)
    out = torch.cat([model(part) for part in torch.split(stack, max(int(spec.batch_size), 1))])
    if segmentation:  # (B*Z, n, X, Y) -> (B, n, X, Y, Z)
        return out.reshape(b, z, *out.shape[1:]).permute(0, 2, 3, 4, 1)
    return aggregate_slice_logits(out.reshape(b, len(chosen), -1), spec.aggregate)


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
        slices: slice-based inference of volumes by a 2D network (:class:`SliceInference`), or ``None``.
        segmentation: whether the logits are voxel-wise (how :attr:`slices` puts slices together).
    """

    metric: str
    case: Callable[[torch.Tensor, torch.Tensor], Any]
    reduce: Callable[[list[Any]], dict[str, float]]
    window: SlidingWindow | None = None
    slices: SliceInference | None = None
    segmentation: bool = False


def predict(model: nn.Module, images: torch.Tensor, scoring: Scoring) -> torch.Tensor:
    """Logits of a batch ``(B, C, X, Y, Z)``: one forward pass, axial slices by a 2D network
    (:func:`predict_slices`), or sliding windows over whole scans."""
    if scoring.slices is not None:
        return predict_slices(model, images, scoring.slices, scoring.segmentation)
    window = scoring.window
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
            logits = predict(model, images, scoring)
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
        encoder_modules: the encoder blocks of :attr:`model` (put in eval mode while the encoder is frozen
            for the first :attr:`freeze_encoder_epochs`).
        encoder_parameters: names (as in ``model.named_parameters()``) of the encoder's parameters.
        encoder_lr_scale: the encoder's learning rate is ``optim.lr`` times this; the rest gets ``optim.lr``.
        freeze_encoder_epochs: the encoder is not updated in the first this many epochs.
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
    encoder_modules: Sequence[nn.Module] = ()
    encoder_parameters: Sequence[str] = ()
    encoder_lr_scale: float = 1.0
    freeze_encoder_epochs: int = 0
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
        """One group of the trainable parameters; with an ``encoder_lr_scale`` other than 1, two: the rest
        of the network at ``optim.lr`` (first, so the logged lr is ``optim.lr``), then the encoder at
        ``optim.lr * encoder_lr_scale``."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        scale = self.setup.encoder_lr_scale
        if scale != 1.0:
            encoder = set(self.setup.encoder_parameters)
            return [{"params": [p for n, p in named if n not in encoder]},
                    {"params": [p for n, p in named if n in encoder], "lr": self.cfg.optim.lr * scale}]
        if len(named) == len(list(model.parameters())):
            return None
        return [{"params": [p for _, p in named]}]

    def frozen_parameters(self, model: nn.Module, epoch: int) -> Sequence[str]:
        """The encoder's parameters in the first ``freeze_encoder_epochs`` epochs (the engine drops their
        gradients, so neither Adam's moments nor weight decay move them; ``requires_grad`` stays on, which
        keeps the DistributedDataParallel buckets of the run unchanged)."""
        return self.setup.encoder_parameters if epoch < self.setup.freeze_encoder_epochs else ()

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        for module in self.setup.frozen_modules:
            module.eval()
        if epoch < self.setup.freeze_encoder_epochs:  # frozen: the pretrained batch-norm statistics, not updated
            for module in self.setup.encoder_modules:
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
