import itertools
import random

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import local_shuffle
from semantic_genesis.transforms._backend import kernels

from .conftest import gen


def distinct_cubes(batch, shape, seed=0):
    """Cubes whose voxel values are all distinct (a permutation of k / V), so sources can be traced."""
    g = gen(seed)
    voxels = int(np.prod(shape))
    values = torch.stack([torch.randperm(voxels, generator=g) for _ in range(batch)]).float() / voxels
    return values.view((batch, 1) + shape)


@pytest.mark.parametrize("bank", [64, 0])
def test_models_genesis_setting_changes_79_percent(bank, backend):
    if backend == "kernel" and bank == 0:
        pytest.skip("the kernel always uses independent permutations (bank ignored)")
    x = torch.rand(4, 1, 64, 64, 32, generator=gen(1))
    y = local_shuffle(x, gen(2), num_windows=10000, permutation_bank=bank)
    changed = (y != x).double().mean().item()
    assert abs(changed - 0.79) < 0.03


def test_matches_official_loop_statistics(official, backend):
    """Changed fraction agrees with the literal per-cube port at a smaller, faster setting."""
    random.seed(0)
    np.random.seed(0)
    cubes = np.random.rand(6, 1, 40, 40, 20)
    ref = np.mean([(official.official_local_shuffle(c, prob=1.0, num_block=600) != c).mean() for c in cubes])
    x = torch.tensor(cubes, dtype=torch.float32)
    ours = (local_shuffle(x, gen(3), num_windows=600) != x).double().mean().item()
    assert abs(ours - ref) < 0.02


def test_values_only_move_within_windows(backend):
    shape = (30, 30, 20)
    x = distinct_cubes(3, shape)
    y = local_shuffle(x, gen(4), num_windows=2000)
    voxels = int(np.prod(shape))
    for b in range(3):
        src = torch.round(y[b].flatten() * voxels).long()  # value k / V came from voxel pos_of[k]
        pos_of = torch.empty(voxels, dtype=torch.long)
        pos_of[torch.round(x[b].flatten() * voxels).long()] = torch.arange(voxels)
        source = torch.stack(torch.unravel_index(pos_of[src], shape), dim=1)
        dest = torch.stack(torch.unravel_index(torch.arange(voxels), shape), dim=1)
        shift = (source - dest).abs().max(dim=0).values
        # windows are at most dim // 10 voxels wide, so a value moves less than that
        assert (shift <= torch.tensor([2, 2, 1])).all(), shift


def test_single_window_permutes_values_inside_one_small_box(backend):
    shape = (64, 64, 32)
    x = distinct_cubes(12, shape, seed=5)
    y = local_shuffle(x, gen(6), num_windows=1, permutation_bank=0)
    moved_any = 0
    for b in range(12):
        changed = y[b, 0] != x[b, 0]
        # one window permutes values in place: the multiset of the whole cube is preserved
        assert torch.equal(torch.sort(y[b].flatten()).values, torch.sort(x[b].flatten()).values)
        if changed.any():
            moved_any += 1
            idx = torch.nonzero(changed)
            extent = idx.max(0).values - idx.min(0).values + 1
            assert (extent <= torch.tensor([6, 6, 3])).all()
            # the changed voxels exchange values among themselves
            assert torch.equal(torch.sort(y[b, 0][changed]).values, torch.sort(x[b, 0][changed]).values)
    assert moved_any >= 10  # a 1-voxel window changes nothing; most windows are larger


def test_channels_move_together_and_input_untouched(backend):
    x = torch.rand(2, 3, 20, 20, 10, generator=gen(7))
    x[:, 1] = x[:, 0] * 0.5
    before = x.clone()
    y = local_shuffle(x, gen(8), num_windows=300)
    assert torch.equal(x, before)
    assert torch.allclose(y[:, 1], y[:, 0] * 0.5)
    assert torch.equal(y, local_shuffle(x, gen(8), num_windows=300))


