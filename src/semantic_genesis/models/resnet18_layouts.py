"""Key maps from the usual ResNet-18 packagings onto :class:`~semantic_genesis.models.resunet2d.ResUNet2D`.

The 2D baseline of Models Genesis (Zhou et al., MedIA 2021) and Semantic Genesis (Haghighi et al.,
MICCAI 2020) is ImageNet initialisation. Two layouts carry such ResNet-18 weights:

* **torchvision** ``resnet18`` (``resnet18-f37072d3.pth``; a flat state dict): ``conv1.weight``
  ``(64, 3, 7, 7)``, ``bn1.*``, ``layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2}.*``,
  ``layer{2,3,4}.0.downsample.{0,1}.*`` and the ImageNet classifier ``fc.weight`` ``(1000, 512)``,
  ``fc.bias``. Our encoder has exactly these modules under ``encoder.``; ``fc.*`` is skipped and the
  decoder is left as initialised.
* **segmentation_models_pytorch** ``Unet("resnet18")``: the encoder under ``encoder.*`` (the
  torchvision names, without ``fc``), five decoder blocks ``decoder.blocks.N.conv{1,2}.{0,1}.*``
  (``Conv2dReLU`` = conv without bias, batch norm, ReLU) with 256, 128, 64, 32, 16 channels, and the
  3x3 ``segmentation_head.0.{weight,bias}``. Its decoder (nearest 2x upsampling, concatenation of
  the skip, two conv-BN-ReLU) is ours block for block, so the whole network maps:
  ``decoder.blocks.N.convK.0.weight`` -> ``decoder.N.convK.weight``, ``decoder.blocks.N.convK.1.*``
  -> ``decoder.N.bnK.*``, ``segmentation_head.0.*`` -> ``out_conv.*``. Auxiliary classification heads
  (``classification_head.*``) are skipped.

Grey input: ImageNet filters see RGB. For a one-channel model the first conv's three input filters
are **summed** (default: a grey image then produces exactly the activations its RGB copy
``(x, x, x)`` would, so the following batch norm's statistics still fit) or **averaged** (the
response is a third of that).

ImageNet normalisation: torchvision's weights were trained on ``(x - mean) / std`` per RGB channel
(mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225) of images in [0, 1]; our inputs stay in [0, 1].
By default the weights are taken as they are (the network then sees a shifted and scaled input, which
batch norm in training mode absorbs). ``fold_normalisation=True`` folds the normalisation into the
network instead: conv1's filters are divided by ``std`` and the constant it leaves,
``sum(W * mean / std)`` per output channel, is added to ``bn1.running_mean``, so that on [0, 1] inputs
the stem computes what the ImageNet network computed on normalised ones (exactly, except within
3 pixels of the border, where zero padding meets the shift).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from semantic_genesis.errors import CheckpointError, ConfigError

TORCHVISION = "torchvision_resnet18"
SMP = "smp_resnet18_unet"
LAYOUTS = (TORCHVISION, SMP)
RGB_TO_GREY = ("sum", "mean")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FIRST_CONV = "encoder.conv1.weight"

# Keys dropped on purpose: the ImageNet classifier; smp's optional auxiliary classification head.
_SKIPPED_PREFIXES = {TORCHVISION: ("fc.",), SMP: ("classification_head.",)}
_SMP_RULES = (
    (re.compile(r"^decoder\.blocks\.(\d+)\.conv([12])\.0\.weight$"), r"decoder.\1.conv\2.weight"),
    (re.compile(r"^decoder\.blocks\.(\d+)\.conv([12])\.1\.(\w+)$"), r"decoder.\1.bn\2.\3"),
    (re.compile(r"^segmentation_head\.0\.(weight|bias)$"), r"out_conv.\1"),
    (re.compile(r"^(encoder\..+)$"), r"\1"),
)


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """:data:`SMP`, :data:`TORCHVISION` or None, from marker keys."""
    if "encoder.layer1.0.conv1.weight" in state_dict and "decoder.blocks.0.conv1.0.weight" in state_dict:
        return SMP
    if "conv1.weight" in state_dict and "layer1.0.conv1.weight" in state_dict:
        return TORCHVISION
    return None


def our_key(layout: str, key: str) -> str | None:
    """Our ResUNet2D name for a file key, or None when the layout has no rule for it."""
    if layout == TORCHVISION:
        return "encoder." + key
    for pattern, replacement in _SMP_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def fold_imagenet_normalisation(conv1: torch.Tensor, running_mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``(x - mean) / std`` into the stem: ``(conv1 / std, running_mean + sum(conv1 * mean / std))``.

    Args:
        conv1: RGB filters ``(O, 3, k, k)``.
        running_mean: ``bn1.running_mean`` ``(O,)``.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=conv1.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=conv1.dtype).view(1, 3, 1, 1)
    return conv1 / std, running_mean + (conv1 * (mean / std)).sum(dim=(1, 2, 3))


def map_resnet18(
    state_dict: Mapping[str, torch.Tensor],
    layout: str,
    model_state: Mapping[str, torch.Tensor],
    source: str,
    rgb_to_grey: str = "sum",
    fold_normalisation: bool = False,
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename a ResNet-18 state dict of ``layout`` into the keys of ``model_state`` (a ResUNet2D's).

    Every key must either map onto a model key with the model's shape, or be one of the layout's
    deliberately skipped keys; the first conv's RGB filters are reduced to one channel
    (``rgb_to_grey``) when the model takes grey input.

    Args:
        state_dict: the file's tensors, ``module.`` already stripped.
        layout: :data:`TORCHVISION` or :data:`SMP`.
        model_state: the target model's state dict (names and shapes; meta tensors are fine).
        source: the file, for messages.
        rgb_to_grey: ``"sum"`` or ``"mean"`` of the RGB filters of ``conv1`` for a 1-channel model.
        fold_normalisation: fold ImageNet's mean/std normalisation into ``conv1`` and ``bn1`` first
            (see the module docstring); needs the RGB first conv.

    Returns:
        ``(tensors under our names, file keys used, file keys skipped)``.

    Raises:
        CheckpointError: a key the layout does not know (e.g. a ResNet-34 block ``layer1.2.*``), a
            shape that does not fit (naming the key), or model keys the layout must provide missing.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown ResNet-18 layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if rgb_to_grey not in RGB_TO_GREY:
        raise ConfigError(f"rgb_to_grey must be one of {', '.join(RGB_TO_GREY)}, got {rgb_to_grey!r}")
    if fold_normalisation:
        prefix = "" if layout == TORCHVISION else "encoder."
        conv1, mean = state_dict.get(prefix + "conv1.weight"), state_dict.get(prefix + "bn1.running_mean")
        if conv1 is None or mean is None or conv1.dim() != 4 or conv1.shape[1] != 3:
            raise CheckpointError(
                f"{source}: folding the ImageNet normalisation needs the RGB first conv ({prefix}conv1.weight with 3 "
                f"input channels) and {prefix}bn1.running_mean; got {None if conv1 is None else tuple(conv1.shape)}"
            )
        state_dict = dict(state_dict)
        state_dict[prefix + "conv1.weight"], state_dict[prefix + "bn1.running_mean"] = fold_imagenet_normalisation(conv1, mean)
    mapped: dict[str, torch.Tensor] = {}
    used: list[str] = []
    skipped: list[str] = []
    for key, tensor in state_dict.items():
        if key.startswith(_SKIPPED_PREFIXES[layout]):
            skipped.append(key)
            continue
        ours = our_key(layout, key)
        if ours is None or ours not in model_state:
            raise CheckpointError(
                f"{source}: key {key!r} has no place in a ResNet-18 U-Net ({layout} layout); "
                "is it another network (ResNet-34/50, another decoder)?"
            )
        expected = tuple(model_state[ours].shape)
        if ours == FIRST_CONV and tensor.dim() == 4 and tensor.shape[1] == 3 and expected[1] == 1:
            tensor = tensor.sum(dim=1, keepdim=True) if rgb_to_grey == "sum" else tensor.mean(dim=1, keepdim=True)
        if tuple(tensor.shape) != expected:
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(tensor.shape)}, the ResNet-18 U-Net's {ours!r} needs {expected}"
            )
        mapped[ours] = tensor
        used.append(key)
    required = [k for k in model_state if k.startswith("encoder.") or layout == SMP]
    absent = [k for k in required if k not in mapped]
    if absent:
        raise CheckpointError(
            f"{source}: not a complete {layout} state dict: {len(absent)} tensor(s) missing, "
            f"e.g. {', '.join(absent[:3])}"
        )
    return mapped, used, skipped
