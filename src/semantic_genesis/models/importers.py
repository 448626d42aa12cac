"""Importers for the official Models Genesis / Semantic Genesis PyTorch checkpoints, and an exporter.

Official layouts (the released checkpoints of Models Genesis, Zhou et al., MedIA 2021, and Semantic
Genesis, Haghighi et al., MICCAI 2020, as their READMEs load them):

* **Models Genesis** (``Genesis_Chest_CT.pt``): the trainer wraps the model in ``nn.DataParallel`` and
  saves ``{'epoch', 'state_dict', 'optimizer_state_dict'}``, so keys carry a ``module.`` prefix; the
  README strips it and loads strictly. Saved with torch 1.3.1 (legacy, non-zip serialisation).
* **Semantic Genesis** (``semantic_genesis_chest_ct.pt``): the README strips ``module.``, drops keys
  containing ``projection_head`` or ``prototypes`` and strips a ``classficationNet.`` (sic) prefix,
  then loads whatever matches the U-Net. We do the same, non-strictly, and report every skipped key.

ImageNet ResNet-18 weights, the papers' 2D baseline, in the torchvision layout (``resnet18-*.pth``) or
as a segmentation_models_pytorch ``Unet("resnet18")``, go into our ResNet-18 U-Net (``resunet2d``);
the key maps and the grey-input conversion of the first conv are in :mod:`.resnet18_layouts`.

MONAI Swin checkpoints (``monai_swin``: the SwinUNETR encoder keys, e.g. the self-supervised
``model_swinvit.pt`` layout, or a whole 2D SwinUNETR) go into ``swin2d`` / ``swin_unetr2d``; the key
rules and the architecture read from the tensors are in :mod:`.swin_layouts`.

Safety: ``torch.load`` is first called with ``weights_only=True`` (tensors, containers and a few
allow-listed numpy scalar types only). A checkpoint that pickled other objects (e.g. the training
script's ``argparse.Namespace``) is refused with a :class:`CheckpointError` that explains the
``trust=True`` option (CLI ``--trust``); only then is it loaded with ``weights_only=False``, which can
run code stored in the file, and a warning is issued.

:func:`export_models_genesis` writes our weights back in the official layout (``{'state_dict':
{'module.' + key: tensor}}`` via ``torch.save``) so that the official code's loader can use them;
:func:`export_state_dict` writes a plain PyTorch state dict (``{key: tensor}``) for any other codebase.

:func:`infer_architecture` is the one place where a network is inferred from key names and shapes;
it serves the importers and files without metadata. Loading a checkpoint into a model is
:func:`semantic_genesis.models.loading.load_pretrained`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError
from semantic_genesis.models import resnet18_layouts, swin_layouts
from semantic_genesis.models.registry import create
from semantic_genesis.models.state import check_finite, load_state_dict_into, strip_prefix
from semantic_genesis.models.weights import check_weights_path, load_weights, save_weights

FORMATS = ("models_genesis", "semantic_genesis", resnet18_layouts.TORCHVISION, resnet18_layouts.SMP,
           swin_layouts.MONAI_SWIN)
SG_DROP_MARKERS = ("projection_head", "prototypes")
SG_PREFIX = "classficationNet."  # sic, as in the official README
STATE_DICT_ENTRIES = ("state_dict", "model_state_dict", "model")


class UntrustedCheckpointError(CheckpointError):
    """The checkpoint contains pickled Python objects beyond tensors and plain containers."""


def _numpy_safe_globals() -> list[Any]:
    """Numpy scalar/dtype reconstructors (training scripts often pickle ``best_loss`` as numpy floats)."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    safe: list[Any] = [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    dtype_classes = getattr(np, "dtypes", None)
    if dtype_classes is not None:
        safe += [getattr(dtype_classes, n) for n in ("Float64DType", "Float32DType", "Int64DType") if hasattr(dtype_classes, n)]
    return safe


