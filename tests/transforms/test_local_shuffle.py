import random

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import local_shuffle

from .conftest import gen


def distinct_cubes(batch, shape, seed=0):
    """Cubes whose voxel values are all distinct (a permutation of k / V), so sources can be traced."""
    g = gen(seed)
    voxels = int(np.prod(shape))
    values = torch.stack([torch.randperm(voxels, generator=g) for _ in range(batch)]).float() / voxels
    return values.view((batch, 1) + shape)


@pytest.mark.parametrize("bank", [64, 0])
def test_models_genesis_setting_changes_79_percent(bank):
    x = torch.rand(4, 1, 64, 64, 32, generator=gen(1))
    y = local_shuffle(x, gen(2), num_windows=10000, permutation_bank=bank)
    changed = (y != x).double().mean().item()
    assert abs(changed - 0.79) < 0.03


def test_matches_official_loop_statistics(official):
    """Changed fraction agrees with the literal per-cube port at a smaller, faster setting."""
    random.seed(0)
    np.random.seed(0)
    cubes = np.random.rand(6, 1, 40, 40, 20)
    ref = np.mean([(official.official_local_shuffle(c, prob=1.0, num_block=600) != c).mean() for c in cubes])
    x = torch.tensor(cubes, dtype=torch.float32)
    ours = (local_shuffle(x, gen(3), num_windows=600) != x).double().mean().item()
    assert abs(ours - ref) < 0.02


def test_values_only_move_within_windows():
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


def test_single_window_permutes_values_inside_one_small_box():
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


def test_channels_move_together_and_input_untouched():
    x = torch.rand(2, 3, 20, 20, 10, generator=gen(7))
    x[:, 1] = x[:, 0] * 0.5
    before = x.clone()
    y = local_shuffle(x, gen(8), num_windows=300)
    assert torch.equal(x, before)
    assert torch.allclose(y[:, 1], y[:, 0] * 0.5)
    assert torch.equal(y, local_shuffle(x, gen(8), num_windows=300))


def test_2d_and_tiny_images():
    x = torch.rand(3, 1, 64, 48, generator=gen(9))
    y = local_shuffle(x, gen(10), num_windows=500)
    assert y.shape == x.shape and (y != x).any()
    tiny = torch.rand(2, 1, 5, 5)  # dim // 10 == 0: windows are single voxels, nothing can change
    assert torch.equal(local_shuffle(tiny, gen(), num_windows=50), tiny)
    with pytest.raises(ConfigError, match="num_windows"):
        local_shuffle(x, gen(), num_windows=-1)
