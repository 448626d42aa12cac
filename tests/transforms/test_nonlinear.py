import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms import nonlinear
from semantic_genesis.transforms._backend import kernels, use_backend
from semantic_genesis.transforms._plan import KernelPlan, run_plan
from semantic_genesis.transforms.nonlinear import apply_maps, build_maps, sample_nonlinear_maps

from .conftest import gen


def test_maps_are_monotone_and_inverted_half_the_time(backend):
    maps = sample_nonlinear_maps(3000, gen(1), lut_size=256)
    lut, inverted = maps.table, maps.inverted
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


def _official_maps(official, controls, inverted, values):
    """``np.interp`` of the official 100,000-sample construction, one row per map."""
    rows = []
    for (a1, b1, a2, b2), inv in zip(controls.tolist(), inverted.tolist()):
        xs, ys = official.official_bezier([[0, 0], [a1, b1], [a2, b2], [1, 1]], 100000)
        rows.append(np.interp(values, np.sort(xs), ys if inv else np.sort(ys)))
    return np.stack(rows)


# Values near both ends and everywhere in between; steep curve ends are where a plain table errs most.
_ENDS = np.concatenate([10.0 ** -np.arange(1, 9), [0.0]])
VALUES = np.unique(np.concatenate([np.linspace(0, 1, 777), _ENDS, 1 - _ENDS, np.linspace(0, 3e-3, 200),
                                   1 - np.linspace(0, 3e-3, 200)]))


def _apply(backend, x, maps):
    """Apply ``maps`` to the rows of ``x`` on the given backend (kernel: the compiled preset kernel)."""
    if backend == "kernel":
        return run_plan(x, KernelPlan.for_batch(x, maps=(torch.arange(x.shape[0]), maps)))[0]
    return apply_maps(x, maps)


def test_matches_official_interp_to_1e4_also_at_steep_ends(official, backend):
    """Every map equals the official ``np.interp`` of its Bezier curve to < 1e-4 (a table alone errs by
    up to a few 1e-2 where the curve is steep), for random control points and for steep ones."""
    n = 48
    g = gen(3)
    maps = sample_nonlinear_maps(n, g)
    twin = gen(3)  # the same first draws: the control values, then the branches
    controls = torch.rand(n, 2, 2, generator=twin, dtype=torch.float64).reshape(n, 4)
    inverted = torch.rand(n, generator=twin, dtype=torch.float64) < 0.5
    assert torch.equal(maps.controls, controls) and torch.equal(maps.inverted, inverted)
    # steep ends and a steep middle: X'(t) vanishes at t = 0 when a2 -> 1, at t = 1 when a1 -> 0, and
    # near t = 1/2 when (a1, a2) -> (1, 0)
    steep = torch.tensor([[1e-4, 0.3, 0.9999, 0.8], [1e-6, 0.9, 0.5, 0.1], [0.2, 0.7, 1.0, 0.4],
                          [0.999, 0.2, 0.001, 0.6], [1.0, 0.5, 0.0, 0.5], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    steep_maps = build_maps(steep.repeat(2, 1), torch.arange(12) % 2 == 0)
    assert steep_maps.exact_cells().any(1).all()  # every steep map has cells evaluated exactly
    for m in (maps, steep_maps):
        x = torch.tensor(VALUES, dtype=torch.float64).expand(m.table.shape[0], 1, -1).contiguous()
        ours = _apply(backend, x, m)[:, 0].numpy()
        ref = _official_maps(official, m.controls, m.inverted, VALUES)
        assert np.abs(ours - ref).max() < 1e-4


def test_the_table_alone_would_miss_steep_ends(official):
    """Why exact cells exist: interpolating the exact table at 1024 intervals errs by more than 1e-3 at a
    steep end, which the exact evaluation removes."""
    maps = build_maps(torch.tensor([[1e-6, 0.9, 0.5, 0.1]], dtype=torch.float64), torch.tensor([False]))
    values = np.linspace(0, 3e-3, 301)
    table = np.interp(values, np.linspace(0, 1, maps.lut_size + 1), maps.table[0].numpy())
    ref = _official_maps(official, maps.controls, maps.inverted, values)[0]
    assert np.abs(table - ref).max() > 1e-3
    x = torch.tensor(values, dtype=torch.float64).view(1, 1, -1)
    assert np.abs(apply_maps(x, maps)[0, 0].numpy() - ref).max() < 1e-4


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
        nonlinear(torch.zeros(1, 1, 4, 4, 4, dtype=torch.int64), gen())
    with pytest.raises(ConfigError, match="lut_size"):
        nonlinear(torch.rand(1, 1, 4, 4), gen(), lut_size=0, spatial_dims=2)
    with pytest.raises(DataError, match="torch.Generator"):
        nonlinear(torch.rand(1, 1, 4, 4, 4), 42)


@pytest.mark.skipif(kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_and_torch_paths_agree(dtype):
    """Same draws on both paths: the tables agree to rounding and the outputs to float precision."""
    x = torch.rand(5, 2, 12, 10, 6, generator=gen(7), dtype=dtype)
    x[0, 0, 0, 0, :3] = torch.tensor([-0.5, 1.5, 1.0], dtype=dtype)  # clamped ends and the last entry
    with use_backend("kernel"):
        maps_k = sample_nonlinear_maps(300, gen(8))
        y_k = nonlinear(x, gen(9))
    with use_backend("torch"):
        maps_t = sample_nonlinear_maps(300, gen(8))
        y_t = nonlinear(x, gen(9))
    assert torch.equal(maps_k.inverted, maps_t.inverted)
    assert (maps_k.table - maps_t.table).abs().max().item() < 1e-12
    assert (maps_k.t_grid - maps_t.t_grid).abs().max().item() < 1e-12
    assert torch.equal(maps_k.exact_cells(), maps_t.exact_cells())
    assert y_k.dtype == dtype and (y_k - y_t).abs().max().item() < 1e-6
