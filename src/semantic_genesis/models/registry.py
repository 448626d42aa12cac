"""The model registry: ``create(name, **kwargs)`` by name, used by configs, the CLI and the tests.

Entries are ``name -> (module, class)`` and are imported on first use.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from semantic_genesis.errors import ConfigError

_MODELS: dict[str, tuple[str, str]] = {
    "unet3d": ("semantic_genesis.models.unet3d", "UNet3D"),
    "ynet3d": ("semantic_genesis.models.ynet3d", "YNet3D"),
    "encoder_classifier3d": ("semantic_genesis.models.ynet3d", "EncoderClassifier3D"),
    "unet2d": ("semantic_genesis.models.unet2d", "UNet2D"),
    "resunet2d": ("semantic_genesis.models.resunet2d", "ResUNet2D"),
    # The Rubik's cube pretext network (siamese U-Net encoder + permutation/rotation heads) lives
    # with its method; registered here so weights files can rebuild it without importing methods first.
    "rubiks_cube3d": ("semantic_genesis.methods.rubiks_cube", "RubiksCubeNet3D"),
}


def available() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; unknown names raise :class:`ConfigError` listing the names."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(available())}")
    module, attr = _MODELS[name]
    return getattr(importlib.import_module(module), attr)


def model_arguments(name: str) -> list[str]:
    """Constructor argument names of model ``name``."""
    params = inspect.signature(model_class(name).__init__).parameters
    return [p for p in params if p != "self"]


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with constructor arguments ``kwargs``.

    Raises:
        ConfigError: unknown name (lists the registered names) or unknown argument (lists the valid ones).
    """
    cls = model_class(name)
    valid = model_arguments(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(f"model {name!r} has no argument {unknown[0]!r}; valid arguments: {', '.join(valid)}")
    return cls(**kwargs)


def create_from_config(model_cfg: Any, **extra: Any) -> nn.Module:
    """Build the model described by a :class:`~semantic_genesis.config.ModelConfig` section.

    Fields the model does not take are left out (e.g. ``num_classes`` for ``unet3d``), as is
    ``num_classes=0`` (meaning "no head", so the model default applies). ``extra`` overrides fields.
    """
    fields = {
        "in_channels": model_cfg.in_channels,
        "out_channels": model_cfg.out_channels,
        "width": model_cfg.width,
        "norm": model_cfg.norm,
        "out_activation": model_cfg.out_activation,
        "skip_connections": getattr(model_cfg, "skip_connections", True),
    }
    if model_cfg.num_classes > 0:
        fields["num_classes"] = model_cfg.num_classes
    fields.update(extra)
    valid = model_arguments(model_cfg.name)
    return create(model_cfg.name, **{k: v for k, v in fields.items() if k in valid or k in extra})


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor arguments)`` of a model built from this package.

    Raises:
        ConfigError: the model is not one of the registered architectures.
    """
    name = getattr(model, "ARCH_NAME", None)
    args = getattr(model, "arch_args", None)
    if name not in _MODELS or not isinstance(args, dict):
        raise ConfigError(
            f"{type(model).__name__} is not a registered semantic_genesis model; registered: {', '.join(available())}"
        )
    return name, dict(args)
