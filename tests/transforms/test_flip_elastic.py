import importlib

import numpy as np
import pytest
import torch
from scipy import ndimage

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms import elastic, flip
from semantic_genesis.transforms._backend import kernels, use_backend
from semantic_genesis.transforms.elastic import sample_displacement, smoothing_factor, smoothing_matrix, warp
from semantic_genesis.transforms.flip import sample_flip_parity

from .conftest import gen

# the package exports the function `elastic`; the module holds the compiled-warp entry point
elastic_module = importlib.import_module("semantic_genesis.transforms.elastic")


def test_flip_same_on_input_and_target_and_all_axes():
    x = torch.rand(400, 1, 6, 5, 4, generator=gen(1))
    target = x * 0.5
    fx, ft = flip(x, target, gen(2))
    assert torch.allclose(ft, fx * 0.5)  # identical flips
    flipped_axes = torch.zeros(3)
    for b in range(400):
        for axis in range(3):
            if torch.equal(fx[b], x[b].flip(axis + 1)) and not torch.equal(fx[b], x[b]):
                flipped_axes[axis] += 1
    assert (flipped_axes > 20).all()  # depth (Z) is flipped too, unlike the official code


def test_flip_parity_law():
    # P(no flip) = 0.6; each flip picks an axis uniformly; official mode never flips the last axis
    parity = sample_flip_parity(gen(3), 20000, 3, 0.4, 3, "spatial")
    p_odd = parity.double().mean(0)
    # P(odd flips on an axis): k flips w.p. (.6, .24, .096, .064), each axis w.p. 1/3
    probs = [0.6, 0.24, 0.096, 0.064]
    expect = sum(p * (1 - (1 - 2 / 3) ** k) / 2 for k, p in enumerate(probs))
    assert torch.allclose(p_odd, torch.full((3,), expect, dtype=torch.float64), atol=0.015)
    official = sample_flip_parity(gen(4), 20000, 3, 0.4, 3, "official")
    assert not official[:, 2].any() and official[:, :2].any()
    with pytest.raises(ConfigError, match="axes"):
        sample_flip_parity(gen(), 2, 3, axes="depth")
    with pytest.raises(DataError, match="target shape"):
        flip(torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4), gen(), spatial_dims=2)


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """The reference smoothing written with our per-axis matrices."""
    for axis, size in enumerate(field.shape):
        m = smoothing_matrix(size, sigma, torch.float64, torch.device("cpu")).numpy()
        field = np.moveaxis(np.tensordot(m, np.moveaxis(field, axis, 0), axes=1), 0, axis)
    return field


def test_smoothing_matrices_are_scipys_gaussian_filter():
    noise = torch.rand(30, 26, 18, generator=gen(5), dtype=torch.float64).numpy() * 2 - 1
    ref = ndimage.gaussian_filter(noise, 8.0, mode="constant", cval=0.0)
    assert np.abs(_smooth(noise, 8.0) - ref).max() < 1e-12


