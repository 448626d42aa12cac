"""The self-discovery autoencoder: a 3D U-Net trained to reproduce whole scans (identity mapping).

Semantic Genesis (§2, "self-discovery") describes each patient by the latent vector of an
autoencoder trained on whole scans. Following the official code (reference §1.1): scans resized to
``discovery.ae_input_size`` (128x128x64), MSE loss, Adam (lr 1e-3), learning rate halved after
``ae_plateau_patience`` epochs without validation improvement (min ``ae_min_lr``), early stopping
after ``ae_patience`` epochs, best-validation weights kept. The network is the Models Genesis U-Net
**without skip connections** by default (``ae_skip_connections=False``): with skips the decoder can
copy the input through them and the bottleneck, whose average is the patient feature, carries little
(reference §5.2; the original 2020 code used the skip-less "Vnet").

The loop is small and self-contained: every epoch ends with an atomic checkpoint (model, optimiser,
scheduler, counters) from which an interrupted run resumes; the data order of epoch ``e`` is a
function of ``(seed, e)``. Files in ``out_dir``: ``state.pt`` (resume state), ``best.safetensors``
(best weights with metadata), ``log.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, DataError
from semantic_genesis.training.checkpoint import load_checkpoint, save_checkpoint
from semantic_genesis.utils.seeding import derive_seed

STATE = "state.pt"
BEST = "best.safetensors"
LOG = "log.jsonl"


def ae_fingerprint(dcfg) -> dict[str, Any]:
    """The settings a trained autoencoder is tied to (a checkpoint with others cannot be reused)."""
    return {
        "input_size": [int(s) for s in dcfg.ae_input_size],
        "width": float(dcfg.ae_width),
        "norm": dcfg.ae_norm,
        "skip_connections": bool(dcfg.ae_skip_connections),
    }


def build_autoencoder(dcfg) -> nn.Module:
    """A fresh autoencoder (``unet3d``, one channel in and out, sigmoid output) for the config."""
    from semantic_genesis import models

    return models.create(
        "unet3d", in_channels=1, out_channels=1, width=dcfg.ae_width, norm=dcfg.ae_norm,
        out_activation="sigmoid", skip_connections=dcfg.ae_skip_connections,
    )


def _check_fingerprint(found: dict[str, Any], wanted: dict[str, Any], where: str) -> None:
    diffs = [f"{k}={found.get(k)!r} (config wants {v!r})" for k, v in wanted.items() if found.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"{where}: autoencoder checkpoint does not match the discovery config: " + "; ".join(diffs)
            + ". Use another output folder, or set discovery.ae_* to the checkpoint's values"
        )


def load_autoencoder(path: str | Path, dcfg) -> nn.Module:
    """Load trained autoencoder weights and check they fit ``discovery.ae_*`` (input size included).

    Raises:
        CheckpointError: missing/corrupt file, or weights of another input size/width/architecture.
    """
    from semantic_genesis.models import load_weights

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: autoencoder weights not found")
    state, metadata = load_weights(path)
    info = metadata.get("autoencoder") if isinstance(metadata, dict) else None
    if isinstance(info, str):
        info = json.loads(info)
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: not a self-discovery autoencoder (metadata has no 'autoencoder' entry)")
    _check_fingerprint(info, ae_fingerprint(dcfg), str(path))
    model = build_autoencoder(dcfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the autoencoder ({str(exc).splitlines()[0]})") from None
    return model


def _batches(store, indices: np.ndarray, batch_size: int, device: torch.device):
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        arr = np.stack([store.item(int(i)) for i in chunk])
        yield torch.from_numpy(arr).to(device)


@torch.no_grad()
def _evaluate(model: nn.Module, store, batch_size: int, device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    for x in _batches(store, np.arange(len(store)), batch_size, device):
        total += float(nn.functional.mse_loss(model(x), x, reduction="sum")) / x[0].numel()
        count += len(x)
    model.train()
    return total / max(count, 1)


def train_autoencoder(
    train_store,
    val_store,
    out_dir: str | Path,
    dcfg,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
) -> Path:
    """Train (or resume, or skip when finished) the autoencoder; return the best weights' path.

    Args:
        train_store: ``ShardedArray``-like of training scans, items ``(1, *ae_input_size)`` in [0, 1].
        val_store: same for validation scans, or ``None``/empty (the training loss is monitored).
        out_dir: folder for ``state.pt``, ``best.safetensors``, ``log.jsonl``.
        dcfg: the ``discovery`` config section.
        seed: base seed (initialisation and data order).
        device: torch device.
        log: one-line progress messages.
        stop_after_epochs: end this call after that many epochs (tests of resume); ``None`` = run on.

    Raises:
        CheckpointError: ``out_dir`` holds a checkpoint of another input size or architecture.
        DataError: no training scans, or scans of another size than ``ae_input_size``.
    """
    from semantic_genesis.models import save_weights

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    fingerprint = ae_fingerprint(dcfg)
    if len(train_store) == 0:
        raise DataError("no training scans for the autoencoder")
    item_shape = tuple(train_store.item_shape)
    if item_shape != (1, *fingerprint["input_size"]):
        raise DataError(
            f"autoencoder inputs have shape {item_shape}, expected (1, {', '.join(map(str, fingerprint['input_size']))})"
        )
    if val_store is None or len(val_store) == 0:
        val_store = train_store

    torch.manual_seed(derive_seed(seed, "autoencoder-init") % (2**63))
    model = build_autoencoder(dcfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=dcfg.ae_lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=dcfg.ae_plateau_patience, threshold=1e-4,
        threshold_mode="abs", min_lr=dcfg.ae_min_lr,
    )
    state_path = out_dir / STATE
    epoch, best, bad, finished = 0, math.inf, 0, False
    if state_path.is_file():
        state = load_checkpoint(state_path, required=("model", "optimizer", "scheduler", "epoch"))
        _check_fingerprint(state.get("fingerprint", {}), fingerprint, str(state_path))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, best, bad, finished = state["epoch"], state["best"], state["bad_epochs"], state["finished"]
        log(f"autoencoder: resuming at epoch {epoch} (best validation MSE {best:.5f})")
    best_path = out_dir / BEST
    if finished and best_path.is_file():
        return best_path

    model.train()
    done_now = 0
    while epoch < dcfg.ae_epochs and bad < dcfg.ae_patience:
        g = torch.Generator().manual_seed(derive_seed(seed, "autoencoder-order", epoch))
        order = torch.randperm(len(train_store), generator=g).numpy()
        total, count = 0.0, 0
        for x in _batches(train_store, order, dcfg.ae_batch_size, device):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), x)
            if not torch.isfinite(loss):
                from semantic_genesis.errors import TrainingError

                raise TrainingError(f"autoencoder loss became {float(loss)} at epoch {epoch}")
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
        val = _evaluate(model, val_store, dcfg.ae_batch_size, device)
        scheduler.step(val)
        improved = val < best - 1e-6
        if improved:
            best, bad = val, 0
            save_weights(model, best_path, {"method": "autoencoder", "autoencoder": fingerprint,
                                            "input_size": fingerprint["input_size"], "epoch": epoch})
        else:
            bad += 1
        epoch += 1
        finished = epoch >= dcfg.ae_epochs or bad >= dcfg.ae_patience
        save_checkpoint(state_path, {"fingerprint": fingerprint, "model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                     "epoch": epoch, "best": best, "bad_epochs": bad, "finished": finished})
        line = {"epoch": epoch, "train_mse": total / max(count, 1), "val_mse": val, "best": best,
                "lr": optimizer.param_groups[0]["lr"]}
        with open(out_dir / LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        log(f"autoencoder epoch {epoch}/{dcfg.ae_epochs}: train MSE {line['train_mse']:.5f}, "
            f"validation MSE {val:.5f}{' (best)' if improved else ''}")
        done_now += 1
        if stop_after_epochs is not None and done_now >= stop_after_epochs and not finished:
            break
    return best_path
