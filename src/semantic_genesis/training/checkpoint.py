"""Checkpoints of the training engine: atomic, self-contained, exact to resume from.

A checkpoint (``<run>/checkpoints/last.pt``) is a plain ``torch.save`` dict loadable with
``weights_only=True``:

* ``model``: the state dict of the unwrapped network (no ``module.`` / ``_orig_mod.`` prefixes);
* ``optimizer``, ``schedule``, ``scaler``: optimiser, lr-schedule and AMP grad-scaler states;
* ``progress``: epoch, batch within the epoch, global step, best monitored value, epochs without
  improvement, the partly filled logging window, and whether the run has finished;
* ``rng``: the CPU and CUDA generator states (the engine also reseeds per step, so these are a
  second line of defence, not the mechanism);
* ``format``: :data:`FORMAT_VERSION`.

Files are written to a temporary name and renamed, so a process killed at any moment leaves the
previous checkpoint intact. Weights files (``weights/best.safetensors``, ``weights/final.safetensors``)
are written with :func:`semantic_genesis.models.weights.save_weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError
from semantic_genesis.models.registry import unwrap_model
from semantic_genesis.utils.atomic import atomic_open

FORMAT_VERSION = 1


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the unwrapped model's state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap_model(model).state_dict().items()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) to ``path`` atomically."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        torch.save({**state, "format": FORMAT_VERSION}, handle)
    return path


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "optimizer", "progress")) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safely, ``weights_only=True``).

    Args:
        path: the checkpoint file.
        required: keys the checkpoint must hold (the training loop's by default).

    Raises:
        CheckpointError: the file is missing, unreadable or not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: not a semantic-genesis training checkpoint (format {state.get('format') if isinstance(state, dict) else '?'}, "
            f"expected {FORMAT_VERSION})"
        )
    for key in required:
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return state


def write_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Save the unwrapped model as safetensors with metadata, atomically."""
    from semantic_genesis.models.weights import save_weights

    return save_weights(unwrap_model(model), Path(path), metadata)
