"""Semantic Genesis: self-classification + self-restoration of discovered patterns (Haghighi et al., MICCAI 2020).

The network is :class:`~semantic_genesis.models.ynet.YNet` on the backbone named by ``model.name``
(default the Models Genesis 3D U-Net, which gives the official Semantic Genesis ``YNet3D`` layout and
keys): the U-Net with a classification head on the encoder's bottleneck. Each pattern (a cube of the
pattern set written by ``semantic-genesis discover``) is transformed by a restoration recipe (default:
the ``"semantic_genesis"`` preset, elastic warping of the input and exactly one of non-linear, local
shuffling, in- or out-painting, as the official ``luna_loader`` with ``pytorch/utils/purturbation.py``); the network outputs the restored
pattern and the class logits of its pseudo-label (the coordinate index). The loss (paper, Sec. 2) is

    L = lambda_rec * MSE(restoration, pattern) + lambda_cls * CE(logits, label),

with ``lambda_rec = 1`` and ``lambda_cls = 0.01`` (``method.options``, :class:`SemanticGenesisOptions`;
the terms are :func:`semantic_genesis.losses.restoration_loss` and
:func:`semantic_genesis.losses.classification_loss`). Cross-entropy is computed on **logits** (the
official ``pytorch/train.py`` takes ``log`` of a softmax, which is unstable).

**Classification warm-up.** The paper trains the classification branch first for 20 epochs, then the
whole model jointly. During the first ``method.options.cls_warmup_epochs`` epochs only the encoder and
the head are trained (CE on the transformed pattern); the decoder is not run in the loss and is listed
by :meth:`frozen_parameters`, so it receives no gradient and no optimiser update. Model selection
and early stopping judge the joint model: ``monitor_start_epoch`` is the first joint epoch, where
the engine forgets the warm-up's best value and starts counting ``train.patience``.
``cls_warmup_epochs=0`` reproduces the official code (joint from the start; no warm-up exists in the
released code).

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
splits ``train`` and ``validation``. **2D** (Semantic Genesis 2D): a pattern set of ``(1, H, W)``
items (``discovery.pattern_size`` ``[H, W]``) trains a 2D backbone (``model.name`` ``resunet2d``, the
ResNet-18 U-Net, or ``unet2d``) with the same head, losses, warm-up and recipe (in 2D); the
network's dimensionality must match the patterns'. Validation logs ``mse`` (restoration), ``ce`` and ``accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.losses import classification_loss, restoration_loss
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.methods.options import MethodOptions, check_non_negative, parse_options
from semantic_genesis.models.registry import unwrap_model


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


@dataclass(frozen=True)
class SemanticAddonOptions(MethodOptions):
    """``method.options`` of the semantics add-on: the loss weights ``L = lambda_rec L_rec + lambda_cls L_cls``
    and the classification warm-up."""

    lambda_rec: float = 1.0  # weight of the restoration MSE
    lambda_cls: float = 0.01  # weight of the classification cross-entropy
    cls_warmup_epochs: int = 20  # epochs of the classification branch alone first (paper: 20; official code: 0)

    def __post_init__(self) -> None:
        check_non_negative(self, "lambda_rec", "lambda_cls", "cls_warmup_epochs")


@dataclass(frozen=True)
class SemanticGenesisOptions(SemanticAddonOptions):
    """:class:`SemanticAddonOptions` and the restoration recipe of a preset-based variant."""

    preset: str | None = None  # transform preset of the restoration recipe (None: the method's own)


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
    options_class: type[SemanticAddonOptions] = SemanticGenesisOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        if not (self.restore or self.classify):
            raise ConfigError(f"method {self.name!r} trains neither branch")
        self.options = parse_options(cfg, self.options_class, self.name)
        self.warmup = self.options.cls_warmup_epochs if (self.restore and self.classify) else 0
        # during the warm-up the decoder takes no part in the loss (DDP must know)
        self.find_unused_parameters = self.warmup > 0
        # best weights and early stopping judge the joint model: train.patience counts from the first joint epoch
        self.monitor_start_epoch = self.warmup
        check_transforms_preset(cfg, self.name, self.preset_name)
        self.monitor = "loss"
        self._preset = None
        self.num_classes: int | None = None
        self.item_shape: tuple[int, ...] | None = None

    # -- recipe ------------------------------------------------------------------------------------
    @property
    def preset_name(self) -> str:
        return self.options.preset or self.restoration_preset

    def preset_for(self, spatial_dims: int):
        """The transform preset of the recipe for batches of ``spatial_dims`` (2 or 3) spatial axes."""
        if self._preset is None or self._preset[0] != spatial_dims:
            from semantic_genesis.transforms import build_preset

            self._preset = (spatial_dims, build_preset(self.preset_name, spatial_dims=spatial_dims,
                                                       **dict(self.cfg.transforms.overrides)))
        return self._preset[1]

    @property
    def preset(self):
        """The recipe's transform preset for the pattern set's dimensionality (read on first use)."""
        self._read_store()
        return self.preset_for(len(self.item_shape) - 1)

    def make_pair(self, patterns: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, target)`` from a batch of patterns ``(B, 1, X, Y, Z)`` or ``(B, 1, H, W)`` in [0, 1]
        (the recipe)."""
        with torch.autocast(device_type=patterns.device.type, enabled=False):
            return self.preset_for(patterns.dim() - 2)(patterns, generator=generator)

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
        """:class:`~semantic_genesis.models.ynet.YNet` on the backbone ``model.name`` (restore and
        classify), the backbone alone (restore), or its encoder + the Semantic Genesis head (classify)."""
        from semantic_genesis.models.backbone import backbone_from_config
        from semantic_genesis.models.classifier import EncoderClassifier
        from semantic_genesis.models.ynet import YNet

        self._read_store()
        m = self.cfg.model
        if self.restore:
            if m.out_channels != m.in_channels:
                raise ConfigError(f"{self.name} restores its input: model.out_channels must equal model.in_channels")
            if m.out_activation != "sigmoid":
                raise ConfigError(f"{self.name} needs model.out_activation=sigmoid, got {m.out_activation!r}")
        backbone = backbone_from_config(m, f"method {self.name!r}")
        spatial = len(self.item_shape) - 1
        if backbone.spatial_dims != spatial:
            kind = "2D patterns" if spatial == 2 else "3D patterns"
            fits = "resunet2d or unet2d" if spatial == 2 else "unet3d"
            raise ConfigError(
                f"{pattern_root(self.cfg)}: {kind} (items {tuple(self.item_shape)}) cannot train model.name="
                f"{m.name} ({backbone.spatial_dims}D); use model.name={fits}"
            )
        if self.restore and self.classify:
            return YNet(backbone, num_classes=self.num_classes)
        if self.restore:
            return backbone
        return EncoderClassifier(backbone, num_classes=self.num_classes, head="genesis")

    def build_datasets(self):
        from semantic_genesis.io.shard_dataset import StoreDataset

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
        lam_rec, lam_cls = self.options.lambda_rec, self.options.lambda_cls
        metrics: dict[str, float] = {}
        outputs: dict[str, torch.Tensor] = {}
        restoration = logits = None
        warm = ctx.training and self.in_warmup(ctx.epoch)
        if warm and not isinstance(model, nn.parallel.DistributedDataParallel):
            net = unwrap_model(model)
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
        if logits is not None:
            if labels is None:
                raise DataError("self-classification needs labelled patterns (records with 'label')")
            ce = classification_loss(logits, labels)
            metrics["ce"] = float(ce.detach())
            metrics["accuracy"] = float((logits.detach().argmax(1) == labels).float().mean())
            loss = ce if (warm or not self.restore) else lam_cls * ce
        if restoration is not None:
            mse = restoration_loss(restoration, targets)
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
        prefixes = tuple(f"{p}." for p in getattr(unwrap_model(model), "decoder_state_dict_prefixes", ()))
        return [n for n, _ in model.named_parameters() if n.startswith(prefixes)]

    def weights_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "method": self.name,
            "transforms": self.preset_name if self.restore else None,
            "num_classes": self.num_classes if self.classify else None,
            "lambda_rec": self.options.lambda_rec,
            "lambda_cls": self.options.lambda_cls,
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
                   "transforms (YNet; classification warm-up, then joint)")


@register()
class SelfRestorationPatterns(SemanticAddon):
    """Ablation: restoration only, on the discovered patterns (no classification head)."""

    name = "self_restoration_patterns"
    description = "ablation: restore transformed discovered patterns (U-Net, MSE), no self-classification"
    classify = False
