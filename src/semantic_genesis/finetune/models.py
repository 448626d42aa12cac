"""Target-task networks and their initialisation from pretrained weights.

Transfer as in the papers (Semantic Genesis, MICCAI 2020: "the encoder alone is fine-tuned for
classification targets; encoder and decoder for segmentation targets"):

* **classification** (NCC): the pretrained 3D U-Net **encoder** + global average pooling + a new head
  (:class:`~semantic_genesis.models.ynet3d.EncoderClassifier3D`). ``finetune.head``:

  - ``"mlp"`` (default): GAP -> Linear(C, 2C) -> ReLU -> Linear(2C, n). At width 1 (C = 512) this is
    exactly the official Models Genesis PyTorch ``TargetNet`` head 512 -> 1024 -> n (reference §4.3);
    at smaller widths the hidden layer scales with the encoder. It outputs logits (the sigmoid is in
    the loss), where the official head applied a sigmoid inside the network;
  - ``"linear"``: GAP -> Linear(C, n) (a linear probe with ``finetune.freeze_encoder=true``);
  - ``"genesis"``: the Semantic Genesis conv head (Conv 3x3x3 C -> 2C, norm, ReLU, GAP, Linear).

* **segmentation** (NCS, LCS, BMS): the whole U-Net (encoder + decoder) with a **new output layer**
  (``out_tr.final_conv`` re-initialised), producing logits ``(B, n, X, Y, Z)``.

Initialisation (:class:`InitSpec`): ``scratch`` (random, seeded) or a weights file of this library
(safetensors + metadata; official checkpoints are converted with ``semantic-genesis weights import``).
The architecture (width, input channels, skip connections) is read from the weights themselves, so a
checkpoint and its fine-tuned model always fit. Which tensors are copied is decided here: encoder
blocks (``down_tr*``) for classification, encoder + decoder blocks (``down_tr*``, ``up_tr*``) for
segmentation. A checkpoint that does not fit (2D, another network, other input channels, no encoder
tensors, a tensor of the wrong shape) raises :class:`~semantic_genesis.errors.CheckpointError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError, describe_path

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config
    from semantic_genesis.finetune.tasks import Task

ENCODER_PREFIXES = ("down_tr64.", "down_tr128.", "down_tr256.", "down_tr512.")
DECODER_PREFIXES = ("up_tr256.", "up_tr128.", "up_tr64.")
FIRST_CONV = "down_tr64.ops.0.conv1.weight"


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

    def summary(self) -> dict[str, Any]:
        return {
            "init": self.init,
            "path": self.path,
            "loaded": len(self.loaded),
            "random": len(self.random),
            "unused": len(self.unused),
            "method": self.metadata.get("method"),
        }


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, metadata)`` of a weights file, with :class:`CheckpointError` on any problem."""
    if not path.is_file():
        raise CheckpointError(f"{describe_path(path)}: weights file not found")
    from semantic_genesis.models.weights import load_weights

    state, metadata = load_weights(path)
    return dict(state), dict(metadata or {})


def architecture_from_state(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, Any], task: "Task") -> dict[str, Any]:
    """Constructor arguments (``in_channels``, ``width``, ``skip_connections``, ``norm``) of the U-Net in ``state``."""
    weight = state.get(FIRST_CONV)
    if weight is None:
        sample = ", ".join(list(state)[:4])
        raise CheckpointError(
            f"{describe_path(path)}: not a Models Genesis 3D U-Net checkpoint (no {FIRST_CONV!r}; keys start "
            f"{sample}); task {task.name} needs a unet3d / ynet3d encoder (convert official files with "
            "'semantic-genesis weights import')"
        )
    if weight.dim() != 5:
        raise CheckpointError(
            f"{describe_path(path)}: {FIRST_CONV} has shape {tuple(weight.shape)}, a {weight.dim() - 2}D network; "
            f"task {task.name} needs a 3D network (5D conv weights)"
        )
    c = int(weight.shape[0])
    up = state.get("up_tr256.ops.0.conv1.weight")
    skip = True if up is None else int(up.shape[1]) > 16 * c
    args = _find_arch_args(metadata)
    norm = args.get("norm")
    if norm is None:
        norm = "batch_stats" if "down_tr64.ops.0.bn1.running_mean" in state else "instance"
    return {"in_channels": int(weight.shape[1]), "width": c / 32.0, "skip_connections": bool(skip), "norm": str(norm)}


