"""Weights files: safetensors with JSON metadata, and loading them (or foreign checkpoints) into models.

File format: a ``.safetensors`` file whose header metadata holds one entry, ``"semantic_genesis"``, a
JSON object with at least

* ``format`` (``"semantic_genesis.weights"``) and ``format_version`` (1),
* ``architecture`` (registry name, e.g. ``"unet3d"``) and ``arch_args`` (constructor arguments), so
  :func:`build_model_from_weights` can rebuild the network,
* ``library_version``, ``torch_version``, ``created`` (UTC ISO time), ``num_parameters``,

plus what the caller passes: by convention ``method`` (e.g. ``"semantic_genesis"``), ``input_size``
(e.g. ``[64, 64, 32]``), ``intensity_window`` (e.g. ``{"modality": "ct", "hu_min": -1000, "hu_max":
1000}``), ``config`` (the resolved config as a mapping) and ``source`` (for imported checkpoints).

:func:`load_pretrained` loads a weights file **or** an official PyTorch checkpoint (``.pt``, see
:mod:`~semantic_genesis.models.importers`) into a model and returns a :class:`LoadReport` (loaded,
missing, unexpected, skipped and shape-mismatched keys). With ``strict=False`` every key whose name
and shape match is loaded and the rest is reported, which is how a full U-Net checkpoint initialises
the encoder of a classifier (:class:`~semantic_genesis.models.ynet3d.EncoderClassifier3D`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

FORMAT = "semantic_genesis.weights"
FORMAT_VERSION = 1
METADATA_KEY = "semantic_genesis"
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        loaded: model keys filled from the file.
        missing: model keys the file does not have (left as they were).
        unexpected: file keys the model does not have (ignored).
        skipped: file keys dropped on purpose before matching (importer filters, ``prefix_map``).
        mismatched: ``(key, file_shape, model_shape)`` for keys present in both with different shapes.
        warnings: disagreements between the file's metadata and the model (architecture, arguments).
        metadata: the file's metadata (empty for foreign checkpoints without any).
        model: the model the weights were loaded into.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and nothing was left over or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """A few human-readable lines (counts and the first keys of each group)."""

        def first(keys: list[str], n: int = 3) -> str:
            return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("skipped", self.skipped)):
            if keys:
                lines.append(f"{name} {len(keys)}: {first(keys)}")
        for key, a, b in self.mismatched[:3]:
            lines.append(f"shape mismatch {key}: file {a} vs model {b}")
        if len(self.mismatched) > 3:
            lines.append(f"... {len(self.mismatched) - 3} more shape mismatches")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """Convert config dataclasses, tuples, paths and numpy/torch scalars to JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from semantic_genesis.config import to_dict

        return to_dict(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise ConfigError(f"weights metadata value {obj!r} ({type(obj).__name__}) is not JSON-serialisable")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def count_parameters(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Number of learnable values in a state dict (batch-norm running statistics excluded)."""
    return int(sum(t.numel() for k, t in state_dict.items() if not k.endswith(BUFFER_SUFFIXES)))


def save_weights(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    architecture: str | None = None,
    arch_args: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model's weights as safetensors with JSON metadata, atomically.

    Args:
        model: a registered model (its architecture and arguments are recorded; DataParallel, DDP and
            ``torch.compile`` wrappers are unwrapped, so keys never carry ``module.``) or a plain state dict
            (then pass ``architecture`` and ``arch_args`` to make the file rebuildable).
        path: destination, conventionally ``*.safetensors``.
        metadata: extra entries (``method``, ``input_size``, ``intensity_window``, ``config``, ``source``
            ...); dataclasses and tuples are converted to JSON.
        architecture, arch_args: override / supply the architecture record.

    Returns:
        ``path``.
    """
    from safetensors.torch import save_file

    from semantic_genesis import __version__
    from semantic_genesis.models.registry import architecture_of
    from semantic_genesis.utils.atomic import atomic_path

    if isinstance(model, nn.Module):
        model = unwrap_model(model)
        state_dict = model.state_dict()
        if architecture is None:
            architecture, found_args = architecture_of(model)
            arch_args = found_args if arch_args is None else arch_args
    else:
        state_dict = dict(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arch_args": _plain(dict(arch_args or {})),
        "library_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_parameters": count_parameters(tensors),
    }
    for key, value in (metadata or {}).items():
        meta[key] = _plain(value)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` starts like a safetensors file (8-byte header length, then a JSON object)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Only the JSON metadata of a weights file (no tensors are read)."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    return _parse_metadata(raw, path)


def _parse_metadata(raw: Mapping[str, str], path: Path) -> dict[str, Any]:
    if METADATA_KEY not in raw:
        return {"foreign_metadata": dict(raw)} if raw else {}
    try:
        meta = json.loads(raw[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata entry {METADATA_KEY!r} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata entry {METADATA_KEY!r} is not a JSON object")
    return meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    return path


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors weights file.

    Returns:
        ``(state_dict, metadata)``; metadata is ``{}`` for a safetensors file written by other tools
        (its raw string metadata, if any, is under ``"foreign_metadata"``).

    Raises:
        CheckpointError: missing, truncated, or not a safetensors file.
    """
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            raw = handle.metadata() or {}
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    metadata = _parse_metadata(raw, path)
    return canonical_order(state_dict, metadata.get("architecture"), metadata.get("arch_args")), metadata


def canonical_order(
    state_dict: dict[str, torch.Tensor], architecture: str | None, arch_args: Mapping[str, Any] | None
) -> dict[str, torch.Tensor]:
    """Reorder keys as the model's own ``state_dict()`` lists them (safetensors stores keys sorted).

    The model is built on the ``meta`` device (no memory, no compute); unknown architectures or
    arguments leave the order unchanged, and keys the model lacks keep their place at the end.
    """
    if not architecture:
        return state_dict
    from semantic_genesis.models.registry import create

    try:
        with torch.device("meta"):
            order = list(create(architecture, **dict(arch_args or {})).state_dict())
    except Exception:  # noqa: BLE001 - ordering is cosmetic; loading reports real problems
        return state_dict
    ordered = {k: state_dict[k] for k in order if k in state_dict}
    ordered.update((k, v) for k, v in state_dict.items() if k not in ordered)
    return ordered


def read_any(path: str | Path, trust: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """Read a safetensors file or a PyTorch checkpoint (official layouts).

    Returns:
        ``(state_dict, metadata, skipped_keys)``. PyTorch checkpoints go through
        :func:`~semantic_genesis.models.importers.import_state_dict` with format detection.
    """
    path = _existing(path)
    if is_safetensors(path):
        state_dict, metadata = load_weights(path)
        return state_dict, metadata, []
    from semantic_genesis.models.importers import import_state_dict

    result = import_state_dict(path, fmt="auto", trust=trust)
    return result.state_dict, result.metadata(), result.skipped


# --------------------------------------------------------------------------------------------------
# Loading into models
# --------------------------------------------------------------------------------------------------
def apply_prefix_map(
    state_dict: Mapping[str, torch.Tensor], prefix_map: Mapping[str, str | None]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename key prefixes: ``{"old.": "new."}``; a value ``None`` drops the keys with that prefix.

    The longest matching prefix wins; ``""`` matches every key (e.g. ``{"": "backbone."}``).

    Returns:
        ``(renamed state dict, dropped keys)``.
    """
    prefixes = sorted(prefix_map, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                new = prefix_map[prefix]
                if new is None:
                    dropped.append(key)
                else:
                    out[new + key[len(prefix):]] = value
                break
        else:
            out[key] = value
    return out, dropped


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


def load_state_dict_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True, source: str = "state dict"
) -> LoadReport:
    """Load every key of ``state_dict`` whose name and shape match ``model``; report the rest.

    Args:
        model: the target network.
        state_dict: tensors by key (after any renaming).
        strict: if True, any missing or unexpected key or any shape mismatch raises.
        source: how to name the origin in error messages (usually the file path).

    Raises:
        CheckpointError: (strict) the first shape mismatch with both shapes, or the missing/unexpected
            keys; (any mode) no key matched at all, which usually means a prefix problem.
    """
    target = model.state_dict()
    report = LoadReport(model=model)
    usable: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        if key not in state_dict:
            report.missing.append(key)
            continue
        value = state_dict[key]
        if tuple(value.shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(tensor.shape)))
            continue
        usable[key] = value
    report.unexpected = [k for k in state_dict if k not in target]
    if strict and report.mismatched:
        key, a, b = report.mismatched[0]
        raise CheckpointError(
            f"{source}: shape mismatch at {key}: checkpoint {a} vs model {b} "
            f"({len(report.mismatched)} mismatching key(s); different width, channels or 2D/3D?)"
        )
    if strict and (report.missing or report.unexpected):
        parts = []
        if report.missing:
            parts.append(f"{len(report.missing)} missing key(s), first {report.missing[0]!r}")
        if report.unexpected:
            parts.append(f"{len(report.unexpected)} unexpected key(s), first {report.unexpected[0]!r}")
        raise CheckpointError(f"{source}: does not fit the model ({'; '.join(parts)}); use strict=False to load the matching keys")
    if not usable:
        raise CheckpointError(
            f"{source}: no key matches the model (file keys start with "
            f"{sorted({k.split('.')[0] for k in state_dict})[:5]}, model keys with "
            f"{sorted({k.split('.')[0] for k in target})[:5]}); a prefix_map may be needed"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = list(usable)
    return report


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
        model_or_name: a model, or a registry name: the model is then built from the file's
            ``arch_args`` (when the file's architecture is that name; otherwise from the arguments the
            named model accepts) updated with ``model_kwargs``.
        path: ``.safetensors`` written by :func:`save_weights`, or an official Models Genesis /
            Semantic Genesis ``.pt`` checkpoint (converted on the fly, see :mod:`.importers`).
        strict: True: every key must match in name and shape. False: load what matches, report the
            rest (e.g. a full U-Net checkpoint into a classifier's encoder).
        prefix_map: key prefix renames applied to the file's keys first (see :func:`apply_prefix_map`).
        trust: allow unpickling arbitrary objects from a ``.pt`` file (only for files you trust).

    Returns:
        :class:`LoadReport`; ``report.model`` is the model (useful when a name was given).

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not fit (see :func:`load_state_dict_into`).
    """
    from semantic_genesis.models.registry import create, model_arguments

    path = _existing(path)
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
    path = _existing(path)
    if is_safetensors(path):
        metadata = read_metadata(path)
    else:
        from semantic_genesis.models.importers import import_state_dict

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
        tensors and parameters), and for PyTorch checkpoints ``entries`` (top-level names and types),
        ``prefix`` (``"module."`` when present), ``detected_format`` and the inferred architecture.
    """
    path = _existing(path)
    info: dict[str, Any] = {"path": str(path), "size_bytes": path.stat().st_size}
    if is_safetensors(path):
        state_dict, metadata = load_weights(path)
        info.update(kind="safetensors", metadata=metadata)
    else:
        from semantic_genesis.models.importers import (
            detect_format,
            find_state_dict,
            infer_architecture,
            strip_prefix,
            torch_load,
        )

        obj = torch_load(path, trust=trust)
        info["kind"] = "pytorch"
        if isinstance(obj, Mapping):
            info["entries"] = {str(k): type(v).__name__ for k, v in obj.items()}
        raw = find_state_dict(obj, path)
        state_dict, renamed = strip_prefix(raw, "module.")
        info["prefix"] = "module." if renamed else ""
        info["detected_format"] = detect_format(state_dict)
        try:
            from semantic_genesis.models.importers import SG_PREFIX

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
    )
    return info
