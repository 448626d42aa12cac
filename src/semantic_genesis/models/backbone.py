"""The backbone contract: what every network body offers to heads, wrappers and the weight loader.

A **backbone** is an ``nn.Module`` that turns an image into a pyramid of feature maps. Every backbone of
the package meets this contract (:class:`~semantic_genesis.models.unet3d.UNet3D` and
:class:`~semantic_genesis.models.unet2d.UNet2D`, the Models Genesis U-Net of Zhou et al., MedIA 2021;
:class:`~semantic_genesis.models.resunet2d.ResUNet2D`, a U-Net with a ResNet-18 encoder, He et al.,
CVPR 2016), and the generic networks built on a backbone
(:class:`~semantic_genesis.models.ynet.YNet`, :class:`~semantic_genesis.models.classifier.
EncoderClassifier`, :class:`~semantic_genesis.models.rubiks_cube.RubiksCubeNet3D`) rely on nothing
else. A new backbone is one module in :mod:`semantic_genesis.models` that meets it and one registry
entry.

Attributes (:class:`Backbone`):

* ``spatial_dims``: 2 (inputs ``(B, C, H, W)``) or 3 (inputs ``(B, C, X, Y, Z)``);
* ``in_channels``: C of the input;
* ``feature_channels``: channels of each feature level, **shallow to deep, the bottleneck last**
  (U-Net 3D at width 1: ``(64, 128, 256, 512)``; ResUNet2D: ``(64, 64, 128, 256, 512)``);
* ``feature_strides``: the downsampling of each level relative to the input (``(1, 2, 4, 8)``;
  ``(2, 4, 8, 16, 32)``), so level ``i`` of an input with spatial size ``s`` has size ``s / stride``;
* ``min_divisor``: every spatial input size must be a multiple of it;
* ``encoder_state_dict_prefixes``: the names of the top-level submodules that form the encoder
  (``("down_tr64", "down_tr128", "down_tr256", "down_tr512")``; ``("encoder",)``). Their state-dict
  keys start with these names, which is how transfer learning picks the encoder's tensors;
* ``encode(x) -> EncoderFeatures(bottleneck, skips)``: ``bottleneck`` is the deepest level
  ``(B, feature_channels[-1], *spatial / feature_strides[-1])``, ``skips`` the other levels, shallow
  to deep.

A **dense** backbone (:class:`DenseBackbone`, e.g. the U-Nets) also has a decoder:
``decoder_state_dict_prefixes`` (the decoder blocks, output layer included),
``output_state_dict_prefixes`` (the output layer alone, re-initialised for a new task),
``out_channels``, ``out_activation``, ``decode_logits(features)`` and ``decode(features)`` (after the
activation), both ``(B, out_channels, *spatial)``.

Backbones that are not convolutional pyramids fit the same contract: a Swin transformer (Liu et al.,
ICCV 2021; e.g. MONAI's ``SwinTransformer``) returns its stage outputs as maps ``(B, C_i, H_i, W_i)``
(``feature_strides`` 2, 4, 8, 16, 32), and its tokens are those maps flattened,
``map.flatten(2).transpose(1, 2)`` = ``(B, N_i, C_i)`` (:meth:`EncoderFeatures.tokens`).

:class:`BackboneWrapper` is the base of networks that put a head on a backbone while keeping the
backbone's own state-dict keys (the official Semantic Genesis keys ``down_tr64.*`` ... ``clc_out.*``):
it adopts the backbone's top-level submodules under their own names instead of nesting them under a
``backbone.`` prefix.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models.registry import MODELS, create, create_from_config, unwrap_model

OUT_ACTIVATIONS = ("sigmoid", "softmax", "none")


class EncoderFeatures(NamedTuple):
    """What a backbone's encoder produces.

    Attributes:
        bottleneck: the deepest level, ``(B, feature_channels[-1], *spatial / feature_strides[-1])``
            (the official Models Genesis ``out512``: ``(B, 512, X/8, Y/8, Z/8)`` at width 1).
        skips: the other levels, ordered **shallow to deep** (U-Net 3D: ``(B, 2c, X, Y, Z)``,
            ``(B, 4c, X/2, Y/2, Z/2)``, ``(B, 8c, X/4, Y/4, Z/4)``). Always returned, also by a network
            without skip connections (which ignores them).
    """

    bottleneck: torch.Tensor
    skips: tuple[torch.Tensor, ...]

    @property
    def levels(self) -> tuple[torch.Tensor, ...]:
        """Every level, shallow to deep, the bottleneck last (matches ``feature_channels``)."""
        return (*self.skips, self.bottleneck)

    def pooled(self) -> torch.Tensor:
        """The bottleneck averaged over all positions: ``(B, feature_channels[-1])``."""
        return self.bottleneck.flatten(2).mean(dim=2)

    def tokens(self, level: int = -1) -> torch.Tensor:
        """Level ``level`` as a token sequence ``(B, N, C)`` (N = its number of positions)."""
        return self.levels[level].flatten(2).transpose(1, 2)


@runtime_checkable
class Backbone(Protocol):
    """The encoder part of the contract (see the module docstring)."""

    spatial_dims: int
    in_channels: int
    feature_channels: tuple[int, ...]
    feature_strides: tuple[int, ...]
    min_divisor: int
    encoder_state_dict_prefixes: tuple[str, ...]

    def encode(self, x: torch.Tensor) -> EncoderFeatures: ...


@runtime_checkable
class DenseBackbone(Backbone, Protocol):
    """A backbone with a decoder back to the input resolution (a U-Net)."""

    out_channels: int
    out_activation: str
    decoder_state_dict_prefixes: tuple[str, ...]
    output_state_dict_prefixes: tuple[str, ...]

    def decode_logits(self, features: EncoderFeatures) -> torch.Tensor: ...

    def decode(self, features: EncoderFeatures) -> torch.Tensor: ...


BACKBONE_ATTRIBUTES = ("spatial_dims", "in_channels", "feature_channels", "feature_strides", "min_divisor",
                       "encoder_state_dict_prefixes", "encode")
DENSE_ATTRIBUTES = ("out_channels", "out_activation", "decoder_state_dict_prefixes", "output_state_dict_prefixes",
                    "decode_logits", "decode")


def check_backbone(module: object, dense: bool = False, who: str = "backbone") -> None:
    """Raise :class:`ConfigError` unless ``module`` meets the contract (``dense``: the decoder part too).

    Checks that the attributes exist, that ``feature_channels`` and ``feature_strides`` have one entry
    per level, that every prefix names a top-level submodule, and that the module keeps its tensors in
    submodules (none of its own, so that a :class:`BackboneWrapper` adopts every tensor).
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{who} must be an nn.Module meeting models.backbone.Backbone, got {type(module).__name__}")
    wanted = BACKBONE_ATTRIBUTES + (DENSE_ATTRIBUTES if dense else ())
    missing = [a for a in wanted if not hasattr(module, a)]
    if missing:
        kind = "a dense backbone (encoder + decoder)" if dense else "a backbone"
        raise ConfigError(f"{who} {type(module).__name__} is not {kind}: it lacks {', '.join(missing)}")
    if len(module.feature_channels) != len(module.feature_strides):
        raise ConfigError(f"{who} {type(module).__name__}: feature_channels and feature_strides differ in length")
    children = dict(module.named_children())
    prefixes = tuple(module.encoder_state_dict_prefixes) + (
        tuple(module.decoder_state_dict_prefixes) + tuple(module.output_state_dict_prefixes) if dense else ())
    unknown = [p for p in prefixes if p not in children]
    if unknown:
        raise ConfigError(f"{who} {type(module).__name__}: state-dict prefix {unknown[0]!r} is not one of its submodules")
    own = [*module._parameters, *module._buffers]
    if own:
        raise ConfigError(f"{who} {type(module).__name__}: tensor {own[0]!r} is not inside a submodule")


