"""The batch contract: a single sample never passes for a 2D batch.

A 4D tensor is either a 2D batch ``(B, C, H, W)`` or one 3D sample ``(C, X, Y, Z)``. Presets and
transforms refuse it without ``spatial_dims`` (a one-line error saying what to pass); with
``spatial_dims`` a sample ``(C, *spatial)`` gives exactly the result of ``x[None]`` without the
batch axis.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms import (
    available_presets,
    build_preset,
    elastic,
    flip,
    inpaint,
    local_shuffle,
    nonlinear,
    outpaint,
    preset_defaults,
)
from semantic_genesis.transforms.context_mask import context_mask
from semantic_genesis.transforms.patch_swap import patch_swap

from .conftest import gen

SAMPLE_3D = (1, 24, 20, 12)  # (C, X, Y, Z)
SAMPLE_2D = (2, 30, 26)  # (C, H, W)


def _preset(name: str, spatial_dims: int | None):
    options = {"shuffle_windows": 200} if "shuffle_windows" in preset_defaults(name) else {}
    return build_preset(name, spatial_dims=spatial_dims, **options)


@pytest.mark.parametrize("name", available_presets())
@pytest.mark.parametrize("shape", [SAMPLE_3D, SAMPLE_2D])
def test_a_single_sample_is_transformed_as_x_none(name, shape, backend):
    x = torch.rand(shape, generator=gen(1))
    preset = _preset(name, spatial_dims=len(shape) - 1)
    inp, tgt = preset(x, gen(2))
    batch_inp, batch_tgt = preset(x[None], gen(2))
    assert inp.shape == x.shape and tgt.shape == x.shape
    assert torch.equal(inp, batch_inp[0]) and torch.equal(tgt, batch_tgt[0])
    if name not in ("identity", "models_genesis"):  # models_genesis leaves 0.5% of samples unchanged
        assert not torch.equal(inp, x)  # a real transform ran


@pytest.mark.parametrize("name", ["models_genesis", "semantic_genesis", "nonlinear"])
def test_a_4d_tensor_without_spatial_dims_is_refused_with_what_to_pass(name):
    x = torch.rand(SAMPLE_3D, generator=gen(3))
    with pytest.raises(DataError, match=r"ambiguous; pass spatial_dims=2 .* or spatial_dims=3") as info:
        _preset(name, spatial_dims=None)(x, gen(4))
    assert "\n" not in str(info.value)
    # 5D batches stay unambiguous: no spatial_dims needed, same result as spatial_dims=3
    a = _preset(name, spatial_dims=None)(x[None], gen(4))
    b = _preset(name, spatial_dims=3)(x[None], gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_wrong_dimensions_for_spatial_dims_are_refused():
    with pytest.raises(DataError, match=r"spatial_dims=2 expected a batch \(B, C, \*spatial\) of 4"):
        build_preset("nonlinear", spatial_dims=2)(torch.rand(1, 1, 8, 8, 8), gen())
    with pytest.raises(DataError, match="expected a batch"):
        build_preset("nonlinear")(torch.rand(8, 8, 8), gen())
    with pytest.raises(ConfigError, match="spatial_dims must be 2, 3 or None"):
        build_preset("nonlinear", spatial_dims=4)
    with pytest.raises(DataError, match="spatial_dims must be 2 or 3"):
        nonlinear(torch.rand(1, 8, 8, 8), gen(), spatial_dims=1)


SINGLE = {
    "nonlinear": lambda x, g, d: nonlinear(x, g, spatial_dims=d),
    "local_shuffle": lambda x, g, d: local_shuffle(x, g, num_windows=300, spatial_dims=d),
    "inpaint": lambda x, g, d: inpaint(x, g, spatial_dims=d),
    "outpaint": lambda x, g, d: outpaint(x, g, spatial_dims=d),
    "elastic": lambda x, g, d: elastic(x, g, alpha=200.0, sigma=4.0, spatial_dims=d),
    "patch_swap": lambda x, g, d: patch_swap(x, g, swaps=3, return_index=True, spatial_dims=d),
    "context_mask": lambda x, g, d: context_mask(x, g, spatial_dims=d),
    "flip": lambda x, g, d: flip(x, x + 1, g, prob=1.0, spatial_dims=d),
}


def _squeezed(result):
    if isinstance(result, tuple):
        return tuple(_squeezed(r) for r in result)
    return result[0] if isinstance(result, torch.Tensor) else result


@pytest.mark.parametrize("name", sorted(SINGLE))
@pytest.mark.parametrize("shape", [SAMPLE_3D, SAMPLE_2D])
def test_every_single_transform_follows_the_contract(name, shape, backend):
    fn = SINGLE[name]
    x = torch.rand(shape, generator=gen(5))
    dims = len(shape) - 1
    one = fn(x, gen(6), dims)
    batched = _squeezed(fn(x[None], gen(6), dims))
    one, batched = (one, batched) if isinstance(one, tuple) else ((one,), (batched,))
    assert len(one) == len(batched)
    for a, b in zip(one, batched):
        assert torch.equal(a, b)
    assert one[0].shape == x.shape
    if dims == 3:
        with pytest.raises(DataError, match="ambiguous; pass spatial_dims"):
            fn(x, gen(6), None)


def test_spatial_dims_is_in_every_transform_signature():
    for fn in (nonlinear, local_shuffle, inpaint, outpaint, elastic, patch_swap, context_mask, flip):
        parameter = inspect.signature(fn).parameters["spatial_dims"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None
