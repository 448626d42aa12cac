"""Coordinate sampling: fit in every neighbour, spread, content test, bounded failure."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.discovery.coordinates import (
    ContentTest,
    CoordinateError,
    Frame,
    body_frame,
    corner_to_relative,
    feasible_interval,
    relative_to_corner,
    sample_coordinates,
    volume_frame,
)


def _box_volume(shape, lo, hi, value=0.6):
    """A [0, 1] volume that is air except a 'body' box [lo, hi)."""
    v = np.zeros(shape, np.float32)
    v[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return v


def test_body_frame_is_the_body_bounding_box():
    v = _box_volume((40, 36, 30), (5, 8, 2), (30, 28, 27))
    f = body_frame(v)
    assert f.shape == (40, 36, 30)
    assert f.origin == (5.0, 8.0, 2.0) and f.extent == (25.0, 20.0, 25.0)
    assert body_frame(np.zeros((8, 8, 8), np.float32)) == volume_frame((8, 8, 8))


def test_relative_corner_round_trip():
    f = Frame((50, 60, 40), (4.0, 6.0, 1.0), (40.0, 45.0, 36.0))
    corners = np.array([[10, 12, 5], [20, 30, 20]])
    rel = corner_to_relative(corners, f, (16, 16, 8))
    np.testing.assert_array_equal(relative_to_corner(rel, f, (16, 16, 8)), corners)


def test_sampled_coordinates_fit_every_patient_and_are_spread():
    rng = np.random.default_rng(0)
    size, border = (16, 16, 8), (0.1, 0.1, 0.1)
    ref_vol = _box_volume((48, 48, 40), (4, 4, 2), (44, 44, 38))
    ref = body_frame(ref_vol)
    others = [Frame((s, s + 4, 30 + k), (float(k), 2.0, 1.0), (s - 2.0 * k, s - 1.0, 28.0))
              for k, s in enumerate((40, 56, 64, 44))]
    test = ContentTest(ref_vol, "body", size, body_min_fraction=0.9)
    coords, corners = sample_coordinates(ref, others, test, 8, rng, border, 6.0, 2000)
    assert coords.shape == (8, 3) and corners.shape == (8, 3)
    assert test(corners).all()
    d = np.linalg.norm(corners[:, None] - corners[None], axis=2) + np.eye(8) * 1e9
    assert d.min() >= 6.0
    for f in [ref, *others]:
        c = relative_to_corner(coords, f, size)
        b = np.floor(np.asarray(border) * np.asarray(f.shape))
        assert np.all(c >= b) and np.all(c + np.asarray(size) <= np.asarray(f.shape) - b)
        # the mapped corners are unclamped: the mapping of the relative centre is exact up to rounding
        centre = np.asarray(f.origin) + coords * np.asarray(f.extent)
        assert np.all(np.abs(c + np.asarray(size) / 2 - centre) <= 0.5 + 1e-9)


def test_feasible_interval_intersects_patients():
    small, big = volume_frame((20, 20, 20)), volume_frame((100, 100, 100))
    lo, hi = feasible_interval([small, big], (10, 10, 10), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(lo, 0.25)  # centre >= 5 voxels in the small scan -> 0.25
    np.testing.assert_allclose(hi, 0.75)


def test_crop_larger_than_a_neighbour_names_the_axis():
    ref = volume_frame((64, 64, 40))
    tiny = volume_frame((64, 64, 10))
    test = ContentTest(np.zeros((64, 64, 40), np.float32), "none", (16, 16, 16))
    with pytest.raises(CoordinateError, match=r"axis Z needs a crop of 16 voxels.*\(64, 64, 10\)"):
        sample_coordinates(ref, [tiny], test, 1, np.random.default_rng(0), (0.1, 0.1, 0.1), 1.0, 100)


def test_content_test_that_never_passes_fails_in_bounded_trials():
    vol = np.zeros((40, 40, 30), np.float32)  # no body at all
    test = ContentTest(vol, "body", (8, 8, 8), body_min_fraction=0.5)
    with pytest.raises(CoordinateError, match=r"placed only 0 of 3 .* after 300 candidates: 0 passed"):
        sample_coordinates(volume_frame(vol.shape), [], test, 3, np.random.default_rng(0), (0.1,) * 3, 2.0, 300)


def test_min_distance_is_enforced_without_the_official_repeated_bug():
    # The official `repeated` flag is never reset: after one rejection every later candidate is
    # rejected. Along a 33-position line with min_distance 8, any greedy choice leaves room for 3
    # positions (each blocks at most 15), so 3 are always found; 6 never fit (at most 5).
    vol = np.full((40, 8, 8), 0.6, np.float32)
    test = ContentTest(vol, "none", (8, 8, 8))
    frame = volume_frame(vol.shape)
    for seed in range(5):
        _, corners = sample_coordinates(frame, [], test, 3, np.random.default_rng(seed), (0.0,) * 3, 8.0, 2000)
        xs = np.sort(corners[:, 0])
        assert np.all(np.diff(xs) >= 8) and np.all(corners[:, 1:] == 0)
    with pytest.raises(CoordinateError, match=r"placed only [345] of 6"):
        sample_coordinates(frame, [], test, 6, np.random.default_rng(0), (0.0,) * 3, 8.0, 2000)


def test_lung_content_test_accepts_lung_inside_the_body_only():
    vol = np.full((32, 32, 24), 0.05, np.float32)  # air ...
    vol[12:, :, :] = 0.6  # ... a body filling X >= 12 ...
    vol[16:28, 4:28, :] = 0.05  # ... with a lung inside it
    corners = np.array([[0, 0, 0], [18, 10, 4], [24, 0, 0]])  # outside air, lung, tissue
    assert ContentTest(vol, "lung", (8, 8, 8))(corners).tolist() == [False, True, False]
    # the official darkness-only test takes the air outside the body for lung
    assert ContentTest(vol, "lung_official", (8, 8, 8))(corners).tolist() == [True, True, False]


def test_official_borders_are_absolute_voxels_in_every_patient():
    from semantic_genesis.discovery.coordinates import Borders

    size = (64, 64, 32)
    official = Borders("official")
    big = volume_frame((512, 512, 140))
    lo, hi = feasible_interval([big], size, official)
    # corners x in [100, 512 - 64 - 1 - 100], z in [30, 140 - 32 - 3 - 1 - 30] -> relative centres
    np.testing.assert_allclose(lo * 512, [132, 132, lo[2] * 512])
    np.testing.assert_allclose(hi[:2] * 512, [379, 379])
    np.testing.assert_allclose([lo[2] * 140, hi[2] * 140], [46, 90])
    test = ContentTest(np.zeros((128, 128, 96), np.float32), "none", size)
    with pytest.raises(CoordinateError, match=r"official borders of 100, 100, 30 voxels.*discovery.border_rule=relative"):
        sample_coordinates(volume_frame((128, 128, 96)), [], test, 1, np.random.default_rng(0), official, 1.0, 10)


def test_no_lung_crop_names_the_options():
    vol = np.full((48, 48, 24), 0.6, np.float32)  # all tissue: no lung anywhere
    test = ContentTest(vol, "lung", (16, 16, 8))
    with pytest.raises(CoordinateError, match=r"0 passed the 'lung' \(mostly air inside the body.*best 1.000\).*"
                                              r"discovery.content_test=body"):
        sample_coordinates(volume_frame(vol.shape), [], test, 2, np.random.default_rng(0), (0.1,) * 3, 2.0, 200)
