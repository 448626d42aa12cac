"""MONAI dictionary transforms for the self-restoration presets.

:class:`GenesisPresetd` runs a transform preset (:func:`~semantic_genesis.transforms.build_preset`:
Zhou et al., "Models Genesis", MedIA 2021; Haghighi et al., "Semantic Genesis", MICCAI 2020) inside a
MONAI pipeline, one sample at a time, as MONAI datasets yield them: channel-first ``(C, X, Y, Z)`` (or
``(C, H, W)`` with ``spatial_dims=2``), values in [0, 1] (e.g. after ``ScaleIntensityRanged(...,
clip=True)``). It writes the pair the network trains on, ``d[input_key]`` (the transformed sample) and
``d[target_key]`` (what it must restore), and leaves ``d[key]`` as it was::

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRanged
    from semantic_genesis.transforms.monai import GenesisPresetd

    pipeline = Compose([
        LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"),
        ScaleIntensityRanged(keys="image", a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True),
        GenesisPresetd(keys="image", preset="models_genesis"),
    ])

Randomness follows MONAI's rules: the transform is :class:`monai.transforms.Randomizable`, so
``pipeline.set_random_state(seed)``, ``monai.utils.set_determinism(seed)`` and the per-worker seeding
of ``monai.data.DataLoader`` all apply. Each call draws one seed ``s`` from ``self.R`` and runs the
preset with ``torch.Generator().manual_seed(s)``: the pair equals
``build_preset(preset, spatial_dims)(x, torch.Generator().manual_seed(s))`` exactly (and so
``preset(x[None], ...)`` without the batch axis; see the batch contract in
:mod:`semantic_genesis.transforms`). Several keys share the same seed, so co-registered images (two
MRI sequences) get the same flips, windows and curves.

A :class:`monai.data.MetaTensor` input gives :class:`~monai.data.MetaTensor` outputs carrying a copy of
its metadata (affine, meta dict, applied operations). This module imports MONAI; the rest of
``semantic_genesis`` does not.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms.presets import Preset, build_preset

__all__ = ["GenesisPresetd"]

#: Seeds drawn from ``self.R`` lie in ``[0, SEED_BOUND)`` (what ``np.random.RandomState.randint`` allows).
SEED_BOUND = 2**62


class GenesisPresetd(Randomizable, MapTransform):
    """Dictionary transform: a self-restoration preset on one channel-first sample per key.

    Args:
        keys: the image key(s), each a ``(C, *spatial)`` float tensor or array in [0, 1].
        preset: a :func:`~semantic_genesis.transforms.available_presets` name (``"models_genesis"``,
            ``"semantic_genesis"``, ``"inpaint"``, ...).
        spatial_dims: 3 for volumes ``(C, X, Y, Z)``, 2 for images ``(C, H, W)``. Collated batches
            ``(B, C, *spatial)`` are accepted too (same contract as the presets).
        input_key: where the transformed sample goes; one name per key (a single name for one key).
        target_key: where the restoration target goes (the original, flipped like the input by
            ``models_genesis``); one name per key.
        allow_missing_keys: skip keys absent from the dictionary instead of raising ``KeyError``.
        **overrides: preset options (see :func:`~semantic_genesis.transforms.preset_defaults`).

    Raises:
        ConfigError: an unknown preset or option, a bad ``spatial_dims``, or output names that
            collide (several keys need several ``input_key``/``target_key`` names).
    """

    def __init__(
        self,
        keys: KeysCollection,
        preset: str = "models_genesis",
        spatial_dims: int = 3,
        input_key: str | Sequence[str] = "input",
        target_key: str | Sequence[str] = "target",
        allow_missing_keys: bool = False,
        **overrides: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ConfigError(f"GenesisPresetd: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.preset: Preset = build_preset(preset, spatial_dims=spatial_dims, **overrides)
        self.input_keys = ensure_tuple_rep(input_key, len(self.keys))
        self.target_keys = ensure_tuple_rep(target_key, len(self.keys))
        outputs = self.input_keys + self.target_keys
        if len(set(outputs)) != len(outputs):
            raise ConfigError(
                f"GenesisPresetd: output keys {list(outputs)} collide; give one input_key and one target_key "
                f"per key of {list(self.keys)}"
            )
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        """Draw the seed of this call's :class:`torch.Generator` from ``self.R``."""
        self._seed = int(self.R.randint(0, SEED_BOUND, dtype=np.int64))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Add ``input_key`` and ``target_key`` entries to a copy of ``data``."""
        d = dict(data)
        self.randomize()
        for key, input_key, target_key in self.key_iterator(d, self.input_keys, self.target_keys):
            d[input_key], d[target_key] = self.pair(d[key], self._seed)
        return d

    def pair(self, image: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, target)`` of the preset on ``image`` with ``torch.Generator().manual_seed(seed)``.

        Args:
            image: ``(C, *spatial)`` tensor, :class:`~monai.data.MetaTensor` or numpy array in [0, 1].
            seed: the generator seed.

        Returns:
            Two new tensors shaped like ``image`` (MetaTensors with a copy of its metadata when it is
            one; float32 tensors for a numpy array).
        """
        plain = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
        if not plain.is_floating_point():
            plain = plain.float()
        inputs, target = self.preset(plain, torch.Generator().manual_seed(int(seed)))
        if isinstance(image, MetaTensor):
            return _with_meta(inputs, image), _with_meta(target, image)
        return inputs, target


def _with_meta(values: torch.Tensor, source: MetaTensor) -> MetaTensor:
    """``values`` as a MetaTensor carrying a deep copy of ``source``'s metadata."""
    out = MetaTensor(values)
    out.copy_meta_from(source, copy_attr=True)
    return out
