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

Network (:class:`~semantic_genesis.models.rubiks_cube.RubiksCubeNet3D`): **siamese**, as in the
paper: each of the 8 sub-cubes of the scrambled cube goes through the same Models Genesis 3D U-Net
encoder; pooled features, a shared fully connected layer, permutation and rotation heads. Only the
encoder transfers (classification: encoder; segmentation: encoder, decoder left random). Cube sides
must be multiples of 16. Sub-cubes are adjacent octants (the paper's random gaps between sub-cubes
are not used).

``method.options`` (:class:`RubiksCubeOptions`): ``num_permutations`` (P, 100; tiny configs 10),
``rotation_prob`` (0.5), ``rotation_weight`` (1.0), ``permutation_seed`` (0), ``hidden`` (units of the
shared FC layer; 0 = ``1024 * model.width``). Validation logs ``perm_accuracy`` and ``rot_accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.losses import rubik_loss
from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method, StepContext, StepOutput
from semantic_genesis.methods.options import MethodOptions, check_non_negative, parse_options
from semantic_genesis.models.rubiks_cube import RubiksCubeNet3D
from semantic_genesis.transforms.rubik import RubikRecipe

@dataclass(frozen=True)
class RubiksCubeOptions(MethodOptions):
    """``method.options`` of the Rubik's cube method."""

    num_permutations: int = 100  # P, classes of the permutation head (tiny configs: 10)
    rotation_prob: float = 0.5  # probability that a sub-cube is rotated by 180 degrees
    rotation_weight: float = 1.0  # weight of the rotation BCE in the loss
    permutation_seed: int = 0  # seeds the greedy choice of the P permutations
    hidden: int = 0  # units of the shared fully connected layer (0: 1024 * model.width)

    def __post_init__(self) -> None:
        check_non_negative(self, "rotation_weight", "hidden")


@register()
class RubiksCube(Method):
    """Predict the permutation and rotations of scrambled 2x2x2 sub-cubes (siamese encoder)."""

    name = "rubiks_cube"
    description = "Rubik's cube baseline (Zhuang et al. 2019): predict sub-cube permutation (P-way) and 180-degree rotations"
    options_class = RubiksCubeOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self.options = parse_options(cfg, self.options_class, self.name)
        self.recipe = RubikRecipe(self.options.num_permutations, self.options.rotation_prob, self.options.permutation_seed)
        self.item_shape: tuple[int, ...] | None = None

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return RubiksCubeNet3D(m.in_channels, m.width, m.norm, self.recipe.num_permutations, self.options.hidden)

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
        loss, ce, bce = rubik_loss(out.permutation, out.rotation, labels, rotations, self.options.rotation_weight)
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
            "permutation_seed": self.options.permutation_seed,
            "rotation_prob": self.options.rotation_prob,
            "rotation_weight": self.options.rotation_weight,
            "input_size": list(self.item_shape[1:]) if self.item_shape else list(self.cfg.cubes.cube_size),
            "intensity": {"hu_min": self.cfg.intensity.hu_min, "hu_max": self.cfg.intensity.hu_max},
        }
