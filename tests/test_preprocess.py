"""Preprocessing: intensity mappings, resampling/resizing, body mask, vectorised content tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_genesis.config import IntensityConfig
from semantic_genesis.errors import DataError
from semantic_genesis.io.images2d import Image2D
from semantic_genesis.io.volumes import Volume
from semantic_genesis.preprocess import (
    LungTable,
    _gaussian_blur_conv,
    body_mask,
    border_margins,
    check_contrast,
    gaussian_blur,
    body_scores,
    body_table,
    ct_to_unit,
    lung_scores,
    lung_table,
    passes_lung_test,
    percentile_to_unit,
    resample,
    resize,
    to_unit,
)


def official_lung_loop(unit, corner, size, threshold=0.425, look_ahead=3, lung_max=0.15):
    """Straight transcription of the official per-voxel loop (``infinite_generator_3D.py``, ``pattern_generator_3D.py``)."""
    x0, y0, z0 = (int(c) for c in corner)
    sx, sy, sz = size
    window = unit[x0 : x0 + sx, y0 : y0 + sy, z0 : z0 + sz + look_ahead]
    total = 0.0
    for d in range(sz):
        for i in range(sx):
            for j in range(sy):
                t = look_ahead - 1
                for k in range(look_ahead):
                    if d + k < window.shape[2] and window[i, j, d + k] >= threshold:
                        t = k
                        break
                total += 1.0 - t / (look_ahead - 1)
    return total / (sx * sy * sz), total <= lung_max * sx * sy * sz


def _corners(rng, shape, size, n):
    return np.stack([rng.integers(0, shape[a] - size[a] + 1, n) for a in range(3)], axis=1)


# ---------------------------------------------------------------------------------------------- intensity
def test_ct_to_unit_window_numpy_and_torch():
    hu = np.array([-3000, -1000, -150, 0, 500, 1000, 4000], dtype=np.int16)
    expected = np.array([0, 0, 0.425, 0.5, 0.75, 1, 1], dtype=np.float32)
    out = ct_to_unit(hu)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-7)
    t = ct_to_unit(torch.from_numpy(hu.astype(np.int64)))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(ct_to_unit(hu, -500, 500)[3], 0.5)
    with pytest.raises(DataError, match="hu_max > hu_min"):
        ct_to_unit(hu, 10, 10)


def test_percentile_to_unit_maps_percentiles_and_respects_mask():
    x = np.arange(1001, dtype=np.float32)  # percentile p of 0..1000 is 10 p
    out = percentile_to_unit(x, 10, 90)
    assert out[100] == 0 and out[900] == 1 and out[0] == 0 and out[1000] == 1
    assert out[500] == pytest.approx(0.5)
    mask = x >= 500
    out_m = percentile_to_unit(x, 0, 100, mask=mask)
    assert out_m[500] == 0 and out_m[750] == pytest.approx(0.5) and out_m[10] == 0
    assert np.all(percentile_to_unit(np.full((3, 3), 7.0)) == 0)
    with pytest.raises(DataError, match="lower < upper"):
        percentile_to_unit(x, 60, 40)


def test_to_unit_dispatch_on_modality():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1500, 1500, size=(6, 7, 8))
    ct = to_unit(Volume(hu, (1, 1, 2), metadata={"modality": "ct"}))
    np.testing.assert_allclose(ct.array, np.clip((hu + 1000) / 2000, 0, 1), atol=1e-6)
    assert ct.metadata["intensity"]["kind"] == "ct_window" and ct.spacing == (1.0, 1.0, 2.0)
    unknown = to_unit(Volume(hu))  # auto, modality unknown -> CT
    np.testing.assert_array_equal(unknown.array, ct.array)
    mri_arr = np.zeros((10, 10, 10))
    mri_arr[2:8, 2:8, 2:8] = rng.uniform(100, 200, size=(6, 6, 6))
    mri = to_unit(Volume(mri_arr, metadata={"modality": "mri"}))
    inside = mri.array[2:8, 2:8, 2:8]
    assert mri.metadata["intensity"]["masked"] and inside.min() == 0 and inside.max() == 1
    assert mri.array[0, 0, 0] == 0
    forced = to_unit(Volume(hu, metadata={"modality": "mri"}), IntensityConfig(modality="ct"))
    np.testing.assert_array_equal(forced.array, ct.array)
    xr = to_unit(Image2D(rng.uniform(0, 4000, size=(20, 30)), metadata={"modality": "xray"}))
    assert isinstance(xr, Image2D) and xr.array.min() == 0 and xr.array.max() == 1
    res = to_unit(Volume(hu, (1, 1, 2)), IntensityConfig(spacing=(2.0, 2.0, 2.0)))
    assert res.shape == (3, 4, 8) and res.spacing == (2.0, 2.0, 2.0)


# ---------------------------------------------------------------------------------------------- geometry
def test_resample_keeps_world_positions_and_labels():
    direction = (0, -1, 0, 1, 0, 0, 0, 0, 1)
    x = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((20, 12, 9), np.float32)  # ramp along X
    vol = Volume(x * 0.5, (0.5, 1.0, 3.0), (10.0, -5.0, 2.0), direction)  # value = X offset in mm
    out = resample(vol, (1.0, 2.0, 1.5))
    assert out.shape == (10, 6, 18)
    assert out.origin == vol.origin and out.direction == vol.direction and out.spacing == (1.0, 2.0, 1.5)
    np.testing.assert_allclose(out.array[:, 0, 0], np.arange(10) * 1.0, atol=1e-5)  # linear is exact on a ramp
    # Same world point, same value.
    world = out.voxel_to_world((4, 3, 6))
    np.testing.assert_allclose(vol.world_to_voxel(world), (8, 6, 3), atol=1e-9)
    labels = np.zeros((20, 12, 9), np.float32)
    labels[5:11, 3:9, 2:5] = 3
    labels[11:15, 3:9, 2:5] = 7
    lab = resample(Volume(labels, (0.5, 1.0, 3.0)), (1.0, 1.0, 1.0), is_label=True)
    assert set(np.unique(lab.array)) == {0.0, 3.0, 7.0}
    assert lab.array[4, 5, 9] == 3 and lab.array[6, 5, 9] == 7 and lab.array[9, 5, 9] == 0


def test_resize_numpy_torch_consistent_and_pixel_centred():
    ramp = np.array([0.0, 1.0], dtype=np.float32)[:, None] * np.ones((2, 3), np.float32)
    up = resize(ramp, (4, 3))
    np.testing.assert_allclose(up[:, 0], [0.0, 0.25, 0.75, 1.0])  # align_corners=False, edge clamp
    rng = np.random.default_rng(1)
    vol = rng.random((9, 7, 5)).astype(np.float32)
    out = resize(vol, (4, 6, 10))
    assert out.shape == (4, 6, 10) and out.dtype == np.float32
    batch = torch.from_numpy(np.stack([vol, vol * 2]))[:, None]
    out_t = resize(batch, (4, 6, 10))
    assert out_t.shape == (2, 1, 4, 6, 10)
    np.testing.assert_allclose(out_t[0, 0].numpy(), out, atol=1e-6)
    np.testing.assert_allclose(out_t[1, 0].numpy(), 2 * out, atol=1e-6)
    labels = rng.integers(0, 4, size=(8, 8, 4)).astype(np.float32)
    near = resize(labels, (16, 4, 4), order=0)
    assert set(np.unique(near)) <= {0.0, 1.0, 2.0, 3.0}
    # nearest-exact: X doubled repeats each voxel; Y halved samples input centres 1, 3, 5, 7.
    np.testing.assert_array_equal(near[::2], labels[:, 1::2, :])
    np.testing.assert_array_equal(near[1::2], labels[:, 1::2, :])
    with pytest.raises(DataError, match="does not match"):
        resize(vol, (4, 4))


def test_gaussian_blur_equals_scipy_mirror_mode():
    from scipy import ndimage

    rng = np.random.default_rng(4)
    x = rng.random((2, 1, 19, 6, 3)).astype(np.float32)  # radius > size on some axes: mirrored repeatedly
    for sigmas in ([1.5, 1.5, 0.6], [0.0, 2.7, 4.0], [0.1, 0.0, 0.0]):
        got = gaussian_blur(torch.from_numpy(x), sigmas).numpy()
        conv = _gaussian_blur_conv(torch.from_numpy(x), sigmas).numpy()  # the path of GPU tensors
        for b in range(2):
            want = ndimage.gaussian_filter(x[b, 0].astype(np.float64), sigmas, mode="mirror", truncate=4.0)
            np.testing.assert_allclose(got[b, 0], want, atol=1e-6)
            np.testing.assert_allclose(conv[b, 0], want, atol=1e-6)


def test_resize_anti_aliasing_is_skimage_rule_and_only_when_shrinking():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    vol = rng.random((32, 24, 12)).astype(np.float32)
    target = (8, 12, 12)  # factors 4, 2, 1 -> sigmas 1.5, 0.5, 0 (skimage: (factor - 1) / 2)
    smoothed = ndimage.gaussian_filter(vol.astype(np.float64), (1.5, 0.5, 0.0), mode="mirror").astype(np.float32)
    np.testing.assert_allclose(resize(vol, target, anti_aliasing=True), resize(smoothed, target), atol=1e-5)
    up = (40, 30, 12)
    np.testing.assert_array_equal(resize(vol, up, anti_aliasing=True), resize(vol, up))
    # one bright slice in four (mean 0.25) vanishes in a plain 4x linear downsampling (it samples
    # between voxels 4j+1 and 4j+2); the anti-aliased one keeps its mean
    stripes = np.zeros((64, 8, 8), np.float32)
    stripes[::4] = 1.0
    np.testing.assert_array_equal(resize(stripes, (16, 8, 8)), 0.0)
    np.testing.assert_allclose(resize(stripes, (16, 8, 8), anti_aliasing=True)[2:-2], 0.25, atol=0.02)


def test_border_margins_relative_and_official():
    lo, hi = border_margins((100, 100, 40), (16, 16, 8), "relative", (0.2, 0.1, 0.0))
    assert lo.tolist() == [20, 10, 0] and hi.tolist() == [64, 74, 32]
    lo, hi = border_margins((20, 100, 40), (16, 16, 8), "relative", (0.4, 0.1, 0.1))
    assert lo[0] == 2 and hi[0] == 2  # shrunk to leave room for the crop
    lo, hi = border_margins((512, 512, 140), (64, 64, 32), "official")
    assert lo.tolist() == [100, 100, 30] and hi.tolist() == [347, 347, 74]  # 512-64-1-100, 140-32-3-1-30
    lo, hi = border_margins((128, 128, 96), (64, 64, 32), "official")
    assert np.any(lo > hi)  # no room: the caller reports it
    with pytest.raises(DataError, match="unknown border rule"):
        border_margins((10, 10, 10), (4, 4, 4), "absolute")


def test_lung_table_with_body_mask_scores_outside_air_as_tissue():
    unit = np.full((40, 40, 12), 0.0, np.float32)  # air
    unit[12:, :, :] = 0.55  # a body filling X >= 12 ...
    unit[20:32, 8:32, :] = 0.07  # ... with a lung inside it
    body = body_mask(unit)
    assert not body[:12].any() and body[20:32, 8:32].all()
    size = (8, 8, 6)
    corners = np.array([[0, 10, 0], [22, 12, 2], [30, 10, 0]])  # outside air, lung, tissue
    plain = lung_scores(lung_table(unit), corners, size)
    aware_table = lung_table(unit, body=body)
    aware = lung_scores(aware_table, corners, size)
    assert aware_table.body_aware and not lung_table(unit).body_aware
    np.testing.assert_allclose(plain[:2], 0.0)
    assert aware[0] == 1.0 and aware[1] == 0.0 and aware[2] == plain[2]
    with pytest.raises(DataError, match="body mask shape"):
        lung_table(unit, body=body[:, :, :4])


def test_check_contrast_names_constant_scans():
    check_contrast(np.array([[0.0, 1.0]]))
    with pytest.raises(DataError, match="every voxel has the value -1000"):
        check_contrast(np.full((4, 4, 4), -1000.0))


def test_body_mask_equals_per_slice_hole_filling():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(4):
        x = (ndimage.gaussian_filter(rng.random((36, 30, 7)), 1.2) > 0.5) * 0.8 + rng.random((36, 30, 7)) * 0.1
        tissue = x > 0.25
        labels, _ = ndimage.label(tissue)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        expected = labels == int(np.argmax(sizes))
        for z in range(expected.shape[2]):
            expected[:, :, z] = ndimage.binary_fill_holes(expected[:, :, z])
        np.testing.assert_array_equal(body_mask(x.astype(np.float32)), expected)


def test_body_mask_fills_lungs_and_drops_outside_blobs():
    xx, yy, zz = np.meshgrid(np.arange(40), np.arange(40), np.arange(10), indexing="ij")
    body = (xx - 20) ** 2 + (yy - 20) ** 2 < 15**2
    lung = (xx - 14) ** 2 + (yy - 20) ** 2 < 4**2
    unit = np.where(body, 0.5, 0.0).astype(np.float32)
    unit[lung] = 0.1  # lung: dark, inside the body
    unit[1:3, 1:3, :] = 0.9  # a small bright object outside (e.g. the table)
    mask = body_mask(unit)
    np.testing.assert_array_equal(mask, body)
    assert body_mask(np.zeros((5, 5, 5))).sum() == 0
    assert body_mask(unit[:, :, 0]).sum() == body[:, :, 0].sum()


# ---------------------------------------------------------------------------------------------- content tests
@pytest.mark.parametrize("look_ahead", [3, 4])
def test_lung_scores_identical_to_official_loop(look_ahead):
    rng = np.random.default_rng(7)
    # Mix air and tissue in blobs so scores spread over [0, 1] and straddle the 0.15 acceptance.
    unit = (rng.random((24, 20, 30)) * 0.4 + (rng.random((24, 20, 30)) < 0.12) * 0.6).astype(np.float32)
    unit[:, :, 15:] = np.clip(unit[:, :, 15:] - 0.3, 0, 1)
    size = (6, 5, 7)
    corners = _corners(rng, unit.shape, size, 60)
    corners[0] = (0, 0, unit.shape[2] - size[2])  # look-ahead runs past the last slice
    scores = lung_scores(unit, corners, size, look_ahead=look_ahead)
    table = lung_table(unit, look_ahead=look_ahead)
    passes = passes_lung_test(table, corners, size, look_ahead=look_ahead)
    ref = [official_lung_loop(unit, c, size, look_ahead=look_ahead) for c in corners]
    if look_ahead == 3:  # d in {0, 0.5, 1}: the loop's float sum is exact, so results are identical
        np.testing.assert_array_equal(scores, np.array([r[0] for r in ref]))
    else:  # d = 1 - k/3 is rounded in the loop's running sum
        np.testing.assert_allclose(scores, np.array([r[0] for r in ref]), rtol=1e-12)
    np.testing.assert_array_equal(passes, np.array([r[1] for r in ref]))
    assert 0 < passes.sum() < len(passes)  # both outcomes exercised
    # Few windows on a plain volume take the per-crop path: same numbers as the table.
    direct = np.concatenate([lung_scores(unit, c[None], size, look_ahead=look_ahead) for c in corners[:8]])
    np.testing.assert_array_equal(direct, scores[:8])


def test_lung_scores_on_exact_threshold_and_table_reuse_checks_parameters():
    unit = np.zeros((4, 4, 6), np.float32)
    unit[:, :, 3] = 0.425  # exactly the threshold counts as tissue
    size = (4, 4, 4)
    # Slices 0..3: d = 0, 0, 0.5 (tissue one ahead), 1 (tissue here) -> mean 0.375.
    assert lung_scores(unit, [(0, 0, 0)], size)[0] == pytest.approx(0.375)
    assert not passes_lung_test(unit, [(0, 0, 0)], size)[0]
    table = lung_table(unit)
    assert isinstance(table, LungTable)
    with pytest.raises(DataError, match="built with threshold=0.425, look_ahead=3"):
        lung_scores(table, [(0, 0, 0)], size, look_ahead=4)
    with pytest.raises(DataError, match=r"1 window\(s\) of size \(4, 4, 4\) fall outside .* corner \(1, 0, 0\)"):
        lung_scores(table, [(0, 0, 0), (1, 0, 0)], size)


def test_body_scores_equal_mask_fraction():
    rng = np.random.default_rng(2)
    unit = np.zeros((30, 30, 12), np.float32)
    unit[5:25, 5:25, :] = 0.6
    size = (8, 8, 4)
    corners = _corners(rng, unit.shape, size, 40)
    mask = body_mask(unit)
    expected = [mask[x : x + 8, y : y + 8, z : z + 4].mean() for x, y, z in corners]
    np.testing.assert_allclose(body_scores(unit, corners, size), expected, atol=1e-12)
    np.testing.assert_allclose(body_scores(body_table(unit), corners, size), expected, atol=1e-12)
