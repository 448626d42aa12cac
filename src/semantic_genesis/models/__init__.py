"""Networks and weights.

* :func:`create` / :func:`available`: the model registry (``unet3d``, ``ynet3d``, ``unet2d``,
  ``resunet2d``, ``encoder_classifier3d``).
* :class:`UNet3D` (official Models Genesis U-Net), :class:`YNet3D` (+ Semantic Genesis head),
  :class:`UNet2D`, :class:`ResUNet2D`, :class:`EncoderClassifier3D`, :class:`ClassificationHead`.
* Weights: :func:`save_weights`, :func:`load_weights`, :func:`load_pretrained`,
  :func:`build_model_from_weights` (safetensors + JSON metadata); importers and the exporter for the
  official checkpoints live in :mod:`semantic_genesis.models.importers`.
"""

from __future__ import annotations

from typing import Any

from semantic_genesis.models.registry import available, create, create_from_config

_LAZY = {
    "UNet3D": "semantic_genesis.models.unet3d",
    "EncoderFeatures": "semantic_genesis.models.unet3d",
    "UNet2D": "semantic_genesis.models.unet2d",
    "ResUNet2D": "semantic_genesis.models.resunet2d",
    "YNet3D": "semantic_genesis.models.ynet3d",
    "YNetOutput": "semantic_genesis.models.ynet3d",
    "EncoderClassifier3D": "semantic_genesis.models.ynet3d",
    "ClassificationHead": "semantic_genesis.models.heads",
    "ContBatchNorm": "semantic_genesis.models.norms",
    "save_weights": "semantic_genesis.models.weights",
    "load_weights": "semantic_genesis.models.weights",
    "load_pretrained": "semantic_genesis.models.weights",
    "build_model_from_weights": "semantic_genesis.models.weights",
    "LoadReport": "semantic_genesis.models.weights",
}

__all__ = ["available", "create", "create_from_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'semantic_genesis.models' has no attribute {name!r}")
