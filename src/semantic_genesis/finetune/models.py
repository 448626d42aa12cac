"""Target-task networks and their initialisation from pretrained weights.

Transfer as in the papers (Semantic Genesis, MICCAI 2020: "the encoder alone is fine-tuned for
classification targets; encoder and decoder for segmentation targets"):

* **classification** (NCC): the pretrained backbone's **encoder** + global average pooling + a new head
  (:class:`~semantic_genesis.models.classifier.EncoderClassifier`). ``finetune.head``:

  - ``"mlp"`` (default): GAP -> Linear(C, 2C) -> ReLU -> Linear(2C, n). At width 1 (C = 512) this is
    exactly the official Models Genesis PyTorch ``TargetNet`` head 512 -> 1024 -> n; at smaller widths
    the hidden layer scales with the encoder. It outputs logits (the sigmoid is in the loss), where the
    official head applied a sigmoid inside the network;
  - ``"linear"``: GAP -> Linear(C, n) (a linear probe with ``finetune.freeze_encoder=true``);
  - ``"genesis"``: the Semantic Genesis conv head (Conv 3x3x3 C -> 2C, norm, ReLU, GAP, Linear).

* **segmentation** (NCS, LCS, BMS, PXS): the whole backbone (encoder + decoder) with a **new output
  layer** (e.g. ``out_tr.final_conv`` re-initialised), producing logits ``(B, n, *spatial)``. An
  encoder-only backbone gets its dense variant
  (:func:`~semantic_genesis.models.backbone.dense_backbone_name`): a ``swin2d`` file fine-tunes as a
  ``swin_unetr2d`` (the same Swin keys + a SwinUNETR decoder, trained from random initialisation).

Normalisation (``finetune.norm``, :func:`finetune_norm`): by default the fine-tuned network uses the
standard batch norm (running statistics in eval mode), also when the weights were pretrained with the
official ``ContBatchNorm3d`` (``batch_stats``), so predictions do not depend on the batch;
``finetune.norm=batch_stats`` reproduces the official code.

Initialisation (:class:`InitSpec`): ``scratch`` (random, seeded; the backbone named by ``model.name``)
or a weights file of this library (safetensors + metadata; official checkpoints are converted with
``semantic-genesis weights import``). The network is built from the weights' own record of what they
are (the architecture and constructor arguments written by ``save_weights``; inferred from the keys
only for files of other tools) through :func:`semantic_genesis.models.loading.read_pretrained`, so a
checkpoint and its fine-tuned network always fit, in 2D as in 3D. The tensors copied are chosen by
the backbone's own prefixes (:mod:`semantic_genesis.models.backbone`): its encoder for classification,
its encoder and decoder (output layer excepted) for segmentation. A checkpoint that does not fit
(another dimensionality, other input channels, missing encoder tensors, a tensor of the wrong shape)
raises :class:`~semantic_genesis.errors.CheckpointError` naming the file and the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError, describe_path

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.tasks import Task


@dataclass(frozen=True)
class InitSpec:
    """How to initialise a fine-tuned network: ``name`` (label in tables) and ``path`` (None = scratch)."""

    name: str
    path: Path | None = None

    @property
    def is_scratch(self) -> bool:
        return self.path is None


def parse_init(text: str) -> InitSpec:
    """Parse ``scratch``, ``NAME=PATH`` or ``PATH`` (named after the file stem)."""
    text = str(text).strip()
    if not text:
        raise ConfigError("empty initialisation; use scratch, NAME=PATH or PATH")
    if text == "scratch":
        return InitSpec("scratch")
    if "=" in text:
        name, path = (s.strip() for s in text.split("=", 1))
        if not name:
            raise ConfigError(f"initialisation {text!r} has an empty name; use NAME=PATH")
        if path in ("", "scratch"):
            return InitSpec(name)
        return InitSpec(name, Path(path))
    path = Path(text)
    return InitSpec(path.name.split(".")[0], path)


def parse_inits(entries: str | list[str] | tuple[str, ...]) -> list[InitSpec]:
    """Parse a comma-separated string or a list of init entries; names must be unique."""
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    specs = [parse_init(e) for e in entries]
    if not specs:
        raise ConfigError("no initialisations given; e.g. --inits scratch,mg=weights/mg.safetensors")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"initialisation names must be unique; repeated: {', '.join(dupes)}")
    return specs


@dataclass
class InitReport:
    """What the initialisation did: tensors copied, left at random, and the checkpoint's metadata."""

    init: str
    path: str | None
    loaded: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)  # model tensors not taken from the checkpoint
    unused: list[str] = field(default_factory=list)  # checkpoint tensors not used by this task
    metadata: dict[str, Any] = field(default_factory=dict)
    backbone: str = ""  # registry name of the network's backbone
    backbone_args: dict[str, Any] = field(default_factory=dict)  # its constructor arguments

    def summary(self) -> dict[str, Any]:
        return {
            "init": self.init,
            "path": self.path,
            "loaded": len(self.loaded),
            "random": len(self.random),
            "unused": len(self.unused),
            "method": self.metadata.get("method"),
        }