def build_backbone(backbone: nn.Module | str, backbone_args: Mapping[str, Any] | None = None) -> nn.Module:
    """``backbone`` itself, or the registered model of that name built with ``backbone_args``."""
    if isinstance(backbone, str):
        return create(backbone, **dict(backbone_args or {}))
    if backbone_args:
        raise ConfigError("backbone_args only apply when the backbone is given by its registry name")
    return backbone


def is_backbone_class(cls: type) -> bool:
    """Whether ``cls`` is a backbone itself (meets the contract and is not a network built on one)."""
    return isinstance(cls, type) and issubclass(cls, nn.Module) and not issubclass(cls, BackboneWrapper) and all(
        hasattr(cls, a) for a in ("encode", "encoder_state_dict_prefixes", "min_divisor"))


def backbone_of(model: nn.Module) -> nn.Module:
    """The backbone of a network: the backbone a :class:`BackboneWrapper` is built on, or ``model``
    itself when it is a backbone (DataParallel / DDP / compile wrappers removed first).

    Raises:
        ConfigError: the model neither is nor has a backbone.
    """
    model = unwrap_model(model)
    if isinstance(model, BackboneWrapper):
        return model.backbone
    check_backbone(model, who="model")
    return model


def backbones() -> list[str]:
    """Names of the registered backbones (``unet2d``, ``unet3d``, ``resunet2d``, ...)."""
    return [name for name, cls in MODELS.items() if is_backbone_class(cls)]


