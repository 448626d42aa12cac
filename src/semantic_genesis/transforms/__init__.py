"""Self-restoration transformations (Models Genesis / Semantic Genesis) and the presets that compose them.

Every transform works on floats in [0, 1] on any device, takes its randomness from an explicit CPU
:class:`torch.Generator` (on a GPU one draw of it seeds a generator on the device, which draws the rest),
and returns a new tensor (inputs are never modified). Facts and
deviations from the official code are documented in each module. Typical use::

    from semantic_genesis.transforms import build_preset
    preset = build_preset("models_genesis")
    inputs, targets = preset(batch, generator=torch.Generator().manual_seed(step))

Shapes: without ``spatial_dims`` (the default) presets and transforms take 5D batches
``(B, C, X, Y, Z)`` only. ``build_preset(name, spatial_dims=3)`` (or ``fn(x, g, spatial_dims=3)``)
takes batches ``(B, C, X, Y, Z)`` and single samples ``(C, X, Y, Z)``, a sample giving exactly the
result of ``x[None]`` without the batch axis; ``spatial_dims=2`` does the same for ``(B, C, H, W)`` and
``(C, H, W)``. A 4D tensor without ``spatial_dims`` is refused (a 2D batch or one 3D sample?), never
guessed. For MONAI pipelines see :mod:`semantic_genesis.transforms.monai`.

On float32/float64 CPU batches the transforms run as compiled numba kernels (imported on first use),
on a GPU as batched torch operations with their random draws on the device, elsewhere (other dtypes,
numba missing) as batched torch operations; ``use_backend("torch")`` or
``SEMANTIC_GENESIS_TRANSFORMS_BACKEND=torch`` forces the torch path (see ``_backend``).
"""

from semantic_genesis.transforms._backend import use_backend
from semantic_genesis.transforms.elastic import elastic
from semantic_genesis.transforms.flip import flip
from semantic_genesis.transforms.inpaint import inpaint
from semantic_genesis.transforms.local_shuffle import local_shuffle
from semantic_genesis.transforms.nonlinear import nonlinear
from semantic_genesis.transforms.outpaint import outpaint
from semantic_genesis.transforms.presets import Preset, available_presets, build_preset, preset_defaults

__all__ = [
    "Preset",
    "available_presets",
    "build_preset",
    "elastic",
    "flip",
    "inpaint",
    "local_shuffle",
    "nonlinear",
    "outpaint",
    "preset_defaults",
    "use_backend",
]
