"""MONAI Swin checkpoints into :class:`~semantic_genesis.models.swin2d.Swin2D` /
:class:`~semantic_genesis.models.swin_unetr2d.SwinUNETR2D` (format ``monai_swin``).

Layouts read (the key conventions of MONAI's SwinUNETR and of the self-supervised Swin UNETR
pre-training of Tang et al., CVPR 2022, whose released encoder is ``model_swinvit.pt``):

* the encoder's keys are those of MONAI's ``SwinTransformer`` (``patch_embed.proj.weight``,
  ``layers1.0.blocks.0.attn.qkv.weight``, ``layers1.0.downsample.reduction.weight``, ...), under
  ``module.`` (a DataParallel save, stripped by the importer), ``swinViT.``, ``swin_vit.`` or no prefix;
* the self-supervised checkpoint names the blocks' MLP ``mlp.fc1`` / ``mlp.fc2`` (MONAI's
  ``SwinUNETR.load_from`` maps them), MONAI's modules ``mlp.linear1`` / ``mlp.linear2``: both are read;
* a whole SwinUNETR state dict also holds the decoder (``encoder1`` ... ``encoder10``, ``decoder1`` ...
  ``decoder5``, ``out``): imported as a ``swin_unetr2d`` when its keys fit ours;
* anything else (the pre-training heads ``rotation_head``, ``contrastive_head``, ``conv``, ...) is
  skipped and reported.

The architecture is read from the tensors: ``embed_dim``, ``in_channels`` and ``patch_size`` from the
patch embedding, the stages and their depths from the block keys, heads and window from the relative
position bias tables, ``mlp_ratio`` from the MLP, ``final_merge`` from the last stage's merging.
Only 2D checkpoints fit (``spatial_dims=2``); the released self-supervised encoder is 3D (its patch
embedding kernel is ``(48, 1, 2, 2, 2)``) and is refused with a one-line error saying so.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from semantic_genesis.errors import CheckpointError

MONAI_SWIN = "monai_swin"
ENCODER = "swinViT."
_ENCODER_ALIASES = ("swinViT.", "swin_vit.")
_ENCODER_TOP = ("patch_embed.", "pos_drop.", "layers1.", "layers2.", "layers3.", "layers4.")
_DECODER_TOP = re.compile(r"^(encoder(1|2|3|4|10)|decoder[1-5]|out)\.")
_MLP_NAMES = ((".mlp.fc1.", ".mlp.linear1."), (".mlp.fc2.", ".mlp.linear2."))


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``"monai_swin"`` when the keys hold a MONAI Swin encoder (a patch embedding and stage-1 blocks)."""
    keys = list(state_dict)
    has_embed = any(k.endswith("patch_embed.proj.weight") for k in keys)
    has_blocks = any("layers1.0.blocks.0." in k for k in keys)
    return MONAI_SWIN if has_embed and has_blocks else None


def map_keys(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors under our key names (``swinViT.*`` and the SwinUNETR decoder's) and the file keys
    skipped (pre-training heads and anything else that is neither)."""
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state_dict.items():
        rest = next((key[len(a):] for a in _ENCODER_ALIASES if key.startswith(a)), None)
        if rest is None and key.startswith(_ENCODER_TOP):
            rest = key
        if rest is not None and rest.startswith(_ENCODER_TOP):
            for old, new in _MLP_NAMES:
                rest = rest.replace(old, new)
            mapped[ENCODER + rest] = value
        elif _DECODER_TOP.match(key):
            mapped[key] = value
        else:
            skipped.append(key)
    return mapped, skipped


def infer_architecture(state_dict: Mapping[str, torch.Tensor], source: str) -> tuple[str, dict[str, Any]]:
    """``("swin2d" | "swin_unetr2d", arguments)`` of a state dict under our key names (:func:`map_keys`).

    Raises:
        CheckpointError: not a 2D Swin (e.g. the 3D self-supervised encoder), or keys missing.
    """
    embed = state_dict.get(ENCODER + "patch_embed.proj.weight")
    if embed is None:
        raise CheckpointError(f"{source}: no Swin patch embedding ('patch_embed.proj.weight') among the keys")
    if embed.dim() != 4 or embed.shape[2] != embed.shape[3]:
        raise CheckpointError(
            f"{source}: a {embed.dim() - 2}D Swin (patch embedding kernel {tuple(embed.shape)}); semantic-genesis "
            "builds the 2D Swin (swin2d, square patches) only")
    stages = [i for i in range(1, 5) if f"{ENCODER}layers{i}.0.blocks.0.norm1.weight" in state_dict]
    if stages != list(range(1, len(stages) + 1)) or not stages:
        raise CheckpointError(f"{source}: Swin stages {stages} found; expected layers1 .. layersN, N from 1 to 4")
    depths, heads = [], []
    window = 0
    for i in stages:
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(rf"{ENCODER}layers{i}\.0\.blocks\.(\d+)\.", k))}
        depths.append(max(blocks) + 1)
        table = state_dict.get(f"{ENCODER}layers{i}.0.blocks.0.attn.relative_position_bias_table")
        if table is None:
            raise CheckpointError(f"{source}: stage {i} has no attention bias table (a Swin attention block)")
        heads.append(int(table.shape[1]))
        side = math.isqrt(int(table.shape[0]))
        window = (side + 1) // 2
    dim = int(embed.shape[0])
    hidden = state_dict.get(f"{ENCODER}layers1.0.blocks.0.mlp.linear1.weight")
    args: dict[str, Any] = {
        "in_channels": int(embed.shape[1]), "size": None, "embed_dim": dim, "depths": depths, "num_heads": heads,
        "window_size": window, "patch_size": int(embed.shape[2]),
        "final_merge": f"{ENCODER}layers{len(stages)}.0.downsample.reduction.weight" in state_dict,
        "mlp_ratio": float(hidden.shape[0]) / dim if hidden is not None else 4.0,
        "qkv_bias": f"{ENCODER}layers1.0.blocks.0.attn.qkv.bias" in state_dict,
        "patch_norm": f"{ENCODER}patch_embed.norm.weight" in state_dict,
    }
    out = state_dict.get("out.conv.conv.weight")
    if out is None or "encoder1.layer.conv1.conv.weight" not in state_dict:
        return "swin2d", args
    norm = "batch" if "encoder1.layer.norm1.running_mean" in state_dict else "instance"
    return "swin_unetr2d", {**args, "out_channels": int(out.shape[0]), "out_activation": "none", "decoder_norm": norm}
