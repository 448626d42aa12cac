import functools
import random

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import inpaint, outpaint
from semantic_genesis.transforms._backend import kernels, use_backend
from semantic_genesis.transforms._random import geometric_counts

from .conftest import gen

# Reference process: while cnt > 0 and random() < 0.95 -> P(k) = 0.95^k * 0.05 (k < 5), P(5) = 0.95^5
REFERENCE_COUNTS = np.array([0.95**k * 0.05 for k in range(5)] + [0.95**5])
MEASURED = np.array([0.049, 0.048, 0.044, 0.043, 0.041, 0.775])  # measured on the official generator


def test_inpaint_window_count_distribution():
    counts = geometric_counts(gen(1), 40000, 5, 0.95)
    observed = np.bincount(counts.numpy(), minlength=6)
    expected = REFERENCE_COUNTS * counts.numel()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001
    assert np.abs(observed / counts.numel() - MEASURED).max() < 0.01


def test_inpaint_paints_nothing_in_about_5_percent_and_keeps_margin(backend):
    x = -torch.ones(3000, 1, 36, 30)  # noise lies in [0, 1), so painted pixels are exactly those >= 0
    y = inpaint(x, gen(2), spatial_dims=2)
    painted = y >= 0
    none = (~painted.flatten(1).any(1)).double().mean().item()
    assert abs(none - 0.05) < 0.012
    # 3-voxel margin: the border ring is never painted
    assert not painted[..., :3, :].any() and not painted[..., -3:, :].any()
    assert not painted[..., :3].any() and not painted[..., -3:].any()


def test_single_inpaint_window_is_one_box_of_reference_size(backend):
    shape = (64, 64, 32)
    x = -torch.ones(30, 1, *shape)
    y = inpaint(x, gen(3), max_windows=1, continue_prob=1.0)
    for b in range(30):
        idx = torch.nonzero(y[b, 0] >= 0)
        lo, hi = idx.min(0).values, idx.max(0).values
        size = hi - lo + 1
        assert idx.shape[0] == int(size.prod())  # a full box
        assert (size >= torch.tensor([10, 10, 5])).all() and (size <= torch.tensor([21, 21, 10])).all()
        assert (lo >= 3).all() and (hi <= torch.tensor(shape) - 4).all()


def test_constant_fill(backend):
    x = torch.zeros(20, 1, 32, 32)
    y = inpaint(x, gen(4), fill="constant", max_windows=1, continue_prob=1.0, spatial_dims=2)
    for b in range(20):
        values = torch.unique(y[b])
        assert values.numel() == 2 and values[0] == 0  # background and one constant
    with pytest.raises(ConfigError, match="fill"):
        inpaint(x, gen(), fill="zeros", spatial_dims=2)


def test_outpaint_keeps_35_percent(official, backend):
    x = -torch.ones(60, 1, 64, 64, 32)
    kept = (outpaint(x, gen(5)) == x).double().mean().item()
    assert abs(kept - 0.35) < 0.05
    random.seed(0)
    np.random.seed(0)
    cube = -np.ones((1, 64, 64, 32))
    ref = np.mean([(official.official_outpaint(cube.copy()) == cube).mean() for _ in range(60)])
    assert abs(kept - ref) < 0.02


def test_outpaint_sg_single_window_sizes(backend):
    shape = (64, 64, 32)
    x = -torch.ones(20, 1, *shape)
    y = outpaint(x, gen(6), max_extra_windows=0)
    for b in range(20):
        idx = torch.nonzero(y[b, 0] < 0)
        size = idx.max(0).values - idx.min(0).values + 1
        assert idx.shape[0] == int(size.prod())
        assert (size >= torch.tensor([28, 28, 14])).all() and (size <= torch.tensor([37, 37, 19])).all()


def test_painting_deterministic_untouched_2d_3d(backend):
    for x in (torch.rand(4, 2, 40, 40, 20, generator=gen(7)), torch.rand(4, 1, 50, 60, generator=gen(8))):
        before = x.clone()
        for fn in (inpaint, outpaint):
            dims = x.dim() - 2
            a, b = fn(x, gen(9), spatial_dims=dims), fn(x, gen(9), spatial_dims=dims)
            assert torch.equal(a, b) and a.shape == x.shape
            assert torch.equal(x, before)
            assert ((a >= 0) & (a <= 1)).all()


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("shape", [(6, 2, 40, 36, 20), (40, 1, 50, 44)])
def test_kernel_and_torch_paths_paint_the_same_region(shape):
    """Same draws: identical painted regions, identical constant fills, equally distributed noise."""
    marker = -torch.ones(shape)
    x = torch.rand(shape, generator=gen(10))
    dims = len(shape) - 2
    for fn in (functools.partial(inpaint, spatial_dims=dims), functools.partial(outpaint, spatial_dims=dims)):
        with use_backend("kernel"):
            region_k = fn(marker, gen(11)) >= 0
            const_k = fn(x, gen(12), fill="constant")
            noise_k = fn(marker, gen(13))
        with use_backend("torch"):
            region_t = fn(marker, gen(11)) >= 0
            const_t = fn(x, gen(12), fill="constant")
        assert torch.equal(region_k, region_t) and region_k.any()
        assert torch.equal(const_k, const_t)
        values = noise_k[noise_k >= 0].double()
        assert values.numel() > 15000 and values.max() < 1.0
        assert abs(values.mean().item() - 0.5) < 0.01 and abs(values.var().item() - 1 / 12) < 0.003
        # float32 noise lies on the k / 2**24 grid, like torch.rand
        assert torch.equal(values * 2**24, torch.floor(values * 2**24))


def test_painting_noise_is_uniform_and_independent(backend):
    """The fill noise is U[0, 1) per voxel and channel: flat histogram, no correlation between the
    channels of a voxel or between neighbouring voxels (the kernel's noise is counter-based)."""
    marker = -torch.ones(8, 2, 32, 32, 16)
    noise = outpaint(marker, gen(21))
    painted = (noise >= 0).all(dim=1)  # out-painting paints every channel of a voxel
    first, second = noise[:, 0][painted].double(), noise[:, 1][painted].double()
    assert first.numel() > 40000
    counts = torch.histc(first, bins=20, min=0.0, max=1.0)
    expected = first.numel() / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.3  # 19 degrees of freedom, p = 0.001
    assert abs(float(torch.corrcoef(torch.stack([first, second]))[0, 1])) < 0.02
    along = noise[:, 0, :, :, :-1], noise[:, 0, :, :, 1:]
    both = (along[0] >= 0) & (along[1] >= 0)
    lag = torch.stack([along[0][both].double(), along[1][both].double()])
    assert abs(float(torch.corrcoef(lag)[0, 1])) < 0.02
