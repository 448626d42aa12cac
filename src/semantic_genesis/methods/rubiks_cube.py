"""Rubik's cube baseline (Zhuang et al., MICCAI 2019).

Zhuang, Li, Hu, Ma, Zheng, "Self-supervised feature learning for 3D medical images by playing a
Rubik's cube", MICCAI 2019; the "Rubik's cube" row of Semantic Genesis (Haghighi et al., MICCAI
2020) Table 2.

* Input: a cube ``(B, 1, X, Y, Z)`` in [0, 1] from a cube set, split into 2x2x2 sub-cubes that are
  permuted with one of P permutations and of which each is rotated by 180 degrees with probability
  ``rotation_prob`` (:mod:`semantic_genesis.transforms.rubik`: the P permutations are chosen
  greedily to maximise their minimum Hamming distance, seeded; rotation in the axial (X, Y) plane,
  around the slice axis).
* Targets: the permutation index (P classes) and 8 binary rotation flags (one per grid position).
* Loss: ``CE(permutation logits, index) + rotation_weight * BCE(rotation logits, flags)`` (logits,
  float32).

Network (:class:`RubiksCubeNet3D`): **siamese**, as in the paper: each of the 8 sub-cubes of the
scrambled cube goes through the same Models Genesis 3D U-Net encoder (``down_tr64`` ...
``down_tr512``, shared weights); the globally pooled bottleneck features are concatenated in grid
order (8C), passed through a fully connected layer (ReLU) and two heads: the permutation (P logits)
and the rotations (8 logits). Only the encoder transfers; its keys are the U-Net's, so the weights load
into the fine-tuning networks (classification: encoder; segmentation: encoder, decoder left random).
Sub-cubes are half the cube per axis, so cube sides must be multiples of 16 (the encoder divides
each sub-cube side by 8). Sub-cubes are adjacent octants (the paper's random gaps between sub-cubes
are not used).

``method.options``: ``num_permutations`` (P, 100; tiny configs 10), ``rotation_prob`` (0.5),
``rotation_weight`` (1.0), ``permutation_seed`` (0), ``hidden`` (units of the shared FC layer; 0 =
``1024 * model.width``). Validation logs ``perm_accuracy`` and ``rot_accuracy``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.models.norms import scaled_channels
from semantic_genesis.models.unet3d import ENCODER_PREFIXES, UNet3D, check_spatial_input, run_encoder
from semantic_genesis.transforms.rubik import NUM_SUBCUBES, RubikRecipe, split_subcubes

ARCH_NAME = "rubiks_cube3d"
OPTIONS = {"num_permutations": 100, "rotation_prob": 0.5, "rotation_weight": 1.0, "permutation_seed": 0, "hidden": 0}


class RubiksOutput(NamedTuple):
    """Output of :class:`RubiksCubeNet3D`: ``permutation`` ``(B, P)`` and ``rotation`` ``(B, 8)`` logits."""

    permutation: torch.Tensor
    rotation: torch.Tensor


class RubiksCubeNet3D(nn.Module):
    """Siamese Models Genesis encoder over the 8 sub-cubes + permutation and rotation heads.

    Args:
        in_channels, width, norm: as :class:`~semantic_genesis.models.UNet3D` (its encoder blocks).
        num_permutations: P, classes of the permutation head.
        hidden: units of the shared fully connected layer (0: ``1024 * width``).

    ``forward(x)``: ``x`` ``(B, C, X, Y, Z)`` (a scrambled cube, sides multiples of 16) ->
    :class:`RubiksOutput` (logits).
    """

    ARCH_NAME = ARCH_NAME
    min_divisor = 16
    encoder_state_dict_prefixes = ENCODER_PREFIXES

    def __init__(self, in_channels: int = 1, width: float = 1.0, norm: str = "batch_stats", num_permutations: int = 100,
                 hidden: int = 0):
        super().__init__()
        unet = UNet3D(in_channels=in_channels, width=width, norm=norm)
        for name in ENCODER_PREFIXES:
            setattr(self, name, getattr(unet, name))
        self.in_channels = int(in_channels)
        self.bottleneck_channels = unet.bottleneck_channels
        hidden = int(hidden) or scaled_channels(1024, width)
        self.fc = nn.Sequential(nn.Linear(NUM_SUBCUBES * self.bottleneck_channels, hidden), nn.ReLU(inplace=True))
        self.permutation_head = nn.Linear(hidden, int(num_permutations))
        self.rotation_head = nn.Linear(hidden, NUM_SUBCUBES)
        self.arch_args = {
            "in_channels": self.in_channels,
            "width": float(width),
            "norm": unet.arch_args["norm"],
            "num_permutations": int(num_permutations),
            "hidden": hidden,
        }

    def encoder_modules(self) -> list[nn.Module]:
        return [getattr(self, name) for name in ENCODER_PREFIXES]

    def encoder_parameters(self):
        for module in self.encoder_modules():
            yield from module.parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated pooled encoder features of the 8 sub-cubes in grid order: ``(B, 8 * C)``."""
        check_spatial_input(x, 3, self.in_channels, self.min_divisor, type(self).__name__)
        blocks = split_subcubes(x)  # (B, 8, C, X/2, Y/2, Z/2)
        b = blocks.shape[0]
        bottleneck = run_encoder(self.encoder_modules(), blocks.flatten(0, 1)).bottleneck
        return bottleneck.mean(dim=(2, 3, 4)).reshape(b, NUM_SUBCUBES * self.bottleneck_channels)

    def forward(self, x: torch.Tensor) -> RubiksOutput:
        h = self.fc(self.features(x))
        return RubiksOutput(self.permutation_head(h), self.rotation_head(h))