BATCH_NORMS = ("batch", "batch_stats")  # same tensors (weight, bias, running_mean/var, num_batches_tracked)


def finetune_norm(cfg: "Config", norm: str) -> str:
    """The normalisation of a fine-tuned network whose weights (or ``model.norm``) use ``norm``.

    ``finetune.norm`` replaces either batch norm: ``"batch"`` (default) normalises with running
    statistics in eval mode, so a sample's prediction is the same alone and in any batch;
    ``"batch_stats"`` is the official ``ContBatchNorm3d`` (batch statistics also in eval, as the
    official Models Genesis / Semantic Genesis code fine-tunes and predicts: a prediction depends on
    the other samples of its batch); ``"keep"`` leaves ``norm`` as it is. Instance and group norms are
    kept. The two batch norms hold the same tensors (the official one also updates its running
    statistics), so a file written with one loads into the other.
    """
    choice = cfg.finetune.norm
    if choice == "keep" or norm not in BATCH_NORMS:
        return norm
    return choice


def _scratch_backbone(cfg: "Config", in_channels: int) -> tuple[str, dict[str, Any]]:
    """The backbone named by ``model.name`` with the config's width and normalisation
    (:func:`finetune_norm` of ``model.norm``) and ``model.args`` (e.g. ``{size: tiny}`` for a Swin)."""
    from semantic_genesis.models.backbone import backbones
    from semantic_genesis.models.registry import model_arguments

    name = cfg.model.name
    if name not in backbones():
        raise ConfigError(
            f"model.name={name!r} is not a backbone; fine-tuning from scratch builds one of {', '.join(backbones())}"
        )
    args = {"in_channels": in_channels, "width": cfg.model.width, "norm": finetune_norm(cfg, cfg.model.norm),
            "skip_connections": True}
    extra = dict(cfg.model.args or {})
    valid = model_arguments(name)
    unknown = [k for k in extra if k not in valid]
    if unknown:
        raise ConfigError(f"model.args.{unknown[0]}: backbone {name!r} has no such argument; valid arguments: "
                          f"{', '.join(valid)}")
    return name, {**args, **extra}


