"""Shared base of the self-restoration baselines (autoencoder, in-painting, patch-shuffling).

A baseline is the Models Genesis recipe (:class:`~semantic_genesis.methods.models_genesis.ModelsGenesis`:
3D U-Net, cube set, MSE on the sigmoid output, engine hooks) with a different **recipe**: a callable
``recipe(x, generator) -> (input, target)`` on batches ``(B, C, X, Y, Z)`` (or ``(B, C, H, W)`` from a
2D patch set) in [0, 1]. The recipe's
parameters come from ``transforms.overrides`` (checked against the recipe's ``OPTIONS``), exactly as a
transform preset's would. :meth:`RestorationMethod.build_recipe` is a class method, so the semantics
add-on (:mod:`.semantic_addon`) reuses the very same recipe on discovered patterns.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.models_genesis import ModelsGenesis
from semantic_genesis.transforms._random import as_batch

Recipe = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class IdentityRecipe:
    """``(input, target) = (x, x)``: the autoencoder's identity mapping (copies, never the same tensor).

    Args:
        spatial_dims: 2 or 3: batches ``(B, C, *spatial)`` (and single samples) of that many spatial
            axes; None: 5D batches ``(B, C, X, Y, Z)`` only (the batch contract of every transform).
    """

    name = "identity"
    OPTIONS: dict[str, Any] = {}

    def __init__(self, spatial_dims: int | None = None):
        self.spatial_dims = spatial_dims

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        as_batch(x, "identity recipe", self.spatial_dims)  # the same shape checks as the other recipes
        return x.clone(), x.clone()


def recipe_options(recipe_class: type, overrides: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The recipe's options: its ``OPTIONS`` defaults updated with ``overrides``.

    Raises:
        ConfigError: an override the recipe does not know (the message lists the valid keys).
    """
    defaults = dict(getattr(recipe_class, "OPTIONS", {}))
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"method {method!r}: unknown transforms.overrides key(s) {', '.join(unknown)}; valid: {valid}")
    defaults.update(overrides)
    return defaults


class RestorationMethod(ModelsGenesis):
    """Models Genesis training with the recipe ``recipe_class`` instead of a transform preset.

    Subclasses set ``name``, ``description`` and ``recipe_class`` (a class with ``name``, ``OPTIONS``,
    a ``spatial_dims`` keyword and ``__call__(x, generator) -> (input, target)``). Like Models Genesis,
    a baseline trains on a cube set (3D U-Net) or a 2D patch set (``model.name`` ``resunet2d`` or
    ``unet2d``): the recipe takes the set's dimensionality.
    """

    recipe_class: type = IdentityRecipe

    @classmethod
    def build_recipe(cls, cfg, spatial_dims: int | None = None) -> Recipe:
        """The recipe configured by ``cfg.transforms.overrides``, for batches of ``spatial_dims`` (2 or 3)
        spatial axes (None: 5D batches only)."""
        options = recipe_options(cls.recipe_class, dict(cfg.transforms.overrides), cls.name)
        return cls.recipe_class(**options, spatial_dims=spatial_dims)

    @property
    def preset(self) -> Recipe:
        """The recipe, for the dimensionality of the loaded set (else of ``cubes.cube_size``)."""
        if self._preset is None:
            self._preset = self.build_recipe(self.cfg, spatial_dims=self.spatial_dims)
        return self._preset

    def weights_metadata(self) -> dict[str, Any]:
        meta = super().weights_metadata()
        meta["transforms"] = self.recipe_class.name
        meta["recipe_options"] = recipe_options(self.recipe_class, dict(self.cfg.transforms.overrides), self.name)
        return meta
