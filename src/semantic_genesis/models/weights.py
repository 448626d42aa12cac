"""Weights files: safetensors with JSON metadata (the file format; loading into models is
:mod:`semantic_genesis.models.loading`).

File format: a ``.safetensors`` file whose header metadata holds one entry, ``"semantic_genesis"``, a
JSON object with at least

* ``format`` (``"semantic_genesis.weights"``) and ``format_version`` (1),
* ``architecture`` (registry name, e.g. ``"unet3d"``) and ``arch_args`` (constructor arguments), so
  :func:`~semantic_genesis.models.loading.build_model_from_weights` can rebuild the network,
* ``library_version``, ``torch_version``, ``created`` (UTC ISO time), ``num_parameters``,

plus what the caller passes: by convention ``method`` (e.g. ``"semantic_genesis"``), ``input_size``
(e.g. ``[64, 64, 32]``), ``intensity_window`` (e.g. ``{"modality": "ct", "hu_min": -1000, "hu_max":
1000}``), ``config`` (the resolved config as a mapping) and ``source`` (for imported checkpoints).

:func:`load_weights` refuses a file whose tensors (parameters or buffers) hold NaN or inf, naming them.
:func:`check_weights_path` gives every reader the same one-line errors for a missing file, a folder,
a broken link or a symbolic-link loop.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError, describe_path
from semantic_genesis.models.registry import architecture_of, create, unwrap_model
from semantic_genesis.models.state import check_finite, count_parameters

FORMAT = "semantic_genesis.weights"
FORMAT_VERSION = 1
METADATA_KEY = "semantic_genesis"


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


def check_weights_path(path: str | Path, what: str = "weights file") -> Path:
    """``path`` as a :class:`Path` if it is a readable regular file, else a one-line :class:`CheckpointError`
    saying what it is instead: missing, a folder, a broken symbolic link, a symbolic-link loop."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"{path}: symbolic link loop (the link points back to itself); not a {what}") from None
        if path.is_symlink():
            raise CheckpointError(f"{path}: broken symbolic link to {os.readlink(path)}; {what} not found") from None
        if exc.errno == errno.ENOENT:
            raise CheckpointError(f"{describe_path(path)}: {what} not found") from None
        raise CheckpointError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a {what} (give the .safetensors or .pt file inside it)")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file; expected a {what}")
    return path


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError:
        return b""


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` starts like a safetensors file (8-byte header length, then a JSON object)."""
    head = _head(Path(path), 9)
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


def is_torch_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file (a zip archive, or a legacy pickle)."""
    head = _head(Path(path), 4)
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Only the JSON metadata of a weights file (no tensors are read)."""
    from safetensors import safe_open

    path = check_weights_path(path)
    _refuse_torch_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    return _parse_metadata(raw, path)


def _refuse_torch_checkpoint(path: Path) -> None:
    if is_torch_checkpoint(path):
        raise CheckpointError(
            f"{path}: a PyTorch checkpoint (.pt), not a safetensors weights file; convert it with "
            f"`semantic-genesis weights import --format models_genesis|semantic_genesis {path.name} "
            f"{path.stem}.safetensors`"
        )


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


def load_weights(
    path: str | Path, device: str | torch.device = "cpu", allow_nonfinite: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors weights file.

    Args:
        path: the ``.safetensors`` file.
        device: where the tensors are put.
        allow_nonfinite: return tensors holding NaN or inf instead of refusing them (for inspection).

    Returns:
        ``(state_dict, metadata)``; metadata is ``{}`` for a safetensors file written by other tools
        (its raw string metadata, if any, is under ``"foreign_metadata"``).

    Raises:
        CheckpointError: missing, a folder, truncated, a PyTorch checkpoint (convert it with
            ``semantic-genesis weights import``), not a safetensors file, or non-finite tensors.
    """
    from safetensors import safe_open

    path = check_weights_path(path)
    _refuse_torch_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            raw = handle.metadata() or {}
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    metadata = _parse_metadata(raw, path)
    if not allow_nonfinite:
        check_finite(state_dict, str(path))
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
    try:
        with torch.device("meta"):
            order = list(create(architecture, **dict(arch_args or {})).state_dict())
    except Exception:  # noqa: BLE001 - ordering is cosmetic; loading reports real problems
        return state_dict
    ordered = {k: state_dict[k] for k in order if k in state_dict}
    ordered.update((k, v) for k, v in state_dict.items() if k not in ordered)
    return ordered
