"""2D self-discovery (Semantic Genesis 2D): radiographs and axial CT slices, end to end and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_genesis.cli import main
from semantic_genesis.config import load_config
from semantic_genesis.discovery.coordinates import Frame
from semantic_genesis.discovery.pipeline import run_discovery
from semantic_genesis.discovery.scans import load_unit_image
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.io.shards import ShardedArray

QUIET = {"log": lambda s: None}

TINY_2D = [
    "seed=0",
    "train.device=cpu",
    "discovery.progress=false",
    "discovery.ae_model=unet2d",
    "discovery.ae_input_size=[32,32]",
    "discovery.ae_width=0.125",
    "discovery.ae_epochs=3",
    "discovery.ae_batch_size=4",
    "discovery.val_fraction=0.2",
    "discovery.pattern_size=[32,32]",
    "discovery.num_neighbours=6",
    "discovery.num_val_neighbours=2",
    "discovery.num_classes=4",
    "discovery.classes_per_reference=2",
    "discovery.num_resolutions=2",
    "discovery.multires_size_range=[25,39]",
    "discovery.multires_jitter=3",
    "discovery.min_distance=5",
    "discovery.border_fraction=[0.05,0.05,0.0]",
    "discovery.content_test=body",
    "discovery.body_min_fraction=0.6",
]


def config_2d(*overrides: str):
    return load_config(None, [*TINY_2D, *overrides])


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory):
    from semantic_genesis.phantoms.cohort import write_native_xray_cohort

    root = tmp_path_factory.mktemp("xray2d")
    write_native_xray_cohort(root, 12, seed=0, ct_shape=(64, 64, 48), size=(96, 96), progress=False)
    return root


@pytest.fixture(scope="module")
def discovered_2d(radiographs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sg2d_run")
    return run_discovery(config_2d(), radiographs, out, **QUIET)


def test_2d_pattern_set_holds_the_patches_of_every_neighbour(discovered_2d):
    store = ShardedArray(discovered_2d.patterns, kind="patterns")
    attrs = store.manifest["attrs"]
    assert store.item_shape == (1, 32, 32) and attrs["pattern_size"] == [32, 32] and attrs["spatial_dims"] == 2
    train = ShardedArray(discovered_2d.patterns, split="train", kind="patterns")
    val = ShardedArray(discovered_2d.patterns, split="validation", kind="patterns")
    assert len(train) == 4 * 6 * 2 and len(val) == 4 * 2  # C x K x resolutions; C x validation neighbours
    labels = [r["label"] for r in train.all_records()]
    assert sorted(set(labels)) == [0, 1, 2, 3] and all(labels.count(c) == 12 for c in range(4))
    cfg = config_2d()
    for i in range(len(train)):
        rec = train.record(i)
        assert len(rec["coordinate"]) == 2 and len(rec["corner"]) == 2
        item = train.item(i)
        assert 0.0 <= item.min() and item.max() <= 1.0
        if rec["resolution"] == 0:  # the base patch is exactly the image at its corner
            image = load_unit_image(attrs["paths"][rec["patient"]], cfg.intensity)[:, :, 0]
            x, y = rec["corner"]
            np.testing.assert_allclose(item[0], image[x : x + 32, y : y + 32], atol=1e-3)


def test_2d_coordinates_are_relative_to_each_images_body_box(discovered_2d):
    store = ShardedArray(discovered_2d.patterns, split="train", kind="patterns")
    frames = {p: Frame.from_dict(f) for p, f in store.manifest["attrs"]["frames"].items()}
    assert all(f.shape[2] == 1 for f in frames.values())  # one-slice volumes
    seen = 0
    for rec in store.all_records():
        if rec["resolution"]:
            continue
        f = frames[rec["patient"]]
        centre = np.asarray(f.origin[:2]) + np.asarray(rec["coordinate"]) * np.asarray(f.extent[:2])
        np.testing.assert_allclose(np.asarray(rec["corner"]) + 16, centre, atol=0.51)
        seen += 1
    assert seen == 4 * 6
    # one class = one relative position in every neighbour, and the neighbours differ in body box
    first = [r for r in store.all_records() if r["label"] == 0 and r["resolution"] == 0]
    assert len({tuple(r["coordinate"]) for r in first}) == 1 and len({r["patient"] for r in first}) == 6


def test_2d_multiresolution_patches_are_resized_larger_crops(discovered_2d):
    store = ShardedArray(discovered_2d.patterns, split="train", kind="patterns")
    scales = [r["scale"] for r in store.all_records() if r["resolution"] == 1]
    assert scales and all(s[0] == s[1] and 25 <= s[0] <= 39 for s in scales)
    assert any(s[0] != 32 for s in scales)


def test_2d_discovery_resumes_to_the_same_pattern_set(radiographs, discovered_2d, tmp_path):
    cfg = config_2d()
    run_discovery(cfg, radiographs, tmp_path, stop_after={"classes": 1}, **QUIET)
    assert not ShardedArray(tmp_path / "patterns", require_complete=False).manifest["complete"]
    result = run_discovery(cfg, radiographs, tmp_path, **QUIET)
    a, b = ShardedArray(result.patterns), ShardedArray(discovered_2d.patterns)
    key = lambda s, i: (s.record(i)["unit"], s.record(i)["patient"], s.record(i)["resolution"])  # noqa: E731
    order_a = sorted(range(len(a)), key=lambda i: key(a, i))
    order_b = sorted(range(len(b)), key=lambda i: key(b, i))
    assert len(a) == len(b)
    for i, j in zip(order_a, order_b):
        np.testing.assert_array_equal(a.item(i), b.item(j))


def test_report_patterns_draws_the_2d_classes(discovered_2d, tmp_path):
    assert main(["report", "patterns", str(discovered_2d.run_dir), "--out", str(tmp_path), "--classes", "3"]) == 0
    assert (tmp_path / "patterns_grid.png").stat().st_size > 5000
    assert (tmp_path / "patterns_reference.png").stat().st_size > 5000


def test_axial_ct_slices_feed_2d_discovery(tmp_path):
    from semantic_genesis.phantoms.cohort import write_native_ct_cohort

    write_native_ct_cohort(tmp_path / "ct", 10, seed=0, shape=(48, 48, 40), progress=False)
    cfg = config_2d("intensity.modality=ct", "discovery.pattern_size=[16,16]", "discovery.multires_size_range=[12,20]",
                    "discovery.num_neighbours=5", "discovery.num_resolutions=1")
    unit = load_unit_image(tmp_path / "ct" / "images" / "phantom_ct_000.nii.gz", cfg.intensity, "ct")
    assert unit.shape == (48, 48, 1) and unit.min() >= 0 and unit.max() <= 1
    result = run_discovery(cfg, tmp_path / "ct", tmp_path / "run", **QUIET)
    store = ShardedArray(result.patterns, kind="patterns")
    assert store.item_shape == (1, 16, 16) and len(ShardedArray(result.patterns, split="train")) == 4 * 5


def test_2d_settings_must_agree():
    from semantic_genesis.discovery.scans import spatial_dims

    with pytest.raises(ConfigError, match=r"discovery.pattern_size \[32, 32\] and discovery.ae_input_size \[32, 32, 16\]"):
        spatial_dims(config_2d("discovery.ae_input_size=[32,32,16]").discovery)
    with pytest.raises(ConfigError, match=r"discovery.ae_model='unet3d' does not fit 2D discovery .* use unet2d or resunet2d"):
        spatial_dims(config_2d("discovery.ae_model=unet3d").discovery)
    with pytest.raises(ConfigError, match="border_rule=official is the 3D LUNA16 rule"):
        spatial_dims(config_2d("discovery.border_rule=official").discovery)
    assert spatial_dims(load_config("semantic_genesis_3d").discovery) == 3


def test_too_small_radiographs_and_multiframe_files_are_named(radiographs, tmp_path, capsys):
    import shutil

    import pydicom

    from semantic_genesis.io.images2d import Image2D, write_image2d

    folder = tmp_path / "bad"
    shutil.copytree(radiographs / "images", folder)
    write_image2d(Image2D(np.random.default_rng(1).random((20, 40)).astype(np.float32)), folder / "small.png")
    path = write_image2d(Image2D(np.random.default_rng(2).random((64, 64)).astype(np.float32)), folder / "multi.dcm",
                         bits=16, modality="DX")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2  # a 3D image where a radiograph is expected
    ds.save_as(path)
    warnings: list[str] = []
    result = run_discovery(config_2d("discovery.ae_epochs=1"), folder, tmp_path / "run", warn=warnings.append, **QUIET)
    assert "small" not in result.ids and "multi" not in result.ids and len(result.ids) == 12
    small = [w for w in warnings if "small.png" in w]
    multi = [w for w in warnings if "multi.dcm" in w]
    assert len(small) == 1 and "image of shape (20, 40) is smaller than discovery.pattern_size [32, 32] along axis H" in small[0]
    assert len(multi) == 1 and "frame" in multi[0]
    assert all("\n" not in w for w in warnings)
    # nothing readable: one line naming every file and its problem
    only = tmp_path / "only_bad"
    only.mkdir()
    shutil.copy(folder / "small.png", only / "small.png")
    with pytest.raises(DataError, match=r"no readable scan for self-discovery \(small: .*small.png: image of shape \(20, 40\)"):
        run_discovery(config_2d("discovery.num_neighbours=1", "discovery.num_val_neighbours=0", "discovery.num_classes=1",
                                "discovery.classes_per_reference=1", "discovery.val_fraction=0"),
                      only, tmp_path / "run2", warn=lambda s: None, **QUIET)
