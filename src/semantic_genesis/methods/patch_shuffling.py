"""Patch-shuffling baseline: context restoration (Chen et al., Medical Image Analysis 2019).

Chen, Bentley, Mori, Misawa, Fujiwara, Rueckert, "Self-supervised learning for medical image analysis
using image context restoration", MedIA 58, 2019; the "Patch-shuffling" row of Semantic Genesis
(Haghighi et al., MICCAI 2020) Table 2 and one of its Fig. 2 pairs (see ``semantic_patch_shuffling``).

* Input: the cube ``(B, 1, X, Y, Z)`` in [0, 1] with ``T`` random pairs of small non-overlapping
  patches swapped (:mod:`semantic_genesis.transforms.patch_swap`; ``transforms.overrides``:
  ``swaps`` T (default 10), ``patch_fraction`` (1/8 of each side: 8x8x4 patches at 64x64x32) or
  ``patch_size``). The intensity distribution is unchanged, only the context is corrupted.
* Target: the original cube.
* Loss: L2 (mean squared error of the sigmoid output, float32), as in Chen et al.

The network is the Models Genesis 3D U-Net (Chen et al. used a 2D encoder-decoder; Semantic Genesis
compares with the 3D extension on the same architecture as every other method). On a 2D patch set
(items ``(1, H, W)``) the network is 2D (``model.name`` ``resunet2d`` or ``unet2d``) and the patches are
squares.
"""

from __future__ import annotations

from semantic_genesis.methods import register
from semantic_genesis.methods.restoration import RestorationMethod
from semantic_genesis.transforms.patch_swap import PatchShuffleRecipe


@register()
class PatchShuffling(RestorationMethod):
    """Restore cubes whose patch pairs were swapped (context restoration), MSE."""

    name = "patch_shuffling"
    description = "patch-shuffling baseline (Chen et al. 2019): restore cubes with T swapped patch pairs (U-Net, MSE)"
    recipe_class = PatchShuffleRecipe