def rubik_options(cfg) -> dict[str, Any]:
    """``method.options`` of the Rubik's cube method with defaults, checked."""
    unknown = sorted(set(cfg.method.options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"rubiks_cube: unknown method.options key(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    opts = {**OPTIONS, **dict(cfg.method.options)}
    if float(opts["rotation_weight"]) < 0:
        raise ConfigError(f"rubiks_cube: method.options.rotation_weight must be >= 0, got {opts['rotation_weight']}")
    return opts


@register()
class RubiksCube(Method):
    """Predict the permutation and rotations of scrambled 2x2x2 sub-cubes (siamese encoder)."""

    name = "rubiks_cube"
    description = "Rubik's cube baseline (Zhuang et al. 2019): predict sub-cube permutation (P-way) and 180-degree rotations"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = rubik_options(cfg)
        self.recipe = RubikRecipe(
            int(self.options["num_permutations"]), float(self.options["rotation_prob"]), int(self.options["permutation_seed"])
        )
        self.item_shape: tuple[int, ...] | None = None

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return RubiksCubeNet3D(m.in_channels, m.width, m.norm, self.recipe.num_permutations, int(self.options["hidden"]))

    def build_datasets(self):
        from semantic_genesis.io.shard_dataset import StoreDataset

        if not self.cfg.data:
            raise ConfigError("rubiks_cube needs a cube set: data=CUBES_DIR (made by `semantic-genesis cubes`)")
        train = StoreDataset(self.cfg.data, "train", kind="cubes", with_labels=False)
        if len(train) == 0:
            raise DataError(f"{self.cfg.data}: the cube set has no training cubes")
        channels, *spatial = train.item_shape
        if channels != self.cfg.model.in_channels:
            raise ConfigError(f"{self.cfg.data}: cubes have {channels} channel(s), model.in_channels is {self.cfg.model.in_channels}")
        if len(spatial) != 3 or any(s % RubiksCubeNet3D.min_divisor for s in spatial):
            raise ConfigError(
                f"{self.cfg.data}: rubiks_cube needs 3D cubes with sides that are multiples of "
                f"{RubiksCubeNet3D.min_divisor} (2x2x2 sub-cubes through the encoder), got {list(spatial)}"
            )
        self.item_shape = train.item_shape
        val = StoreDataset(self.cfg.data, "validation", kind="cubes", with_labels=False)
        return train, (val if len(val) else None)

    def _step(self, model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext, keep: bool) -> StepOutput:
        cubes = batch["image"]
        with torch.autocast(device_type=cubes.device.type, enabled=False):
            scrambled, labels, rotations = self.recipe(cubes, ctx.generator)
        out = model(scrambled)
        with torch.autocast(device_type=cubes.device.type, enabled=False):
            ce = F.cross_entropy(out.permutation.float(), labels)
            bce = F.binary_cross_entropy_with_logits(out.rotation.float(), rotations)
            loss = ce + float(self.options["rotation_weight"]) * bce
        metrics = {
            "ce": float(ce.detach()),
            "bce": float(bce.detach()),
            "perm_accuracy": float((out.permutation.detach().argmax(1) == labels).float().mean()),
            "rot_accuracy": float(((out.rotation.detach() > 0).float() == rotations).float().mean()),
        }
        outputs = {"input": scrambled.detach(), "target": cubes.detach()} if keep else {}
        return StepOutput(loss, metrics, outputs)

    def training_step(self, model, batch, ctx) -> StepOutput:
        return self._step(model, batch, ctx, keep=False)

    def validation_step(self, model, batch, ctx) -> StepOutput:
        return self._step(model, batch, ctx, keep=False)

    def example_batch(self, model, batch, ctx) -> dict[str, torch.Tensor]:
        return self._step(model, batch, ctx, keep=True).outputs

    def weights_metadata(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "transforms": "rubiks_cube",
            "num_permutations": self.recipe.num_permutations,
            "permutation_seed": int(self.options["permutation_seed"]),
            "rotation_prob": float(self.options["rotation_prob"]),
            "rotation_weight": float(self.options["rotation_weight"]),
            "input_size": list(self.item_shape[1:]) if self.item_shape else list(self.cfg.cubes.cube_size),
            "intensity": {"hu_min": self.cfg.intensity.hu_min, "hu_max": self.cfg.intensity.hu_max},
        }
