"""Ark: one model from several chest X-ray datasets with heterogeneous expert labels (Ma et al., MICCAI 2023; Ark+).

Ark trains one shared backbone and projector with one classification head per dataset
(:class:`~semantic_genesis.models.multi_head.MultiHeadModel`). Datasets are taken in turn, *cyclic*
(official ``engine.py``): an epoch serves every batch of the first dataset, then of the second, ...,
each batch from one dataset and scored only by that dataset's head
(:class:`~semantic_genesis.methods.ark_data.CyclicBatches`). A teacher, the exponential moving average
of the student (:mod:`semantic_genesis.models.ema`), sees a second view of the batch; the student's
projection must match the teacher's (mean squared error between the unnormalised projector outputs,
teacher under ``no_grad``). The loss of a batch of dataset ``i``::

    L = (1 - c) * crit_i(head_i(student(x_s)), y) + c * MSE(proj(student(x_s)), proj(teacher(x_t)))

``crit_i``: binary cross-entropy with logits for every dataset in the MICCAI variant (``variant:
miccai``; the one-hot rows of a multi-class set included), cross-entropy for multi-class datasets in
Ark+ (``variant: plus``). Unknown labels (NaN) are left out of the loss.

Schedules (DINO's cosine, :func:`~semantic_genesis.models.ema.cosine_schedule`): the teacher
momentum ``m`` rises from ``momentum_teacher`` (0.9) to 1 and the consistency coefficient ``c`` from 0
to ``coefficient`` (0.5); Ark+ derives ``c = (m - 0.9) * 5`` from the momentum (generally
``(m - m0) / (1 - m0) * coefficient``), the same end points. ``ema_mode: epoch`` (the official
default) moves the teacher once after each dataset pass, and both schedules have one value per pass
(``train.epochs x datasets``); ``ema_mode: iteration`` moves it after every step and indexes both
schedules by the step (the official code advances its index per pass in both modes, so its momentum
barely moves in iteration mode; here iteration mode is consistent).

Differences from the official code, on purpose: the learning-rate schedule is stepped by the engine
(by step, not by the validation loss passed as timm's epoch); the teacher is always in eval mode
(batch-norm backbones use running statistics, copied from the student); validation reports per-dataset
AUC (student and teacher) every epoch, and the exported network (``export``: the teacher, as the
official READMEs transfer, or the student) selects the best weights by its mean AUC.

Config (``method.options``, :class:`ArkOptions`): ``datasets`` (one
:class:`~semantic_genesis.methods.ark_data.ArkDatasetSpec` each: reader ``layout``, ``root`` under
``data=``, splits, reader options), image size, projector, variant, schedules and views. Presets
``ark_2d`` (the paper's setting) and ``ark_2d_tiny`` (three phantom datasets on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError, DataError, TrainingError
from semantic_genesis.methods import register
from semantic_genesis.methods.ark_data import ArkDatasetSpec, ViewSettings
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.methods.options import PREFIX, MethodOptions, parse_options


@dataclass(frozen=True)
class ArkOptions(MethodOptions):
    """``method.options`` of Ark (defaults: the MICCAI 2023 setting).

    Attributes:
        datasets: the datasets, in cyclic order (each a
            :class:`~semantic_genesis.methods.ark_data.ArkDatasetSpec` mapping).
        image_size: ``[H, W]`` every image is resized to (paper: 224 x 224; Ark+ 768).
        proj_dim: projector width (official 1376; 0 = no projector).
        use_mlp: projector ``Linear-ReLU-Linear`` (official ``--use_mlp``).
        variant: ``miccai`` (BCE everywhere, cosine coefficient) or ``plus`` (Ark+: CE for multi-class
            datasets, ``c`` derived from the momentum, teacher view = the resized original).
        views: ``ark`` / ``ark_plus`` (default: by ``variant``), see :func:`~semantic_genesis.methods.ark_data.ark_views`.
        ema_mode: ``epoch`` (teacher moved after each dataset pass) or ``iteration`` (after each step).
        momentum_teacher: start of the momentum schedule (official 0.9); it ends near 1.
        coefficient: end of the consistency coefficient schedule (official 0.5); 0 trains without the
            teacher term (the ablation "Ark without teacher").
        teacher_init: ``independent`` (the teacher is a separately initialised twin, as the official
            code builds it) or ``copy`` (a copy of the student).
        export: the network written to the weights files: ``teacher`` (official transfer) or ``student``.
        normalization: input normalisation: ``none`` ([0, 1], as this package's DXC / PXS fine-tuning),
            ``imagenet`` or ``chestx-ray`` (official options).
        crop_scale: area range of the student's random resized crop (official 0.08-1).
        eval_crops: test-time views averaged in evaluation: 1, or 10 (TenCrop, official test).
        eval_teacher: also score the teacher in every validation (official: student and teacher).
    """

    datasets: tuple[ArkDatasetSpec, ...] = ()
    image_size: tuple[int, int] = (224, 224)
    proj_dim: int = 1376
    use_mlp: bool = False
    variant: Literal["miccai", "plus"] = "miccai"
    views: Literal["ark", "ark_plus"] | None = None
    ema_mode: Literal["epoch", "iteration"] = "epoch"
    momentum_teacher: float = 0.9
    coefficient: float = 0.5
    teacher_init: Literal["independent", "copy"] = "independent"
    export: Literal["teacher", "student"] = "teacher"
    normalization: Literal["none", "imagenet", "chestx-ray"] = "none"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    eval_crops: int = 1
    eval_teacher: bool = True

    def __post_init__(self) -> None:  # messages start with the field name; the parser adds "method.options."
        names = [d.name for d in self.datasets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"datasets: the name {repeated[0]!r} is used twice")
        if min(self.image_size) <= 0:
            raise ConfigError(f"image_size must be positive, got {list(self.image_size)}")
        if not 0.0 <= self.momentum_teacher < 1.0:
            raise ConfigError(f"momentum_teacher must be in [0, 1), got {self.momentum_teacher}")
        if not 0.0 <= self.coefficient <= 1.0:
            raise ConfigError(f"coefficient must be in [0, 1], got {self.coefficient}")
        if self.eval_crops not in (1, 10):
            raise ConfigError(f"eval_crops must be 1 or 10, got {self.eval_crops}")
        if self.proj_dim < 0:
            raise ConfigError(f"proj_dim must be >= 0, got {self.proj_dim}")

    @property
    def view_mode(self) -> str:
        return self.views or ("ark_plus" if self.variant == "plus" else "ark")


def head_loss(logits: torch.Tensor, target: torch.Tensor, task: str, variant: str) -> torch.Tensor:
    """The supervised loss of one head on its own labels.

    Args:
        logits: ``(B, C)`` of the dataset's head.
        target: ``(B, C)`` labels in [0, 1], NaN = unknown (left out).
        task: the dataset's task; variant: ``miccai`` (BCE with logits for all) or ``plus`` (CE over the
            labelled class for multi-class datasets, rows without a label left out).

    Raises:
        DataError: the target's width differs from the head's.
    """
    if logits.dim() != 2 or tuple(target.shape) != tuple(logits.shape):
        raise DataError(f"ark: the head gives logits {tuple(logits.shape)} but the targets are {tuple(target.shape)}")
    logits, target = logits.float(), target.float()
    if task == "multi-class" and variant == "plus":
        rows = ~torch.isnan(target).any(dim=1)
        if not bool(rows.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[rows], target[rows].argmax(dim=1))
    known = ~torch.isnan(target)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], target[known])


@register()
class Ark(Method):
    """Cyclic multi-dataset training with one head per dataset and an EMA teacher (Ark / Ark+)."""

    name = "ark"
    description = "Ark / Ark+: one backbone, a head per labelled dataset, cyclic training, EMA teacher consistency"
    monitor = "auc"
    monitor_mode = "max"
    find_unused_parameters = True  # a step trains one head only
    options_class: type[MethodOptions] = ArkOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options: ArkOptions = parse_options(cfg, self.options_class, self.name)
        if not self.options.datasets:
            raise ConfigError(f"{PREFIX}.datasets: Ark needs at least one dataset (name, layout, root, ...)")
        if cfg.train.steps_per_epoch:
            raise ConfigError("ark: train.steps_per_epoch must be 0 (an Ark epoch passes over every dataset once)")
        self.views = ViewSettings(mode=self.options.view_mode, crop_scale=tuple(self.options.crop_scale))
        self._parts: list[tuple[Any, Any]] | None = None
        self.teacher: nn.Module | None = None
        self.sampler = None
        self.ema_updates = 0
        self._schedules: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- data -------------------------------------------------------------------------------------
    @property
    def specs(self) -> tuple[ArkDatasetSpec, ...]:
        return tuple(self.options.datasets)

    def parts(self) -> list[tuple[Any, Any]]:
        """``[(train, validation), ...]`` :class:`LabelledImages` per dataset (read once)."""
        if self._parts is None:
            from semantic_genesis.methods.ark_data import read_spec

            self._parts = [read_spec(spec, self.cfg.data, self.cfg.seed) for spec in self.specs]
        return self._parts

    @property
    def num_classes(self) -> list[int]:
        return [train.num_classes for train, _ in self.parts()]

    @property
    def tasks(self) -> list[str]:
        return [train.task for train, _ in self.parts()]

    @property
    def label_names(self) -> list[tuple[str, ...]]:
        return [train.label_names for train, _ in self.parts()]

    def build_datasets(self):
        from semantic_genesis.methods.ark_data import ArkImages

        parts = self.parts()
        size = tuple(self.options.image_size)
        names = [s.name for s in self.specs]
        train = ArkImages([t for t, _ in parts], names, size, str(self.cfg.data or ""))
        val = ArkImages([v for _, v in parts], names, size, str(self.cfg.data or ""))
        return train, (val if len(val) else None)

    def batch_sampler(self, dataset, seed: int, rank: int, world_size: int):
        from semantic_genesis.methods.ark_data import CyclicBatches

        self.sampler = CyclicBatches(dataset.lengths, dataset.offsets, self.cfg.train.batch_size, seed, rank, world_size)
        return self.sampler

    # -- network ----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from semantic_genesis.models.backbone import backbone_from_config
        from semantic_genesis.models.multi_head import MultiHeadModel
        from semantic_genesis.models.ema import make_teacher

        backbone = backbone_from_config(self.cfg.model, who="ark")
        if backbone.spatial_dims != 2:
            raise ConfigError(f"ark trains on radiographs: model.name={self.cfg.model.name} is {backbone.spatial_dims}D; use a 2D backbone")
        bad = [s for s in self.options.image_size if s % backbone.min_divisor]
        if bad:
            raise ConfigError(f"{PREFIX}.image_size {list(self.options.image_size)} must be multiples of "
                              f"{backbone.min_divisor} for model.name={self.cfg.model.name}")
        model = MultiHeadModel(backbone, self.num_classes, self.options.proj_dim, self.options.use_mlp)
        self.teacher = make_teacher(model, independent_init=self.options.teacher_init == "independent")
        return model

    def _teacher_on(self, device: torch.device) -> nn.Module:
        if self.teacher is None:
            raise TrainingError("ark: the teacher does not exist before build_model")
        first = next(self.teacher.parameters())
        if first.device != device:
            self.teacher.to(device)
        return self.teacher

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Grey views ``(B, 1, H, W)`` in [0, 1] -> network input (channels, normalisation)."""
        from semantic_genesis.methods.ark_data import normalise

        return normalise(images, self.options.normalization, int(self.cfg.model.in_channels))

    # -- schedules --------------------------------------------------------------------------------
    def schedule_length(self, steps_per_epoch: int | None = None) -> int:
        """Values per schedule: ``epochs x datasets`` (epoch mode) or ``epochs x steps_per_epoch``."""
        epochs = int(self.cfg.train.epochs)
        if self.options.ema_mode == "epoch":
            return epochs * len(self.specs)
        if steps_per_epoch is None:
            if self.sampler is None:
                raise TrainingError("ark: iteration-mode schedules need the batch sampler (steps per epoch)")
            steps_per_epoch = self.sampler.num_batches
        return epochs * int(steps_per_epoch)

    def schedules(self, steps_per_epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(momentum, coefficient)``, float64, one value per dataset pass (epoch mode) or per step."""
        if self._schedules is None:
            from semantic_genesis.models.ema import cosine_schedule

            o = self.options
            n = self.schedule_length(steps_per_epoch)
            momentum = cosine_schedule(o.momentum_teacher, 1.0, n, 1)
            if o.variant == "plus":  # Ark+: c = (m - 0.9) * 5 with the defaults
                coefficient = (momentum - o.momentum_teacher) / (1.0 - o.momentum_teacher) * o.coefficient
            else:
                coefficient = cosine_schedule(0.0, o.coefficient, n, 1)
            self._schedules = (momentum, coefficient)
        return self._schedules

    def schedule_index(self, epoch: int, dataset: int, step: int) -> int:
        """Index into the schedules of a step of ``dataset`` in ``epoch`` (global ``step``)."""
        momentum, _ = self.schedules()
        index = epoch * len(self.specs) + dataset if self.options.ema_mode == "epoch" else step
        return min(int(index), len(momentum) - 1)

    # -- steps ------------------------------------------------------------------------------------
    @staticmethod
    def batch_dataset(batch: dict[str, torch.Tensor]) -> int:
        """The one dataset a training batch comes from."""
        which = torch.unique(batch["dataset"])
        if which.numel() != 1:
            raise TrainingError(f"ark: a training batch mixes datasets {which.tolist()}; batches must come from one dataset")
        return int(which[0])

    def supervised_and_consistency(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext,
                                   coefficient: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, supervised, consistency)`` of a single-dataset batch with consistency weight ``coefficient``."""
        from semantic_genesis.methods.ark_data import ark_views

        d = self.batch_dataset(batch)
        student_view, teacher_view = ark_views(batch["image"], self.views, ctx.generator)
        projection, logits = model(self.inputs(student_view), head=d)
        target = batch["target"][:, : self.num_classes[d]]
        supervised = head_loss(logits, target, self.tasks[d], self.options.variant)
        if coefficient > 0:
            teacher = self._teacher_on(batch["image"].device)
            with torch.no_grad():
                teacher_projection, _ = teacher(self.inputs(teacher_view), head=d)
            consistency = F.mse_loss(projection.float(), teacher_projection.float())
            loss = (1.0 - coefficient) * supervised + coefficient * consistency
        else:
            consistency = torch.zeros((), device=supervised.device)
            loss = supervised
        return loss, supervised, consistency

    def training_step(self, model, batch, ctx) -> StepOutput:
        d = self.batch_dataset(batch)
        _, coefficients = self.schedules()
        c = float(coefficients[self.schedule_index(ctx.epoch, d, ctx.step)])
        loss, supervised, consistency = self.supervised_and_consistency(model, batch, ctx, c)
        return StepOutput(loss, {"supervised": float(supervised.detach()), "consistency": float(consistency.detach()),
                                 "coefficient": c})

    def after_step(self, model: nn.Module, ctx: StepContext) -> None:
        """The teacher's EMA: after the last batch of each dataset pass (epoch mode) or every step."""
        from semantic_genesis.models.ema import ema_update

        if self.options.ema_mode == "epoch":
            if self.sampler is None:
                raise TrainingError("ark: epoch-mode EMA needs the batch sampler (which batch ends a dataset pass)")
            d = self.sampler.dataset_of(ctx.batch_index)
            if ctx.batch_index != self.sampler.pass_ends()[d]:
                return
            index = self.schedule_index(ctx.epoch, d, ctx.step)
        else:
            index = self.schedule_index(ctx.epoch, 0, ctx.step)
        momentum, _ = self.schedules()
        teacher = self._teacher_on(next(model.parameters()).device)
        ema_update(model, teacher, float(momentum[index]))
        self.ema_updates += 1

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        from semantic_genesis.models.ema import teacher_state

        if self.teacher is None:
            return {}
        return {"teacher": teacher_state(self.teacher), "ema_updates": int(self.ema_updates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from semantic_genesis.models.ema import load_teacher_state

        if "teacher" not in state:
            raise CheckpointError("ark: the checkpoint holds no teacher")
        if self.teacher is None:
            raise CheckpointError("ark: cannot restore a teacher before the network is built")
        load_teacher_state(self.teacher, state["teacher"])
        self.ema_updates = int(state.get("ema_updates", 0))

    def export_module(self, model: nn.Module) -> nn.Module:
        if self.options.export == "teacher":
            return self._teacher_on(next(model.parameters()).device)
        return model

    def weights_metadata(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "exported": self.options.export,
            "variant": self.options.variant,
            "input_size": list(self.options.image_size),
            "normalization": self.options.normalization,
            "datasets": [
                {"name": spec.name, "layout": spec.layout, "task": task, "labels": list(names),
                 "eval_labels": list(spec.eval_labels)}
                for spec, task, names in zip(self.specs, self.tasks, self.label_names)
            ],
            "options": self.options.as_dict(),
        }

    # -- evaluation -------------------------------------------------------------------------------
    def score_weights(self, weights: str | Path, split: str = "validation"):
        """``(per-dataset HeadScores, markdown tables)`` of a weights file (``pretrain --score``)."""
        from semantic_genesis.methods.ark_eval import results_markdown

        results = evaluate_weights(self.cfg, weights, split, self.cfg.train.batch_size, _device(self.cfg))
        return results, results_markdown(results, f"Ark evaluation of {Path(weights).name} ({split} images)")

    @torch.no_grad()
    def predict(self, model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        """Every head's logits ``[(B, C_i), ...]`` of grey images ``(B, 1, H, W)`` in [0, 1], averaged
        over ``eval_crops`` test views (probabilities are averaged by :meth:`score`)."""
        from semantic_genesis.methods.ark_data import multi_crops

        views = multi_crops(images.float(), self.options.eval_crops)
        per_view = [model(self.inputs(v)) for v in views]
        return [torch.stack([p[d].float() for p in per_view]) for d in range(len(self.specs))]

    def collect(self, model: nn.Module, batches, teacher: nn.Module | None = None) -> dict[str, Any]:
        """Probabilities and targets per dataset (and validation loss sums) over ``batches``."""
        from semantic_genesis.methods.ark_eval import head_probabilities

        nets = {"student": model} | ({"teacher": teacher} if teacher is not None else {})
        out: dict[str, Any] = {f"{who}/{d}": [] for who in nets for d in range(len(self.specs))}
        out |= {f"target/{d}": [] for d in range(len(self.specs))}
        out["loss"] = [0.0] * len(self.specs)
        out["count"] = [0] * len(self.specs)
        for batch in batches:
            which = batch["dataset"]
            present = [int(d) for d in torch.unique(which)]
            for who, net in nets.items():
                logits = self.predict(net, batch["image"])
                for d in present:
                    rows = which == d
                    views = logits[d][:, rows]
                    out[f"{who}/{d}"].append(head_probabilities(views, self.tasks[d]).mean(dim=0).cpu())
                    if who == "student":
                        target = batch["target"][rows, : self.num_classes[d]]
                        out["loss"][d] += float(head_loss(views[0], target, self.tasks[d], self.options.variant)) * int(rows.sum())
                        out["count"][d] += int(rows.sum())
            for d in present:
                out[f"target/{d}"].append(batch["target"][which == d, : self.num_classes[d]].float().cpu())
        return out

    def score(self, collected: list[dict[str, Any]], who: str = "student"):
        """:class:`~semantic_genesis.methods.ark_eval.HeadScores` per dataset with validation images."""
        from semantic_genesis.methods.ark_eval import score_head

        results = []
        for d, spec in enumerate(self.specs):
            probs = [t for c in collected for t in c[f"{who}/{d}"]]
            if not probs:
                continue
            targets = torch.cat([t for c in collected for t in c[f"target/{d}"]])
            results.append(score_head(spec.name, self.tasks[d], self.label_names[d], torch.cat(probs), targets,
                                      spec.eval_labels))
        return results

    def evaluate(self, model, loader, ctx) -> dict[str, Any]:
        """Per-dataset AUC of the student (and the teacher) on the validation images of every dataset;
        ``auc`` (the monitor) is the exported network's mean over datasets of their mean AUC, ``loss``
        the mean over datasets of the student's supervised validation loss."""
        import math

        from semantic_genesis.methods.ark_eval import overall_auc, summarise

        teacher = self._teacher_on(ctx.device) if (self.options.eval_teacher or self.options.export == "teacher") else None
        collected = ctx.gather(self.collect(model, loader, teacher))
        values: dict[str, Any] = {}
        scores = {"student": self.score(collected, "student")}
        if teacher is not None:
            scores["teacher"] = self.score(collected, "teacher")
        for who, results in scores.items():
            flat = summarise(results, prefix=f"{who}/")
            values |= {k: v for k, v in flat.items() if not (isinstance(v, float) and math.isnan(v))}
            values[f"{who}/auc"] = overall_auc(results)
        values["auc"] = values[f"{self.options.export}/auc"]
        losses = [sum(c["loss"][d] for c in collected) / max(1, sum(c["count"][d] for c in collected))
                  for d in range(len(self.specs)) if sum(c["count"][d] for c in collected)]
        values["loss"] = float(sum(losses) / len(losses)) if losses else math.nan
        return values

    def evaluate_split(self, model: nn.Module, split: str = "validation", batch_size: int = 32,
                       device: str | torch.device = "cpu"):
        """Score ``model`` (a :class:`MultiHeadModel` with this run's heads) on the validation images of
        every dataset (``split="validation"``), on its training images (``"training"``) or on the reader
        split ``split`` of each dataset (e.g. ``test``); returns
        :class:`~semantic_genesis.methods.ark_eval.HeadScores` per dataset."""
        from torch.utils.data import DataLoader, default_collate

        from semantic_genesis.io.datasets.cxr import read_labelled_images
        from semantic_genesis.methods.ark_data import ArkImages, resolve_root

        names = [s.name for s in self.specs]
        if split in ("validation", "training"):
            parts = [v if split == "validation" else t for t, v in self.parts()]
        else:
            parts = []
            for spec in self.specs:
                part = read_labelled_images(spec.layout, resolve_root(spec, self.cfg.data), split, **dict(spec.options))
                parts.append(part.restrict_labels(spec.labels) if spec.labels else part)
        data = ArkImages(parts, names, tuple(self.options.image_size))
        if len(data) == 0:
            raise DataError(f"ark: no images in split {split!r} of any dataset")
        model = model.to(device).eval()
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=default_collate)
        batches = ({k: v.to(device) for k, v in b.items()} for b in loader)
        return self.score([self.collect(model, batches)], "student")


def _device(cfg) -> str:
    choice = cfg.train.device
    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def evaluate_weights(cfg, weights: str | Path, split: str = "validation", batch_size: int = 32,
                     device: str = "cpu"):
    """Score an Ark weights file (student or teacher, as exported) on every dataset of ``cfg``'s
    ``method.options.datasets`` with its own head; returns per-dataset
    :class:`~semantic_genesis.methods.ark_eval.HeadScores`.

    Raises:
        CheckpointError: the file holds no multi-head network, or its heads do not fit the datasets.
    """
    from semantic_genesis.models.loading import build_model_from_weights
    from semantic_genesis.models.multi_head import MultiHeadModel

    method = Ark(cfg)
    model = build_model_from_weights(weights)
    if not isinstance(model, MultiHeadModel):
        raise CheckpointError(f"{weights}: holds a {type(model).__name__}, not an Ark multi-head network")
    if list(model.num_classes) != method.num_classes:
        raise CheckpointError(f"{weights}: heads of {list(model.num_classes)} classes do not fit the datasets "
                              f"({', '.join(f'{s.name}: {n}' for s, n in zip(method.specs, method.num_classes))})")
    return method.evaluate_split(model, split, batch_size, device)
