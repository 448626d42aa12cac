"""Cubes and discovered patterns lie inside the body on phantoms with LUNA16-like geometry.

LUNA16 scans are typically 512 x 512 x ~140 voxels of 0.7 x 0.7 x 2.5 mm: a 64x64x32 cube spans
45 x 45 x 80 mm of a 358 mm field of view with lots of air around the patient. The official lung test
only measures darkness, so that air passes it; with relative borders 76 % of the cubes and 83 % of
the coordinates it accepted on such phantoms had less than half of their voxels in the body. The
default lung test counts outside air as tissue.

The default suite uses the geometry-equivalent grid 256 x 256 x 70 of 1.4 x 1.4 x 5.0 mm (the same
field of view, every voxel 2x larger) with 32x32x16 cubes (the same 45 x 45 x 80 mm); the slow test
runs the paper presets on the full 512 x 512 x 140 grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.config import load_config
from semantic_genesis.cubes import sample_cubes
from semantic_genesis.discovery.coordinates import Borders, ContentTest, body_frame, relative_to_corner, sample_coordinates
from semantic_genesis.phantoms.ct import make_ct_patient
from semantic_genesis.preprocess import BoxSums, ct_to_unit


def _cohort(n: int, shape, spacing):
    """(unit volume, summed-area table of the true body (phantom labels > 0), body frame) per patient."""
    out = []
    for i in range(n):
        p = make_ct_patient(i, seed=0, shape=shape, spacing=spacing)
        unit = ct_to_unit(p.hu.astype(np.float32))
        out.append((unit, BoxSums(p.labels > 0), body_frame(unit)))
    return out


def _body_fractions(cohort, cfg):
    """Body fraction of every accepted cube, and of every coordinate's crop in its reference and in
    the other patients (the neighbours it is cropped in)."""
    cubes, reference, neighbours = [], [], []
    c, d = cfg.cubes, cfg.discovery
    for i, (unit, truth, frame) in enumerate(cohort):
        _, records = sample_cubes(unit, c, np.random.default_rng(i))
        assert len(records) > 0, f"patient {i}: no cube"
        corners = np.array([r["position"] for r in records])
        cubes += list(truth.box_sums(corners, c.cube_size) / np.prod(c.cube_size))
        size = tuple(d.pattern_size)
        test = ContentTest(unit, d.content_test, size, d.content_threshold, d.content_max, d.look_ahead,
                           d.body_min_fraction)
        others = [f for j, (_, _, f) in enumerate(cohort) if j != i]
        coords, corners = sample_coordinates(frame, others, test, d.classes_per_reference, np.random.default_rng(i),
                                             Borders.from_config(d), d.min_distance, d.max_coordinate_trials)
        reference += list(truth.box_sums(corners, size) / np.prod(size))
        for j, (_, other_truth, other_frame) in enumerate(cohort):
            if j != i:
                mapped = relative_to_corner(coords, other_frame, size)
                neighbours += list(other_truth.box_sums(mapped, size) / np.prod(size))
    return np.array(cubes), np.array(reference), np.array(neighbours)


@pytest.fixture(scope="module")
def luna_like_small():
    return _cohort(3, (256, 256, 70), (1.4, 1.4, 5.0))


SMALL = ["cubes.cube_size=[32,32,16]", "discovery.pattern_size=[32,32,16]", "discovery.classes_per_reference=44"]


def test_cubes_and_coordinates_stay_in_the_body(luna_like_small):
    cubes, reference, neighbours = _body_fractions(luna_like_small, load_config(None, SMALL))
    assert len(cubes) == 3 * 32 and len(reference) == 3 * 44
    assert np.mean(cubes >= 0.5) >= 0.95, np.mean(cubes >= 0.5)
    assert np.mean(reference >= 0.5) >= 0.95, np.mean(reference >= 0.5)
    assert np.mean(neighbours >= 0.5) >= 0.95, np.mean(neighbours >= 0.5)


def test_the_darkness_only_test_with_relative_borders_leaves_the_body(luna_like_small):
    """The behaviour the default fixes (kept as content_test=lung_official for the official rule)."""
    cfg = load_config(None, [*SMALL, "cubes.content_test=lung_official", "discovery.content_test=lung_official"])
    cubes, reference, _ = _body_fractions(luna_like_small, cfg)
    assert np.mean(cubes < 0.5) > 0.5 and np.mean(reference < 0.5) > 0.5


def test_the_official_generator_stays_in_the_body_through_its_borders(luna_like_small):
    """Darkness-only test + the official absolute borders (scaled to this grid: 50 / 50 / 15 voxels)."""
    cfg = load_config(None, [*SMALL, "cubes.content_test=lung_official", "cubes.border_rule=official",
                             "cubes.border_voxels=[50,50,15]", "discovery.content_test=lung_official",
                             "discovery.border_rule=official", "discovery.border_voxels=[50,50,15]",
                             "discovery.coordinate_frame=volume"])
    cubes, reference, _ = _body_fractions(luna_like_small, cfg)
    assert np.mean(cubes >= 0.5) >= 0.95 and np.mean(reference >= 0.5) >= 0.95


@pytest.mark.slow
def test_paper_presets_on_luna16_geometry():
    """512 x 512 x 140 at 0.7 x 0.7 x 2.5 mm, the paper presets unchanged: cubes and C=44 patterns are
    found, and >= 95 % of them are mostly inside the body."""
    from semantic_genesis.discovery.patterns import crop_patterns

    cohort = _cohort(3, (512, 512, 140), (0.7, 0.7, 2.5))
    cfg = load_config("models_genesis_3d")
    dcfg = load_config("semantic_genesis_3d")
    merged = load_config(None, [])
    merged = type(merged)(cubes=cfg.cubes, discovery=dcfg.discovery)
    cubes, reference, neighbours = _body_fractions(cohort, merged)
    assert len(cubes) >= 3 * 16 and len(reference) == 3 * 44
    for values in (cubes, reference, neighbours):
        assert np.mean(values >= 0.5) >= 0.95, np.mean(values >= 0.5)
    unit, _, frame = cohort[0]
    coords = np.array([[0.5, 0.5, 0.5]])
    items, _ = crop_patterns(unit, frame, coords, dcfg.discovery.pattern_size, 3, dcfg.discovery.multires_size_range,
                             dcfg.discovery.multires_jitter, np.random.default_rng(0))
    assert items.shape == (3, 1, 64, 64, 32)