def dense_backbone_name(name: str) -> str:
    """The registered dense backbone (encoder + decoder) to use for backbone ``name`` on a segmentation
    target: ``name`` itself when it has a decoder, else the class's ``DENSE_VARIANT`` (``swin2d`` ->
    ``swin_unetr2d``: the same encoder keys with a decoder added).

    Raises:
        ConfigError: ``name`` has no decoder and names no dense variant.
    """
    cls = MODELS.get(name)
    if hasattr(cls, "decode_logits") and hasattr(cls, "decode"):
        return name
    variant = getattr(cls, "DENSE_VARIANT", None)
    if variant is None:
        dense = [b for b in backbones() if hasattr(MODELS.get(b), "decode")]
        raise ConfigError(f"backbone {name!r} has no decoder; segmentation needs a dense backbone: {', '.join(dense)}")
    return str(variant)


def backbone_from_config(model_cfg: Any, who: str = "this method", **extra: Any) -> nn.Module:
    """The backbone named by a ``model`` config section (``model.name``), built from its fields.

    Raises:
        ConfigError: ``model.name`` is not a backbone (e.g. a network that already has a head).
    """
    if not is_backbone_class(MODELS.get(model_cfg.name)):
        raise ConfigError(
            f"model.name={model_cfg.name!r} is not a backbone; {who} puts its own head on a backbone: "
            f"{', '.join(backbones())}"
        )
    return create_from_config(model_cfg, **extra)


def check_spatial_input(x: torch.Tensor, spatial_dims: int, in_channels: int, divisor: int, who: str) -> None:
    """Validate a network input ``(B, C, *spatial)``; raise :class:`DataError` naming the shape."""
    layout = "(B, C, X, Y, Z)" if spatial_dims == 3 else "(B, C, H, W)"
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{who}: expected a tensor {layout}, got {type(x).__name__}")
    shape = tuple(x.shape)
    if x.dim() != spatial_dims + 2:
        raise DataError(f"{who}: expected a {spatial_dims + 2}D input {layout}, got shape {shape}")
    if shape[1] != in_channels:
        raise DataError(f"{who}: expected {in_channels} input channel(s) in {layout}, got shape {shape}")
    bad = [n for n in shape[2:] if n % divisor]
    if bad:
        example = "64x64x32" if spatial_dims == 3 else "224x224"
        raise DataError(
            f"{who}: input spatial size {shape[2:]} (shape {shape}) is not divisible by {divisor}; "
            f"every spatial size must be a multiple of {divisor} (e.g. {example})"
        )


