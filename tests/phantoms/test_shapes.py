"""Geometric primitives of the phantoms: frames, smooth noise, tube rendering."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.phantoms.shapes import (
    PatientFrame,
    random_perpendicular,
    render_segments,
    segment_occupancy,
    smooth_noise,
    splat_segments,
)


def test_frame_round_trip_and_grid():
    f = PatientFrame((20, 30, 10), (2.0, 1.5, 3.0), angle=0.2, shift=(4.0, -3.0, 6.0))
    ijk = np.array([[0, 0, 0], [19, 29, 9], [7.5, 12.25, 3.0]])
    np.testing.assert_allclose(f.to_voxel(f.to_frame(ijk)), ijk, atol=1e-9)
    U, V, W = f.grid()
    uvw = f.to_frame(np.array([[5, 7, 2]]))[0]
    assert U[5, 7, 0] == pytest.approx(uvw[0], abs=1e-4)
    assert V[5, 7, 0] == pytest.approx(uvw[1], abs=1e-4)
    assert W[0, 0, 2] == pytest.approx(uvw[2], abs=1e-4)
    assert f.box(np.array([[1e4, 0, 0]]), 1.0) is None


def test_smooth_noise_is_smooth_and_normalised():
    rng = np.random.default_rng(0)
    n = smooth_noise(rng, (40, 40, 20), (4, 4, 2))
    assert n.shape == (40, 40, 20) and n.dtype == np.float32
    assert abs(n.mean()) < 1e-4 and n.std() == pytest.approx(1.0, abs=1e-3)
    # neighbouring voxels are strongly correlated (low frequency), white noise would not be
    assert np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1] > 0.9
    again = smooth_noise(np.random.default_rng(0), (40, 40, 20), (4, 4, 2))
    np.testing.assert_array_equal(n, again)


def test_segment_occupancy_profile():
    u = np.linspace(-6, 6, 121)[:, None, None]
    v = np.zeros((1, 1, 1))
    w = np.zeros((1, 1, 1))
    occ = segment_occupancy(u, v, w, np.array([0.0, 0.0, -10.0]), np.array([0.0, 0.0, 10.0]), 3.0, 3.0, 1.0).ravel()
    assert occ[60] == 1.0 and occ[0] == 0.0 and occ[-1] == 0.0
    assert occ[90] == pytest.approx(0.5, abs=1e-6)  # u = 3 mm: the surface is half occupied
    assert np.all(np.diff(occ[60:]) <= 0)


def test_splat_matches_exact_rendering():
    f = PatientFrame((48, 48, 32), (2.8, 2.8, 3.2), angle=0.1, shift=(1.0, 2.0, 3.0))
    rng = np.random.default_rng(1)
    a = rng.uniform(-50, 50, (200, 3))
    b = a + rng.normal(0, 6, (200, 3))
    r = rng.uniform(0.5, 1.2, (200, 1))
    segs = np.concatenate([a, b, r, 0.9 * r], axis=1)
    splat = np.zeros(f.shape, np.float32)
    splat_segments(f, splat, segs)
    exact = np.zeros(f.shape, np.float32)
    for row in segs:
        box = f.box(np.stack([row[:3], row[3:6]]), row[6] + f.voxel_mm)
        if box is None:
            continue
        lo, hi = box
        occ = segment_occupancy(*f.crop(lo, hi), row[:3], row[3:6], row[6], row[7], f.voxel_mm)
        view = exact[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, occ, out=view)
    np.testing.assert_allclose(splat, exact, atol=1e-5)
    both = np.zeros(f.shape, np.float32)
    render_segments(f, both, segs)  # dispatches thin tubes to the splatter
    np.testing.assert_array_equal(both, splat)


def test_random_perpendicular():
    d = np.random.default_rng(2).normal(size=(50, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    p = random_perpendicular(np.random.default_rng(3), d)
    np.testing.assert_allclose(np.sum(p * d, axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-9)
