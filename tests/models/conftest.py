"""Shared fixtures for model tests: the official Models Genesis key list."""

from __future__ import annotations

BLOCKS = ("down_tr64", "down_tr128", "down_tr256", "down_tr512", "up_tr256", "up_tr128", "up_tr64")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def official_unet3d_keys() -> list[str]:
    """The 106 state-dict keys of the official MG ``UNet3D``, built from the reference, not from our code."""
    keys = []
    for block in BLOCKS:
        if block.startswith("up_tr"):
            keys += [f"{block}.up_conv.weight", f"{block}.up_conv.bias"]
        for j in (0, 1):
            keys += [f"{block}.ops.{j}.conv1.weight", f"{block}.ops.{j}.conv1.bias"]
            keys += [f"{block}.ops.{j}.bn1.{k}" for k in BN_KEYS]
    keys += ["out_tr.final_conv.weight", "out_tr.final_conv.bias"]
    return keys


OFFICIAL_CONV_SHAPES = {
    "down_tr64.ops.0.conv1.weight": (32, 1, 3, 3, 3),
    "down_tr64.ops.1.conv1.weight": (64, 32, 3, 3, 3),
    "down_tr128.ops.0.conv1.weight": (64, 64, 3, 3, 3),
    "down_tr128.ops.1.conv1.weight": (128, 64, 3, 3, 3),
    "down_tr256.ops.0.conv1.weight": (128, 128, 3, 3, 3),
    "down_tr256.ops.1.conv1.weight": (256, 128, 3, 3, 3),
    "down_tr512.ops.0.conv1.weight": (256, 256, 3, 3, 3),
    "down_tr512.ops.1.conv1.weight": (512, 256, 3, 3, 3),
    "up_tr256.up_conv.weight": (512, 512, 2, 2, 2),
    "up_tr256.ops.0.conv1.weight": (256, 768, 3, 3, 3),
    "up_tr256.ops.1.conv1.weight": (256, 256, 3, 3, 3),
    "up_tr128.up_conv.weight": (256, 256, 2, 2, 2),
    "up_tr128.ops.0.conv1.weight": (128, 384, 3, 3, 3),
    "up_tr128.ops.1.conv1.weight": (128, 128, 3, 3, 3),
    "up_tr64.up_conv.weight": (128, 128, 2, 2, 2),
    "up_tr64.ops.0.conv1.weight": (64, 192, 3, 3, 3),
    "up_tr64.ops.1.conv1.weight": (64, 64, 3, 3, 3),
    "out_tr.final_conv.weight": (1, 64, 1, 1, 1),
}
