"""Semantic Genesis: self-classification + self-restoration of discovered patterns (Haghighi et al., MICCAI 2020).

The network is :class:`~semantic_genesis.models.YNet3D`: the Models Genesis 3D U-Net with a
classification head on the encoder. Each pattern (a cube of the pattern set written by
``semantic-genesis discover``) is transformed by a restoration recipe (default: the
``"semantic_genesis"`` preset, elastic warping of the input and exactly one of non-linear, local
shuffling, in- or out-painting; reference §2.5); the network outputs the restored pattern and the
class logits of its pseudo-label (the coordinate index). The loss (paper §2) is

    L = lambda_rec * MSE(restoration, pattern) + lambda_cls * CE(logits, label),

with ``lambda_rec = 1`` and ``lambda_cls = 0.01`` (``method`` section). Cross-entropy is computed on
**logits** (the official code takes ``log`` of a softmax, which is unstable; reference §5).

**Classification warm-up.** The paper trains the classification branch first for 20 epochs, then the
whole model jointly. During the first ``method.cls_warmup_epochs`` epochs only the encoder and the
head are trained (CE on the transformed pattern); the decoder is not run in the loss and is listed by
:meth:`frozen_parameters`, so it receives no gradient and no optimiser update. ``cls_warmup_epochs=0``
reproduces the official code (joint from the start; no warm-up exists in the released code,
reference §4.2).

**Composition.** :class:`SemanticAddon` is "self-discovery + self-classification added to a
restoration recipe" (the paper's Fig. 2 add-on). A recipe is a transform preset name
(``restoration_preset``) or, for anything else, an override of :meth:`SemanticAddon.make_pair`; the
flags ``restore`` and ``classify`` switch the two branches. So a variant is one small file::

    @register()
    class SemanticInpainting(SemanticAddon):
        name = "semantic_inpainting"
        restoration_preset = "inpaint"

The ablations registered here: ``self_restoration_patterns`` (restoration only, same patterns and
recipe) and, in :mod:`.self_classification`, ``self_classification`` (classification only). The
recipe can also be changed per run with ``method.options.preset=NAME``; ``transforms.overrides``
are passed to the preset.

Data: a pattern set (``patterns=RUN/patterns``, or ``data=``; a discovery run folder also works),
splits ``train`` and ``validation``. Validation logs ``mse`` (restoration), ``ce`` and ``accuracy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput


def pattern_root(cfg) -> Path:
    """The pattern-set folder named by ``patterns=`` (or ``data=``); a discovery run folder is accepted."""
    where = cfg.patterns or cfg.data
    if not where:
        raise ConfigError(
            f"method {cfg.method.name!r} needs a pattern set: patterns=RUN/patterns "
            "(made by `semantic-genesis discover`)"
        )
    root = Path(where)
    if not (root / "manifest.json").is_file() and (root / "patterns" / "manifest.json").is_file():
        root = root / "patterns"
    return root


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(inner, "module", inner) if isinstance(inner, nn.parallel.DistributedDataParallel) else inner


def check_transforms_preset(cfg, method: str, recipe: str) -> None:
    """Refuse a ``transforms.preset`` that a Semantic Genesis method would silently ignore.

    The Semantic Genesis family takes its restoration recipe from ``method.options.preset`` (default:
    the method's own, e.g. ``semantic_genesis``), not from ``transforms.preset`` (which selects the
    recipe of ``models_genesis``). When the recipe is a transform preset, ``transforms.preset`` must
    name the same preset or keep its default (a config without a ``transforms.preset`` line).
    Restoration-method variants (``semantic_inpainting``, ...) use their restoration method's recipe,
    configured by ``transforms.overrides``; they are not checked.

    Raises:
        ConfigError: naming both settings and the one to use.
    """
    from semantic_genesis.config import TransformsConfig
    from semantic_genesis.transforms import available_presets

    preset = cfg.transforms.preset
    if recipe not in available_presets() or preset in (recipe, TransformsConfig.preset):
        return
    raise ConfigError(
        f"method {method!r} restores with the recipe method.options.preset={recipe!r}; transforms.preset={preset!r} "
        f"would be ignored: set method.options.preset={preset} to use that preset, or transforms.preset={recipe}"
    )


class SemanticAddon(Method):
    """Self-classification of discovered patterns added to a self-restoration recipe.

    Class attributes (set by subclasses):
        restoration_preset: transform preset giving ``(input, target)`` from a batch of patterns.
        restore: train the restoration branch (decoder, MSE).
        classify: train the classification branch (head on the encoder, CE).
    """

    restoration_preset: str = "semantic_genesis"
    restore: bool = True
    classify: bool = True

    def __init__(self, cfg):
        super().__init__(cfg)
        if not (self.restore or self.classify):
            raise ConfigError(f"method {self.name!r} trains neither branch")
        self.warmup = int(cfg.method.cls_warmup_epochs) if (self.restore and self.classify) else 0
        if self.warmup < 0:
            raise ConfigError(f"method.cls_warmup_epochs must be >= 0, got {cfg.method.cls_warmup_epochs}")
        # during the warm-up the decoder takes no part in the loss (DDP must know)
        self.find_unused_parameters = self.warmup > 0
        check_transforms_preset(cfg, self.name, self.preset_name)
        self.monitor = "loss"
        self._preset = None
        self.num_classes: int | None = None
        self.item_shape: tuple[int, ...] | None = None

    # -- recipe ------------------------------------------------------------------------------------
    @property
    def preset_name(self) -> str:
        return str(self.cfg.method.options.get("preset", self.restoration_preset))

    @property
    def preset(self):
        if self._preset is None:
            from semantic_genesis.transforms import build_preset

            self._preset = build_preset(self.preset_name, **dict(self.cfg.transforms.overrides))
        return self._preset

    def make_pair(self, patterns: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, target)`` from a batch of patterns ``(B, 1, X, Y, Z)`` in [0, 1] (the recipe)."""
        with torch.autocast(device_type=patterns.device.type, enabled=False):
            return self.preset(patterns, generator=generator)

    # -- model and data ----------------------------------------------------------------------------
    def _read_store(self) -> None:
        if self.num_classes is not None:
            return
        from semantic_genesis.io.shards import ShardedArray

        root = pattern_root(self.cfg)
        store = ShardedArray(root, kind="patterns")
        attrs = store.manifest.get("attrs", {})
        labels = [int(r["label"]) for r in store.all_records()]
        if not labels:
            raise DataError(f"{root}: the pattern set is empty")
        num = int(attrs.get("num_classes", max(labels) + 1))
        if min(labels) < 0 or max(labels) >= num:
            raise DataError(f"{root}: labels span {min(labels)}..{max(labels)} but the set declares {num} classes")
        if self.cfg.model.num_classes and self.cfg.model.num_classes != num:
            raise ConfigError(
                f"model.num_classes={self.cfg.model.num_classes} but the pattern set {root} has {num} classes; "
                "set model.num_classes=0 (taken from the pattern set) or to that number"
            )
        self.num_classes = num
        self.item_shape = tuple(store.item_shape)

    def build_model(self) -> nn.Module:
        from semantic_genesis import models

        self._read_store()
        m = self.cfg.model
        common = {"in_channels": m.in_channels, "width": m.width, "norm": m.norm}
        if self.restore:
            if m.out_channels != m.in_channels:
                raise ConfigError(f"{self.name} restores its input: model.out_channels must equal model.in_channels")
            if m.out_activation != "sigmoid":
                raise ConfigError(f"{self.name} needs model.out_activation=sigmoid, got {m.out_activation!r}")
            common.update(out_channels=m.out_channels, out_activation=m.out_activation)
            if self.classify:
                return models.create("ynet3d", num_classes=self.num_classes, **common)
            return models.create("unet3d", **common)
        return models.create("encoder_classifier3d", num_classes=self.num_classes, head="genesis", **common)

    def build_datasets(self):
        from semantic_genesis.training.data import StoreDataset

        self._read_store()
        root = pattern_root(self.cfg)
        train = StoreDataset(root, "train", kind="patterns", with_labels=True)
        if len(train) == 0:
            raise DataError(f"{root}: the pattern set has no training patterns")
        if train.item_shape[0] != self.cfg.model.in_channels:
            raise ConfigError(f"{root}: patterns have {train.item_shape[0]} channel(s), model.in_channels is "
                              f"{self.cfg.model.in_channels}")
        val = StoreDataset(root, "validation", kind="patterns", with_labels=True)
        return train, (val if len(val) else None)

    # -- steps -------------------------------------------------------------------------------------
    def in_warmup(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) trains the classification branch alone."""
        return epoch < self.warmup

    def prepare_batch(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``{"input", "target"}``: :meth:`make_pair` on the patterns ``batch["image"]``."""
        inputs, targets = self.make_pair(batch["image"], generator)
        return {"input": inputs, "target": targets}

    def _step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext, keep: bool) -> StepOutput:
        patterns, labels = batch["image"], batch.get("label")
        pair = self.prepared(batch, ctx)
        inputs, targets = pair["input"], pair["target"]
        lam_rec, lam_cls = float(self.cfg.method.lambda_rec), float(self.cfg.method.lambda_cls)
        metrics: dict[str, float] = {}
        outputs: dict[str, torch.Tensor] = {}
        restoration = logits = None
        warm = ctx.training and self.in_warmup(ctx.epoch)
        if warm and not isinstance(model, nn.parallel.DistributedDataParallel):
            net = _unwrap(model)
            logits = net.classify(net.encode(inputs))  # decoder not run at all
        else:
            out = model(inputs)
            if self.restore and self.classify:
                restoration, logits = out.restoration, out.logits
            elif self.restore:
                restoration = out
            else:
                logits = out
        loss = None
        with torch.autocast(device_type=patterns.device.type, enabled=False):
            if logits is not None:
                if labels is None:
                    raise DataError("self-classification needs labelled patterns (records with 'label')")
                ce = F.cross_entropy(logits.float(), labels)
                metrics["ce"] = float(ce.detach())
                metrics["accuracy"] = float((logits.detach().argmax(1) == labels).float().mean())
                loss = ce if (warm or not self.restore) else lam_cls * ce
            if restoration is not None:
                mse = F.mse_loss(restoration.float(), targets.float())
                metrics["mse"] = float(mse.detach())
                if not warm:
                    term = lam_rec * mse if self.classify else mse
                    loss = term if loss is None else loss + term
        if keep and restoration is not None:
            outputs = {"input": inputs.detach(), "output": restoration.detach().float(), "target": targets.detach()}
        return StepOutput(loss, metrics, outputs)

    def training_step(self, model, batch, ctx) -> StepOutput:
        return self._step(model, batch, ctx, keep=False)

    def validation_step(self, model, batch, ctx) -> StepOutput:
        return self._step(model, batch, ctx, keep=False)

    def example_batch(self, model, batch, ctx) -> dict[str, torch.Tensor]:
        return self._step(model, batch, ctx, keep=True).outputs

    def frozen_parameters(self, model: nn.Module, epoch: int) -> Iterable[str]:
        """During the warm-up: every decoder parameter (``up_tr*``, ``out_tr*``)."""
        if not self.in_warmup(epoch):
            return ()
        prefixes = tuple(f"{p}." for p in getattr(_unwrap(model), "decoder_state_dict_prefixes", ()))
        return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]

    def weights_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "method": self.name,
            "transforms": self.preset_name if self.restore else None,
            "num_classes": self.num_classes if self.classify else None,
            "lambda_rec": float(self.cfg.method.lambda_rec),
            "lambda_cls": float(self.cfg.method.lambda_cls),
            "cls_warmup_epochs": self.warmup,
            "patterns": str(pattern_root(self.cfg)),
            "intensity": {"hu_min": self.cfg.intensity.hu_min, "hu_max": self.cfg.intensity.hu_max},
        }
        if self.item_shape:
            meta["input_size"] = list(self.item_shape[1:])
        return meta


@register()
class SemanticGenesis(SemanticAddon):
    """Semantic Genesis 3D: self-discovery + self-classification + self-restoration."""

    name = "semantic_genesis"
    description = ("Semantic Genesis: classify discovered patterns and restore them from the semantic_genesis "
                   "transforms (YNet3D; classification warm-up, then joint)")


@register()
class SelfRestorationPatterns(SemanticAddon):
    """Ablation: restoration only, on the discovered patterns (no classification head)."""

    name = "self_restoration_patterns"
    description = "ablation: restore transformed discovered patterns (U-Net, MSE), no self-classification"
    classify = False
