"""The self-discovery autoencoder: a U-Net trained to reproduce whole scans (identity mapping).

Semantic Genesis (Haghighi et al., MICCAI 2020, §2 "self-discovery") describes each patient by the
latent vector of an autoencoder trained on whole scans. Following the official code
(``self_discovery/train_autoencoder.py``): scans resized to ``discovery.ae_input_size``
(128x128x64), MSE loss, Adam (``ae_lr`` = 1e-3), learning rate halved after ``ae_plateau_patience``
epochs without validation improvement (floor ``ae_min_lr``), early stopping after ``ae_patience``
epochs, best-validation weights kept. The network is the Models Genesis U-Net **without skip
connections** by default (``ae_skip_connections=False``): with skips the decoder can copy the input
through them and the bottleneck, whose average is the patient feature, carries little (the
original 2020 code used a skip-less "Vnet" for the same reason). In 2D (Semantic Genesis 2D:
whole radiographs or axial CT slices resized to ``ae_input_size`` ``[H, W]``) the network is
``discovery.ae_model`` = ``unet2d`` or ``resunet2d`` (the ResNet-18 U-Net), likewise skip-less.

It trains on the training engine (:func:`semantic_genesis.training.trainer.train`) with
:class:`ScanAutoencoder`, the ``autoencoder`` method on the scan store: the engine's ``plateau``
schedule is the official ReduceLROnPlateau (x0.5), and resume is the engine's (mid-epoch too).
Run folder ``out_dir``: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt`` (its method state
holds the :func:`ae_fingerprint`, checked before resuming), ``weights/best.safetensors`` (best
weights; metadata ``autoencoder`` = the fingerprint) and ``weights/final.safetensors``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from semantic_genesis.errors import CheckpointError, DataError
from semantic_genesis.methods.autoencoder import Autoencoder

if TYPE_CHECKING:  # pragma: no cover
    from semantic_genesis.config import Config, ModelConfig

def ae_fingerprint(dcfg) -> dict[str, Any]:
    """The settings a trained autoencoder is tied to (a checkpoint with others cannot be reused)."""
    found = {
        "input_size": [int(s) for s in dcfg.ae_input_size],
        "width": float(dcfg.ae_width),
        "norm": dcfg.ae_norm,
        "skip_connections": bool(dcfg.ae_skip_connections),
    }
    if dcfg.ae_model != "unet3d":  # 3D fingerprints predate the choice of network and stay as they were
        found["model"] = dcfg.ae_model
    return found


def ae_model_config(dcfg) -> "ModelConfig":
    """The ``model`` section of the autoencoder: ``discovery.ae_model`` (``unet3d``; in 2D ``unet2d`` or
    the ResNet-18 U-Net ``resunet2d``), one channel in and out, sigmoid output, width / norm / skip
    connections from ``discovery.ae_*``."""
    from semantic_genesis.config import ModelConfig

    return ModelConfig(name=dcfg.ae_model, in_channels=1, out_channels=1, width=float(dcfg.ae_width), norm=dcfg.ae_norm,
                       out_activation="sigmoid", skip_connections=bool(dcfg.ae_skip_connections))


def build_autoencoder(dcfg) -> nn.Module:
    """A fresh autoencoder for the ``discovery`` config section."""
    from semantic_genesis.models import create_from_config

    return create_from_config(ae_model_config(dcfg))


def _check_fingerprint(found: dict[str, Any], wanted: dict[str, Any], where: str) -> None:
    diffs = [f"{k}={found.get(k)!r} (config wants {v!r})" for k, v in wanted.items() if found.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"{where + ': ' if where else ''}autoencoder checkpoint does not match the discovery config: " + "; ".join(diffs)
            + ". Use another output folder, or set discovery.ae_* to the checkpoint's values"
        )


def load_autoencoder(path: str | Path, dcfg) -> nn.Module:
    """Load trained autoencoder weights and check they fit ``discovery.ae_*`` (input size included).

    Raises:
        CheckpointError: missing/corrupt file, or weights of another input size/width/architecture.
    """
    from semantic_genesis.models.loading import load_pretrained
    from semantic_genesis.models.weights import read_metadata

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: autoencoder weights not found")
    metadata = read_metadata(path)
    info = metadata.get("autoencoder") if isinstance(metadata, dict) else None
    if isinstance(info, str):
        info = json.loads(info)
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: not a self-discovery autoencoder (metadata has no 'autoencoder' entry)")
    _check_fingerprint(info, ae_fingerprint(dcfg), str(path))
    model = build_autoencoder(dcfg)
    load_pretrained(model, path, strict=True)  # a key or shape that does not fit: one-line CheckpointError
    return model


class ScanAutoencoder(Autoencoder):
    """The ``autoencoder`` method on the scan store of self-discovery (``RUN/discovery/scans``).

    The identity recipe and MSE of :class:`~semantic_genesis.methods.autoencoder.Autoencoder` on
    whole resized scans ``(1, *ae_input_size)``; validation on the validation patients' scans (the
    training scans when there are none). Its state in the checkpoint is the :func:`ae_fingerprint`,
    so that a run folder of another input size or architecture is refused.
    """

    def __init__(self, cfg: "Config", fingerprint: dict[str, Any]):
        super().__init__(cfg)
        self.fingerprint = fingerprint

    def build_datasets(self):
        from semantic_genesis.io.shard_dataset import StoreDataset

        train = StoreDataset(self.cfg.data, "train", with_labels=False)
        if len(train) == 0:
            raise DataError("no training scans for the autoencoder")
        wanted = (1, *self.fingerprint["input_size"])
        if tuple(train.item_shape) != wanted:
            raise DataError(f"autoencoder inputs have shape {tuple(train.item_shape)}, expected {wanted}")
        val = StoreDataset(self.cfg.data, "validation", with_labels=False)
        return train, (val if len(val) else train)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_fingerprint(state.get("fingerprint", {}), self.fingerprint, "")  # the engine names the file

    def weights_metadata(self) -> dict[str, Any]:
        return {"method": "autoencoder", "autoencoder": self.fingerprint, "input_size": self.fingerprint["input_size"]}


def _run_config(cfg: "Config", scans: Path, out_dir: Path, epochs: int) -> "Config":
    """The engine config of the autoencoder: ``discovery.ae_*`` as ``model``, ``train`` and ``optim``."""
    from semantic_genesis.config import load_config, replace, to_dict

    d = cfg.discovery
    model = {f"model.{k}": v for k, v in to_dict(ae_model_config(d)).items()}
    return replace(load_config(None), **{
        "seed": cfg.seed, "data": str(scans), "out": str(out_dir), "method.name": "autoencoder", **model,
        "train.epochs": int(epochs), "train.batch_size": d.ae_batch_size, "train.patience": d.ae_patience,
        "train.min_delta": 1e-6, "train.device": cfg.train.device, "train.num_workers": cfg.train.num_workers,
        "train.progress": d.progress, "train.tensorboard": cfg.train.tensorboard,
        "optim.name": "adam", "optim.lr": d.ae_lr, "optim.scheduler": "plateau", "optim.gamma": 0.5,
        "optim.plateau_patience": d.ae_plateau_patience, "optim.min_lr": d.ae_min_lr,
    })


def train_autoencoder(
    scans: str | Path,
    out_dir: str | Path,
    cfg: "Config",
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
) -> Path:
    """Train (or resume, or skip when finished) the autoencoder; return the best weights' path.

    Args:
        scans: the scan store (splits ``train`` and ``validation``), items ``(1, *ae_input_size)`` in [0, 1].
        out_dir: the autoencoder's run folder.
        cfg: the root config (``discovery.ae_*``, ``seed``, ``train.device``, ``train.num_workers``).
        log: one-line progress messages (one per epoch).
        stop_after_epochs: end this call after that many more epochs (tests of resume); ``None`` = run on.

    Raises:
        CheckpointError: ``out_dir`` holds a checkpoint of another input size or architecture.
        DataError: no training scans, or scans of another size than ``ae_input_size``.
    """
    from semantic_genesis.training.checkpoint import load_checkpoint
    from semantic_genesis.training.trainer import train

    out_dir = Path(out_dir)
    dcfg = cfg.discovery
    fingerprint = ae_fingerprint(dcfg)
    last, best = out_dir / "checkpoints" / "last.pt", out_dir / "weights" / "best.safetensors"
    done = 0
    if last.is_file():
        state = load_checkpoint(last)
        _check_fingerprint(state.get("method", {}).get("fingerprint", {}), fingerprint, str(last))
        progress = state["progress"]
        if (progress["stop_reason"] == "early_stop" or progress["epoch"] >= dcfg.ae_epochs) and best.is_file():
            return best
        done = int(progress["epoch"])
        best_mse = math.nan if progress["best"] is None else progress["best"]
        log(f"autoencoder: resuming at epoch {done} (best validation MSE {best_mse:.5f})")
    epochs = dcfg.ae_epochs if stop_after_epochs is None else min(dcfg.ae_epochs, done + stop_after_epochs)

    def show(record: dict[str, Any]) -> None:
        log(f"autoencoder epoch {record['epoch'] + 1}/{dcfg.ae_epochs}: train MSE {record['train_loss']:.5f}, "
            f"validation MSE {record['loss']:.5f}{' (best)' if record.get('improved') else ''}")

    run_cfg = _run_config(cfg, Path(scans), out_dir, epochs)
    result = train(run_cfg, ScanAutoencoder(run_cfg, fingerprint), on_epoch=show)
    if result.best_weights is None:
        raise DataError(
            f"{out_dir}: autoencoder: {result.best_note}, so there are no best weights to embed the patients "
            "with; lower discovery.ae_lr, or give discovery.ae_weights=FILE"
        )
    return result.best_weights