def torch_load(path: str | Path, trust: bool = False) -> Any:
    """Load a PyTorch checkpoint on the CPU, safely unless ``trust`` is given.

    Raises:
        CheckpointError: missing file, not a checkpoint, truncated/corrupt.
        UntrustedCheckpointError: needs unpickling of non-allow-listed objects and ``trust`` is False.
    """
    path = check_weights_path(path, "checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a PyTorch checkpoint")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notices of the safe unpickler
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        message = str(exc)
        if "Weights only load failed" not in message:
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (truncated, corrupt or another format): "
                f"{type(exc).__name__}: {message.splitlines()[0] if message else 'unexpected end of file'}"
            ) from None
        if not trust:
            if "Unsupported global: GLOBAL " in message:
                culprit = message.split("Unsupported global: GLOBAL ", 1)[1].split(" ", 1)[0]
                raise UntrustedCheckpointError(
                    f"{path}: the checkpoint contains pickled Python objects ({culprit}) besides tensors; "
                    "loading them can run arbitrary code. If you trust this file, pass trust=True "
                    "(CLI: --trust) to load it with weights_only=False"
                ) from None
            reason = message.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if (
                "WeightsUnpickler error:" in message) else "unsupported content"
            raise UntrustedCheckpointError(
                f"{path}: not a readable PyTorch checkpoint for the safe loader ({reason}); it is not a "
                "checkpoint, or a pickle using features the safe loader refuses. If it is a checkpoint "
                "from a source you trust, trust=True (CLI: --trust) loads it with weights_only=False"
            ) from None
    warnings.warn(
        f"loading {path} with weights_only=False because trust=True was given: this runs code stored in the file",
        stacklevel=2,
    )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot be unpickled even with trust=True: {type(exc).__name__}: {exc}") from None


def find_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: ``obj['state_dict']`` (or ``model_state_dict``,
    ``model``), or ``obj`` itself when it maps names to tensors.

    Raises:
        CheckpointError: nothing that looks like a state dict.
    """
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    for entry in STATE_DICT_ENTRIES:
        inner = obj.get(entry)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner)
    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    raise CheckpointError(
        f"{path}: no state dict found; top-level entries: {', '.join(map(str, list(obj)[:10])) or '(none)'} "
        f"(expected 'state_dict' or a mapping of parameter names to tensors)"
    )


def infer_architecture(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> tuple[str, dict[str, Any]]:
    """Infer ``(registry name, constructor arguments)`` of a Models Genesis-style U-Net state dict.

    ``width`` comes from the first conv (32 output channels at width 1), ``in_channels`` and
    ``out_channels`` from the first and last convs, ``skip_connections`` from the first decoder conv,
    2D vs 3D from the kernel rank; the classification head (``clc_out.*``) gives ``ynet3d`` (3D) or
    ``ynet`` on a ``unet2d`` backbone (2D). ImageNet ResNet-18 layouts (torchvision, smp ``Unet``;
    :mod:`.resnet18_layouts`) give ``resunet2d`` with the file's input channels.

    Raises:
        CheckpointError: the keys are not those of a Models Genesis U-Net or a ResNet-18 layout.
    """
    if swin_layouts.ENCODER + "patch_embed.proj.weight" in state_dict:  # a Swin (ours or an imported MONAI one)
        return swin_layouts.infer_architecture(state_dict, source)
    layout = resnet18_layouts.detect_layout(state_dict)
    if layout is not None:  # ImageNet ResNet-18 weights: the ResNet-18 U-Net, as the file's first conv takes
        conv1 = state_dict["conv1.weight" if layout == resnet18_layouts.TORCHVISION else "encoder.conv1.weight"]
        head = state_dict.get("segmentation_head.0.weight")
        return "resunet2d", {"in_channels": int(conv1.shape[1]), "out_channels": int(head.shape[0]) if head is not None else 1,
                             "width": float(conv1.shape[0]) / 64.0, "norm": "batch"}
    first = state_dict.get("down_tr64.ops.0.conv1.weight")
    if first is None:
        sample = ", ".join(list(state_dict)[:4])
        raise CheckpointError(
            f"{source}: not a Models Genesis U-Net state dict (no 'down_tr64.ops.0.conv1.weight'; keys start {sample})"
        )
    spatial = first.dim() - 2
    args: dict[str, Any] = {"in_channels": int(first.shape[1]), "width": float(first.shape[0]) / 32.0}
    last = state_dict.get("out_tr.final_conv.weight")
    args["out_channels"] = int(last.shape[0]) if last is not None else 1
    up = state_dict.get("up_tr256.up_conv.weight")
    dec = state_dict.get("up_tr256.ops.0.conv1.weight")
    if up is not None and dec is not None:
        args["skip_connections"] = bool(dec.shape[1] != up.shape[1])
    if "down_tr64.ops.0.bn1.running_mean" in state_dict:
        args["norm"] = "batch_stats"
    elif "down_tr64.ops.0.bn1.weight" in state_dict:
        args["norm"] = "instance"  # affine-only norm; instance and group norm have the same keys
    if spatial not in (2, 3):
        raise CheckpointError(f"{source}: first conv has shape {tuple(first.shape)}; expected a 2D or 3D kernel")
    backbone = "unet3d" if spatial == 3 else "unet2d"
    head = state_dict.get("clc_out.fc1.weight")
    conv = state_dict.get("clc_out.conv1.weight")
    if head is not None and conv is not None:
        head_args = {"num_classes": int(head.shape[0]), "head_hidden": int(conv.shape[0])}
        if spatial == 3:
            return "ynet3d", {**args, **head_args}
        return "ynet", {"backbone": backbone, "backbone_args": args, **head_args}
    return backbone, args


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The ResNet-18 layout (torchvision, segmentation_models_pytorch) its marker keys show, else
    ``"semantic_genesis"`` if any key carries the SG markers, else ``"models_genesis"``; ``"monai_swin"``
    for a MONAI Swin encoder (:mod:`.swin_layouts`)."""
    layout = resnet18_layouts.detect_layout(state_dict) or swin_layouts.detect_layout(state_dict)
    if layout is not None:
        return layout
    if any(SG_PREFIX in k or any(m in k for m in SG_DROP_MARKERS) for k in state_dict):
        return "semantic_genesis"
    return "models_genesis"


