"""Autoencoder baseline: learn the identity mapping (Semantic Genesis Table 2, "Autoencoder").

The autoencoder row of the Semantic Genesis (Haghighi et al., MICCAI 2020, Table 2) and Models
Genesis (Zhou et al., MedIA 2021, the ``genesis-autoencoder`` initialisation) comparisons: the same 3D
U-Net as Models Genesis is trained to reproduce its input.

* Input: an untransformed cube ``(B, 1, X, Y, Z)`` in [0, 1] from a cube set (``data=``).
* Target: the same cube.
* Loss: mean squared error between the sigmoid output and the target (float32).

The U-Net keeps its skip connections by default (``model.skip_connections=true``), so its weights
transfer to segmentation as well as classification targets; the identity is then easy to learn
through the shallowest skip, which is why this baseline transfers poorly (Table 2).
``model.skip_connections=false`` trains a plain convolutional autoencoder whose bottleneck must carry
the whole cube (transferable to classification targets only). On a 2D patch set (items ``(1, H, W)``)
the network is 2D (``model.name`` ``resunet2d`` or ``unet2d``).
"""

from __future__ import annotations

from semantic_genesis.methods import register
from semantic_genesis.methods.restoration import IdentityRecipe, RestorationMethod


@register()
class Autoencoder(RestorationMethod):
    """Identity restoration: input = target = the cube, MSE."""

    name = "autoencoder"
    description = "autoencoder baseline: reproduce the untransformed cube (U-Net, MSE)"
    recipe_class = IdentityRecipe
