"""The semantics add-on (Semantic Genesis, Haghighi et al., MICCAI 2020, Fig. 2): self-discovery and
self-classification added to any self-restoration method, by composition.

Fig. 2 of the paper shows that training a restoration method on the *discovered* anatomical patterns
with an extra classification head (pseudo-label = the pattern's coordinate) improves in-painting,
patch-shuffling and Models Genesis alike. Here a semantics-enriched variant is
:class:`~semantic_genesis.methods.semantic_genesis.SemanticAddon` (YNet = U-Net + head on the
encoder; ``L = lambda_rec * MSE + lambda_cls * CE``; classification warm-up of
``method.options.cls_warmup_epochs``; pattern set from ``semantic-genesis discover``) whose restoration recipe
is **the restoration method's own recipe** (``RestorationMethod.build_recipe``, configured by the same
``transforms.overrides``). :func:`with_semantics` builds that class from a restoration method, so a
variant is one line and nothing of either side is copied.

Registered variants (the Fig. 2 pairs, each with its plain counterpart):

* ``semantic_inpainting`` = ``inpainting`` + semantics. Input: a pattern with random boxes dropped;
  targets: the pattern and its pseudo-label. The restoration term is SemanticAddon's MSE over the
  whole pattern (the masked-region weighting of the plain ``inpainting`` method is not carried over).
* ``semantic_patch_shuffling`` = ``patch_shuffling`` + semantics. Input: a pattern with T swapped
  patch pairs; targets: the pattern and its pseudo-label.
* ``semantic_models_genesis`` = ``semantic_genesis`` (Semantic Genesis *is* Models Genesis +
  semantics; the paper's recipe uses its own transform choice, as the official ``luna_loader``). Pass
  ``method.options.preset=models_genesis`` to use the exact Models Genesis recipe instead.
"""

from __future__ import annotations

from typing import Any

import torch

from semantic_genesis.methods import register
from semantic_genesis.methods.base import Method
from semantic_genesis.methods.inpainting import Inpainting
from semantic_genesis.methods.patch_shuffling import PatchShuffling
from semantic_genesis.methods.restoration import RestorationMethod, recipe_options
from semantic_genesis.methods.semantic_genesis import SemanticAddon, SemanticAddonOptions, SemanticGenesis


class RecipeSemanticAddon(SemanticAddon):
    """:class:`SemanticAddon` whose restoration recipe is that of ``restoration`` (a :class:`RestorationMethod`)."""

    restoration: type[RestorationMethod] = RestorationMethod
    options_class = SemanticAddonOptions  # the recipe is the restoration method's: no preset option

    def __init__(self, cfg):
        super().__init__(cfg)
        self.restoration.build_recipe(cfg)  # checks transforms.overrides now
        self._recipe = None

    @property
    def preset_name(self) -> str:
        return self.restoration.recipe_class.name

    def make_pair(self, patterns: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The restoration method's ``(input, target)`` on a batch of patterns ``(B, 1, X, Y, Z)`` (or
        ``(B, 1, H, W)``: 2D patterns)."""
        if self._recipe is None:  # the batch (B, C, *spatial) says 2D or 3D
            self._recipe = self.restoration.build_recipe(self.cfg, spatial_dims=patterns.dim() - 2)
        with torch.autocast(device_type=patterns.device.type, enabled=False):
            return self._recipe(patterns, generator)

    def weights_metadata(self) -> dict[str, Any]:
        meta = super().weights_metadata()
        meta["restoration_method"] = self.restoration.name
        meta["recipe_options"] = recipe_options(
            self.restoration.recipe_class, dict(self.cfg.transforms.overrides), self.name
        )
        return meta


def with_semantics(restoration: type[Method], name: str, description: str = "") -> type[SemanticAddon]:
    """The semantics-enriched variant of a restoration method, registered as ``name``.

    Args:
        restoration: a :class:`RestorationMethod` subclass (its ``build_recipe`` gives the recipe).
        name: registry name of the variant.
        description: one line for ``--list-methods``.

    Returns:
        The registered :class:`SemanticAddon` subclass.
    """
    cls = type(
        f"Semantic{restoration.__name__}",
        (RecipeSemanticAddon,),
        {
            "name": name,
            "description": description or f"{restoration.name} + self-discovery + self-classification (Semantic Genesis add-on)",
            "restoration": restoration,
            "__module__": __name__,
            "__doc__": f"``{restoration.name}`` + self-discovery + self-classification (by composition).",
        },
    )
    return register()(cls)


SemanticInpainting = with_semantics(
    Inpainting, "semantic_inpainting",
    "in-painting + semantics: classify discovered patterns and fill their dropped boxes (YNet)",
)
SemanticPatchShuffling = with_semantics(
    PatchShuffling, "semantic_patch_shuffling",
    "patch-shuffling + semantics: classify discovered patterns and restore their swapped patches (YNet)",
)


@register()
class SemanticModelsGenesis(SemanticGenesis):
    """Models Genesis + semantics = Semantic Genesis (same recipe, head, loss and warm-up)."""

    name = "semantic_models_genesis"
    description = "Models Genesis + semantics: the same method as semantic_genesis (Fig. 2 pair of models_genesis)"