@dataclass
class ImportResult:
    """An imported checkpoint.

    Attributes:
        state_dict: the tensors under our key names (only keys the model has).
        format: ``"models_genesis"`` or ``"semantic_genesis"``.
        architecture, arch_args: the inferred network (see :func:`infer_architecture`).
        skipped: file keys dropped (SG filters, keys the model does not have), original names.
        missing: model keys absent from the file (SG, torchvision ResNet-18: the decoder; the file
            then does not set them).
        model: the network with the imported weights loaded.
        path: the source file.
        used: file keys imported (original names; ResNet-18 layouts only, where names change).
        first_conv: how the first conv was converted (ResNet-18 layouts: ``"sum of the RGB filters"``,
            ``"mean of the RGB filters"`` or ``"as in the file"``).
    """

    state_dict: dict[str, torch.Tensor]
    format: str
    architecture: str
    arch_args: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)
    path: str = ""
    used: list[str] = field(default_factory=list)
    first_conv: str = ""

    def metadata(self) -> dict[str, Any]:
        """Metadata for :func:`~semantic_genesis.models.weights.save_weights` of the imported weights."""
        source: dict[str, Any] = {
            "format": self.format,
            "file": Path(self.path).name,
            "skipped_keys": list(self.skipped),
            "missing_keys": list(self.missing),
        }
        if self.first_conv:
            source["first_conv"] = self.first_conv
        return {"architecture": self.architecture, "arch_args": dict(self.arch_args), "method": self.format, "source": source}


def import_state_dict(
    path: str | Path, fmt: str = "auto", trust: bool = False, in_channels: int = 1, rgb_to_grey: str = "sum",
    fold_normalisation: bool = False,
) -> ImportResult:
    """Read a checkpoint of a known layout and convert it to our key names, checked against the network.

    Args:
        path: ``.pt``/``.pth`` file (zip or legacy serialisation).
        fmt: ``"models_genesis"`` (strict), ``"semantic_genesis"`` (non-strict, filtered),
            ``"torchvision_resnet18"`` / ``"smp_resnet18_unet"`` (ImageNet ResNet-18 weights into the
            ``resunet2d`` encoder / a whole segmentation_models_pytorch ``Unet("resnet18")``; see
            :mod:`.resnet18_layouts`), or ``"auto"``.
        trust: allow ``weights_only=False`` for a file you trust.
        in_channels: input channels of the ``resunet2d`` built for a ResNet-18 layout (1: grey).
        rgb_to_grey: ``"sum"`` or ``"mean"`` of the first conv's RGB filters when ``in_channels`` is 1.
        fold_normalisation: fold ImageNet's mean/std input normalisation into ``conv1`` / ``bn1``
            (ResNet-18 layouts; see :mod:`.resnet18_layouts`).

    Raises:
        CheckpointError: unreadable/untrusted file, non-finite tensors, no U-Net keys, or (Models
            Genesis, ResNet-18 layouts) keys or shapes that do not fit the inferred network exactly.
    """
    if fmt not in (*FORMATS, "auto"):
        raise ConfigError(f"unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS)} or 'auto'")
    path = Path(path)
    raw = find_state_dict(torch_load(path, trust=trust), path)
    state_dict, _ = strip_prefix(raw, "module.")
    check_finite(state_dict, str(path))
    if fmt == "auto":
        fmt = detect_format(state_dict)
    if fmt in resnet18_layouts.LAYOUTS:
        return _import_resnet18(state_dict, fmt, path, in_channels, rgb_to_grey, fold_normalisation)
    if fmt == swin_layouts.MONAI_SWIN:
        return _import_monai_swin(state_dict, path)
    skipped: list[str] = []
    if fmt == "semantic_genesis":
        kept = {}
        for key, value in state_dict.items():
            if any(marker in key for marker in SG_DROP_MARKERS):
                skipped.append(key)
            else:
                kept[key] = value
        state_dict, _ = strip_prefix(kept, SG_PREFIX)
    architecture, arch_args = infer_architecture(state_dict, str(path))
    model = create(architecture, **arch_args)
    strict = fmt == "models_genesis"
    report = load_state_dict_into(model, state_dict, strict=strict, source=str(path))
    skipped += report.unexpected + [key for key, _, _ in report.mismatched]
    return ImportResult(
        state_dict={k: state_dict[k] for k in report.loaded},
        format=fmt,
        architecture=architecture,
        arch_args=dict(model.arch_args),
        skipped=skipped,
        missing=list(report.missing),
        model=model,
        path=str(path),
    )