@pytest.mark.parametrize("shape", [(24, 20, 12), (40, 36)])
def test_displacement_has_the_reference_covariance(shape):
    """The displacement field has the covariance of alpha * gaussian_filter(U[-1, 1] noise): per voxel
    alpha^2 / 3 * sum_q S(p, q) S(p', q), checked at the centre, a corner and across a lag, on both
    displaced axes, from 6,000 samples (relative standard error of a variance about 1.8 %)."""
    sigma, alpha, n = 3.0, 50.0, 6000
    disp = sample_displacement(gen(21), n, shape, alpha, sigma, torch.device("cpu"), torch.float64).numpy()
    mats = [smoothing_matrix(size, sigma, torch.float64, torch.device("cpu")).numpy() for size in shape]
    grams = [m @ m.T for m in mats]
    centre = tuple(s // 2 for s in shape)
    corner = (0,) * len(shape)
    lagged = (centre[0] + 2,) + centre[1:]
    for p, q in [(centre, centre), (corner, corner), (centre, lagged)]:
        expected = alpha**2 / 3 * np.prod([g[a, b] for g, a, b in zip(grams, p, q)])
        for axis in range(2):
            observed = np.mean(disp[(slice(None), axis) + p] * disp[(slice(None), axis) + q])
            assert abs(observed / expected - 1) < 0.07, (p, q, axis, observed, expected)
    # the two displaced axes are independent
    assert abs(np.corrcoef(disp[(slice(None), 0) + centre], disp[(slice(None), 1) + centre])[0, 1]) < 0.05
    # the truncated factors keep all but 1e-6 of the variance
    for size, m in zip(shape, mats):
        kept = (smoothing_factor(size, sigma) ** 2).sum() / (m**2).sum()
        assert 1 - 1e-6 <= kept <= 1 + 1e-12


@pytest.mark.parametrize("size, sigma", [(1, 8.0), (2, 8.0), (7, 1.5), (64, 8.0), (224, 8.0), (33, 3.0)])
def test_smoothing_factor_columns_are_exactly_symmetric_then_antisymmetric(size, sigma):
    """The compiled warp computes plane ``X - 1 - i`` from the partial sums of plane ``i``: that needs the
    factor's first ``even`` columns exactly symmetric and the rest exactly antisymmetric, bit for bit, each
    kind in order of decreasing variance, and the factor still a square root of the smoothing's Gram matrix
    (its left-out variance below the tolerance)."""
    factor, even = elastic_module._symmetric_factor(size, sigma)
    assert torch.equal(factor, smoothing_factor(size, sigma))
    mirrored = factor.flip(0)
    assert torch.equal(mirrored[:, :even], factor[:, :even]) and torch.equal(mirrored[:, even:], -factor[:, even:])
    assert 0 < even <= factor.shape[1] and (factor.shape[1] - even) <= size // 2
    for part in (factor[:, :even], factor[:, even:]):
        variances = (part**2).sum(0)
        assert (variances[:-1] >= variances[1:]).all()
    gram = smoothing_matrix(size, sigma, torch.float64, torch.device("cpu"))
    gram = gram @ gram.T
    residual = gram - factor @ factor.T
    assert torch.linalg.eigvalsh(residual).min() > -1e-12  # what is left out is a covariance itself
    assert residual.trace() <= 1e-6 * gram.trace() + 1e-15


def test_warp_matches_scipy_map_coordinates():
    x = torch.rand(1, 1, 30, 26, 18, generator=gen(6), dtype=torch.float64)
    disp = sample_displacement(gen(7), 1, (30, 26, 18), 991.0, 8.0, torch.device("cpu"), torch.float64)
    grid = np.meshgrid(*[np.arange(s) for s in (30, 26, 18)], indexing="ij")
    coords = [grid[0] + disp[0, 0].numpy(), grid[1] + disp[0, 1].numpy(), grid[2]]
    ref_warp = ndimage.map_coordinates(x[0, 0].numpy(), coords, order=1, mode="reflect")
    assert np.abs(warp(x, disp)[0, 0].numpy() - ref_warp).max() < 1e-10


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("shape", [(2, 2, 30, 26, 18), (3, 1, 40, 36), (2, 1, 3, 5), (2, 1, 1, 6, 4), (2, 1, 7, 2, 3)])
def test_warp_kernel_matches_scipy_including_far_reflections(shape):
    """The compiled warp resamples exactly as ``map_coordinates(order=1, mode="reflect")``, also for
    displacements that leave the plane by more than its size (several reflections)."""
    x = torch.rand(shape, generator=gen(12), dtype=torch.float64)
    spatial = shape[2:]
    disp = sample_displacement(gen(13), shape[0], spatial, 991.0 if len(spatial) == 3 else 60.0, 8.0,
                               torch.device("cpu"), torch.float64)
    disp[0, 0, :4] += 75.0
    disp[-1, 1, :, :3] -= 61.5
    with use_backend("kernel"):
        ours = elastic_module._warp_kernel(x, *elastic_module._kernel_arrays(x, disp, None))
    grid = np.meshgrid(*[np.arange(s) for s in spatial], indexing="ij")
    for b in range(shape[0]):
        coords = [grid[0] + disp[b, 0].numpy(), grid[1] + disp[b, 1].numpy()] + list(grid[2:])
        for ch in range(shape[1]):
            ref = ndimage.map_coordinates(x[b, ch].numpy(), coords, order=1, mode="reflect")
            assert np.abs(ours[b, ch].numpy() - ref).max() < 1e-10


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("shape", [(4, 2, 40, 36, 20), (3, 1, 224, 224), (3, 1, 33, 47)])
@pytest.mark.parametrize("factored", [False, True])
def test_warp_kernel_matches_grid_sample_on_random_fields(shape, factored):
    """The compiled float32 warp against torch's ``grid_sample`` (bilinear, reflection padding,
    ``align_corners=False``) on random fields with far reflections, 2D and 3D, given the full field or the
    factored one (first-axis factor applied in the kernel): against ``grid_sample`` in float64 on the same
    values and field, it errs no more than ``grid_sample`` in float32 does. Both compute the positions in
    float32 (``grid_sample`` its normalised coordinates), which puts up to 2.4e-5 on a position of 500
    pixels (a far reflection at 224)."""
    spatial = shape[2:]
    g = gen(21)
    x = torch.rand(shape, generator=g)
    coefficients, factors = elastic_module._coefficients(g, shape[0], spatial, 991.0, 8.0, x.device, torch.float32)
    full = elastic_module._expand(coefficients, factors, 0).reshape((shape[0], 2) + spatial)
    full[0, 0, :3] += 2.5 * spatial[0]  # several reflections
    full[-1, 1, :, :2] -= 1.7 * spatial[1]
    with use_backend("kernel"):
        if factored:
            partial = elastic_module._expand(coefficients, factors, 1)
            even = elastic_module._symmetric_factor(spatial[0], 8.0)[1]
            ours = elastic_module._warp_kernel(x, *elastic_module._kernel_arrays(x, partial, factors[0], even))
            full = elastic_module._expand(coefficients, factors, 0).reshape((shape[0], 2) + spatial)
        else:
            ours = elastic_module._warp_kernel(x, *elastic_module._kernel_arrays(x, full, None))
    assert ours.dtype == torch.float32
    exact = warp(x.double(), full.double())
    error = (ours.double() - exact).abs().max().item()
    assert error <= 1.1 * (warp(x, full).double() - exact).abs().max().item() and error < 3e-5


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("shape, options", [
    ((12, 2, 30, 26, 18), {}),
    ((12, 1, 40, 36), {}),
    ((12, 1, 24, 20, 10), {"strength": "models_genesis", "fill": "constant"}),  # several kept boxes
    ((8, 1, 20, 22, 8), {"elastic_alpha": 4000.0}),  # far reflections
])
def test_preset_warps_each_sample_inside_the_kernel_as_the_separate_warp(shape, options):
    """The Semantic Genesis preset's compiled path warps each sample inside the restoration kernel (only
    the kept boxes' planes and lines of an out-painted sample): bit for bit what warping the whole batch
    first (``elastic``) and restoring the warped batch gives, with the generator consumed alike."""
    from semantic_genesis.transforms import build_preset
    from semantic_genesis.transforms._plan import KernelPlan, run_plan

    presets = importlib.import_module("semantic_genesis.transforms.presets")
    x = torch.rand(shape, generator=gen(50))
    preset = build_preset("semantic_genesis", spatial_dims=len(shape) - 2, **options)
    o = preset.options
    with use_backend("kernel"):
        out, target = preset(x, gen(51))
        g = gen(51)  # the preset's draws, replayed: choice, warp, then the stages
        r = presets.uniform(g, shape[0])
        edges = torch.cumsum(torch.tensor(o["choice_probs"], dtype=torch.float64), 0)
        choice = torch.bucketize(r, edges[:-1], right=False)
        warped = elastic(x, g, alpha=o["elastic_alpha"], sigma=o["elastic_sigma"], spatial_dims=len(shape) - 2)
        plan = KernelPlan(shape[0], shuffle=presets._draw_shuffle(g, choice == 0, o),
                          maps=presets._draw_maps(g, choice == 1, o),
                          inpaint=presets._draw_inpaint(g, x, choice == 2, o),
                          outpaint=presets._draw_outpaint(g, x, choice == 3, o))
        separate = run_plan(warped, plan)[0]
    assert (choice == 3).sum() >= 2 and (choice == 0).sum() >= 1
    assert torch.equal(out, separate) and torch.equal(target, x)


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
def test_warp_sample_writes_only_its_box():
    """``warp_sample`` restricted to planes ``[2, 7)`` and lines ``[3, 9)`` writes exactly those voxels,
    with the values of the whole-sample warp."""
    x = torch.rand(1, 1, 10, 12, 5, generator=gen(52))
    partial, first, even = elastic_module.kernel_warp(x, gen(53), 991.0, 8.0)
    full = elastic_module._warp_kernel(x, partial, first, even)
    src = x[0].reshape(1, -1).numpy()
    dst = np.full_like(src, -1.0)
    dims = np.array([10, 12, 5])
    module = kernels()
    module.warp_sample(src, dst, partial[0], first, even, dims, 2, 7, 3 * 5, 9 * 5, module.warp_workspace(partial, dims))
    box = np.zeros((10, 12, 5), bool)
    box[2:7, 3:9] = True
    dst = dst.reshape(10, 12, 5)
    assert np.array_equal(dst[box], full[0, 0].numpy()[box]) and (dst[~box] == -1.0).all()


def test_elastic_displacement_size_and_2d(backend):
    disp = sample_displacement(gen(8), 24, (64, 64, 32), 991.0, 8.0, torch.device("cpu"))
    # expected mean |d| per axis for this filter on 64x64x32 (zero padding) is 2.58 voxels;
    # the reference reports ~2.8 measured on a few cubes
    assert 2.2 < disp.abs().mean().item() < 3.0
    x = torch.rand(3, 1, 40, 36, generator=gen(9))
    before = x.clone()
    y = elastic(x, gen(10), alpha=200.0, sigma=4.0, spatial_dims=2)
    assert y.shape == x.shape and torch.equal(x, before) and not torch.equal(y, x)
    assert torch.equal(y, elastic(x, gen(10), alpha=200.0, sigma=4.0, spatial_dims=2))
    assert torch.allclose(elastic(x, gen(11), alpha=0.0, spatial_dims=2), x, atol=1e-6)  # no displacement: identity
    with pytest.raises(ConfigError, match="sigma"):
        elastic(x, gen(), sigma=0.0, spatial_dims=2)