def build_model(task: "Task", cfg: "Config", in_channels: int, init: InitSpec) -> tuple[nn.Module, InitReport]:
    """Build the target-task network for ``task`` and initialise it from ``init``.

    Random parts (scratch networks, heads, output layers) are drawn from torch's global generator:
    seed it (``seed_everything``) before calling for reproducible trials.

    Args:
        task: the target task (its kind, number of outputs and spatial dimensions).
        cfg: root config (``model`` for scratch networks; ``finetune.head``).
        in_channels: channels of the task's images.
        init: scratch or a weights file.

    Returns:
        ``(model, report)``; classification models map ``(B, C, *spatial)`` to ``(B, n)`` logits,
        segmentation models to ``(B, n, *spatial)`` logits.
    """
    from semantic_genesis.models.backbone import dense_backbone_name
    from semantic_genesis.models.classifier import EncoderClassifier
    from semantic_genesis.models.loading import read_pretrained
    from semantic_genesis.models.registry import create, model_arguments
    from semantic_genesis.models.state import load_parts

    report = InitReport(init.name, str(init.path) if init.path is not None else None)
    pre = None
    if init.is_scratch:
        name, args = _scratch_backbone(cfg, in_channels)
    else:
        pre = read_pretrained(init.path)
        report.metadata = pre.metadata
        name, args = pre.backbone, dict(pre.backbone_args)
        if "norm" in args:
            args["norm"] = finetune_norm(cfg, args["norm"])
    if task.kind == "segmentation":
        name = dense_backbone_name(name)  # an encoder-only backbone gets its decoder (swin2d -> swin_unetr2d)
    valid = model_arguments(name)
    args.update(out_channels=task.num_outputs, out_activation="none")
    backbone = create(name, **{k: v for k, v in args.items() if k in valid})
    if pre is not None:
        where = describe_path(init.path)
        if backbone.spatial_dims != task.spatial_dims:
            raise CheckpointError(
                f"{where}: holds a {backbone.spatial_dims}D network ({pre.architecture} on {name}); task {task.name} "
                f"needs a {task.spatial_dims}D network"
            )
        if args.get("in_channels") != in_channels:
            raise CheckpointError(
                f"{where}: the network takes {args.get('in_channels')} input channel(s) but task {task.name} "
                f"provides {in_channels}"
            )
        if task.kind == "segmentation" and args.get("skip_connections") is False:
            raise CheckpointError(
                f"{where}: a U-Net without skip connections (an autoencoder); segmentation task {task.name} needs "
                "the U-Net with skips"
            )
    elif backbone.spatial_dims != task.spatial_dims:
        from semantic_genesis.models.backbone import backbones

        fitting = [b for b in backbones() if b.endswith(f"{task.spatial_dims}d")]
        raise ConfigError(f"model.name={name!r} is a {backbone.spatial_dims}D network; task {task.name} needs "
                          f"{task.spatial_dims}D" + (f" (e.g. model.name={fitting[0]})" if fitting else ""))
    report.backbone, report.backbone_args = name, dict(backbone.arch_args)
    if task.kind == "classification":
        model: nn.Module = EncoderClassifier(backbone, num_classes=task.num_outputs, head=cfg.finetune.head)
        decoder: tuple[str, ...] = ()
    else:
        model = backbone
        output = set(backbone.output_state_dict_prefixes)
        decoder = tuple(p for p in backbone.decoder_state_dict_prefixes if p not in output)
    if pre is not None:
        copied = load_parts(model, pre.state_dict, {"encoder": backbone.encoder_state_dict_prefixes}, decoder,
                            source=describe_path(init.path), what=f"task {task.name}")
        report.loaded, report.random, report.unused = copied.loaded, copied.missing, copied.unexpected
    else:
        report.random = list(model.state_dict())
    return model, report


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the encoder blocks of a fine-tuning network (its backbone's encoder prefixes)."""
    return [p for m in encoder_modules(model) for p in m.parameters()]


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder blocks of a fine-tuning network (the top-level modules named by its
    ``encoder_state_dict_prefixes``)."""
    from semantic_genesis.models.backbone import modules_named
    from semantic_genesis.models.registry import unwrap_model

    model = unwrap_model(model)
    return modules_named(model, model.encoder_state_dict_prefixes)


def recalibrate_norms(model: nn.Module, modules: Sequence[nn.Module], batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate the running statistics of the batch norms inside ``modules`` from ``batches``.

    AdaBN (Li et al., "Revisiting batch normalization for practical domain adaptation", ICLR workshop
    2017): a frozen pretrained encoder normalises with the statistics of its pretraining inputs, which
    can be far from those of the target's crops (another crop size, other content): measured on the
    phantom NCC crops, the bottleneck's running variance of a Models Genesis encoder pretrained on
    32x32x16 cubes was 37 times the crops' own, so a fifth of its channels never passed the ReLU. Here
    every batch norm of ``modules`` is reset and fed ``batches`` (``model(images)`` under ``no_grad``,
    the rest of the network in eval mode); its running mean and variance become the averages of the
    batch statistics (PyTorch's cumulative average, ``momentum=None``). Weights and affine parameters
    are untouched; labels are not used.

    Args:
        model: the network, whose forward pass reaches ``modules``.
        modules: the (frozen) blocks whose batch norms are re-estimated.
        batches: input images ``(B, C, *spatial)`` as the network takes them (e.g. float32 in [0, 1]).

    Returns:
        The number of batch norms re-estimated (0 when ``modules`` hold none).
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for block in modules for m in block.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        for images in batches:
            model(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
    return len(norms)