def _import_resnet18(
    state_dict: dict[str, torch.Tensor], layout: str, path: Path, in_channels: int, rgb_to_grey: str,
    fold_normalisation: bool,
) -> ImportResult:
    """ImageNet ResNet-18 weights (torchvision) or a whole smp ResNet-18 U-Net into a ``resunet2d``."""
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 (grey) or 3 (RGB) for ResNet-18 weights, got {in_channels!r}")
    head = state_dict.get("segmentation_head.0.weight")
    out_channels = int(head.shape[0]) if layout == resnet18_layouts.SMP and head is not None else 1
    model = create("resunet2d", in_channels=in_channels, out_channels=out_channels, norm="batch")
    mapped, used, skipped = resnet18_layouts.map_resnet18(
        state_dict, layout, model.state_dict(), str(path), rgb_to_grey=rgb_to_grey, fold_normalisation=fold_normalisation
    )
    report = load_state_dict_into(model, mapped, strict=False, source=str(path))
    first = state_dict.get("conv1.weight", state_dict.get("encoder.conv1.weight"))
    reduced = in_channels == 1 and first is not None and first.dim() == 4 and first.shape[1] == 3
    return ImportResult(
        state_dict=mapped,
        format=layout,
        architecture="resunet2d",
        arch_args=dict(model.arch_args),
        skipped=skipped,
        missing=list(report.missing),
        model=model,
        path=str(path),
        used=used,
        first_conv=(f"{rgb_to_grey} of the RGB filters" if reduced else "as in the file")
        + ("; ImageNet mean/std normalisation folded into conv1 and bn1.running_mean" if fold_normalisation else ""),
    )


def _import_monai_swin(state_dict: dict[str, torch.Tensor], path: Path) -> ImportResult:
    """A MONAI Swin encoder (or a whole 2D SwinUNETR) into a ``swin2d`` (``swin_unetr2d``).

    Every parameter of the Swin must come from the file with its shape (buffers such as the attention's
    ``relative_position_index`` are rebuilt by the network when absent); decoder tensors that do not fit
    are skipped and reported.
    """
    mapped, skipped = swin_layouts.map_keys(state_dict)
    architecture, arch_args = swin_layouts.infer_architecture(mapped, str(path))
    model = create(architecture, **arch_args)
    report = load_state_dict_into(model, mapped, strict=False, source=str(path))
    parameters = {name for name, _ in model.named_parameters()}
    for key, found, wanted in report.mismatched:
        if key.startswith(swin_layouts.ENCODER):
            raise CheckpointError(f"{path}: tensor {key} has shape {found}, the inferred {architecture} needs {wanted}")
    absent = [k for k in report.missing if k.startswith(swin_layouts.ENCODER) and k in parameters]
    if absent:
        raise CheckpointError(f"{path}: the Swin encoder lacks {len(absent)} tensor(s), e.g. {absent[0]}")
    return ImportResult(
        state_dict={k: mapped[k] for k in report.loaded},
        format=swin_layouts.MONAI_SWIN,
        architecture=architecture,
        arch_args=dict(model.arch_args),
        skipped=skipped + report.unexpected + [key for key, _, _ in report.mismatched],
        missing=list(report.missing),
        model=model,
        path=str(path),
    )


