"""The one load path: weights files and official checkpoints into models.

Every consumer goes through here: pretraining initialisation and ``load_pretrained`` in user code,
fine-tuning (:mod:`semantic_genesis.finetune.models`), the CLI (``semantic-genesis weights inspect``)
and the importers' checks.

* :func:`read_any`: a ``.safetensors`` file of this library (:mod:`.weights`) or an official PyTorch
  checkpoint (``.pt``, converted on the fly by :mod:`.importers`) -> ``(state_dict, metadata, skipped)``.
  Tensors holding NaN or inf (parameters or buffers) are refused with the tensor's name.
* :func:`load_pretrained`: those tensors into a model (or a model built by name), with a
  :class:`~semantic_genesis.models.state.LoadReport`. With ``strict=False`` every key whose name and
  shape match is loaded and the rest is reported, which is how a full U-Net checkpoint initialises the
  encoder of a classifier (:class:`~semantic_genesis.models.classifier.EncoderClassifier`).
* :func:`build_model_from_weights`: the network the file records (or, for a file without metadata,
  the one :func:`~semantic_genesis.models.importers.infer_architecture` finds), with its weights.
* :func:`read_pretrained`: a weights file for transfer learning: its tensors, its recorded network
  and that network's **backbone** (name and arguments), from which fine-tuning builds its own network
  and copies tensors by the backbone's ``encoder_state_dict_prefixes``
  (:func:`~semantic_genesis.models.state.load_parts`).
* :func:`describe_weights`: a summary for ``weights inspect`` that flags non-finite tensors loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError
from semantic_genesis.models.backbone import backbone_of
from semantic_genesis.models.importers import (
    SG_PREFIX,
    detect_format,
    find_state_dict,
    import_state_dict,
    infer_architecture,
    torch_load,
)
from semantic_genesis.models.registry import MODELS, architecture_of, create, model_arguments, unwrap_model
from semantic_genesis.models.state import (
    BUFFER_SUFFIXES,
    LoadReport,
    apply_prefix_map,
    count_parameters,
    find_nonfinite,
    load_state_dict_into,
    strip_prefix,
)
from semantic_genesis.models.weights import check_weights_path, is_safetensors, load_weights, read_metadata

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------
def read_any(path: str | Path, trust: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """Read a safetensors file or a PyTorch checkpoint (official layouts).

    Returns:
        ``(state_dict, metadata, skipped_keys)``. PyTorch checkpoints go through
        :func:`~semantic_genesis.models.importers.import_state_dict` with format detection.

    Raises:
        CheckpointError: missing file, a folder, unreadable, or tensors holding NaN / inf.
    """
    path = check_weights_path(path)
    if is_safetensors(path):
        state_dict, metadata = load_weights(path)
        return state_dict, metadata, []
    result = import_state_dict(path, fmt="auto", trust=trust)
    return result.state_dict, result.metadata(), result.skipped


def file_architecture(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any], source: str
) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor arguments)`` of the network a weights file holds.

    The metadata's record (``architecture`` + ``arch_args``, written by
    :func:`~semantic_genesis.models.weights.save_weights`) when it is complete; otherwise (files of
    other tools, hand-made files) the network inferred from the keys.

    Raises:
        CheckpointError: no record and the keys are not those of a known network.
    """
    name, args = metadata.get("architecture"), metadata.get("arch_args")
    if isinstance(name, str) and name in MODELS and isinstance(args, dict) and args:
        return name, dict(args)
    return infer_architecture(state_dict, source)


