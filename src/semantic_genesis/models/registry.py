"""The model registry: ``create(name, **kwargs)`` by name, used by configs, weights files and the CLI.

:data:`MODELS` is a :class:`~semantic_genesis.utils.registry.Registry` of model classes, each imported
on first use:

==========================  ==================================================================
name                        network
==========================  ==================================================================
``unet3d``                  Models Genesis 3D U-Net (backbone; official keys)
``unet2d``                  the same U-Net with 2D layers (backbone)
``resunet2d``               U-Net with a ResNet-18 encoder (backbone)
``swin2d``                  2D Swin transformer, MONAI's SwinUNETR encoder (backbone; ``size=``)
``swin_unetr2d``            the same Swin + the SwinUNETR decoder (dense backbone; ``size=``)
``ynet``                    any dense backbone + the Semantic Genesis head (``backbone=NAME``)
``ynet3d``                  the official Semantic Genesis ``YNet3D`` (``ynet`` on ``unet3d``)
``encoder_classifier``      any backbone's encoder + a classification head (``backbone=NAME``)
``encoder_classifier3d``    the same on the 3D U-Net, flat arguments
``rubiks_cube3d``           the Rubik's cube pretext network (siamese U-Net encoder)
``multi_head``              any backbone + projector + one head per dataset (Ark, ``backbone=NAME``)
==========================  ==================================================================

A weights file records ``(architecture, arch_args)`` = :func:`architecture_of` of the saved model, so
:func:`create` rebuilds it. :func:`unwrap_model` is the one helper that removes DataParallel, DDP and
``torch.compile`` wrappers.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from semantic_genesis.errors import ConfigError
from semantic_genesis.utils.registry import Registry

#: The registry of model classes (name -> class), imported lazily.
MODELS: Registry[type[nn.Module]] = Registry("model", key="model.name")
for _name, _target in (
    ("unet3d", "semantic_genesis.models.unet3d:UNet3D"),
    ("unet2d", "semantic_genesis.models.unet2d:UNet2D"),
    ("resunet2d", "semantic_genesis.models.resunet2d:ResUNet2D"),
    ("swin2d", "semantic_genesis.models.swin2d:Swin2D"),
    ("swin_unetr2d", "semantic_genesis.models.swin_unetr2d:SwinUNETR2D"),
    ("ynet", "semantic_genesis.models.ynet:YNet"),
    ("ynet3d", "semantic_genesis.models.ynet:YNet3D"),
    ("encoder_classifier", "semantic_genesis.models.classifier:EncoderClassifier"),
    ("encoder_classifier3d", "semantic_genesis.models.classifier:EncoderClassifier3D"),
    ("rubiks_cube3d", "semantic_genesis.models.rubiks_cube:RubiksCubeNet3D"),
    ("multi_head", "semantic_genesis.models.multi_head:MultiHeadModel"),
):
    MODELS.add_lazy(_name, _target)


def available() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.available()


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; unknown names raise :class:`ConfigError` listing the names."""
    return MODELS.get(name)


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


def config_arguments(model_cfg: Any, name: str | None = None) -> dict[str, Any]:
    """The arguments of model ``name`` (default ``model_cfg.name``) that a ``model`` config section sets.

    Fields the model does not take are left out (e.g. ``num_classes`` for ``unet3d``), as is
    ``num_classes=0`` (meaning "no head", so the model default applies). ``model.args`` is added as it
    is (its keys must be arguments of the model).

    Raises:
        ConfigError: a key of ``model.args`` the model does not take (lists the valid arguments).
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
    name = name or model_cfg.name
    valid = model_arguments(name)
    chosen = {k: v for k, v in fields.items() if k in valid}
    extra = dict(getattr(model_cfg, "args", None) or {})
    unknown = [k for k in extra if k not in valid]
    if unknown:
        raise ConfigError(f"model.args.{unknown[0]}: model {name!r} has no such argument; valid arguments: {', '.join(valid)}")
    return {**chosen, **extra}


def create_from_config(model_cfg: Any, **extra: Any) -> nn.Module:
    """Build the model described by a :class:`~semantic_genesis.config.ModelConfig` section.

    The section's fields that the model takes are passed (see :func:`config_arguments`); ``extra``
    adds or overrides arguments.
    """
    return create(model_cfg.name, **{**config_arguments(model_cfg), **extra})


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers
    (any nesting), or ``model`` itself."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor arguments)`` of a model built from this package (wrappers removed).

    Raises:
        ConfigError: the model is not one of the registered architectures.
    """
    model = unwrap_model(model)
    name = getattr(model, "ARCH_NAME", None)
    args = getattr(model, "arch_args", None)
    if name not in MODELS or not isinstance(args, dict):
        raise ConfigError(
            f"{type(model).__name__} is not a registered semantic_genesis model; registered: {', '.join(available())}"
        )
    return name, dict(args)
