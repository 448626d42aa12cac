"""Networks and weights.

* :mod:`~semantic_genesis.models.backbone`: the contract every backbone meets (:class:`Backbone`,
  :class:`EncoderFeatures`); backbones :class:`UNet3D` (official Models Genesis U-Net), :class:`UNet2D`,
  :class:`ResUNet2D`, :class:`Swin2D` (a 2D Swin transformer on MONAI's SwinUNETR encoder).
* Networks on a backbone: :class:`YNet` (Semantic Genesis: restoration + classification head; the
  official 3D network is :class:`YNet3D`), :class:`EncoderClassifier` (encoder + head;
  :class:`EncoderClassifier3D`), :class:`RubiksCubeNet3D`; heads in :mod:`~semantic_genesis.models.heads`.
* :func:`create` / :func:`available`: the model registry (:mod:`~semantic_genesis.models.registry`).
* Weights: :func:`save_weights` / :func:`load_weights` (safetensors + JSON metadata,
  :mod:`~semantic_genesis.models.weights`); :func:`load_pretrained`, :func:`build_model_from_weights`,
  :func:`describe_weights` (the one load path, :mod:`~semantic_genesis.models.loading`, which also reads
  the official checkpoints through :mod:`~semantic_genesis.models.importers`).
"""

from __future__ import annotations

from typing import Any

from semantic_genesis.models.registry import available, create, create_from_config, unwrap_model

_LAZY = {
    "Backbone": "semantic_genesis.models.backbone",
    "DenseBackbone": "semantic_genesis.models.backbone",
    "EncoderFeatures": "semantic_genesis.models.backbone",
    "backbones": "semantic_genesis.models.backbone",
    "UNet3D": "semantic_genesis.models.unet3d",
    "UNet2D": "semantic_genesis.models.unet2d",
    "ResUNet2D": "semantic_genesis.models.resunet2d",
    "Swin2D": "semantic_genesis.models.swin2d",
    "YNet": "semantic_genesis.models.ynet",
    "YNet3D": "semantic_genesis.models.ynet",
    "YNetOutput": "semantic_genesis.models.ynet",
    "EncoderClassifier": "semantic_genesis.models.classifier",
    "EncoderClassifier3D": "semantic_genesis.models.classifier",
    "RubiksCubeNet3D": "semantic_genesis.models.rubiks_cube",
    "ClassificationHead": "semantic_genesis.models.heads",
    "ContBatchNorm": "semantic_genesis.models.norms",
    "save_weights": "semantic_genesis.models.weights",
    "load_weights": "semantic_genesis.models.weights",
    "load_pretrained": "semantic_genesis.models.loading",
    "build_model_from_weights": "semantic_genesis.models.loading",
    "describe_weights": "semantic_genesis.models.loading",
    "LoadReport": "semantic_genesis.models.state",
}

__all__ = ["available", "create", "create_from_config", "unwrap_model", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'semantic_genesis.models' has no attribute {name!r}")