def backbone_architecture(name: str, args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(registry name, arguments)`` of the backbone of network ``name`` (itself for a backbone).

    The network is built on the ``meta`` device (no memory, no computation, no random numbers drawn;
    every registered network builds there, the Swin backbones included: ``models.swin2d`` builds MONAI's
    Swin on the CPU itself).
    """
    try:
        with torch.device("meta"):
            model = create(name, **dict(args))
    except ConfigError as exc:
        raise CheckpointError(f"the recorded network {name} {dict(args)} cannot be built: {exc}") from None
    return architecture_of(backbone_of(model))


@dataclass
class Pretrained:
    """A weights file read for transfer learning (:func:`read_pretrained`).

    Attributes:
        path: the file.
        state_dict: its tensors (all finite).
        metadata: its metadata (``{}`` for files of other tools).
        architecture, arch_args: the network it holds (recorded, or inferred for foreign files).
        backbone, backbone_args: that network's backbone (e.g. ``unet3d`` for a ``ynet3d`` file).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    architecture: str
    arch_args: dict[str, Any]
    backbone: str
    backbone_args: dict[str, Any] = field(default_factory=dict)


def read_pretrained(path: str | Path) -> Pretrained:
    """Read a safetensors weights file and find its network and backbone.

    Raises:
        CheckpointError: missing file, a folder, a PyTorch checkpoint (convert it with
            ``semantic-genesis weights import``), unreadable, non-finite tensors, or a network that
            cannot be determined.
    """
    path = check_weights_path(path)
    state, metadata = load_weights(path)
    name, args = file_architecture(state, metadata, str(path))
    backbone, backbone_args = backbone_architecture(name, args)
    return Pretrained(path, dict(state), dict(metadata), name, args, backbone, backbone_args)


# --------------------------------------------------------------------------------------------------
# Loading into models
# --------------------------------------------------------------------------------------------------
def _architecture_warnings(model: nn.Module, metadata: Mapping[str, Any], path: Path) -> list[str]:
    arch = metadata.get("architecture")
    if not arch:
        return []
    name = getattr(model, "ARCH_NAME", type(model).__name__)
    warnings = []
    if arch != name:
        warnings.append(f"{path.name}: metadata says architecture {arch!r}, but the model is {name!r}")
    file_args = metadata.get("arch_args") or {}
    model_args = getattr(model, "arch_args", {}) or {}
    differing = [
        f"{k}={file_args[k]!r} (model {model_args[k]!r})"
        for k in sorted(set(file_args) & set(model_args))
        if file_args[k] != model_args[k]
    ]
    if differing:
        warnings.append(f"{path.name}: metadata arguments differ from the model: " + ", ".join(differing))
    return warnings


def load_pretrained(
    model_or_name: nn.Module | str,
    path: str | Path,
    strict: bool = True,
    prefix_map: Mapping[str, str | None] | None = None,
    trust: bool = False,
    **model_kwargs: Any,
) -> LoadReport:
    """Load weights (ours or an official checkpoint) into a model.

    Args:
        model_or_name: a model (DataParallel / DDP / compiled models are unwrapped), or a registry name:
            the model is then built from the file's ``arch_args`` (when the file's architecture is that
            name; otherwise from the arguments the named model accepts) updated with ``model_kwargs``.
        path: ``.safetensors`` written by :func:`~semantic_genesis.models.weights.save_weights`, or an
            official Models Genesis / Semantic Genesis ``.pt`` checkpoint (converted on the fly, see
            :mod:`.importers`).
        strict: True: every key must match in name and shape. False: load what matches, report the
            rest (e.g. a full U-Net checkpoint into a classifier's encoder).
        prefix_map: key prefix renames applied to the file's keys first (see
            :func:`~semantic_genesis.models.state.apply_prefix_map`).
        trust: allow unpickling arbitrary objects from a ``.pt`` file (only for files you trust).

    Returns:
        :class:`~semantic_genesis.models.state.LoadReport`; ``report.model`` is the model (useful
        when a name was given).

    Raises:
        CheckpointError: unreadable file, non-finite tensors, or keys/shapes that do not fit (see
            :func:`~semantic_genesis.models.state.load_state_dict_into`).
    """
    path = check_weights_path(path)
    state_dict, metadata, skipped = read_any(path, trust=trust)
    warnings: list[str] = []
    if isinstance(model_or_name, str):
        name = model_or_name
        file_arch = metadata.get("architecture")
        file_args = dict(metadata.get("arch_args") or {})
        if file_arch and file_arch != name:
            warnings.append(f"{path.name}: metadata says architecture {file_arch!r}, but {name!r} was requested")
        valid = model_arguments(name)
        kwargs = {k: v for k, v in file_args.items() if k in valid}
        kwargs.update(model_kwargs)
        model = create(name, **kwargs)
    else:
        if model_kwargs:
            raise ConfigError(f"model arguments {sorted(model_kwargs)} only apply when a model name is given")
        model = unwrap_model(model_or_name)
        warnings += _architecture_warnings(model, metadata, path)
    if prefix_map:
        state_dict, dropped = apply_prefix_map(state_dict, prefix_map)
        skipped = skipped + dropped
    try:
        report = load_state_dict_into(model, state_dict, strict=strict, source=str(path))
    except CheckpointError as exc:
        if warnings:
            raise CheckpointError(f"{exc}; note: {'; '.join(warnings)}") from None
        raise
    report.skipped = list(skipped)
    report.warnings = warnings
    report.metadata = dict(metadata)
    for w in warnings:
        # A deliberate partial load (strict=False, e.g. a U-Net into a classifier's encoder) is routine.
        log.log(logging.WARNING if strict else logging.INFO, w)
    return report


def build_model_from_weights(path: str | Path, strict: bool = True, trust: bool = False, **model_kwargs: Any) -> nn.Module:
    """Rebuild the network recorded in a weights file's metadata (or inferred from an official
    ``.pt`` checkpoint) and load its weights.

    Raises:
        CheckpointError: the file records no architecture (e.g. a foreign safetensors file).
    """
    path = check_weights_path(path)
    if is_safetensors(path):
        metadata = read_metadata(path)
    else:
        metadata = import_state_dict(path, fmt="auto", trust=trust).metadata()
    arch = metadata.get("architecture")
    if not arch:
        raise CheckpointError(
            f"{path}: the file records no architecture; build the model yourself and call load_pretrained(model, path)"
        )
    report = load_pretrained(arch, path, strict=strict, trust=trust, **model_kwargs)
    assert report.model is not None
    return report.model


# --------------------------------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------------------------------
def describe_weights(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Summarise a weights file (``.safetensors``) or a PyTorch checkpoint (``.pt``).

    Returns:
        A JSON-ready dict: ``kind`` (``"safetensors"``/``"pytorch"``), ``metadata``, ``num_tensors``,
        ``num_parameters`` (running statistics excluded), ``dtypes``, ``groups`` (first key component ->
        tensors and parameters), ``non_finite`` (``[[key, "nan" | "inf" | "nan and inf"], ...]``: tensors,
        parameters or buffers, that hold non-finite values; such weights are refused by every loader),
        and for PyTorch checkpoints ``entries`` (top-level names and types), ``prefix`` (``"module."``
        when present), ``detected_format`` and the inferred architecture.
    """
    path = check_weights_path(path)
    info: dict[str, Any] = {"path": str(path), "size_bytes": path.stat().st_size}
    if is_safetensors(path):
        state_dict, metadata = load_weights(path, allow_nonfinite=True)
        info.update(kind="safetensors", metadata=metadata)
    else:
        obj = torch_load(path, trust=trust)
        info["kind"] = "pytorch"
        if isinstance(obj, Mapping):
            info["entries"] = {str(k): type(v).__name__ for k, v in obj.items()}
        raw = find_state_dict(obj, path)
        state_dict, renamed = strip_prefix(raw, "module.")
        info["prefix"] = "module." if renamed else ""
        info["detected_format"] = detect_format(state_dict)
        try:
            arch, args = infer_architecture(strip_prefix(state_dict, SG_PREFIX)[0], str(path))
            info["metadata"] = {"architecture": arch, "arch_args": args, "inferred": True}
        except CheckpointError as exc:
            info["metadata"] = {"note": str(exc)}
    groups: dict[str, dict[str, int]] = {}
    for key, tensor in state_dict.items():
        group = groups.setdefault(key.split(".")[0], {"tensors": 0, "parameters": 0})
        group["tensors"] += 1
        if not key.endswith(BUFFER_SUFFIXES):
            group["parameters"] += tensor.numel()
    info.update(
        num_tensors=len(state_dict),
        num_parameters=count_parameters(state_dict),
        dtypes=sorted({str(t.dtype).replace("torch.", "") for t in state_dict.values()}),
        groups=groups,
        first_keys=list(state_dict)[:5],
        non_finite=[list(item) for item in find_nonfinite(state_dict)],
    )
    return info