def _find_arch_args(metadata: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments stored in a weights file's metadata, wherever the writer put them."""
    for key in ("arch_args", "architecture_args", "model_args"):
        value = metadata.get(key)
        if isinstance(value, dict):
            return value
    arch = metadata.get("architecture")
    if isinstance(arch, dict):
        return arch.get("args", arch)
    return {}


def build_model(task: "Task", cfg: "Config", in_channels: int, init: InitSpec) -> tuple[nn.Module, InitReport]:
    """Build the target-task network for ``task`` and initialise it from ``init``.

    Random parts (scratch networks, heads, output layers) are drawn from torch's global generator:
    seed it (``seed_everything``) before calling for reproducible trials.

    Args:
        task: the target task (its kind and number of outputs).
        cfg: root config (``model`` for scratch networks; ``finetune.head``).
        in_channels: channels of the task's images.
        init: scratch or a weights file.

    Returns:
        ``(model, report)``; classification models map ``(B, C, X, Y, Z)`` to ``(B, n)`` logits,
        segmentation models to ``(B, n, X, Y, Z)`` logits.
    """
    from semantic_genesis.models.unet3d import UNet3D
    from semantic_genesis.models.ynet3d import EncoderClassifier3D

    report = InitReport(init.name, str(init.path) if init.path is not None else None)
    state: dict[str, torch.Tensor] = {}
    if init.is_scratch:
        args = {
            "in_channels": in_channels,
            "width": cfg.model.width,
            "norm": cfg.model.norm,
            "skip_connections": True,
        }
    else:
        state, report.metadata = read_checkpoint(init.path)
        args = architecture_from_state(init.path, state, report.metadata, task)
        if args["in_channels"] != in_channels:
            raise CheckpointError(
                f"{describe_path(init.path)}: the network takes {args['in_channels']} input channel(s) but task "
                f"{task.name} provides {in_channels}"
            )
        if task.kind == "segmentation" and not args["skip_connections"]:
            raise CheckpointError(
                f"{describe_path(init.path)}: a U-Net without skip connections (an autoencoder); segmentation task "
                f"{task.name} needs the U-Net with skips"
            )
    unet = UNet3D(
        in_channels=args["in_channels"],
        out_channels=task.num_outputs,
        width=args["width"],
        norm=args["norm"],
        out_activation="none",
        skip_connections=args["skip_connections"],
    )
    if task.kind == "classification":
        model: nn.Module = EncoderClassifier3D(unet, num_classes=task.num_outputs, head=cfg.finetune.head)
        prefixes = ENCODER_PREFIXES
    else:
        model = unet
        prefixes = ENCODER_PREFIXES + DECODER_PREFIXES
    if state:
        _copy_weights(model, state, prefixes, init.path, task, report)
    else:
        report.random = list(model.state_dict())
    return model, report


def _copy_weights(model: nn.Module, state: dict, prefixes: tuple[str, ...], path: Path, task: "Task", report: InitReport) -> None:
    own = model.state_dict()
    updates = {}
    for key, value in own.items():
        if not key.startswith(prefixes) or key not in state:
            report.random.append(key)
            continue
        src = state[key]
        if tuple(src.shape) != tuple(value.shape):
            raise CheckpointError(
                f"{describe_path(path)}: tensor {key} has shape {tuple(src.shape)}, the {task.name} network expects "
                f"{tuple(value.shape)}"
            )
        updates[key] = src.to(dtype=value.dtype)
        report.loaded.append(key)
    encoder_loaded = [k for k in report.loaded if k.startswith(ENCODER_PREFIXES)]
    encoder_needed = [k for k in own if k.startswith(ENCODER_PREFIXES)]
    if len(encoder_loaded) != len(encoder_needed):
        missing = [k for k in encoder_needed if k not in encoder_loaded]
        raise CheckpointError(
            f"{describe_path(path)}: the checkpoint lacks {len(missing)} encoder tensor(s) of the U-Net "
            f"(e.g. {missing[0]}); it does not fit task {task.name}"
        )
    own.update(updates)
    model.load_state_dict(own)
    report.unused = sorted(k for k in state if k not in updates)


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the encoder blocks (``down_tr*``) of a fine-tuning network."""
    return [p for name, p in model.named_parameters() if name.startswith(ENCODER_PREFIXES)]


def encoder_modules(model: nn.Module) -> list[nn.Module]:
    """The encoder blocks of a fine-tuning network."""
    return [getattr(model, prefix[:-1]) for prefix in ENCODER_PREFIXES]
