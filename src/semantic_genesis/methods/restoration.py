"""Shared base of the self-restoration baselines (autoencoder, in-painting, patch-shuffling).

A baseline is the Models Genesis recipe (:class:`~semantic_genesis.methods.models_genesis.ModelsGenesis`:
3D U-Net, cube set, MSE on the sigmoid output, engine hooks) with a different **recipe**: a callable
``recipe(x, generator) -> (input, target)`` on batches ``(B, C, X, Y, Z)`` in [0, 1]. The recipe's
parameters come from ``transforms.overrides`` (checked against the recipe's ``OPTIONS``), exactly as a
transform preset's would. :meth:`RestorationMethod.build_recipe` is a class method, so the semantics
add-on (:mod:`.semantic_addon`) reuses the very same recipe on discovered patterns.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.methods.models_genesis import ModelsGenesis

Recipe = Callable[..., tuple[torch.Tensor, torch.Tensor]]


class IdentityRecipe:
    """``(input, target) = (x, x)``: the autoencoder's identity mapping (copies, never the same tensor)."""

    name = "identity"
    OPTIONS: dict[str, Any] = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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

    Subclasses set ``name``, ``description`` and ``recipe_class`` (a class with ``name``, ``OPTIONS``
    and ``__call__(x, generator) -> (input, target)``).
    """

    recipe_class: type = IdentityRecipe

    @classmethod
    def build_recipe(cls, cfg) -> Recipe:
        """The recipe configured by ``cfg.transforms.overrides``."""
        return cls.recipe_class(**recipe_options(cls.recipe_class, dict(cfg.transforms.overrides), cls.name))

    @property
    def preset(self) -> Recipe:
        if self._preset is None:
            self._preset = self.build_recipe(self.cfg)
        return self._preset

    def weights_metadata(self) -> dict[str, Any]:
        meta = super().weights_metadata()
        meta["transforms"] = self.recipe_class.name
        meta["recipe_options"] = recipe_options(self.recipe_class, dict(self.cfg.transforms.overrides), self.name)
        return meta
