import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms import nonlinear
from semantic_genesis.transforms._backend import kernels, use_backend
from semantic_genesis.transforms.nonlinear import apply_luts, sample_nonlinear_luts

from .conftest import gen


def test_maps_are_monotone_and_inverted_half_the_time(backend):
    lut, inverted = sample_nonlinear_luts(3000, gen(1), curve_points=1024, lut_size=256)
    steps = torch.diff(lut, dim=1)
    inc = ~inverted
    assert (steps[inc] >= -1e-9).all(), "non-inverted maps must be non-decreasing"
    assert (steps[inverted] <= 1e-9).all(), "inverted maps must be non-increasing"
    assert abs(inverted.double().mean().item() - 0.5) < 0.03
    # end points: the curve goes through (0,0) and (1,1); the inverted branch maps 0 -> 1 and 1 -> 0
    assert torch.allclose(lut[inc, 0], torch.zeros(int(inc.sum()), dtype=lut.dtype), atol=1e-9)
    assert torch.allclose(lut[inc, -1], torch.ones(int(inc.sum()), dtype=lut.dtype), atol=1e-9)
    assert torch.allclose(lut[inverted, 0], torch.ones(int(inverted.sum()), dtype=lut.dtype), atol=1e-9)
    assert torch.allclose(lut[inverted, -1], torch.zeros(int(inverted.sum()), dtype=lut.dtype), atol=1e-9)
    assert ((lut >= 0) & (lut <= 1)).all()


def test_matches_reference_curve_family(official, backend):
    """Each of our maps equals the reference np.interp construction with the same control points."""
    g = gen(3)
    n = 40
    lut, inverted = sample_nonlinear_luts(n, gen(3))
    controls = torch.rand(n, 2, 2, generator=g, dtype=torch.float64)  # same first draw as the sampler
    values = np.linspace(0, 1, 777)
    x = torch.tensor(values, dtype=torch.float64).expand(n, -1).contiguous()
    ours = apply_luts(x, lut).numpy()
    worst = 0.0
    for i in range(n):
        (a1, b1), (a2, b2) = controls[i].tolist()
        xs, ys = official.official_bezier([[0, 0], [a1, b1], [a2, b2], [1, 1]], 100000)
        ref = np.interp(values, np.sort(xs), ys if inverted[i] else np.sort(ys))
        worst = max(worst, float(np.abs(ours[i] - ref).max()))
    assert worst < 5e-3


def test_transform_preserves_voxel_order_and_is_deterministic(backend):
    x = torch.rand(6, 1, 12, 10, 8)
    y1 = nonlinear(x, gen(5))
    y2 = nonlinear(x, gen(5))
    assert torch.equal(y1, y2)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert ((y1 >= 0) & (y1 <= 1)).all()
    flat_x, flat_y = x.flatten(1), y1.flatten(1)
    order = flat_x.argsort(dim=1)
    sorted_y = flat_y.gather(1, order)
    d = torch.diff(sorted_y, dim=1)
    for row in d:  # monotone per sample: either non-decreasing or non-increasing
        assert (row >= -1e-6).all() or (row <= 1e-6).all()
    assert not torch.equal(y1, nonlinear(x, gen(6)))


def test_bad_inputs():
    with pytest.raises(DataError, match="expected a batch"):
        nonlinear(torch.rand(10, 10), gen())
    with pytest.raises(DataError, match="floating point"):
        nonlinear(torch.zeros(1, 1, 4, 4, dtype=torch.int64), gen())
    with pytest.raises(ConfigError, match="lut_size"):
        nonlinear(torch.rand(1, 1, 4, 4), gen(), lut_size=0)
    with pytest.raises(DataError, match="torch.Generator"):
        nonlinear(torch.rand(1, 1, 4, 4), 42)


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_and_torch_paths_agree(dtype):
    """Same draws on both paths: the tables agree to rounding and the outputs to float precision."""
    x = torch.rand(5, 2, 12, 10, 6, generator=gen(7), dtype=dtype)
    x[0, 0, 0, 0, :3] = torch.tensor([-0.5, 1.5, 1.0], dtype=dtype)  # clamped ends and the last entry
    with use_backend("kernel"):
        lut_k, inv_k = sample_nonlinear_luts(300, gen(8))
        y_k = nonlinear(x, gen(9))
    with use_backend("torch"):
        lut_t, inv_t = sample_nonlinear_luts(300, gen(8))
        y_t = nonlinear(x, gen(9))
    assert torch.equal(inv_k, inv_t)
    assert (lut_k - lut_t).abs().max().item() < 1e-12
    assert y_k.dtype == dtype and (y_k - y_t).abs().max().item() < 1e-6