def test_2d_and_tiny_images(backend):
    x = torch.rand(3, 1, 64, 48, generator=gen(9))
    y = local_shuffle(x, gen(10), num_windows=500, spatial_dims=2)
    assert y.shape == x.shape and (y != x).any()
    tiny = torch.rand(2, 1, 5, 5)  # dim // 10 == 0: windows are single voxels, nothing can change
    assert torch.equal(local_shuffle(tiny, gen(), num_windows=50, spatial_dims=2), tiny)
    with pytest.raises(ConfigError, match="num_windows"):
        local_shuffle(x, gen(), num_windows=-1, spatial_dims=2)


def test_window_permutation_law_exact(backend):
    """One window on a 2x2 image: the output permutation follows the exact reference law.

    Window shapes 1x1, 1x2, 2x1, 2x2 each with p 1/4; a 1x2 or 2x1 window (one of two rows/columns)
    swaps its two pixels with p 1/2; the 2x2 window applies a uniform permutation of 4 pixels.
    (The torch path's default permutation bank gives each window a uniform permutation too, but windows
    of a call share the bank's few permutations, so the exact-law check over many windows uses
    ``permutation_bank=0``; the kernel ignores the bank and is always independent.)
    """
    n = 24000
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 2, 2).expand(n, 1, 2, 2).contiguous()
    y = local_shuffle(x, gen(11), num_windows=1, size_divisor=1, permutation_bank=0, spatial_dims=2)
    codes = y.view(n, 4).long()
    assert torch.equal(codes.sort(1).values, torch.arange(4).expand(n, 4))  # one window: a permutation
    key = (codes * torch.tensor([64, 16, 4, 1])).sum(1)
    observed = torch.bincount(key, minlength=256)
    perms = list(itertools.permutations(range(4)))
    identity, row0, row1, col0, col1 = (0, 1, 2, 3), (1, 0, 2, 3), (0, 1, 3, 2), (2, 1, 0, 3), (0, 3, 2, 1)
    expected = {p: 1 / 96 for p in perms}
    expected[identity] += 0.25 + 0.125 + 0.125
    for swap in (row0, row1, col0, col1):
        expected[swap] += 1 / 16
    chi2 = 0.0
    for p, prob in expected.items():
        k = p[0] * 64 + p[1] * 16 + p[2] * 4 + p[3]
        chi2 += (observed[k].item() - n * prob) ** 2 / (n * prob)
    assert observed.sum().item() == n
    assert chi2 < 49.7  # chi-square, 23 degrees of freedom, p = 0.001


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("dims", [(20, 20, 10), (1, 60, 70), (3, 30, 140)])
@pytest.mark.parametrize("restricted", [False, True])
def test_both_coverage_trackers_give_the_same_shuffle(dims, restricted):
    """The compiled shuffle tracks covered voxels with a byte per voxel or with line bitmaps (when
    windows overlap a lot); both give the same source of every voxel, also with kept boxes."""
    k = kernels()
    dims = np.array(dims, dtype=np.int64)
    max_size = np.maximum(1, dims // 10)
    tables = k._window_tables(dims, max_size)
    voxels = int(np.prod(dims))
    x, y, z = (int(d) for d in dims)
    corners = np.array([[[0, 1, 1], [x // 3, y // 3, z // 3]]], dtype=np.int32)
    sizes = np.array([[[max(1, x // 2), y // 2, z // 2], [x - x // 3, y // 3, z // 2]]], dtype=np.int32)
    counts = np.array([2], dtype=np.int64)
    results = []
    for by_lines in (False, True):
        stamp = np.zeros(0 if by_lines else voxels, np.uint8)
        cov = np.zeros(int(dims[0] * dims[1] * ((dims[2] + 63) // 64)) if by_lines else 0, np.uint64)
        disp = np.zeros(voxels, np.int32)
        k._shuffle_sources(stamp, np.uint8(1), cov, disp, 12345, 3000, dims, tables, 0 if restricted else -1,
                           corners, sizes, counts)
        results.append(disp)
    assert np.array_equal(results[0], results[1])
    assert (results[0] != 0).mean() > (0.05 if restricted else 0.3)