def import_checkpoint(
    path: str | Path, out: str | Path, fmt: str = "models_genesis", trust: bool = False,
    metadata: Mapping[str, Any] | None = None, in_channels: int = 1, rgb_to_grey: str = "sum",
    fold_normalisation: bool = False,
) -> ImportResult:
    """Convert a checkpoint (see :func:`import_state_dict`) to a safetensors weights file with metadata (``out``).

    Only the imported tensors are written: a torchvision ResNet-18 gives the encoder alone (the
    metadata lists the decoder keys as missing), which transfer learning loads as the encoder.
    """
    result = import_state_dict(path, fmt=fmt, trust=trust, in_channels=in_channels, rgb_to_grey=rgb_to_grey,
                               fold_normalisation=fold_normalisation)
    meta = result.metadata()
    architecture, arch_args = meta.pop("architecture"), meta.pop("arch_args")
    if architecture == "resunet2d":
        meta.setdefault("input_size", [224, 224])
        meta.setdefault("intensity_window", {"modality": "xray", "range": [0.0, 1.0]})
    elif architecture in ("swin2d", "swin_unetr2d"):
        meta.setdefault("input_size", None)  # not recorded by MONAI checkpoints (any multiple of the total stride)
    else:
        meta.setdefault("input_size", [64, 64, 32] if architecture != "unet2d" else None)
        meta.setdefault("intensity_window", {"modality": "ct", "hu_min": -1000.0, "hu_max": 1000.0})
    meta.update(metadata or {})
    save_weights(result.state_dict, out, metadata=meta, architecture=architecture, arch_args=arch_args)
    return result


def export_models_genesis(path: str | Path, out: str | Path, unet_only: bool = False) -> Path:
    """Write a weights file in the official Models Genesis layout for the official PyTorch code.

    The result is ``{'state_dict': {'module.' + key: tensor}}`` saved with ``torch.save`` (loads with
    ``weights_only=True``); the official README loader strips ``module.`` and loads strictly into its
    ``UNet3D`` (width 1, ``batch_stats``/``batch`` norm).

    Args:
        path: a safetensors weights file of a ``unet3d`` or ``ynet3d``.
        out: destination ``.pt``.
        unet_only: drop the Semantic Genesis head (``clc_out.*``), keeping the 106 U-Net keys.

    Raises:
        CheckpointError: the weights are not a Models Genesis U-Net.
    """
    from semantic_genesis.utils.atomic import atomic_open

    state_dict, _ = load_weights(path)  # keys in the model's own order
    architecture, _ = infer_architecture(state_dict, str(path))
    if architecture == "unet2d":
        raise CheckpointError(f"{path}: 2D U-Net weights have no official Models Genesis (3D) layout")
    if unet_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("clc_out.")}
    official = {"state_dict": {"module." + k: v.contiguous() for k, v in state_dict.items()}}
    with atomic_open(out, "wb") as handle:
        torch.save(official, handle)
    return Path(out)


def export_state_dict(path: str | Path, out: str | Path, unet_only: bool = False) -> tuple[Path, str, dict[str, Any]]:
    """Write a weights file as a plain PyTorch state dict ``{key: tensor}`` for other codebases.

    The file holds tensors only (``torch.save`` of a ``dict[str, Tensor]``: no pickled classes or code), so
    ``torch.load(out, weights_only=True)`` reads it and ``net.load_state_dict(...)`` loads it strictly
    into the network the weights came from: ``semantic_genesis.models.create(architecture, **arch_args)``
    (both returned here; the plain file cannot record them), or any module with the same key names.

    Args:
        path: a safetensors weights file (any registered architecture).
        out: destination ``.pt``.
        unet_only: drop the Semantic Genesis head (``clc_out.*``), leaving the keys of the U-Net.

    Returns:
        ``(out, architecture, arch_args)``: the architecture is the one recorded in the file's metadata
        (or inferred from the keys), ``unet3d`` after ``unet_only`` on a ``ynet3d``.

    Raises:
        CheckpointError: the file is not readable weights (see :func:`load_weights`).
    """
    from semantic_genesis.utils.atomic import atomic_open

    state_dict, metadata = load_weights(path)  # keys in the model's own order
    if unet_only:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("clc_out.")}
    if metadata.get("architecture") and not unet_only:
        architecture, arch_args = str(metadata["architecture"]), dict(metadata.get("arch_args") or {})
    else:
        architecture, arch_args = infer_architecture(state_dict, str(path))
    plain = {str(k): v.detach().contiguous() for k, v in state_dict.items()}
    with atomic_open(out, "wb") as handle:
        torch.save(plain, handle)
    return Path(out), architecture, arch_args