def check_out_activation(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`OUT_ACTIVATIONS`, else raise :class:`ConfigError`."""
    if kind not in OUT_ACTIVATIONS:
        raise ConfigError(f"out_activation must be one of {', '.join(OUT_ACTIVATIONS)}, got {kind!r}")
    return kind


def apply_activation(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Apply an output activation (``"sigmoid"``, ``"softmax"`` over channels, or ``"none"``)."""
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    if kind == "softmax":
        return torch.softmax(logits, dim=1)
    return logits


def modules_named(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """The top-level submodules of ``model`` named ``prefixes`` (in that order)."""
    return [getattr(model, name) for name in prefixes]


def parameters_named(model: nn.Module, prefixes: Sequence[str]) -> Iterator[nn.Parameter]:
    """The parameters of the top-level submodules named ``prefixes``."""
    for module in modules_named(model, prefixes):
        yield from module.parameters()


class BackboneWrapper(nn.Module):
    """Base of networks built on a backbone (a head on its features), keeping the backbone's keys.

    The wrapper registers the backbone's top-level submodules named ``adopt`` as its **own** children,
    under the same names (the very same module objects, so parameters are shared with the backbone
    object, never copied), and keeps the backbone object as the plain attribute :attr:`backbone`,
    outside the module tree. So a YNet over the official U-Net has the official keys
    ``down_tr64.*`` ... ``out_tr.*`` (not ``backbone.down_tr64.*``), ``named_parameters()`` and
    ``state_dict()`` agree, and the backbone's own ``encode`` / ``decode`` run on the adopted modules.

    The encoder part of the contract is forwarded from the backbone, so a wrapper is itself a
    :class:`Backbone` (e.g. the Semantic Genesis network's encoder gives self-discovery features).

    Args:
        backbone: a module meeting :class:`Backbone` (``dense``: :class:`DenseBackbone`).
        adopt: names of the backbone's top-level submodules to register (default: the encoder's).
        dense: require the decoder part of the contract.
    """

    def __init__(self, backbone: nn.Module, adopt: Sequence[str] | None = None, dense: bool = False):
        super().__init__()
        check_backbone(backbone, dense=dense, who=f"{type(self).__name__} backbone")
        object.__setattr__(self, "backbone", backbone)  # a plain attribute: not a child, no 'backbone.' keys
        for name in adopt if adopt is not None else backbone.encoder_state_dict_prefixes:
            self.add_module(name, getattr(backbone, name))

    backbone: nn.Module

    def train(self, mode: bool = True) -> "BackboneWrapper":
        super().train(mode)
        self.backbone.training = mode  # the adopted children already follow; the holder too
        return self

    # -- the encoder part of the contract, forwarded --------------------------------------------------
    @property
    def spatial_dims(self) -> int:
        return self.backbone.spatial_dims

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @property
    def feature_channels(self) -> tuple[int, ...]:
        return tuple(self.backbone.feature_channels)

    @property
    def feature_strides(self) -> tuple[int, ...]:
        return tuple(self.backbone.feature_strides)

    @property
    def bottleneck_channels(self) -> int:
        """Channels of the deepest feature level (``feature_channels[-1]``)."""
        return int(self.backbone.feature_channels[-1])

    @property
    def min_divisor(self) -> int:
        return self.backbone.min_divisor

    @property
    def encoder_state_dict_prefixes(self) -> tuple[str, ...]:
        return tuple(self.backbone.encoder_state_dict_prefixes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` unless ``x`` fits the backbone (dimensions, channels, divisibility)."""
        check_spatial_input(x, self.spatial_dims, self.in_channels, self.min_divisor, type(self).__name__)

    def encode(self, x: torch.Tensor) -> EncoderFeatures:
        """The backbone's :class:`EncoderFeatures` of ``x``."""
        return self.backbone.encode(x)

    def encoder_modules(self) -> list[nn.Module]:
        """The encoder blocks (the top-level submodules named ``encoder_state_dict_prefixes``)."""
        return modules_named(self, self.encoder_state_dict_prefixes)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the encoder blocks only (e.g. to freeze them or give them their own lr)."""
        return parameters_named(self, self.encoder_state_dict_prefixes)
